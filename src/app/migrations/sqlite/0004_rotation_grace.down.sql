ALTER TABLE corral_outstanding_token DROP COLUMN successor;
