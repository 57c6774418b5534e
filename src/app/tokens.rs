//! Refresh and sliding tokens: outstanding (issued), blacklisted (revoked), and rotation as an atomic
//! single use with reuse detection.
//!
//! Only the jti, the family and the times are stored, never the token. A token's family is
//! the jti of the first token of its rotation chain. Rotation marks the presented token
//! used with `UPDATE … WHERE used_at IS NULL`, so of two concurrent refreshes exactly one
//! wins; presenting an already used token again revokes its whole family (RFC 9700
//! §4.14: a refresh token that is replayed has been stolen or leaked).

use crate::storage::on_db;
use crate::storage::{now_secs, Db, StorageError};

/// Records an issued refresh or sliding token, or keeps its row at least until
/// `expires_at` (idempotent). The row must outlive the token: a blacklisted token's
/// blacklisting goes with its row, and a sliding token refreshed under a longer
/// `auth.sliding_token_lifetime_secs` than it was issued under lives longer than its row
/// said.
pub(super) async fn outstand(
    db: &Db,
    jti: &str,
    family: &str,
    user_id: Option<i64>,
    expires_at: i64,
) -> Result<(), StorageError> {
    const SQL: &str =
        "INSERT INTO corral_outstanding_token (user_id, jti, family, created_at, expires_at)
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT (jti) DO UPDATE SET expires_at = excluded.expires_at
        WHERE corral_outstanding_token.expires_at < excluded.expires_at";
    on_db!(db, p => db.query(SQL).bind(user_id).bind(jti).bind(family).bind(now_secs()).bind(expires_at).execute(p).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Whether a token is revoked: blacklisted itself, or of a revoked family.
pub(super) async fn is_blacklisted(db: &Db, jti: &str) -> Result<bool, StorageError> {
    const SQL: &str = "SELECT COUNT(*) FROM corral_outstanding_token o WHERE o.jti = $1 AND (
        EXISTS (SELECT 1 FROM corral_blacklisted_token b WHERE b.token_id = o.id)
        OR EXISTS (SELECT 1 FROM corral_revoked_family f WHERE f.family = o.family))";
    let n: i64 = on_db!(db, p => db.query_scalar(SQL).bind(jti).fetch_one(p).await)?;
    Ok(n > 0)
}

/// Blacklists a token that lives until `expires_at` (creating its outstanding row if it
/// was minted elsewhere).
pub(super) async fn blacklist(
    db: &Db,
    jti: &str,
    user_id: Option<i64>,
    expires_at: i64,
) -> Result<(), StorageError> {
    outstand(db, jti, jti, user_id, expires_at).await?;
    const SQL: &str = "INSERT INTO corral_blacklisted_token (token_id, blacklisted_at)
        SELECT id, $2 FROM corral_outstanding_token WHERE jti = $1 ON CONFLICT (token_id) DO NOTHING";
    on_db!(db, p => db.query(SQL).bind(jti).bind(now_secs()).execute(p).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// The outcome of presenting a refresh token for rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Rotation {
    /// This request won: the token is now spent; new tokens join `family`.
    Won { family: String },
    /// The token was revoked (blacklisted, or its family revoked) before it was used.
    Blacklisted,
    /// The token was already spent: its family is now revoked.
    Reused,
    /// The token was spent within the grace window: the pair it was exchanged for, again.
    Retry {
        family: String,
        successor: Successor,
    },
}

/// The pair a refresh token was exchanged for, as remembered (never the tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Successor {
    pub refresh_jti: String,
    pub access_jti: String,
    pub iat: i64,
}

impl Successor {
    fn encode(&self) -> String {
        format!("{} {} {}", self.refresh_jti, self.access_jti, self.iat)
    }

    fn decode(s: &str) -> Option<Successor> {
        let mut p = s.split(' ');
        Some(Successor {
            refresh_jti: p.next()?.to_string(),
            access_jti: p.next()?.to_string(),
            iat: p.next()?.parse().ok()?,
        })
    }
}

/// Spends `jti` for `successor`, atomically; a replay of a spent token revokes its family
/// for good, unless it comes within `grace` seconds of the spending: then it is answered
/// with the same successor (a lost response, two tabs refreshing at once).
pub(super) async fn rotate(
    db: &Db,
    jti: &str,
    user_id: Option<i64>,
    expires_at: i64,
    successor: &Successor,
    grace: i64,
) -> Result<Rotation, StorageError> {
    outstand(db, jti, jti, user_id, expires_at).await?;
    const SPEND: &str = "UPDATE corral_outstanding_token SET used_at = $2, successor = $3 WHERE jti = $1 AND used_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM corral_blacklisted_token b WHERE b.token_id = corral_outstanding_token.id)
        AND NOT EXISTS (SELECT 1 FROM corral_revoked_family f WHERE f.family = corral_outstanding_token.family)";
    let now = now_secs();
    let spent = on_db!(db, p => db.query(SPEND).bind(jti).bind(now).bind(successor.encode()).execute(p).await.map(|r| r.rows_affected()))?;
    const ROW: &str = "SELECT family, used_at, successor,
        EXISTS (SELECT 1 FROM corral_revoked_family f WHERE f.family = corral_outstanding_token.family)
        FROM corral_outstanding_token WHERE jti = $1";
    let (family, used_at, previous, revoked): (String, Option<i64>, Option<String>, bool) =
        on_db!(db, p => db.query_as(ROW).bind(jti).fetch_one(p).await)?;
    if spent == 0 && grace > 0 && !revoked {
        let within = used_at.is_some_and(|t| now - t <= grace);
        if let Some(s) = previous
            .as_deref()
            .and_then(Successor::decode)
            .filter(|_| within)
        {
            return Ok(Rotation::Retry {
                family,
                successor: s,
            });
        }
    }
    if spent == 1 {
        // Blacklisted as simplejwt does after rotation, so the verify view reports it.
        blacklist(db, jti, user_id, expires_at).await?;
        return Ok(Rotation::Won { family });
    }
    if used_at.is_none() {
        return Ok(Rotation::Blacklisted);
    }
    const REVOKE: &str = "INSERT INTO corral_revoked_family (family, revoked_at) VALUES ($1, $2) ON CONFLICT (family) DO NOTHING";
    on_db!(db, p => db.query(REVOKE).bind(&family).bind(now_secs()).execute(p).await.map(|r| r.rows_affected()))?;
    Ok(Rotation::Reused)
}

/// When the presented token was issued and when its family (its login) began, if it
/// is known here.
pub(super) async fn ages(db: &Db, jti: &str) -> Result<Option<(i64, i64)>, StorageError> {
    const SQL: &str =
        "SELECT o.created_at, (SELECT MIN(f.created_at) FROM corral_outstanding_token f
        WHERE f.family = o.family) FROM corral_outstanding_token o WHERE o.jti = $1";
    let row: Option<(i64, Option<i64>)> =
        on_db!(db, p => db.query_as(SQL).bind(jti).fetch_optional(p).await)?;
    Ok(row.map(|(issued, began)| (issued, began.unwrap_or(issued))))
}

/// What [`flush_expired`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Flushed {
    pub tokens: u64,
    pub families: u64,
}

/// Deletes refresh tokens that expired before `before` (their blacklist rows go with
/// them), in batches of `batch` so no statement holds locks for long, then the revoked
/// families that have no token left (no new token can join a family whose tokens are
/// all gone). simplejwt's `flushexpiredtokens`, without the cron.
pub(super) async fn flush_expired(
    db: &Db,
    before: i64,
    batch: i64,
) -> Result<Flushed, StorageError> {
    const TOKENS: &str = "DELETE FROM corral_outstanding_token WHERE id IN
        (SELECT id FROM corral_outstanding_token WHERE expires_at < $1 LIMIT $2)";
    const FAMILIES: &str = "DELETE FROM corral_revoked_family WHERE family NOT IN
        (SELECT family FROM corral_outstanding_token)";
    let mut out = Flushed::default();
    loop {
        let n = on_db!(db, p => db.query(TOKENS).bind(before).bind(batch).execute(p).await.map(|r| r.rows_affected()))?;
        out.tokens += n;
        if n < batch as u64 {
            break;
        }
    }
    out.families = on_db!(db, p => db.query(FAMILIES).execute(p).await.map(|r| r.rows_affected()))?;
    Ok(out)
}
