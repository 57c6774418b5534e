DROP TABLE corral_revoked_family;
DROP TABLE corral_blacklisted_token;
DROP TABLE corral_outstanding_token;
DROP TABLE corral_user;
