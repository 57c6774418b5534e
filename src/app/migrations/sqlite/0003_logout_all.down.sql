ALTER TABLE corral_user DROP COLUMN tokens_valid_after;
