DROP TABLE corral_blacklisted_token;
DROP TABLE corral_outstanding_token;
DROP TABLE corral_user;
