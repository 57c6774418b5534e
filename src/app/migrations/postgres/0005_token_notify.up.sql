-- Every change to the blacklist sends a NOTIFY on channel `corral_token` once it
-- commits: the token's jti when one is blacklisted, `*` when a family is revoked or
-- blacklist rows are deleted or truncated. Each worker LISTENs and drops what it
-- remembered of those tokens, so a sliding token on a protected view is checked against
-- the blacklist from memory, as the user is (see app/user_check.rs).
CREATE FUNCTION corral_token_blacklisted() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('corral_token',
        COALESCE((SELECT jti FROM corral_outstanding_token WHERE id = NEW.token_id), '*'));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION corral_token_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('corral_token', '*');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER corral_token_notify AFTER INSERT OR UPDATE ON corral_blacklisted_token
    FOR EACH ROW EXECUTE FUNCTION corral_token_blacklisted();

CREATE TRIGGER corral_token_notify_removed AFTER DELETE OR TRUNCATE ON corral_blacklisted_token
    FOR EACH STATEMENT EXECUTE FUNCTION corral_token_changed();

CREATE TRIGGER corral_family_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON corral_revoked_family
    FOR EACH STATEMENT EXECUTE FUNCTION corral_token_changed();
