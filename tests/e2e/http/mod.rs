//! HTTP hygiene in workers, whatever the application: Gunicorn's limits, timeouts for
//! slow and stalled clients, the request's framing, draining, request ids and the access
//! log; each failure answered with a 4xx and none of them taking a worker down.

mod limits; // request line, headers, body size: 414, 431, 413
mod logs; // request ids, the access log, what it never shows, accept errors
mod protocol; // Host, Transfer-Encoding, bare LF, HEAD, half-close, Date
mod timeouts; // head, body and keep-alive timeouts, room at --worker-connections, drain

use crate::support::*;
use std::time::Duration;

pub(crate) const T: Duration = Duration::from_secs(20);

/// One raw request on a new connection, and its response.
pub(crate) fn raw(addr: &str, bytes: &[u8]) -> Response {
    let mut c = Conn::open(addr);
    c.send_raw(bytes).unwrap();
    c.read_response().unwrap()
}
