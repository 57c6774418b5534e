//! Faults of the database's environment, on SQLite: a full disk, a read-only file, a
//! deleted file, a path that cannot be opened. Nothing may report success that did not
//! happen, readiness must say whether the worker can do its job, and service must come
//! back by itself once the cause is gone.

use crate::support::*;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);
const SECRET: &str = "corral-faults-secret-key-0123456789abcdef-0123456789";

fn env(db: &Path) -> Vec<(String, String)> {
    vec![
        ("DATABASE_URL".into(), format!("sqlite://{}", db.display())),
        ("SECRET_KEY".into(), SECRET.into()),
    ]
}

fn cli(dir: &Path, db: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let e = env(db);
    let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    run_stdin(dir, args, &e, stdin)
}

/// A migrated database at `db` with the active user `alice`.
fn prepare(dir: &Path, db: &Path) {
    let out = cli(dir, db, &["migrate", "apply"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = cli(
        dir,
        db,
        &["user", "create", "alice", "--password-stdin"],
        Some("alice-password-1"),
    );
    assert_eq!(out.code, Some(0), "{out:?}");
}

fn serve(dir: &Path, db: &Path, wrap: Option<Vec<String>>) -> Corral {
    serve_with(dir, db, wrap, &[])
}

fn serve_with(dir: &Path, db: &Path, wrap: Option<Vec<String>>, extra: &[&str]) -> Corral {
    let mut b = Corral::builder()
        .dir(dir)
        .args(["-b", "127.0.0.1:0", "-w", "1"])
        .args(extra.iter().copied());
    for (k, v) in env(db) {
        b = b.env(&k, v);
    }
    if let Some(w) = wrap {
        b = b.wrap(w);
    }
    b.start()
}

fn login(c: &Corral) -> Response {
    post_json(
        &c.addr,
        "/api/token/",
        &json!({"username": "alice", "password": "alice-password-1"}),
    )
}

fn users(dir: &Path, db: &Path) -> String {
    let out = cli(dir, db, &["user", "list", "--json"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    out.stdout
}

/// On a full disk, `corral user create` reports the database's error and exits 1 (it
/// used to print "Created user" while the commit failed), and no write command reports
/// a change it did not make.
#[test]
fn write_commands_on_a_full_disk_report_the_error_and_change_nothing() {
    if !need_root("write_commands_on_a_full_disk_report_the_error_and_change_nothing") {
        return;
    }
    let fs = Tmpfs::mount(2048);
    let db = fs.join("corral.db");
    prepare(fs.path(), &db);
    // A running server keeps the WAL file open and sized, as in production.
    let c = serve(fs.path(), &db, None);
    assert_eq!(login(&c).status, 200);
    fs.fill();
    let out = cli(
        fs.path(),
        &db,
        &["user", "create", "dave", "--password-stdin"],
        Some("dave-password-1"),
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("corral: "),
        "the database's error is printed: {out:?}"
    );
    assert!(!out.stdout.contains("Created"), "{out:?}");
    for (args, stdin) in [
        (
            vec!["user", "passwd", "alice", "--password-stdin"],
            Some("another-password-2"),
        ),
        (vec!["user", "deactivate", "alice"], None),
    ] {
        let out = cli(fs.path(), &db, &args, stdin);
        fs.empty();
        let list = users(fs.path(), &db);
        fs.fill();
        match args[1] {
            "deactivate" => assert_eq!(
                out.code == Some(0),
                list.contains("\"is_active\": false"),
                "exit code and outcome agree: {out:?} {list}"
            ),
            _ => assert!(out.code == Some(0) || out.code == Some(1), "{out:?}"),
        }
    }
    fs.empty();
    assert!(
        !users(fs.path(), &db).contains("dave"),
        "no user was half-created"
    );
}

/// A full disk makes writes fail with 503 (not 500) and `/readyz` unready; once there is
/// room again, both recover by themselves.
#[test]
fn a_full_disk_is_503_and_unready_until_space_returns() {
    if !need_root("a_full_disk_is_503_and_unready_until_space_returns") {
        return;
    }
    let fs = Tmpfs::mount(2048);
    let db = fs.join("corral.db");
    prepare(fs.path(), &db);
    let c = serve(fs.path(), &db, None);
    assert_eq!(login(&c).status, 200);
    assert_eq!(c.get("/readyz").status, 200);
    fs.fill();
    let r = c.get("/readyz");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["status"], "unavailable");
    let r = eventually(T, "a login to fail on the full disk", || {
        let r = login(&c);
        (r.status != 200).then_some(r)
    });
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    fs.empty();
    eventually(T, "readiness to come back", || {
        (c.get("/readyz").status == 200).then_some(())
    });
    assert_eq!(login(&c).status, 200);
}

/// A database file made read-only answers 503 where it must write and is unready; made
/// writable again, the worker recovers by itself (it used to give 500 until a HUP).
#[test]
fn a_read_only_database_is_unready_and_recovers_when_writable() {
    if !need_root("a_read_only_database_is_unready_and_recovers_when_writable") {
        return;
    }
    let dir = TempDir::new("ro");
    let db = dir.join("corral.db");
    prepare(dir.path(), &db);
    chown_nobody(dir.path());
    let c = serve(dir.path(), &db, Some(as_nobody()));
    assert_eq!(login(&c).status, 200);
    chmod(&db, 0o444);
    let r = c.get("/readyz");
    assert_eq!(r.status, 503, "{}", r.text());
    // Eight at once, so the pool opens new connections while the file is read-only.
    let logins: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8).map(|_| s.spawn(|| login(&c).status)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        logins.iter().all(|s| *s == 200 || *s == 503),
        "a read-only database is never a 500: {logins:?}"
    );
    chmod(&db, 0o644);
    eventually(T, "readiness to come back", || {
        (c.get("/readyz").status == 200).then_some(())
    });
    let logins: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8).map(|_| s.spawn(|| login(&c).status)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        logins.iter().all(|s| *s == 200),
        "recovered without a HUP: {logins:?}"
    );
}

/// A database file deleted under a running server is not recreated empty: requests that
/// need it get 503, readiness fails, the error is logged, and a reload does not migrate
/// a fresh empty database in its place.
#[test]
fn a_deleted_database_file_is_503_and_never_recreated_empty() {
    let dir = TempDir::new("deleted");
    let db = dir.join("corral.db");
    prepare(dir.path(), &db);
    let c = serve(dir.path(), &db, None);
    let r = login(&c);
    assert_eq!(r.status, 200);
    let access = r.json()["access"].as_str().unwrap().to_string();
    let hello = |c: &Corral| {
        http(
            &c.addr,
            "GET",
            "/hello/",
            &[("Authorization", &format!("Bearer {access}"))],
            b"",
        )
    };
    assert_eq!(hello(&c).status, 200);
    std::fs::remove_file(&db).unwrap();
    let r = eventually(T, "/hello/ to notice the deleted file", || {
        let r = hello(&c);
        (r.status != 200).then_some(r)
    });
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(login(&c).status, 503);
    assert_eq!(c.get("/readyz").status, 503);
    c.expect_log("was deleted", T);
    assert!(!db.exists(), "no empty database was created in its place");
    let mark = c.mark();
    c.signal("HUP");
    c.expect_log_after(mark, "Reload failed", T);
    assert!(
        !db.exists(),
        "a reload does not create a fresh database either"
    );
    assert_eq!(
        login(&c).status,
        503,
        "the old generation keeps serving, 503"
    );
}

/// A SQLite path that cannot be opened is a 503 with `Retry-After`, as a PostgreSQL
/// outage is, not a 500.
#[test]
fn an_unopenable_sqlite_path_is_503() {
    let dir = TempDir::new("unopenable");
    let db = dir.join("no/such/dir/corral.db");
    let c = serve_with(dir.path(), &db, None, &["--migrate", "off"]);
    let r = login(&c);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        r.json()["detail"],
        "Service temporarily unavailable, try again later."
    );
}
