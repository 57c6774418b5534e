-- The JWT app's schema: Django-compatible users (the columns of Django's auth_user),
-- and refresh tokens: every one issued (outstanding), and the revoked ones (blacklisted).

CREATE TABLE corral_user (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    password     VARCHAR(128) NOT NULL,
    last_login   TEXT NULL,
    is_superuser BOOLEAN NOT NULL DEFAULT 0,
    username     VARCHAR(150) NOT NULL UNIQUE,
    first_name   VARCHAR(150) NOT NULL DEFAULT '',
    last_name    VARCHAR(150) NOT NULL DEFAULT '',
    email        VARCHAR(254) NOT NULL DEFAULT '',
    is_staff     BOOLEAN NOT NULL DEFAULT 0,
    is_active    BOOLEAN NOT NULL DEFAULT 1,
    date_joined  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- One row per refresh token issued. The token itself is never stored: its jti is enough
-- to revoke it. `family` is the jti of the first token of a rotation chain; `used_at` marks
-- a rotated (spent) token, so presenting it again reveals a replay. Times are Unix seconds.
CREATE TABLE corral_outstanding_token (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NULL REFERENCES corral_user (id) ON DELETE SET NULL,
    jti        VARCHAR(64) NOT NULL UNIQUE,
    family     VARCHAR(64) NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER NULL
);
CREATE INDEX corral_outstanding_token_family ON corral_outstanding_token (family);
CREATE INDEX corral_outstanding_token_expires ON corral_outstanding_token (expires_at);

CREATE TABLE corral_blacklisted_token (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    token_id       INTEGER NOT NULL UNIQUE REFERENCES corral_outstanding_token (id) ON DELETE CASCADE,
    blacklisted_at INTEGER NOT NULL
);

-- A token family whose spent refresh token was presented again: every token of the
-- family, including ones issued after the revocation raced with a rotation, is refused.
CREATE TABLE corral_revoked_family (
    family     VARCHAR(64) PRIMARY KEY,
    revoked_at INTEGER NOT NULL
);
