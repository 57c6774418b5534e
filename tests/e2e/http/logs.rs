//! Request ids, the access log in both formats, and what a log never shows.

use super::T;
use crate::support::*;
use std::time::Duration;

/// A well-formed incoming X-Request-ID (as Heroku's router sends) is kept; a malformed
/// one is replaced.
#[test]
fn request_ids_are_propagated_or_generated() {
    let c = Corral::plain(1).start();
    let id = "f9c1a2b3-0000-4000-8000-123456789abc";
    let r = http(&c.addr, "GET", "/healthz", &[("X-Request-ID", id)], b"");
    assert_eq!(r.header("x-request-id"), Some(id));
    let r = http(
        &c.addr,
        "GET",
        "/healthz",
        &[("X-Request-ID", "short")],
        b"",
    );
    assert_ne!(r.header("x-request-id"), Some("short"));
}

/// The access log in Gunicorn's format on stdout, and as escaped JSON.
#[test]
fn access_log_formats() {
    let c = Corral::plain(1).args(["--access-logfile", "-"]).start();
    http(
        &c.addr,
        "GET",
        "/healthz?x=1",
        &[
            ("User-Agent", "tester/1.0 \"quoted\""),
            ("Referer", "http://r/"),
        ],
        b"",
    );
    let (_, line) = c
        .stdout
        .wait_for(0, "/healthz?x=1", T)
        .expect("access line");
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.ends_with(
            "\"GET /healthz?x=1 HTTP/1.1\" 200 15 \"http://r/\" \"tester/1.0 \\x22quoted\\x22\""
        ),
        "{line}"
    );

    let c = Corral::plain(1)
        .args(["--access-logfile", "-", "--log-format", "json"])
        .start();
    http(&c.addr, "GET", "/healthz", &[("User-Agent", "a\"b")], b"");
    let (_, line) = c.stdout.wait_for(0, "/healthz", T).expect("access line");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["user_agent"], "a\"b");
    assert_eq!(v["request_id"].as_str().unwrap().len(), 36);
    // The error log is JSON too.
    let l = c.expect_log("Booting worker", T);
    let e: serde_json::Value = serde_json::from_str(&l).unwrap();
    assert_eq!(e["level"], "info");
}

/// Secrets never reach the access log: sensitive query values and anything shaped like a
/// JWT, in the target, `Referer` or `User-Agent`, are replaced; `Authorization` is never
/// written at all.
#[test]
fn secrets_in_targets_referers_and_user_agents_are_redacted() {
    let c = Corral::plain(1).args(["--access-logfile", "-"]).start();
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoiMSJ9.c2VjcmV0LXNpZ25hdHVyZQ";
    http(
        &c.addr,
        "GET",
        "/healthz?secret=hunter2&page=3&access_token=tok-123",
        &[
            (
                "Referer",
                &format!("https://app/cb?refresh=r-456&x=1#{jwt}"),
            ),
            ("User-Agent", &format!("bot/1 {jwt}")),
            ("Authorization", "Bearer auth-789"),
        ],
        b"",
    );
    let (_, line) = c.stdout.wait_for(0, "/healthz", T).expect("access line");
    for secret in ["hunter2", "tok-123", "r-456", jwt, "auth-789"] {
        assert!(!line.contains(secret), "{secret} leaked: {line}");
    }
    assert!(
        line.contains("/healthz?secret=[redacted]&page=3&access_token=[redacted]"),
        "{line}"
    );
    assert!(
        line.contains("https://app/cb?refresh=[redacted]&x=1#[jwt]"),
        "{line}"
    );
    assert!(line.contains("bot/1 [jwt]"), "{line}");
}

/// Out of file descriptors, a worker pauses accepting and logs the failure at most once
/// in ten seconds (it used to write one ERROR line per try, hundreds in seconds).
#[test]
fn running_out_of_descriptors_does_not_flood_the_log() {
    let c = Corral::plain(1)
        .wrap(["prlimit", "--nofile=40:40", "--"])
        .start();
    let mark = c.mark();
    let held: Vec<Conn> = (0..60).map(|_| Conn::open(&c.addr)).collect();
    c.expect_log_after(mark, "accept failed", T);
    // A window to count in: the first failure was seen; a flood would add dozens.
    std::thread::sleep(Duration::from_secs(3));
    let lines = c.stderr.all()[mark..]
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(
        lines <= 1,
        "{lines} accept failures logged in 3 s:\n{}",
        c.log()
    );
    drop(held);
    assert_eq!(c.get("/healthz").status, 200, "the worker serves again");
}

/// `--access-logformat` takes Gunicorn's atoms, headers included, and never logs a
/// credential; an unknown atom is refused with exit 2, naming the key.
#[test]
fn access_logformat_takes_gunicorn_atoms() {
    let format = "%(h)s|%(m)s|%(U)s|%(q)s|%(s)s|%(B)s|%(p)s|%({x-request-id}o)s|%({x-client}i)s|%({authorization}i)s|%(M)s";
    let c = Corral::plain(1)
        .args(["--access-logfile", "-", "--access-logformat", format])
        .start();
    let id = "f9c1a2b3-0000-4000-8000-123456789abc";
    http(
        &c.addr,
        "GET",
        "/healthz?password=hunter2&x=1",
        &[
            ("X-Request-ID", id),
            ("X-Client", "app/2"),
            ("Authorization", "Bearer abc.def.ghi"),
        ],
        b"",
    );
    let (_, line) = c.stdout.wait_for(0, "/healthz", T).expect("access line");
    let f: Vec<&str> = line.split('|').collect();
    let worker = c.wait_workers(1, &[], T)[0];
    assert_eq!(
        &f[..10],
        [
            "127.0.0.1",
            "GET",
            "/healthz",
            "password=[redacted]&x=1",
            "200",
            "15",
            &format!("<{worker}>"),
            id,
            "app/2",
            "[redacted]"
        ],
        "{line}"
    );
    assert!(f[10].parse::<u64>().is_ok(), "{line}");

    let dir = TempDir::new("logformat");
    let out = run(
        dir.path(),
        &["check", "--access-logformat", "%(h)s %(z)s"],
        &[],
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("access_logformat"), "{}", out.stderr);
    assert!(out.stderr.contains("unknown atom %(z)s"), "{}", out.stderr);
}
