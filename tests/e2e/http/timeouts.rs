//! Timeouts for slow and stalled clients, making room at `--worker-connections`, and
//! closing idle connections when a worker drains.

use super::T;
use crate::support::*;
use std::time::Duration;

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

/// A request body that stops arriving gets 408 after `--body-timeout`, declared length
/// or chunked, and its connection closes.
#[test]
fn a_stalled_body_gets_408_after_the_body_timeout() {
    let c = Corral::plain(1).args(["--body-timeout", "1"]).start();
    for head in [
        "POST /api/token/verify/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"token\":",
        "POST /api/token/verify/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{\"token\":\r\n",
    ] {
        let mut conn = Conn::open(&c.addr);
        conn.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let started = std::time::Instant::now();
        conn.send_raw(head.as_bytes()).unwrap();
        let r = conn.read_response().expect("a 408, not silence");
        assert_eq!(r.status, 408, "{}", r.text());
        assert_eq!(
            r.json()["detail"],
            "Request timeout: the request body did not arrive in time."
        );
        assert_eq!(r.header("connection"), Some("close"));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(conn.closed_by_peer(Duration::from_secs(5)));
    }
}

/// Ten clients stalling their bodies on a worker limited to ten connections lock a new
/// client out for `--body-timeout` at most, not for good.
#[test]
fn stalled_bodies_cannot_lock_out_a_worker() {
    let c = Corral::plain(1)
        .args(["--body-timeout", "1", "--worker-connections", "10"])
        .start();
    let stalled: Vec<Conn> = (0..10)
        .map(|_| {
            let mut conn = Conn::open(&c.addr);
            conn.send_raw(b"POST /api/token/verify/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{").unwrap();
            conn
        })
        .collect();
    let started = std::time::Instant::now();
    let mut fresh = Conn::open(&c.addr);
    fresh
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let r = fresh.request("GET", "/healthz", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "served after {:?}",
        started.elapsed()
    );
    drop(stalled);
}

/// At `--worker-connections`, idle keep-alive connections are closed to make room for a
/// new client, which is then served at once (it used to wait out the keep-alive).
#[test]
fn idle_connections_make_room_at_the_connection_limit() {
    let c = Corral::plain(1)
        .args(["--worker-connections", "2", "--keep-alive", "60"])
        .start();
    let mut idle: Vec<Conn> = (0..2)
        .map(|_| {
            let mut conn = Conn::open(&c.addr);
            assert_eq!(
                conn.request("GET", "/healthz", &[], b"").unwrap().status,
                200
            );
            conn
        })
        .collect();
    let started = std::time::Instant::now();
    let mut fresh = Conn::open(&c.addr);
    fresh
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        fresh.request("GET", "/healthz", &[], b"").unwrap().status,
        200
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "served after {:?}",
        started.elapsed()
    );
    assert!(
        idle.iter_mut()
            .any(|c| c.closed_by_peer(Duration::from_secs(2))),
        "an idle connection was closed to make room"
    );
}

/// On `TERM`, idle keep-alive connections close at once: a worker does not wait out
/// `--keep-alive` (or get SIGKILLed at `--graceful-timeout`) for them.
#[test]
fn term_closes_idle_connections_at_once() {
    let mut c = Corral::plain(1)
        .args(["--keep-alive", "20", "--graceful-timeout", "6"])
        .start();
    let mut conn = Conn::open(&c.addr);
    assert_eq!(
        conn.request("GET", "/healthz", &[], b"").unwrap().status,
        200
    );
    let started = std::time::Instant::now();
    c.signal("TERM");
    assert!(
        conn.closed_by_peer(Duration::from_secs(5)),
        "the idle connection is closed"
    );
    let status = c.wait_exit(T).expect("the master exits");
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "exited after {:?}",
        started.elapsed()
    );
    assert!(!c.log().contains("did not stop in time"), "{}", c.log());
}
