//! The master: boot, supervision, signals, reloads, recycling, shutdown, boot failure and
//! the single-thread invariant, on the real binary.

use crate::support::*;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

/// `-w 3` brings up three workers that all answer, each response with a request id.
#[test]
fn boots_the_requested_number_of_workers() {
    let c = Corral::plain(3).start();
    c.expect_log("Generation 1 ready (3 workers)", T);
    assert_eq!(c.wait_workers(3, &[], T).len(), 3);
    let r = c.get("/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!({"status": "ok"}));
    assert_eq!(r.header("x-request-id").map(str::len), Some(36));
}

/// A worker killed with SIGKILL is reaped and replaced at once, and the master says it
/// was killed.
#[test]
fn a_killed_worker_is_replaced() {
    let c = Corral::plain(2).start();
    let before = c.wait_workers(2, &[], T);
    kill(before[0], "KILL");
    let after = c.wait_workers(2, &[before[0]], T);
    assert!(after.contains(&before[1]));
    c.expect_log(
        &format!(
            "Worker (pid: {}) was sent SIGKILL! Perhaps out of memory?",
            before[0]
        ),
        T,
    );
    assert_eq!(c.get("/healthz").status, 200);
}

/// A worker that stops beating (SIGSTOP) is aborted after --timeout, killed, and
/// replaced; the master logs that it timed out.
#[test]
fn a_hung_worker_is_aborted_then_killed_and_replaced() {
    let c = Corral::plain(1).args(["-t", "2"]).start();
    let old = c.wait_workers(1, &[], T)[0];
    let started = Instant::now();
    kill(old, "STOP");
    c.expect_log(&format!("WORKER TIMEOUT (pid:{old})"), T);
    let new = c.wait_workers(1, &[old], T)[0];
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "aborted before the timeout"
    );
    // It may still be exiting (its command line already gone) for a moment.
    eventually(T, "the hung worker to be gone", || {
        (!alive(old)).then_some(())
    });
    c.expect_log(
        &format!("Worker (pid: {old}) did not stop in time; sending SIGKILL"),
        T,
    );
    assert_ne!(new, old);
    assert_eq!(c.get("/healthz").status, 200);
}

/// TTIN adds a worker; TTOU removes one, the oldest.
#[test]
fn ttin_and_ttou_change_the_worker_count() {
    let c = Corral::plain(2).start();
    let two = c.wait_workers(2, &[], T);
    c.signal("TTIN");
    let three = c.wait_workers(3, &[], T);
    assert!(two.iter().all(|p| three.contains(p)));
    c.signal("TTOU");
    let back = c.wait_workers(2, &[two[0]], T);
    assert!(
        back.contains(&two[1]),
        "the oldest worker should retire first"
    );
}

/// HUP while clients send requests continuously: no request fails, every worker is
/// replaced, the master stays.
#[test]
fn hup_under_load_fails_no_request() {
    let c = Corral::plain(2).start();
    let before = c.wait_workers(2, &[], T);
    let load = Load::start(&c.addr, "/healthz", vec![], 4);
    let mark = c.mark();
    // Let the clients get going, then reload twice.
    eventually(T, "requests served", || {
        (c.get("/healthz").status == 200).then_some(())
    });
    c.signal("HUP");
    c.expect_log_after(mark, "Generation 2 ready (2 workers); reload complete", T);
    let mid = c.wait_workers(2, &before, T);
    c.signal("HUP");
    c.expect_log_after(mark, "Generation 3 ready (2 workers); reload complete", T);
    let after = c.wait_workers(2, &mid, T);
    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 100, "only {ok} requests were sent");
    assert!(after.iter().all(|p| !before.contains(p)));
    assert!(alive(c.pid));
    c.expect_log("Handling signal: hup", T);
}

/// A reload with a broken configuration file keeps the old workers serving and says why.
#[test]
fn hup_with_a_broken_config_keeps_the_old_generation() {
    let dir = TempDir::new("badhup");
    let cfg = dir.join("corral.toml");
    std::fs::write(
        &cfg,
        "workers = 2\nbind = [\"127.0.0.1:0\"]\n[database]\nmigrate = \"off\"\n",
    )
    .unwrap();
    let c = Corral::builder()
        .dir(dir.path())
        .args(["-c", cfg.to_str().unwrap()])
        .start();
    let before = c.wait_workers(2, &[], T);
    std::fs::write(&cfg, "workers = \"many\"\n").unwrap();
    let mark = c.mark();
    c.signal("HUP");
    let line = c.expect_log_after(mark, "Reload failed", T);
    assert!(line.contains("`workers`"), "{line}");
    assert_eq!(c.get("/healthz").status, 200);
    assert_eq!(c.worker_pids(), before);
}

/// TERM while a request is in flight (its head only half sent): the request completes,
/// then the master exits 0.
#[test]
fn term_lets_an_in_flight_request_finish() {
    let mut c = Corral::plain(1).args(["--log-level", "debug"]).start();
    let mut conn = Conn::open(&c.addr);
    conn.send_raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mark = c.mark();
    c.signal("TERM");
    c.expect_log_after(mark, "Handling signal: term", T);
    c.expect_log_after(mark, "draining", T);
    conn.send_raw(b"\r\n").unwrap();
    let r = conn.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    let status = c.wait_exit(T).expect("master exits");
    assert_eq!(status.code(), Some(0));
    assert!(c.log().contains("Shutting down: Master"));
}

/// INT is a quick shutdown: exit 0 without waiting for connections.
#[test]
fn int_shuts_down_quickly() {
    let mut c = Corral::plain(2).args(["--graceful-timeout", "30"]).start();
    let mut idle = Conn::open(&c.addr);
    idle.send_raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap(); // never finished
    let t = Instant::now();
    c.signal("INT");
    assert_eq!(c.wait_exit(T).and_then(|s| s.code()), Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}

/// A first generation that cannot boot makes the master exit 3 with a one-line reason,
/// within seconds, instead of crash-looping.
#[test]
fn a_first_generation_that_cannot_boot_exits_3() {
    let dir = TempDir::new("noboot");
    let t = Instant::now();
    // Connect options the master does not parse, but every worker's pool does.
    let mut c = Corral::plain(2)
        .dir(dir.path())
        .args([
            "--database-url",
            "postgres://u@127.0.0.1:1/db?sslmode=sometimes",
        ])
        .no_wait()
        .start();
    let status = c.wait_exit(T).expect("master exits");
    assert_eq!(status.code(), Some(3), "log:\n{}", c.log());
    assert!(t.elapsed() < Duration::from_secs(10));
    let line = c.expect_log("Worker failed to boot:", T);
    assert!(
        line.contains("application failed to start: bad DATABASE_URL"),
        "{line}"
    );
    assert_eq!(c.stderr.count("Booting worker"), 2, "no respawn loop");
}

/// The master has exactly one thread every time it spawns a process: each spawn logs the
/// thread count it measured just before forking, and /proc agrees.
#[test]
fn the_master_is_single_threaded_whenever_it_spawns() {
    let c = Corral::plain(2).args(["--log-format", "json"]).start();
    c.signal("TTIN");
    c.wait_workers(3, &[], T);
    let mark = c.mark();
    c.signal("HUP"); // back to the configured two workers, as Gunicorn does
    c.expect_log_after(mark, "reload complete", T);
    let pids = c.wait_workers(2, &[], T);
    kill(pids[0], "KILL");
    c.wait_workers(2, &[pids[0]], T);
    assert_eq!(threads(c.pid), 1);
    let spawns: Vec<serde_json::Value> = c
        .stderr
        .all()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Booting worker with pid:"))
        })
        .collect();
    assert!(spawns.len() >= 6, "{} spawns", spawns.len());
    for s in &spawns {
        assert_eq!(s["master_threads"], 1, "{s}");
        assert_eq!(s["role"], "master");
    }
}

/// `--max-requests` retires a worker after that many requests, with no failed request.
#[test]
fn max_requests_recycles_workers_without_failures() {
    let c = Corral::plain(1)
        .args(["--max-requests", "25", "--max-requests-jitter", "5"])
        .start();
    let first = c.wait_workers(1, &[], T)[0];
    let mut seen = std::collections::BTreeSet::new();
    let mut conn = Conn::open(&c.addr);
    for _ in 0..200 {
        let r = conn.request("GET", "/healthz", &[], b"").expect("request");
        assert_eq!(r.status, 200);
        if r.header("connection") == Some("close") {
            conn = Conn::open(&c.addr);
        }
        seen.extend(c.worker_pids());
    }
    assert!(seen.len() >= 3, "workers seen: {seen:?}");
    assert!(!c.worker_pids().contains(&first));
    c.expect_log("Reached max requests", T);
}

/// Workers that keep dying are respawned with a growing, logged delay.
#[test]
fn crashing_workers_are_respawned_with_backoff() {
    let c = Corral::plain(1).start();
    let mut gone = vec![];
    for _ in 0..3 {
        let pid = c.wait_workers(1, &gone, T)[0];
        kill(pid, "KILL");
        gone.push(pid);
    }
    c.expect_log("Workers failed 3 times in a row; respawning in 200 ms", T);
    c.wait_workers(1, &gone, T);
}

/// USR1 reopens log files: after the access log is moved away, a new file appears.
#[test]
fn usr1_reopens_the_access_log() {
    let dir = TempDir::new("usr1");
    let log = dir.join("access.log");
    let c = Corral::plain(1)
        .dir(dir.path())
        .args(["--access-logfile", log.to_str().unwrap()])
        .start();
    assert_eq!(c.get("/healthz").status, 200);
    eventually(T, "first access line", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|s| s.contains("/healthz"))
    });
    std::fs::rename(&log, dir.join("access.log.1")).unwrap();
    let mark = c.mark();
    c.signal("USR1");
    c.expect_log_after(mark, "Handling signal: usr1", T);
    // The worker handles USR1 asynchronously; keep requesting until a line lands in the new file.
    eventually(T, "access line in the reopened file", || {
        c.get("/healthz?after-usr1");
        std::fs::read_to_string(&log)
            .ok()
            .filter(|s| s.contains("after-usr1"))
    });
}

/// When a hung worker is aborted, the master says what it was serving: method, path,
/// request id and elapsed time, read from the worker's scoreboard.
#[test]
fn a_hung_worker_is_reported_with_its_request_in_flight() {
    let dir = TempDir::new("inflight");
    let c = Corral::builder()
        .dir(dir.path())
        .args(["-b", "127.0.0.1:0", "-w", "1", "-t", "2"])
        .start();
    let worker = c.wait_workers(1, &[], T)[0];
    let id = "inflight-test-request-0001";
    let mut conn = Conn::open(&c.addr);
    conn.send_raw(format!("POST /api/token/ HTTP/1.1\r\nHost: x\r\nX-Request-ID: {id}\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n").as_bytes()).unwrap();
    // hyper answers 100 Continue only once the login view starts reading the body: from
    // then on the request is in flight inside the worker.
    let interim = conn.read_response().unwrap();
    assert_eq!(interim.status, 100);
    kill(worker, "STOP");
    let line = c.expect_log(
        &format!("Worker (pid:{worker}) was serving POST /api/token/ (request id {id}, "),
        T,
    );
    let ms: u64 = line
        .split(", ")
        .last()
        .unwrap()
        .trim_end_matches(" ms)")
        .parse()
        .unwrap();
    assert!(ms >= 2000, "{line}");
    c.wait_workers(1, &[worker], T);
}

/// The report of a hung worker's request never shows a secret from its target: a
/// sensitive query value is `[redacted]` there too.
#[test]
fn a_hung_workers_report_redacts_secrets_in_the_target() {
    let dir = TempDir::new("inflight-secret");
    let c = Corral::builder()
        .dir(dir.path())
        .args(["-b", "127.0.0.1:0", "-w", "1", "-t", "2"])
        .start();
    let worker = c.wait_workers(1, &[], T)[0];
    let mut conn = Conn::open(&c.addr);
    conn.send_raw(b"POST /api/token/?secret=hunter2&page=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n").unwrap();
    assert_eq!(conn.read_response().unwrap().status, 100);
    kill(worker, "STOP");
    c.expect_log(
        &format!("Worker (pid:{worker}) was serving POST /api/token/?secret=[redacted]&page=1 "),
        T,
    );
    assert!(!c.log().contains("hunter2"), "{}", c.log());
    c.wait_workers(1, &[worker], T);
}
