//! HTTP hygiene in workers: Gunicorn's limits, body cap, slow clients, malformed
//! requests; each answered with a 4xx and none of them taking a worker down.

use crate::support::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn raw(addr: &str, bytes: &[u8]) -> Response {
    let mut c = Conn::open(addr);
    c.send_raw(bytes).unwrap();
    c.read_response().unwrap()
}

#[test]
fn oversized_and_malformed_requests_get_4xx_and_the_worker_lives() {
    let c = Corral::plain(1).args(["--header-timeout", "1"]).start();
    let worker = c.wait_workers(1, &[], T);

    // Request line over 4094 bytes: 414, with our JSON body and a request id.
    let long = format!("/healthz?{}", "a".repeat(4100));
    let r = http(&c.addr, "GET", &long, &[], b"");
    assert_eq!(r.status, 414);
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("Request line is too large"));
    assert!(r.header("x-request-id").is_some());

    // 101 header fields: 431.
    let mut req = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let r = raw(&c.addr, req.as_bytes());
    assert_eq!(r.status, 431);
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("Too many header fields"));

    // One header field over 8190 bytes: 431.
    let big = "b".repeat(8200);
    let r = http(&c.addr, "GET", "/healthz", &[("X-Big", &big)], b"");
    assert_eq!(r.status, 431);
    assert!(r.json()["detail"].as_str().unwrap().contains("x-big"));

    // A declared body over the cap: 413 before any byte of it is read.
    let r = raw(
        &c.addr,
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n",
    );
    assert_eq!(r.status, 413);

    // Garbage: hyper's parser answers 400.
    let r = raw(&c.addr, b"NOT A REQUEST\r\n\r\n");
    assert_eq!(r.status, 400);

    // A head that never completes: 408 after --header-timeout, with a request id.
    let mut slow = Conn::open(&c.addr);
    slow.send_raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let r = slow.read_response().unwrap();
    assert_eq!(r.status, 408);
    assert!(r.header("x-request-id").is_some());
    assert!(slow.closed_by_peer(Duration::from_secs(5)));

    // Same worker, still serving.
    assert_eq!(c.get("/healthz").status, 200);
    assert_eq!(c.worker_pids(), worker);
}

/// An idle keep-alive connection is closed after --keep-alive; a busy one is not.
#[test]
fn idle_keep_alive_connections_are_closed() {
    let c = Corral::plain(1).args(["--keep-alive", "1"]).start();
    let mut conn = Conn::open(&c.addr);
    assert_eq!(
        conn.request("GET", "/healthz", &[], b"").unwrap().status,
        200
    );
    assert!(conn.closed_by_peer(Duration::from_secs(5)));
}

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
