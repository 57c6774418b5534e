//! Behind a proxy: the client from trusted forwarding headers, Heroku's defaults and its
//! fail-safe, the queue time from `X-Request-Start`, `--request-timeout`,
//! `--shutdown-delay` and `/livez`.

use crate::support::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn access_line(c: &Corral, from: usize, pat: &str) -> String {
    c.stdout.wait_for(from, pat, T).expect("access line").1
}

/// A trusted peer's `X-Forwarded-For` is the client in the access log (the rightmost
/// address that is not a trusted proxy); the same header from an untrusted peer is
/// ignored.
#[test]
fn forwarded_headers_from_trusted_peers_only() {
    let c = Corral::plain(1)
        .args([
            "--access-logfile",
            "-",
            "--forwarded-allow-ips",
            "127.0.0.1,10.0.0.0/8",
        ])
        .start();
    http(
        &c.addr,
        "GET",
        "/healthz?n=1",
        &[("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.1.2.3")],
        b"",
    );
    let line = access_line(&c, 0, "n=1");
    assert!(line.starts_with("203.0.113.7 - - ["), "{line}");
    let mark = c.stdout.len();
    http(
        &c.addr,
        "GET",
        "/healthz?n=2",
        &[("Forwarded", "for=\"[2001:db8::7]:4711\";proto=https")],
        b"",
    );
    assert!(access_line(&c, mark, "n=2").starts_with("2001:db8::7 - - ["));

    let untrusting = Corral::plain(1)
        .args(["--access-logfile", "-", "--forwarded-allow-ips", "10.9.9.9"])
        .start();
    http(
        &untrusting.addr,
        "GET",
        "/healthz?n=3",
        &[("X-Forwarded-For", "203.0.113.7")],
        b"",
    );
    let line = access_line(&untrusting, 0, "n=3");
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");

    let dir = TempDir::new("fwd");
    let out = run(
        dir.path(),
        &["check", "--forwarded-allow-ips", "10.0.0.0/33"],
        &[],
    );
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("forwarded_allow_ips"), "{}", out.stderr);
}

/// Under Heroku (DYNO set): keep-alive 95 s, the router trusted, and SQLite refused
/// unless allowed; `WEB_CONCURRENCY` still sets the workers.
#[test]
fn heroku_defaults_and_its_fail_safe() {
    let dir = TempDir::new("dyno");
    let refused = run(
        dir.path(),
        &["serve", "-b", "127.0.0.1:0"],
        &[("DYNO", "web.1"), ("SECRET_KEY", crate::api::SECRET)],
    );
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("DYNO is set (Heroku) but the database is SQLite")
            && refused.stderr.contains("CORRAL_DATABASE_ALLOW_EPHEMERAL"),
        "{}",
        refused.stderr
    );
    assert!(
        !refused.stderr.contains("Listening at"),
        "nothing was bound"
    );
    let env = [
        ("DYNO", "web.1"),
        ("CORRAL_DATABASE_ALLOW_EPHEMERAL", "true"),
        ("WEB_CONCURRENCY", "3"),
    ];
    let out = run(dir.path(), &["config"], &env);
    assert_eq!(out.code, Some(0), "{out:?}");
    let line = |k: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{k} =")))
            .unwrap_or_else(|| panic!("{k} in {}", out.stdout))
            .to_string()
    };
    assert!(
        line("keep_alive").contains("95") && line("keep_alive").contains("Heroku"),
        "{}",
        line("keep_alive")
    );
    assert!(
        line("forwarded_allow_ips").contains("\"*\""),
        "{}",
        line("forwarded_allow_ips")
    );
    assert!(line("workers").contains('3') && line("workers").contains("WEB_CONCURRENCY"));
    let own = run(dir.path(), &["config", "--keep-alive", "7"], &env);
    assert!(
        own.stdout.contains("keep_alive = 7"),
        "a setting beats the platform's default"
    );
}

/// A request whose `X-Request-Start` is older than `--max-queue-time` gets 503 at once
/// (under 5 ms in the server); a fresh one is served and its queue time logged.
#[test]
fn max_queue_time_turns_away_requests_that_waited_too_long() {
    let c = Corral::plain(1)
        .args([
            "--max-queue-time",
            "1",
            "--access-logfile",
            "-",
            "--log-format",
            "json",
        ])
        .start();
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    let old = (now_ms() - 5_000).to_string();
    let r = http(
        &c.addr,
        "GET",
        "/healthz?q=old",
        &[("X-Request-Start", &old)],
        b"",
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("waited too long"));
    let v: serde_json::Value = serde_json::from_str(&access_line(&c, 0, "q=old")).unwrap();
    assert!(v["duration_ms"].as_f64().unwrap() < 5.0, "{v}");
    assert!(v["queue_ms"].as_f64().unwrap() >= 5_000.0, "{v}");

    let fresh = format!("t={}", now_ms() * 1000); // nginx's microseconds
    let mark = c.stdout.len();
    let r = http(
        &c.addr,
        "GET",
        "/healthz?q=new",
        &[("X-Request-Start", &fresh)],
        b"",
    );
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_str(&access_line(&c, mark, "q=new")).unwrap();
    let q = v["queue_ms"].as_f64().unwrap();
    assert!((0.0..1_000.0).contains(&q), "{v}");
}

fn custom_example() -> Option<PathBuf> {
    let exe = std::path::Path::new(BIN)
        .parent()
        .unwrap()
        .join("examples/custom_service");
    if !exe.exists() {
        assert!(std::env::var_os("CI").is_none(), "CI builds the examples");
        eprintln!("SKIPPED: run the full `cargo test` to build the examples");
        return None;
    }
    Some(exe)
}

/// A handler slower than `--request-timeout` is cancelled and answered 503; the worker
/// lives and serves the next request.
#[test]
fn request_timeout_cancels_a_slow_handler() {
    let Some(exe) = custom_example() else { return };
    let c = Corral::builder()
        .exe(&exe)
        .args(["-b", "127.0.0.1:0", "-w", "1", "--request-timeout", "1"])
        .start();
    let worker = c.wait_workers(1, &[], T)[0];
    let t = Instant::now();
    let r = c.get("/slow?ms=10000");
    let took = t.elapsed();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("no answer within 1 s"));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    c.expect_log(
        "Request cancelled: no answer within --request-timeout (1 s)",
        T,
    );
    assert_eq!(c.get("/slow?ms=10").status, 200);
    assert_eq!(c.worker_pids(), vec![worker], "the worker lives");
}

/// With `--shutdown-delay 2`, after TERM `/readyz` answers 503 while requests are still
/// served; then corral drains and exits 0. `/livez` is `/healthz`.
#[test]
fn shutdown_delay_fails_readiness_first_then_drains() {
    let api = crate::api::Api::start(TestDb::sqlite(), &["--shutdown-delay", "2"], &[]);
    let mut c = api.c;
    assert_eq!(c.get("/livez").status, 200);
    assert_eq!(c.get("/readyz").status, 200);
    let t = Instant::now();
    c.signal("TERM");
    let r = eventually(T, "/readyz to fail", || {
        let r = c.get("/readyz");
        (r.status == 503).then_some(r)
    });
    assert_eq!(r.json()["status"], "shutting down");
    assert_eq!(c.get("/livez").status, 200, "still serving");
    assert!(t.elapsed() < Duration::from_secs(2));
    let status = c.wait_exit(T).expect("exits");
    assert_eq!(status.code(), Some(0));
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(c.log().contains("Shutting down in 2 s (--shutdown-delay)"));
}

/// `Uid:` and `Gid:` of a process, from `/proc/PID/status` (real, effective, saved, fs).
fn ids(pid: u32) -> (String, String) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    (field("Uid:"), field("Gid:"))
}

/// A port below 1024 that is free now.
fn privileged_port() -> u16 {
    (900..1024)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 1024")
}

/// `--user nobody --group nogroup`: the privileged port is bound first (as root), then
/// the master, the workers and the migration runner (which creates the database) run
/// as nobody.
#[test]
fn user_and_group_are_taken_after_binding() {
    if !need_root("user_and_group_are_taken_after_binding") {
        return;
    }
    let dir = TempDir::new("privdrop");
    chown_nobody(dir.path());
    let port = privileged_port();
    let c = Corral::builder()
        .dir(dir.path())
        .args(["-b", &format!("127.0.0.1:{port}"), "-w", "2"])
        .args(["--user", "nobody", "--group", "65534", "--umask", "0027"])
        .env("SECRET_KEY", crate::api::SECRET)
        .start();
    c.expect_log("Switched to uid 65534 gid 65534", T);
    let nobody = (
        "65534 65534 65534 65534".to_string(),
        "65534 65534 65534 65534".to_string(),
    );
    assert_eq!(ids(c.pid), nobody, "the master");
    for w in c.wait_workers(2, &[], T) {
        assert_eq!(ids(w), nobody, "worker {w}");
    }
    use std::os::unix::fs::MetadataExt;
    let db = std::fs::metadata(dir.join("corral.db")).expect("the migration runner created it");
    assert_eq!(
        (db.uid(), db.gid()),
        (65534, 65534),
        "the migration runner ran as nobody"
    );
    assert_eq!(
        db.mode() & 0o077 & !0o040,
        0,
        "--umask 0027: mode {:o}",
        db.mode()
    );
    assert_eq!(c.get("/healthz").status, 200);

    let out = run(dir.path(), &["check", "--user", "no-such-user-here"], &[]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("no such user"), "{}", out.stderr);
}

/// nginx from Debian, its workers running as www-data, in front of corral over a unix
/// socket given to www-data with mode 0660: requests pass, and the access log shows the
/// client from nginx's X-Forwarded-For (a unix peer has no address of its own).
#[test]
fn nginx_over_a_unix_socket_with_group_and_mode() {
    let test = "nginx_over_a_unix_socket_with_group_and_mode";
    if !need_root(test) || !have("nginx", test) {
        return;
    }
    let dir = TempDir::new("nginxunix");
    chmod(dir.path(), 0o755);
    let sock = dir.join("corral.sock");
    let c = Corral::plain(1)
        .dir(dir.path())
        .args(["-b", &format!("unix:{}", sock.display())])
        .args([
            "--group",
            "www-data",
            "--bind-mode",
            "0660",
            "--access-logfile",
            "-",
        ])
        .start();
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    let www = std::process::Command::new("getent")
        .args(["group", "www-data"])
        .output()
        .unwrap();
    let gid: u32 = String::from_utf8_lossy(&www.stdout)
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(meta.gid(), gid);
    let nginx = Nginx::start_as(
        "nginx",
        &[format!("unix:{}", sock.display())],
        "www-data",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    );
    let r = http(&nginx.addr(), "GET", "/healthz?via=nginx", &[], b"");
    assert_eq!(
        r.status,
        200,
        "{}\nnginx: {}",
        r.text(),
        std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default()
    );
    let line = access_line(&c, 0, "via=nginx");
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
}

fn v2_header(cmd: u8, fam: u8, addr: &[u8], len: Option<u16>) -> Vec<u8> {
    let mut v = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v.extend([0x20 | cmd, fam]);
    v.extend(len.unwrap_or(addr.len() as u16).to_be_bytes());
    v.extend(addr);
    v
}

/// `--proxy-protocol`: hand-built v1 and v2 headers name the client in the access log (a
/// v2 LOCAL keeps the peer); injection attempts (CR inside v1, extra fields, an overlong
/// line), v2 lengths that lie, and no header at all close the connection, logged.
#[test]
fn proxy_protocol_v1_and_v2_strictly() {
    let c = Corral::plain(1)
        .args([
            "--proxy-protocol",
            "--access-logfile",
            "-",
            "--header-timeout",
            "2",
        ])
        .start();
    let get =
        |n: u32| format!("GET /healthz?pp={n} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let send = |head: &[u8], n: u32| {
        let mut conn = Conn::open(&c.addr);
        let mut bytes = head.to_vec();
        bytes.extend(get(n).as_bytes());
        conn.send_raw(&bytes).unwrap();
        conn
    };
    let mut ok = send(b"PROXY TCP4 198.51.100.7 10.0.0.1 5555 80\r\n", 1);
    assert_eq!(ok.read_response().unwrap().status, 200);
    assert!(access_line(&c, 0, "pp=1").starts_with("198.51.100.7 - - ["));
    let addr = [203, 0, 113, 5, 10, 0, 0, 1, 0x1f, 0x90, 0, 80];
    let mut ok = send(&v2_header(1, 0x11, &addr, None), 2);
    assert_eq!(ok.read_response().unwrap().status, 200);
    assert!(access_line(&c, 0, "pp=2").starts_with("203.0.113.5 - - ["));
    let mut local = send(&v2_header(0, 0x00, &[], None), 3);
    assert_eq!(local.read_response().unwrap().status, 200);
    assert!(access_line(&c, 0, "pp=3").starts_with("127.0.0.1 - - ["));

    let bad: Vec<(Vec<u8>, &str)> = vec![
        (b"PROXY TCP4 1.2.3.4\r 5.6.7.8 1 2\r\n".to_vec(), "CR or LF"),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 GET\r\n".to_vec(),
            "expected 6 fields",
        ),
        (
            [b"PROXY TCP4 ".as_slice(), &[b'9'; 150], b"\r\n"].concat(),
            "no CRLF within 107",
        ),
        (
            v2_header(1, 0x11, &addr[..4], None),
            "too short for its address family",
        ),
        (v2_header(1, 0x11, &addr, Some(4000)), "over 520"),
        (Vec::new(), "no PROXY protocol header"),
    ];
    for (head, why) in bad {
        let mark = c.mark();
        let mut conn = send(&head, 9);
        assert!(conn.closed_by_peer(T), "{why}: the connection closes");
        c.expect_log_after(mark, why, T);
    }
    // A v2 header that says it is longer than what comes: closed at the header timeout.
    let mark = c.mark();
    let mut conn = Conn::open(&c.addr);
    conn.send_raw(&v2_header(1, 0x11, &addr, Some(60))).unwrap();
    assert!(conn.closed_by_peer(T));
    c.expect_log_after(mark, "no complete header within 2 s", T);
    assert!(
        !c.stdout.all().iter().any(|l| l.contains("pp=9")),
        "nothing was served"
    );

    let untrusted = Corral::plain(1)
        .args(["--proxy-protocol", "--proxy-allow-ips", "10.9.9.9"])
        .start();
    assert_eq!(
        untrusted.get("/healthz").status,
        200,
        "other peers need no header"
    );
}
