//! The connection budget: how many PostgreSQL connections a generation of workers may
//! open, against how many the server lets this role open.

use super::{pg_options, Settings, StorageError};
use sqlx::Connection;
use std::fmt;
use std::time::Duration;

/// What a generation needs and what the server allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub workers: u32,
    pub pool: u32,
    pub listeners: u32,
    /// `max_connections`.
    pub max: i64,
    /// `superuser_reserved_connections` + `reserved_connections` (PostgreSQL 16+).
    pub reserved: i64,
    /// The tightest of the role's and the database's `CONNECTION LIMIT`, when set.
    pub limit: Option<(i64, &'static str)>,
    /// Client connections open now, other than the one asking: to the whole server,
    /// and (for the `CONNECTION LIMIT`s) of this role and to this database.
    pub in_use: InUse,
    /// The server listens on another port than the URL names: a pooler such as PgBouncer
    /// may be in between, and the workers' connections may not be the server's.
    pub pooled: bool,
}

/// Client connections open now, counted for each limit they count against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InUse {
    pub server: i64,
    pub role: i64,
    pub database: i64,
}

impl Budget {
    /// Connections the workers may hold at once.
    pub fn need(&self) -> i64 {
        i64::from(self.workers) * i64::from(self.pool + self.listeners)
    }

    /// Connections the server lets this role open in all.
    pub fn allowed(&self) -> i64 {
        let server = self.max - self.reserved;
        self.limit.map_or(server, |(l, _)| l.min(server))
    }

    /// Connections still free now: the least that any limit leaves, each counting only
    /// the connections it applies to.
    pub fn free(&self) -> i64 {
        let server = self.max - self.reserved - self.in_use.server;
        let limited = self.limit.map(|(l, what)| {
            l - match what {
                "role" => self.in_use.role,
                _ => self.in_use.database,
            }
        });
        limited.map_or(server, |l| l.min(server)).max(0)
    }

    /// The connections that the binding limit counts, held by others now.
    pub fn held(&self) -> i64 {
        match self.limit.filter(|(l, _)| *l < self.max - self.reserved) {
            Some((_, "role")) => self.in_use.role,
            Some(_) => self.in_use.database,
            None => self.in_use.server,
        }
    }

    /// `4 workers × (2 pool + 1 listener) = 12`.
    pub fn need_text(&self) -> String {
        format!(
            "{} × ({} pool + {} listener) = {}",
            crate::logging::count(self.workers, "worker"),
            self.pool,
            self.listeners,
            self.need()
        )
    }

    /// `97 (max_connections 100 − 3 reserved)`.
    pub fn allowed_text(&self) -> String {
        let mut s = format!(
            "{} (max_connections {} − {} reserved",
            self.allowed(),
            self.max,
            self.reserved
        );
        if let Some((l, what)) = self.limit.filter(|(l, _)| *l < self.max - self.reserved) {
            s.push_str(&format!("; {what} CONNECTION LIMIT {l}"));
        }
        s.push(')');
        s
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "database connections: {}; the server allows {}, {} free now",
            self.need_text(),
            self.allowed_text(),
            self.free()
        )
    }
}

/// Asks the server behind `cfg.url` (a PostgreSQL URL) for its limits.
pub async fn measure(cfg: &Settings, workers: u32) -> Result<Budget, StorageError> {
    const SQL: &str = "SELECT current_setting('max_connections')::bigint, \
        current_setting('superuser_reserved_connections')::bigint \
          + COALESCE(current_setting('reserved_connections', true)::bigint, 0), \
        (SELECT rolconnlimit::bigint FROM pg_roles WHERE rolname = current_user), \
        (SELECT datconnlimit::bigint FROM pg_database WHERE datname = current_database()), \
        a.server, a.role, a.database FROM (SELECT count(*) AS server, \
          count(*) FILTER (WHERE usename = current_user) AS role, \
          count(*) FILTER (WHERE datname = current_database()) AS database \
          FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()) a";
    let opts = pg_options(cfg, &cfg.url, "corral migrate")?;
    let timeout = Duration::from_secs(cfg.connect_timeout);
    let mut conn = tokio::time::timeout(timeout, sqlx::PgConnection::connect_with(&opts))
        .await
        .map_err(|_| StorageError::Unavailable(sqlx::Error::PoolTimedOut))??;
    // The simple protocol: nothing is prepared, so a pooler in between does not matter.
    let row = sqlx::raw_sql(SQL).fetch_one(&mut conn).await?;
    let (max, reserved, role, db, server, by_role, by_db): (i64, i64, i64, i64, i64, i64, i64) =
        sqlx::FromRow::from_row(&row)?;
    let in_use = InUse {
        server,
        role: by_role,
        database: by_db,
    };
    let pooled = super::proxied(&mut conn, &cfg.url).await.is_some();
    let _ = conn.close().await;
    let limit = [(role, "role"), (db, "database")]
        .into_iter()
        .filter(|(l, _)| *l >= 0)
        .min_by_key(|(l, _)| *l);
    Ok(Budget {
        workers,
        pool: cfg.pool_size(),
        listeners: cfg.connections_per_worker() - cfg.pool_size(),
        max,
        reserved,
        limit,
        in_use,
        pooled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(workers: u32, max: i64, limit: Option<(i64, &'static str)>, in_use: i64) -> Budget {
        Budget {
            workers,
            pool: 2,
            listeners: 1,
            max,
            reserved: 3,
            limit,
            in_use: InUse {
                server: in_use,
                role: in_use,
                database: in_use,
            },
            pooled: false,
        }
    }

    #[test]
    fn arithmetic_and_words() {
        let x = b(4, 100, None, 10);
        assert_eq!((x.need(), x.allowed(), x.free()), (12, 97, 87));
        assert_eq!(
            x.to_string(),
            "database connections: 4 workers × (2 pool + 1 listener) = 12; the server allows 97 (max_connections 100 − 3 reserved), 87 free now"
        );
        let y = b(4, 100, Some((20, "role")), 30);
        assert_eq!((y.allowed(), y.free()), (20, 0));
        assert!(y.allowed_text().contains("role CONNECTION LIMIT 20"));
        // Other databases' connections do not count against this database's limit.
        let z = Budget {
            in_use: InUse {
                server: 40,
                role: 40,
                database: 1,
            },
            ..b(1, 100, Some((5, "database")), 0)
        };
        assert_eq!((z.allowed(), z.free(), z.held()), (5, 4, 1));
    }
}
