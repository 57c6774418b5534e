//! A connection's socket as hyper sees it, noting when each request head starts to
//! arrive.
//!
//! hyper's own `header_read_timeout` also counts keep-alive idle time and closes without
//! a response. To tell an idle keep-alive connection (close it quietly after
//! `--keep-alive`) from a slow client (answer `408` after `--header-timeout`), [`Conn`]
//! records the time of the first bytes read after each response in a shared
//! [`Activity`], which the connection's supervisor task reads. It also looks at each
//! request head's line endings: a bare LF (not preceded by CR) is refused with 400, as
//! Gunicorn 22+ does, because a front proxy that splits lines only on CRLF would see
//! other headers than corral. `Conn` is a plain tokio
//! `AsyncRead`/`AsyncWrite` wrapper; hyper-util's `TokioIo` adapts it to hyper (tokio's
//! reads treat a short read as "drained", which saves a `recv` per request).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// An accepted connection, TCP (plain or TLS) or unix.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// What a connection is doing, as far as timeouts are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for a request since this time (`CLOCK_MONOTONIC` ms): keep-alive applies.
    Idle(u64),
    /// Receiving a request head that started arriving at this time: header timeout applies.
    Head(u64),
    /// Serving a request.
    Busy,
}

/// Shared between the socket (which sees bytes arrive), the service (which sees requests
/// start and end) and the supervisor (which enforces the timeouts).
#[derive(Debug)]
pub(crate) struct Activity {
    head_started_ms: AtomicU64,
    busy: AtomicBool,
    idle_since_ms: AtomicU64,
    /// Responses finished: a new value means the next bytes start a new head.
    responses: AtomicU64,
    /// The current head had a line ending in a bare LF.
    bare_lf: AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            head_started_ms: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(crate::sys::monotonic_ms()),
            responses: AtomicU64::new(0),
            bare_lf: AtomicBool::new(false),
        })
    }

    /// The request head is complete and the request is being served. Returns whether a
    /// line of that head ended in a bare LF.
    pub(crate) fn mark_busy(&self) -> bool {
        self.busy.store(true, Relaxed);
        self.head_started_ms.store(0, Relaxed);
        self.bare_lf.swap(false, Relaxed)
    }

    /// The response is done; the connection waits for the next request.
    pub(crate) fn mark_idle(&self) {
        self.idle_since_ms
            .store(crate::sys::monotonic_ms(), Relaxed);
        self.responses.fetch_add(1, Relaxed);
        self.busy.store(false, Relaxed);
    }

    fn saw_bytes(&self) {
        if !self.busy.load(Relaxed) && self.head_started_ms.load(Relaxed) == 0 {
            self.head_started_ms
                .store(crate::sys::monotonic_ms(), Relaxed);
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        if self.busy.load(Relaxed) {
            return Phase::Busy;
        }
        match self.head_started_ms.load(Relaxed) {
            0 => Phase::Idle(self.idle_since_ms.load(Relaxed)),
            t => Phase::Head(t),
        }
    }
}

/// Where the line-ending check stands in the current request head.
#[derive(Debug, Default)]
struct HeadScan {
    /// The head ended (an empty line): the bytes that follow are the body.
    done: bool,
    /// The response count when this head began.
    responses: u64,
    prev: u8,
    /// Bytes on the current line, CR excluded.
    line_len: usize,
}

impl HeadScan {
    /// Looks at bytes of a head; true when a line ended in a bare LF.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut bare = false;
        for &b in bytes {
            if self.done {
                break;
            }
            match b {
                b'\n' => {
                    bare |= self.prev != b'\r';
                    self.done = self.line_len == 0;
                    self.line_len = 0;
                }
                b'\r' => {}
                _ => self.line_len += 1,
            }
            self.prev = b;
        }
        bare
    }
}

/// The socket of one connection, noting activity as bytes arrive.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: Stream,
    activity: Arc<Activity>,
    head: HeadScan,
    /// HTTP/1 heads are checked for bare LFs; HTTP/2 frames are binary and are not.
    scan_heads: bool,
}

impl Conn {
    pub(crate) fn new(stream: Stream, activity: Arc<Activity>) -> Conn {
        Conn {
            stream,
            activity,
            head: HeadScan::default(),
            scan_heads: true,
        }
    }

    /// For HTTP/2: activity is noted, but no HTTP/1 line endings are looked for.
    pub(crate) fn binary(stream: Stream, activity: Arc<Activity>) -> Conn {
        Conn {
            scan_heads: false,
            ..Conn::new(stream, activity)
        }
    }

    /// Bytes just read: restart the head check after a response, then check them unless
    /// they belong to a body.
    fn saw(&mut self, bytes: &[u8]) {
        let a = &self.activity;
        a.saw_bytes();
        let responses = a.responses.load(Relaxed);
        if self.head.responses != responses {
            self.head = HeadScan {
                responses,
                ..HeadScan::default()
            };
        }
        if self.scan_heads && !a.busy.load(Relaxed) && !self.head.done && self.head.feed(bytes) {
            a.bare_lf.store(true, Relaxed);
        }
    }

    /// Writes what the socket takes without waiting, then shuts down the write side: a
    /// last word (408) on a connection being abandoned.
    pub(crate) fn write_now_and_close(&self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = match &self.stream {
                Stream::Tcp(s) => s.try_write(rest),
                Stream::Unix(s) => s.try_write(rest),
                // Plain bytes cannot go on a TLS stream: it just closes.
                Stream::Tls(_) => break,
            };
            match n {
                Ok(0) | Err(_) => break,
                Ok(n) => rest = &rest[n..],
            }
        }
        let _ = match &self.stream {
            Stream::Tcp(s) => socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write),
            Stream::Tls(s) => {
                socket2::SockRef::from(s.get_ref().0).shutdown(std::net::Shutdown::Write)
            }
        };
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = match &mut self.stream {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        };
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.saw(&buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.stream {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.stream {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.stream {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.stream {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HeadScan;

    #[test]
    fn bare_lf_in_a_head_is_seen_and_a_body_is_not_looked_at() {
        let mut h = HeadScan::default();
        assert!(!h.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n{\n}"));
        assert!(h.done);
        let mut h = HeadScan::default();
        assert!(!h.feed(b"GET / HTTP/1.1\r"));
        assert!(!h.feed(b"\nHost: x\r\n"), "CR and LF split across reads");
        let mut h = HeadScan::default();
        assert!(h.feed(b"GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n"));
    }
}
