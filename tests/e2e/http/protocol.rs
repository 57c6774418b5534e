//! The request's framing as RFC 9112 has it, and the small print of responses.

use super::raw;
use crate::support::*;

/// RFC 9112 §3.2: an HTTP/1.1 request without a Host header, or any request with two,
/// is a 400; HTTP/1.0 may leave it out.
#[test]
fn a_missing_or_repeated_host_is_400() {
    let c = Corral::plain(1).start();
    let r = raw(&c.addr, b"GET /healthz HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.json()["detail"],
        "Bad request: a request must carry exactly one Host header."
    );
    assert_eq!(r.header("connection"), Some("close"));
    let r = raw(
        &c.addr,
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    let r = raw(&c.addr, b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
}

/// Only `chunked` alone is a transfer coding corral decodes: `gzip, chunked` is 501,
/// not a body read as chunked with the gzip ignored.
#[test]
fn a_transfer_coding_other_than_chunked_is_501() {
    let c = Corral::plain(1).start();
    let r = raw(
        &c.addr,
        b"POST /api/token/verify/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 501, "{}", r.text());
    assert_eq!(
        r.json()["detail"],
        "Transfer-Encoding other than chunked is not implemented."
    );
    let r = raw(
        &c.addr,
        b"POST /api/token/verify/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nd\r\n{\"token\":\"x\"}\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 401, "plain chunked is fine: {}", r.text());
}

/// A header line ending in a bare LF is a 400, as in Gunicorn 22+: a proxy in front that
/// splits lines only on CRLF would see other headers than corral.
#[test]
fn a_bare_lf_in_the_head_is_400() {
    let c = Corral::plain(1).start();
    let r = raw(&c.addr, b"GET /healthz HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.json()["detail"],
        "Bad request: header lines must end with CRLF."
    );
    // A JSON body may hold newlines: only the head is looked at.
    let body = b"{\n\"token\": \"x\"\n}";
    let r = raw(
        &c.addr,
        &[
            format!("POST /api/token/verify/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
            body,
        ]
        .concat(),
    );
    assert_eq!(r.status, 401, "{}", r.text());
}

/// `HEAD` carries the `Content-Length` the `GET` body has; the core's own 408 carries a
/// `Date`.
#[test]
fn head_has_a_content_length_and_a_408_has_a_date() {
    let c = Corral::plain(1).args(["--header-timeout", "1"]).start();
    let get = c.get("/healthz");
    let mut conn = Conn::open(&c.addr);
    let head = conn.request("HEAD", "/healthz", &[], b"").unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(get.body.len().to_string().as_str())
    );
    let mut slow = Conn::open(&c.addr);
    slow.send_raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let r = slow.read_response().unwrap();
    assert_eq!(r.status, 408);
    let date = r.header("date").expect("a Date header");
    assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
}
