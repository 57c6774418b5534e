//! Gunicorn's request limits and the body cap: 414, 431 and 413, with corral's JSON.

use super::{raw, T};
use crate::support::*;
use std::time::Duration;

/// Oversized and malformed requests get their 4xx, and the worker lives.
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

/// `--limit-request-field-size` counts a header line as Gunicorn does, `Name: value` and
/// its CRLF: a line of exactly the limit passes, one byte more is 431.
#[test]
fn the_field_size_limit_counts_the_whole_line_as_gunicorn() {
    let c = Corral::plain(1)
        .args(["--limit-request-field-size", "100"])
        .start();
    // "X-Pad: " (7) + value + CRLF (2) = 100 bytes exactly.
    let at_limit = "v".repeat(100 - 7 - 2);
    let r = http(&c.addr, "GET", "/healthz", &[("X-Pad", &at_limit)], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let over = "v".repeat(100 - 7 - 2 + 1);
    let r = http(&c.addr, "GET", "/healthz", &[("X-Pad", &over)], b"");
    assert_eq!(r.status, 431);
    assert_eq!(
        r.json()["detail"],
        "Header field x-pad is too large (101 > 100)"
    );
}

/// A body over `--limit-request-body` gets the same 413 whether its length was declared
/// or it came chunked, and the connection closes after it.
#[test]
fn a_body_over_the_limit_is_one_413_declared_or_chunked() {
    let c = Corral::plain(1)
        .args(["--limit-request-body", "1000"])
        .start();
    let declared = raw(
        &c.addr,
        b"POST /api/token/verify/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n",
    );
    let mut conn = Conn::open(&c.addr);
    let chunk = format!("7d0\r\n{}\r\n", "x".repeat(2000));
    conn.send_raw(
        format!("POST /api/token/verify/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}0\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let chunked = conn.read_response().unwrap();
    assert_eq!((declared.status, chunked.status), (413, 413));
    assert_eq!(declared.json(), chunked.json());
    assert_eq!(
        declared.json()["detail"],
        "Request body is too large (limit 1000 bytes)"
    );
    assert_eq!(chunked.header("connection"), Some("close"));
    assert!(conn.closed_by_peer(Duration::from_secs(5)));
}
