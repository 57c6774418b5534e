//! Databases for the tests: a fresh SQLite file or PostgreSQL database per test (the
//! server from `TEST_PG_URL`), queries against it, and migration directories built from the
//! shipped migrations.

#![allow(dead_code)]

use super::process::TempDir;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The variable naming the tests' PostgreSQL server. Not `CORRAL_…`: every `CORRAL_*`
/// variable is configuration, and an unknown one stops every command.
pub const PG_URL_VAR: &str = "TEST_PG_URL";

/// Where the tests' PostgreSQL server is (`TEST_PG_URL`, default the local one).
pub fn pg_base() -> String {
    std::env::var(PG_URL_VAR).unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Runs SQL against the server's `postgres` database.
pub fn pg_admin(sql: &str) -> Result<(), String> {
    use sqlx::Connection;
    let url = format!("{}/postgres", pg_base());
    let sql = sql.to_string();
    block_on(async move {
        let mut c = tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&url))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .map_err(|e| e.to_string())?;
        let _ = c.close().await;
        Ok(())
    })
}

/// A database for one test: a fresh SQLite file, or a fresh PostgreSQL database that is
/// dropped afterwards.
pub enum TestDb {
    Sqlite {
        url: String,
        _dir: TempDir,
    },
    Postgres {
        url: String,
        name: String,
    },
    /// A PostgreSQL database that someone else removes (a test's own cluster).
    Elsewhere {
        url: String,
    },
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = TempDir::new("db");
        TestDb::Sqlite {
            url: format!("sqlite://{}", dir.join("test.db").display()),
            _dir: dir,
        }
    }

    /// `None` (after saying so on stderr) when PostgreSQL is not reachable and this is not
    /// CI; under CI (`CI` set) an unreachable server fails the test.
    pub fn postgres(test: &str) -> Option<TestDb> {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "corral_t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        match pg_admin(&format!("CREATE DATABASE {name}")) {
            Ok(()) => Some(TestDb::Postgres {
                url: format!("{}/{name}", pg_base()),
                name,
            }),
            Err(e) if std::env::var_os("CI").is_some() => {
                panic!("PostgreSQL is required under CI ({}): {e}", pg_base())
            }
            Err(e) => {
                // Written past libtest's capture on purpose, so a skip is never silent.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {test}: PostgreSQL not reachable at {} ({e})",
                    pg_base()
                );
                None
            }
        }
    }

    /// Both kinds, PostgreSQL only when available.
    pub fn each(test: &str) -> Vec<TestDb> {
        let mut v = vec![TestDb::sqlite()];
        v.extend(TestDb::postgres(test));
        v
    }

    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite { url, .. }
            | TestDb::Postgres { url, .. }
            | TestDb::Elsewhere { url } => url,
        }
    }

    pub fn is_pg(&self) -> bool {
        matches!(self, TestDb::Postgres { .. } | TestDb::Elsewhere { .. })
    }

    /// Runs a query returning one integer (e.g. a count).
    pub fn scalar(&self, sql: &str) -> i64 {
        self.try_scalar(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn try_scalar(&self, sql: &str) -> Result<i64, String> {
        use sqlx::Connection;
        let (url, sql) = (self.url().to_string(), sql.to_string());
        let pg = self.is_pg();
        block_on(async move {
            if pg {
                let mut c = sqlx::PgConnection::connect(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                let v: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&mut c)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = c.close().await;
                Ok(v)
            } else {
                let mut c = sqlx::SqliteConnection::connect(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                let v: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&mut c)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = c.close().await;
                Ok(v)
            }
        })
    }

    /// Whether a table exists.
    pub fn has_table(&self, table: &str) -> bool {
        let sql = if self.is_pg() {
            format!("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = '{table}'")
        } else {
            format!("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '{table}'")
        };
        self.scalar(&sql) > 0
    }
}

/// A transaction left open on a PostgreSQL database (holding the locks its statement
/// took) until dropped, then rolled back.
pub struct HeldTx {
    release: Option<std::sync::mpsc::Sender<()>>,
    done: Option<std::thread::JoinHandle<()>>,
}

impl TestDb {
    /// Runs `sql` in a transaction that stays open until the returned value is dropped.
    pub fn hold(&self, sql: &str) -> HeldTx {
        use sqlx::Connection;
        let (url, what, sql) = (self.url().to_string(), sql.to_string(), sql.to_string());
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (ready, started) = std::sync::mpsc::channel::<Result<(), String>>();
        let done = std::thread::spawn(move || {
            block_on(async move {
                let r: Result<sqlx::PgConnection, String> = async {
                    let mut c = sqlx::PgConnection::connect(&url)
                        .await
                        .map_err(|e| e.to_string())?;
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("BEGIN; {sql}")))
                        .execute(&mut c)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(c)
                }
                .await;
                match r {
                    Ok(mut c) => {
                        ready.send(Ok(())).unwrap();
                        let _ = tokio::task::spawn_blocking(move || wait.recv()).await;
                        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut c).await;
                        let _ = c.close().await;
                    }
                    Err(e) => ready.send(Err(e)).unwrap(),
                }
            })
        });
        started
            .recv()
            .unwrap()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        HeldTx {
            release: Some(release),
            done: Some(done),
        }
    }
}

impl Drop for HeldTx {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(d) = self.done.take() {
            let _ = d.join();
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { name, .. } = self {
            let _ = pg_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// The migrations shipped in the repository, for building test migration directories.
pub fn shipped_migration(dialect: &str, file: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/app/migrations")
            .join(dialect)
            .join(file),
    )
    .unwrap()
}

/// A migrations directory with the shipped `0001_initial` for both dialects plus `extra`
/// files (`(name, postgres sql, sqlite sql)`).
pub fn migrations_dir(extra: &[(&str, &str, &str)]) -> TempDir {
    let dir = TempDir::new("mig");
    for d in ["postgres", "sqlite"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
        std::fs::write(
            dir.join(d).join("0001_initial.up.sql"),
            shipped_migration(d, "0001_initial.up.sql"),
        )
        .unwrap();
        std::fs::write(
            dir.join(d).join("0001_initial.down.sql"),
            shipped_migration(d, "0001_initial.down.sql"),
        )
        .unwrap();
    }
    for (name, pg, lite) in extra {
        std::fs::write(dir.join("postgres").join(name), pg).unwrap();
        std::fs::write(dir.join("sqlite").join(name), lite).unwrap();
    }
    dir
}
