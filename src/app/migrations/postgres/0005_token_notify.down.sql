DROP TRIGGER corral_family_notify ON corral_revoked_family;
DROP TRIGGER corral_token_notify_removed ON corral_blacklisted_token;
DROP TRIGGER corral_token_notify ON corral_blacklisted_token;
DROP FUNCTION corral_token_changed();
DROP FUNCTION corral_token_blacklisted();
