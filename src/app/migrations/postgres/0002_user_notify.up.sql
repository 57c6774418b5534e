-- Every change to a user row (insert, update, delete, truncate) sends a NOTIFY on
-- channel `corral_user` with the user's id (or `*` for a truncate), once the change
-- commits. Each worker LISTENs and drops that user from its in-memory user check, so a
-- deactivation on any host is refused everywhere within milliseconds, without a query
-- per request (see app/user_check.rs for why no stale answer survives).
CREATE FUNCTION corral_user_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('corral_user', COALESCE(NEW.id, OLD.id)::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION corral_user_truncated() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('corral_user', '*');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER corral_user_notify AFTER INSERT OR UPDATE OR DELETE ON corral_user
    FOR EACH ROW EXECUTE FUNCTION corral_user_changed();

CREATE TRIGGER corral_user_notify_truncate AFTER TRUNCATE ON corral_user
    FOR EACH STATEMENT EXECUTE FUNCTION corral_user_truncated();
