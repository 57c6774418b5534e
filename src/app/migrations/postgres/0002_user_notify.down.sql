DROP TRIGGER corral_user_notify_truncate ON corral_user;
DROP TRIGGER corral_user_notify ON corral_user;
DROP FUNCTION corral_user_truncated();
DROP FUNCTION corral_user_changed();
