//! Users: Django-compatible rows in `corral_user`.

use crate::storage::on_db;
use crate::storage::{Db, Dialect, StorageError};
use sqlx::Acquire;

/// A user as the API needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct User {
    pub id: i64,
    pub username: String,
    pub password: String,
    pub is_active: bool,
}

/// A user as `corral user list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Listed {
    pub id: i64,
    pub username: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub email: String,
    pub date_joined: String,
    pub last_login: Option<String>,
    /// The hash algorithm (`argon2`, `pbkdf2_sha256`, …), never the hash.
    pub hasher: String,
}

/// A row of Django's `auth_user`, as `dumpdata` writes it.
#[derive(Debug, Clone, serde::Deserialize)]
pub(super) struct DjangoUser {
    pub id: i64,
    pub password: String,
    pub last_login: Option<String>,
    pub is_superuser: bool,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub is_staff: bool,
    pub is_active: bool,
    pub date_joined: String,
}

fn now_sql(d: Dialect) -> &'static str {
    match d {
        Dialect::Postgres => "now()",
        Dialect::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    }
}

pub(super) async fn by_username(db: &Db, username: &str) -> Result<Option<User>, StorageError> {
    const SQL: &str =
        "SELECT id, username, password, is_active FROM corral_user WHERE username = $1";
    let row: Option<(i64, String, String, bool)> =
        on_db!(db, p => db.query_as(SQL).bind(username).fetch_optional(p).await)?;
    Ok(row.map(|(id, username, password, is_active)| User {
        id,
        username,
        password,
        is_active,
    }))
}

/// The highest iteration count of the stored Django PBKDF2 hashes that a login would
/// really compute (at most `max`: a costlier one is refused without computing it).
pub(super) async fn strongest_pbkdf2(db: &Db, max: u64) -> Result<Option<u64>, StorageError> {
    const SQL: &str = "SELECT password FROM corral_user WHERE password LIKE 'pbkdf2_sha256$%'";
    let hashes: Vec<String> = on_db!(db, p => db.query_scalar(SQL).fetch_all(p).await)?;
    Ok(hashes
        .iter()
        .filter_map(|h| super::auth::password::pbkdf2_iterations(h))
        .filter(|n| *n <= max)
        .max())
}

/// `Some(is_active)` when the user exists.
/// What the user check needs of a user: active, and since when its tokens count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Standing {
    pub active: bool,
    /// Tokens issued before this (Unix seconds) were revoked by a logout everywhere.
    pub tokens_valid_after: Option<i64>,
}

impl Standing {
    /// Whether a token issued at `iat` outlived a logout everywhere.
    pub(super) fn revoked(&self, iat: i64) -> bool {
        self.tokens_valid_after.is_some_and(|t| iat < t)
    }
}

pub(super) async fn standing(db: &Db, id: i64) -> Result<Option<Standing>, StorageError> {
    const SQL: &str = "SELECT is_active, tokens_valid_after FROM corral_user WHERE id = $1";
    let row: Option<(bool, Option<i64>)> =
        on_db!(db, p => db.query_as(SQL).bind(id).fetch_optional(p).await)?;
    Ok(row.map(|(active, tokens_valid_after)| Standing {
        active,
        tokens_valid_after,
    }))
}

/// Logs a user out everywhere: tokens issued until now are refused from now on (the
/// second of the logout included), and every outstanding refresh token is blacklisted.
/// Returns how many were blacklisted, or `None` when there is no such user.
pub(super) async fn logout_all(db: &Db, id: i64) -> Result<Option<u64>, StorageError> {
    const USER: &str = "UPDATE corral_user SET tokens_valid_after = $2 WHERE id = $1";
    const TOKENS: &str = "INSERT INTO corral_blacklisted_token (token_id, blacklisted_at)
        SELECT id, $2 FROM corral_outstanding_token WHERE user_id = $1 AND expires_at >= $2
        ON CONFLICT (token_id) DO NOTHING";
    let now = crate::storage::now_secs();
    let n = on_db!(db, p => db.query(USER).bind(id).bind(now + 1).execute(p).await.map(|r| r.rows_affected()))?;
    if n == 0 {
        return Ok(None);
    }
    let t = on_db!(db, p => db.query(TOKENS).bind(id).bind(now).execute(p).await.map(|r| r.rows_affected()))?;
    Ok(Some(t))
}

pub(super) async fn create(
    db: &Db,
    username: &str,
    password_hash: &str,
    active: bool,
) -> Result<i64, StorageError> {
    const SQL: &str =
        "INSERT INTO corral_user (username, password, is_active) VALUES ($1, $2, $3) RETURNING id";
    // In an explicit transaction whose commit is awaited: with `RETURNING`, SQLite hands
    // the row back before the statement commits, so a commit that fails (a full disk)
    // would otherwise go unnoticed and the user would be reported created but be lost.
    let id: i64 = on_db!(db, p => async {
        let mut tx = p.begin().await?;
        let id = db.query_scalar(SQL).bind(username).bind(password_hash).bind(active).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok::<i64, sqlx::Error>(id)
    }.await)
        .map_err(|e| match StorageError::from(e) {
            StorageError::Conflict(_) => StorageError::Conflict(format!("user {username:?} already exists")),
            other => other,
        })?;
    Ok(id)
}

/// Replaces a user's password hash; `false` when there is no such user.
pub(super) async fn set_password(
    db: &Db,
    username: &str,
    password_hash: &str,
) -> Result<bool, StorageError> {
    const SQL: &str = "UPDATE corral_user SET password = $2 WHERE username = $1";
    Ok(
        on_db!(db, p => db.query(SQL).bind(username).bind(password_hash).execute(p).await.map(|r| r.rows_affected()))?
            == 1,
    )
}

/// Re-hashes after a login, only if the stored hash is still the one that was verified
/// (a concurrent password change wins).
pub(super) async fn upgrade_hash(
    db: &Db,
    id: i64,
    old: &str,
    new: &str,
) -> Result<(), StorageError> {
    const SQL: &str = "UPDATE corral_user SET password = $3 WHERE id = $1 AND password = $2";
    on_db!(db, p => db.query(SQL).bind(id).bind(old).bind(new).execute(p).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Activates or deactivates a user; `false` when there is no such user.
pub(super) async fn set_active(
    db: &Db,
    username: &str,
    active: bool,
) -> Result<bool, StorageError> {
    const SQL: &str = "UPDATE corral_user SET is_active = $2 WHERE username = $1";
    Ok(
        on_db!(db, p => db.query(SQL).bind(username).bind(active).execute(p).await.map(|r| r.rows_affected()))?
            == 1,
    )
}

/// Deletes a user; `false` when there is no such user. Its refresh tokens stay recorded
/// (their `user_id` set to NULL) and are refused, as its access tokens are.
pub(super) async fn delete(db: &Db, username: &str) -> Result<bool, StorageError> {
    const SQL: &str = "DELETE FROM corral_user WHERE username = $1";
    Ok(
        on_db!(db, p => db.query(SQL).bind(username).execute(p).await.map(|r| r.rows_affected()))?
            == 1,
    )
}

pub(super) async fn touch_last_login(db: &Db, id: i64) -> Result<(), StorageError> {
    let sql = format!(
        "UPDATE corral_user SET last_login = {} WHERE id = $1",
        now_sql(db.dialect())
    );
    on_db!(db, p => db.query(sqlx::AssertSqlSafe(sql)).bind(id).execute(p).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Every user, times in one ISO 8601 form on both databases (`2026-12-01T22:13:10.123Z`).
pub(super) async fn list(db: &Db) -> Result<Vec<Listed>, StorageError> {
    let iso = |col: &str| match db.dialect() {
        Dialect::Postgres => {
            format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
        }
        Dialect::Sqlite => format!("COALESCE(strftime('%Y-%m-%dT%H:%M:%fZ', {col}), {col})"),
    };
    let sql = format!(
        "SELECT id, username, is_active, is_staff, is_superuser, email,
        {}, {}, password FROM corral_user ORDER BY id",
        iso("date_joined"),
        iso("last_login")
    );
    type Row = (
        i64,
        String,
        bool,
        bool,
        bool,
        String,
        String,
        Option<String>,
        String,
    );
    let rows: Vec<Row> =
        on_db!(db, p => db.query_as(sqlx::AssertSqlSafe(sql.clone())).fetch_all(p).await)?;
    Ok(rows
        .into_iter()
        .map(
            |(
                id,
                username,
                is_active,
                is_staff,
                is_superuser,
                email,
                date_joined,
                last_login,
                password,
            )| Listed {
                id,
                username,
                is_active,
                is_staff,
                is_superuser,
                email,
                date_joined,
                last_login,
                // Django's unusable passwords start with `!` (no `$`): say so, rather
                // than print a random-looking string in the hasher column.
                hasher: if password.starts_with('!') {
                    "unusable".to_string()
                } else {
                    password.split('$').next().unwrap_or("").to_string()
                },
            },
        )
        .collect())
}

/// Inserts a Django user with its id and hash; `false` when its id or username exists.
pub(super) async fn import(db: &Db, u: &DjangoUser) -> Result<bool, StorageError> {
    let ts = |param: &str| match db.dialect() {
        Dialect::Postgres => format!("CAST({param} AS TIMESTAMPTZ)"),
        Dialect::Sqlite => param.to_string(),
    };
    let sql = format!(
        "INSERT INTO corral_user (id, password, last_login, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined)
         VALUES ($1, $2, {}, $4, $5, $6, $7, $8, $9, $10, {}) ON CONFLICT DO NOTHING",
        ts("$3"),
        ts("$11")
    );
    let done = on_db!(db, p => db.query(sqlx::AssertSqlSafe(sql))
        .bind(u.id).bind(&u.password).bind(&u.last_login).bind(u.is_superuser).bind(&u.username)
        .bind(&u.first_name).bind(&u.last_name).bind(&u.email).bind(u.is_staff).bind(u.is_active).bind(&u.date_joined)
        .execute(p).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// After inserting explicit ids, moves PostgreSQL's sequence past them.
pub(super) async fn sync_id_sequence(db: &Db) -> Result<(), StorageError> {
    if let Some(p) = db.postgres() {
        sqlx::query("SELECT setval(pg_get_serial_sequence('corral_user', 'id'), GREATEST((SELECT MAX(id) FROM corral_user), 1))")
            .execute(p)
            .await?;
    }
    Ok(())
}
