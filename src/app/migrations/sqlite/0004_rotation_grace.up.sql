-- The rotation grace window (auth.rotation_grace_secs): a spent refresh token remembers
-- the pair it was exchanged for ("refresh_jti access_jti iat", never the tokens), so a
-- retry within the window gets the same pair again instead of revoking the family.
ALTER TABLE corral_outstanding_token ADD COLUMN successor VARCHAR(200) NULL;
