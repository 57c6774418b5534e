-- Log out everywhere (corral user logout, POST /api/token/logout-all/): tokens issued
-- before this moment (Unix seconds) are refused, by the user check every request makes
-- anyway (on PostgreSQL the change is NOTIFYed like any other to the user row).
ALTER TABLE corral_user ADD COLUMN tokens_valid_after BIGINT NULL;
