//! Migrations at boot and `corral migrate`, on SQLite and on a real PostgreSQL, each test
//! on its own fresh database.

use crate::support::*;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// The JWT app's built-in migrations, `0001_initial` …, as its source folder has them.
fn builtin() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/app/migrations/sqlite");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".up.sql").map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

fn serve(db: &TestDb, extra: &[&str]) -> Builder {
    Corral::builder()
        .args(["-b", "127.0.0.1:0", "-w", "1"])
        .args(extra.iter().copied())
        .env("DATABASE_URL", db.url())
}

fn migrate(dir: &std::path::Path, db: &TestDb, args: &[&str]) -> Output {
    let mut full = vec!["migrate"];
    full.extend_from_slice(args);
    run(dir, &full, &[("DATABASE_URL", db.url())])
}

/// A fresh boot applies everything; a second boot applies nothing.
#[test]
fn fresh_boot_applies_all_then_nothing() {
    for db in TestDb::each("fresh_boot_applies_all_then_nothing") {
        let all = builtin();
        assert!(all.len() >= 5, "{all:?}");
        let c = serve(&db, &[]).start();
        for name in &all {
            c.expect_log(&format!("Applied migration {name}"), T);
        }
        let n = all.len();
        c.expect_log(
            &format!("Database is up to date: {n} migrations applied ({n} just now)"),
            T,
        );
        drop(c);
        let c = serve(&db, &[]).start();
        c.expect_log(
            &format!("Database is up to date: {n} migrations applied (0 just now)"),
            T,
        );
        assert_eq!(c.stderr.count("Applied migration"), 0);
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM corral_migrations"),
            n as i64
        );
        assert!(db.has_table("corral_user"));
    }
}

/// Four processes (two `serve`, two `migrate apply`) booting together on one fresh
/// database: every migration is recorded once and every process succeeds.
#[test]
fn concurrent_boots_apply_each_migration_once() {
    // A slow second migration widens the window in which the others must wait.
    let slow = migrations_dir(&[
        ("10002_slow.up.sql", "CREATE TABLE slow_done (x INT);\nSELECT pg_sleep(1);\n", "CREATE TABLE slow_done (x INT);\nWITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) SELECT COUNT(*) FROM c;\n"),
        ("10003_after.up.sql", "CREATE TABLE after_slow (x INT);\n", "CREATE TABLE after_slow (x INT);\n"),
    ]);
    let mdir = slow.path().to_str().unwrap().to_string();
    for db in TestDb::each("concurrent_boots_apply_each_migration_once") {
        let work = TempDir::new("conc");
        let servers: Vec<_> = (0..2)
            .map(|_| {
                serve(&db, &["--migrations-dir", &mdir])
                    .dir(work.path())
                    .no_wait()
                    .start()
            })
            .collect();
        let cli: Vec<_> = (0..2)
            .map(|_| {
                let (w, url, mdir) = (
                    work.path().to_path_buf(),
                    db.url().to_string(),
                    mdir.clone(),
                );
                std::thread::spawn(move || {
                    run(
                        &w,
                        &["migrate", "apply", "--migrations-dir", &mdir],
                        &[("DATABASE_URL", &url)],
                    )
                })
            })
            .collect();
        for s in &servers {
            s.expect_log("Generation 1 ready (1 worker)", T);
        }
        for h in cli {
            let out = h.join().unwrap();
            assert_eq!(out.code, Some(0), "{out:?}");
        }
        let mut versions: Vec<usize> = (1..=builtin().len()).collect();
        versions.extend([10002, 10003]);
        for v in &versions {
            assert_eq!(db.scalar(&format!("SELECT COUNT(*) FROM corral_migrations WHERE version = {v} AND state = 'applied'")), 1);
        }
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM corral_migrations"),
            versions.len() as i64
        );
        let applied: usize = servers
            .iter()
            .map(|s| s.stderr.count("Applied migration"))
            .sum();
        assert!(
            applied <= versions.len(),
            "a migration was applied twice: {applied}"
        );
    }
}

/// A failing migration stops the boot with exit 4, naming the migration, the statement
/// and the database error; none of its objects remain and no worker starts.
#[test]
fn a_failing_migration_stops_the_boot_with_exit_4() {
    let bad = migrations_dir(&[(
        "10002_bad.up.sql",
        "CREATE TABLE will_vanish (x INT);\nINSERT INTO no_such_table VALUES (1);\n",
        "CREATE TABLE will_vanish (x INT);\nINSERT INTO no_such_table VALUES (1);\n",
    )]);
    for db in TestDb::each("a_failing_migration_stops_the_boot_with_exit_4") {
        let mut c = serve(&db, &["--migrations-dir", bad.path().to_str().unwrap()])
            .no_wait()
            .start();
        let status = c.wait_exit(T).expect("master exits");
        assert_eq!(status.code(), Some(4), "{}", c.log());
        let line = c.expect_log("migration 10002_bad failed", T);
        assert!(
            line.contains("INSERT INTO no_such_table VALUES (1)"),
            "{line}"
        );
        assert!(
            line.contains("no_such_table") && line.contains("rolled back"),
            "{line}"
        );
        assert!(c.log().contains("Not starting workers"));
        assert_eq!(c.stderr.count("Booting worker"), 0);
        assert!(!db.has_table("will_vanish"));
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM corral_migrations WHERE version = 10002"),
            0
        );
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM corral_migrations WHERE version = 1"),
            1
        );
    }
}

/// An applied migration edited afterwards stops the next boot with the drift message.
#[test]
fn an_edited_migration_is_refused_as_drift() {
    let text = "CREATE TABLE mine (x INT);\n";
    for db in TestDb::each("an_edited_migration_is_refused_as_drift") {
        let dir = migrations_dir(&[("10001_mine.up.sql", text, text)]);
        let mdir = dir.path().to_str().unwrap().to_string();
        drop(serve(&db, &["--migrations-dir", &mdir]).start());
        for d in ["postgres", "sqlite"] {
            let f = dir.join(d).join("10001_mine.up.sql");
            std::fs::write(&f, format!("{text}\n-- an innocent-looking edit\n")).unwrap();
        }
        let mut c = serve(&db, &["--migrations-dir", &mdir]).no_wait().start();
        assert_eq!(c.wait_exit(T).and_then(|s| s.code()), Some(4));
        let line = c.expect_log("was changed after it was applied", T);
        assert!(line.contains("10001_mine"), "{line}");
        // A CRLF checkout of the same text is not drift.
        for d in ["postgres", "sqlite"] {
            let f = dir.join(d).join("10001_mine.up.sql");
            std::fs::write(&f, text.replace('\n', "\r\n")).unwrap();
        }
        let out = migrate(dir.path(), &db, &["check", "--migrations-dir", &mdir]);
        assert_eq!(out.code, Some(0), "{out:?}");
    }
}

/// `status --json` has a stable shape, and every exit code of the table is reachable:
/// 0 ok, 2 pending, 3 drift/missing, 4 lock timeout, 5 failed.
#[test]
fn status_json_and_exit_codes() {
    for db in TestDb::each("status_json_and_exit_codes") {
        let dir = migrations_dir(&[]);
        let mdir = dir.path().to_str().unwrap().to_string();
        let m = |args: &[&str]| {
            let mut a = args.to_vec();
            a.extend(["--migrations-dir", mdir.as_str()]);
            migrate(dir.path(), &db, &a)
        };
        assert_eq!(m(&["check"]).code, Some(2));
        // A configuration or usage error is 1, never 2 ("pending"), and JSON with --json.
        let bad = m(&["check", "--json", "--migrate", "sometimes"]);
        assert_eq!(bad.code, Some(1), "{bad:?}");
        let bad = run(
            dir.path(),
            &["migrate", "check", "--json"],
            &[
                ("DATABASE_URL", db.url()),
                ("CORRAL_DATABASE_POOL_SIZE", "0"),
            ],
        );
        assert_eq!(bad.code, Some(1), "{bad:?}");
        let v: serde_json::Value = serde_json::from_str(&bad.stdout).unwrap();
        assert_eq!(v["error"]["exit_code"], 1);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("database.pool_size"),
            "{v}"
        );
        let s = m(&["status", "--json"]);
        assert_eq!(s.code, Some(0), "{s:?}");
        let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
        assert_eq!(v["migrations"][0]["version"], 1);
        assert_eq!(v["migrations"][0]["state"], "pending");
        assert_eq!(v["counts"]["pending"], builtin().len());

        let a = m(&["apply", "--json"]);
        assert_eq!(a.code, Some(0), "{a:?}");
        let v: serde_json::Value = serde_json::from_str(&a.stdout).unwrap();
        assert_eq!(v["applied"][0]["name"], "initial");
        let s: serde_json::Value = serde_json::from_str(&m(&["status", "--json"]).stdout).unwrap();
        let row = &s["migrations"][0];
        assert_eq!(row["state"], "applied");
        for k in ["applied_at", "finished_at", "duration_ms", "applied_by"] {
            assert!(!row[k].is_null(), "{k} missing in {row}");
        }
        assert_eq!(m(&["check"]).code, Some(0));

        // 5: a non-transactional migration that fails half-way is recorded as failed and
        // blocks until resolved.
        let half = "-- no-transaction\nCREATE TABLE half_done (x INT);\nINSERT INTO no_such_table VALUES (1);\n";
        for d in ["postgres", "sqlite"] {
            std::fs::write(dir.join(d).join("10002_half.up.sql"), half).unwrap();
        }
        let f = m(&["apply"]);
        assert_eq!(f.code, Some(5), "{f:?}");
        assert!(
            f.stderr.contains("corral migrate resolve 10002 --applied")
                && f.stderr.contains("--rolled-back"),
            "{}",
            f.stderr
        );
        assert!(db.has_table("half_done"), "non-transactional changes stay");
        assert_eq!(m(&["check"]).code, Some(5));
        let again = m(&["apply", "--json"]);
        assert_eq!(again.code, Some(5));
        let e: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
        assert_eq!(e["error"]["kind"], "failed");
        // Fix by hand, resolve as rolled back, fix the file, apply.
        for d in ["postgres", "sqlite"] {
            std::fs::write(
                dir.join(d).join("10002_half.up.sql"),
                "-- no-transaction\nCREATE TABLE IF NOT EXISTS half_done (x INT);\n",
            )
            .unwrap();
        }
        assert_eq!(m(&["resolve", "10002", "--rolled-back"]).code, Some(0));
        assert_eq!(m(&["apply"]).code, Some(0));
        assert_eq!(m(&["check"]).code, Some(0));

        // 3: drift, and an applied version this binary does not know.
        for d in ["postgres", "sqlite"] {
            std::fs::remove_file(dir.join(d).join("10002_half.up.sql")).unwrap();
        }
        let c = m(&["check", "--json"]);
        assert_eq!(c.code, Some(3), "{c:?}");
        let v: serde_json::Value = serde_json::from_str(&c.stdout).unwrap();
        assert_eq!(v["drifted"][0], "10002_half");
        let a = m(&["apply"]);
        assert_eq!(a.code, Some(3));
        assert!(a.stderr.contains("unknown to this binary"), "{}", a.stderr);
        assert_eq!(
            m(&["status"]).code,
            Some(0),
            "status reports, it does not fail"
        );
    }
}

/// A held lock makes `apply` wait, name the holder, and give up with exit 4.
#[test]
fn lock_timeout_exits_4_and_names_the_holder() {
    // SQLite: hold the lock file ourselves.
    let db = TestDb::sqlite();
    let path = db.url().trim_start_matches("sqlite://").to_string();
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(format!("{path}.migrate.lock"))
        .unwrap();
    let held = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive).unwrap();
    {
        use std::io::Write;
        let mut f: &std::fs::File = &held;
        write!(f, "the test process").unwrap();
    }
    let dir = TempDir::new("lock");
    let status = run(
        dir.path(),
        &["migrate", "lock", "status"],
        &[("DATABASE_URL", db.url())],
    );
    assert!(
        status.stdout.contains("held by the test process"),
        "{status:?}"
    );
    let t = Instant::now();
    let out = run(
        dir.path(),
        &["migrate", "apply"],
        &[
            ("DATABASE_URL", db.url()),
            ("CORRAL_DATABASE_LOCK_TIMEOUT", "1"),
        ],
    );
    assert_eq!(out.code, Some(4), "{out:?}");
    assert!(
        out.stderr.contains("held by the test process"),
        "{}",
        out.stderr
    );
    assert!(t.elapsed() >= Duration::from_secs(1));
    drop(held);
    assert_eq!(
        run(
            dir.path(),
            &["migrate", "apply"],
            &[("DATABASE_URL", db.url())]
        )
        .code,
        Some(0)
    );

    // PostgreSQL: hold the advisory lock on a session of our own.
    let Some(pg) = TestDb::postgres("lock_timeout_exits_4_and_names_the_holder") else {
        return;
    };
    let url = pg.url().to_string();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        use sqlx::Connection;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let opts: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
                let mut c =
                    sqlx::PgConnection::connect_with(&opts.application_name("lock-holder-test"))
                        .await
                        .unwrap();
                sqlx::query("SELECT pg_advisory_lock(1668248178, 1835624306)")
                    .execute(&mut c)
                    .await
                    .unwrap();
                ready_tx.send(()).unwrap();
                let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
                let _ = c.close().await;
            })
    });
    ready_rx.recv().unwrap();
    let out = run(
        dir.path(),
        &["migrate", "apply", "--json"],
        &[
            ("DATABASE_URL", pg.url()),
            ("CORRAL_DATABASE_LOCK_TIMEOUT", "1"),
        ],
    );
    assert_eq!(out.code, Some(4), "{out:?}");
    assert!(out.stderr.contains("lock-holder-test"), "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "lock_timeout");
    let status = run(
        dir.path(),
        &["migrate", "lock", "status", "--json"],
        &[("DATABASE_URL", pg.url())],
    );
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(v["held"], true);
    tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(
        run(
            dir.path(),
            &["migrate", "apply"],
            &[("DATABASE_URL", pg.url())]
        )
        .code,
        Some(0)
    );
}

/// `revert` runs down files newest first and refuses when one is missing; `sql` shows the
/// exact script; `new` writes stubs for both dialects; `plan` lists what `apply` will do.
#[test]
fn revert_sql_new_and_plan() {
    let db = TestDb::sqlite();
    let dir = migrations_dir(&[(
        "10002_extra.up.sql",
        "CREATE TABLE extra (x INT);",
        "CREATE TABLE extra (x INT);",
    )]);
    let mdir = dir.path().to_str().unwrap().to_string();
    let m = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--migrations-dir", mdir.as_str()]);
        migrate(dir.path(), &db, &a)
    };
    let plan = m(&["plan"]);
    assert!(
        plan.stdout.contains("apply 0001_initial (one transaction)")
            && plan.stdout.contains("apply 10002_extra"),
        "{plan:?}"
    );
    assert_eq!(m(&["apply"]).code, Some(0));
    let refused = m(&["revert"]);
    assert_eq!(refused.code, Some(1));
    assert!(
        refused
            .stderr
            .contains("10002_extra: it has no down file; nothing was reverted"),
        "{}",
        refused.stderr
    );
    for d in ["postgres", "sqlite"] {
        std::fs::write(
            dir.join(d).join("10002_extra.down.sql"),
            "DROP TABLE extra;",
        )
        .unwrap();
    }
    let r = m(&["revert", "--to", "0"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout.find("Reverted 10002_extra").unwrap()
            < r.stdout.find("Reverted 0001_initial").unwrap()
    );
    assert!(!db.has_table("corral_user"));

    let sql = m(&["sql", "1"]);
    assert!(
        sql.stdout.contains("BEGIN IMMEDIATE;")
            && sql.stdout.contains("CREATE TABLE corral_user")
            && sql.stdout.contains("INSERT INTO corral_migrations"),
        "{}",
        sql.stdout
    );
    assert!(sql.stdout.trim_end().ends_with("COMMIT;"));

    let fresh = TempDir::new("new");
    let out = run(
        fresh.path(),
        &[
            "migrate",
            "new",
            "add_email_index",
            "--migrations-dir",
            "migs",
        ],
        &[],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    // A project's migrations are numbered by UTC time (YYYYMMDDHHMMSS): never below
    // 10000, so they cannot collide with the built-in 0001_initial.
    let stamp = |out: &Output, name: &str| -> i64 {
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{out:?}"));
        let file = line.rsplit('/').next().unwrap();
        let v = file.split('_').next().unwrap();
        assert_eq!(v.len(), 14, "{line}");
        v.parse().unwrap()
    };
    let first = stamp(&out, "add_email_index");
    for f in [
        format!("migs/postgres/{first}_add_email_index.up.sql"),
        format!("migs/sqlite/{first}_add_email_index.down.sql"),
    ] {
        assert!(fresh.join(&f).exists(), "{f}");
    }
    let again = run(
        fresh.path(),
        &["migrate", "new", "second", "--migrations-dir", "migs"],
        &[],
    );
    assert!(stamp(&again, "second") > first, "{again:?}");
}

/// A project's `--migrations-dir` adds to the application's built-in migrations instead
/// of replacing them: both apply, in version order.
#[test]
fn a_project_directory_adds_to_the_builtin_migrations() {
    let sql = "CREATE TABLE project_extra (x INT);\n";
    let dir = TempDir::new("additive");
    for d in ["postgres", "sqlite"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
        std::fs::write(dir.join(d).join("20260101120000_extra.up.sql"), sql).unwrap();
    }
    let mdir = dir.path().to_str().unwrap().to_string();
    for db in TestDb::each("a_project_directory_adds_to_the_builtin_migrations") {
        let c = serve(&db, &["--migrations-dir", &mdir]).start();
        let n = builtin().len() + 1;
        c.expect_log(
            &format!("Database is up to date: {n} migrations applied ({n} just now)"),
            T,
        );
        assert!(db.has_table("corral_user") && db.has_table("project_extra"));
        let s = migrate(
            dir.path(),
            &db,
            &["status", "--json", "--migrations-dir", &mdir],
        );
        let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
        let versions: Vec<i64> = v["migrations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["version"].as_i64().unwrap())
            .collect();
        let mut want: Vec<i64> = (1..=builtin().len() as i64).collect();
        want.push(20260101120000);
        assert_eq!(versions, want);
        assert_eq!(v["counts"]["applied"], want.len());
    }
}

/// A project migration numbered into the application's range is refused with what is
/// wrong and how to fix it (it used to replace the built-in one and be blamed as drift).
#[test]
fn a_project_migration_in_the_builtin_range_is_refused_saying_why() {
    let db = TestDb::sqlite();
    let dir = TempDir::new("collide");
    for (file, sql) in [
        ("0001_mine.up.sql", "SELECT 1;"),
        ("0002_mine.up.sql", "SELECT 2;"),
    ] {
        std::fs::create_dir_all(dir.join("sqlite")).unwrap();
        for f in std::fs::read_dir(dir.join("sqlite")).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        std::fs::write(dir.join("sqlite").join(file), sql).unwrap();
        let mdir = dir.path().to_str().unwrap();
        let out = migrate(dir.path(), &db, &["apply", "--migrations-dir", mdir]);
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(
            out.stderr.contains("belong") && out.stderr.contains("from 10000 up"),
            "{out:?}"
        );
        assert!(
            !out.stderr.contains("drift") && !out.stderr.contains("changed after"),
            "{out:?}"
        );
    }
}

/// `migrate new` outside a checkout of corral writes to ./migrations with a time-based
/// version, so the new migration applies beside the built-in 0001_initial instead of
/// colliding with it.
#[test]
fn migrate_new_outside_a_checkout_cannot_collide() {
    let db = TestDb::sqlite();
    let dir = TempDir::new("newproj");
    let out = migrate(dir.path(), &db, &["new", "add_things"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("--migrations-dir migrations"),
        "{out:?}"
    );
    for d in ["postgres", "sqlite"] {
        let files: Vec<_> = std::fs::read_dir(dir.join("migrations").join(d))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        for f in files
            .iter()
            .filter(|f| f.to_string_lossy().ends_with(".up.sql"))
        {
            std::fs::write(f, "CREATE TABLE things (x INT);\n").unwrap();
        }
        for f in files
            .iter()
            .filter(|f| f.to_string_lossy().ends_with(".down.sql"))
        {
            std::fs::write(f, "DROP TABLE things;\n").unwrap();
        }
    }
    let out = migrate(
        dir.path(),
        &db,
        &["apply", "--migrations-dir", "migrations"],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("Applied 0001_initial") && out.stdout.contains("_add_things"),
        "{out:?}"
    );
    assert!(db.has_table("corral_user") && db.has_table("things"));
}

/// A down file may opt out of the transaction too (`DROP INDEX CONCURRENTLY`); it is
/// recorded as running until it has run, as an up file would be.
#[test]
fn a_down_file_can_opt_out_of_the_transaction() {
    for db in TestDb::each("a_down_file_can_opt_out_of_the_transaction") {
        let dir = TempDir::new("downtx");
        let (up, down) = if db.is_pg() {
            (
                "-- no-transaction\nCREATE INDEX CONCURRENTLY corral_user_email ON corral_user (email);\n",
                "-- no-transaction\nDROP INDEX CONCURRENTLY corral_user_email;\n",
            )
        } else {
            (
                "-- no-transaction\nCREATE INDEX corral_user_email ON corral_user (email);\n",
                "-- no-transaction\nDROP INDEX corral_user_email;\n",
            )
        };
        let sub = dir.join(if db.is_pg() { "postgres" } else { "sqlite" });
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("10001_email_index.up.sql"), up).unwrap();
        std::fs::write(sub.join("10001_email_index.down.sql"), down).unwrap();
        let mdir = dir.path().to_str().unwrap();
        let m = |args: &[&str]| {
            let mut a = args.to_vec();
            a.extend(["--migrations-dir", mdir]);
            migrate(dir.path(), &db, &a)
        };
        assert_eq!(m(&["apply"]).code, Some(0));
        let sql = m(&["sql", "10001", "--down"]);
        assert!(
            sql.stdout.contains("no transaction") && !sql.stdout.contains("BEGIN"),
            "{sql:?}"
        );
        let r = m(&["revert"]);
        assert_eq!(r.code, Some(0), "{r:?}");
        assert!(r.stdout.contains("Reverted 10001_email_index"), "{r:?}");
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM corral_migrations WHERE version = 10001"),
            0
        );
        assert_eq!(m(&["check"]).code, Some(2), "pending again");
    }
}

/// Looking creates nothing: `migrate status`, `check` and `lock status` on a SQLite
/// database that does not exist yet report it (all pending; the lock free) without
/// creating the database file or the lock file.
#[test]
fn looking_at_migrations_creates_no_file() {
    let dir = TempDir::new("nofile");
    let db = dir.join("never.db");
    let env = [("DATABASE_URL", format!("sqlite://{}", db.display()))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = run(dir.path(), &["migrate", "status", "--json"], &env);
    assert_eq!(s.code, Some(0), "{s:?}");
    let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(v["migrations"][0]["state"], "pending");
    assert_eq!(run(dir.path(), &["migrate", "check"], &env).code, Some(2));
    let l = run(dir.path(), &["migrate", "lock", "status"], &env);
    assert_eq!(l.code, Some(0), "{l:?}");
    assert!(l.stdout.contains("free"), "{l:?}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "files were created: {left:?}");
}

/// `--to` must name a known version: `plan --to 99` (or `apply --to 99`) is an error that
/// lists the known ones, not a silent "apply everything up to 99".
#[test]
fn an_unknown_to_version_is_an_error() {
    let db = TestDb::sqlite();
    let dir = TempDir::new("to99");
    for cmd in ["plan", "apply"] {
        let out = migrate(dir.path(), &db, &[cmd, "--to", "99"]);
        assert_eq!(out.code, Some(1), "{cmd}: {out:?}");
        let known = builtin().join(", ");
        assert!(
            out.stderr
                .contains(&format!("no migration has version 99 (known: {known})")),
            "{out:?}"
        );
    }
    assert_eq!(
        migrate(dir.path(), &db, &["check"]).code,
        Some(2),
        "nothing was applied"
    );
}
