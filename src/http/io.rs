//! A connection's socket as hyper sees it, noting when each request head starts to
//! arrive.
//!
//! hyper's own `header_read_timeout` also counts keep-alive idle time and closes without
//! a response. To tell an idle keep-alive connection (close it quietly after
//! `--keep-alive`) from a slow client (answer `408` after `--header-timeout`), [`Conn`]
//! records the time of the first bytes read after each response in a shared
//! [`Activity`], which the connection's supervisor task reads. `Conn` is a plain tokio
//! `AsyncRead`/`AsyncWrite` wrapper; hyper-util's `TokioIo` adapts it to hyper (tokio's
//! reads treat a short read as "drained", which saves a `recv` per request).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// An accepted connection, TCP or unix.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
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
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            head_started_ms: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(crate::sys::monotonic_ms()),
        })
    }

    /// The request head is complete and the request is being served.
    pub(crate) fn mark_busy(&self) {
        self.busy.store(true, Relaxed);
        self.head_started_ms.store(0, Relaxed);
    }

    /// The response is done; the connection waits for the next request.
    pub(crate) fn mark_idle(&self) {
        self.idle_since_ms
            .store(crate::sys::monotonic_ms(), Relaxed);
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

/// The socket of one connection, noting activity as bytes arrive.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: Stream,
    activity: Arc<Activity>,
}

impl Conn {
    pub(crate) fn new(stream: Stream, activity: Arc<Activity>) -> Conn {
        Conn { stream, activity }
    }

    /// Writes what the socket takes without waiting, then shuts down the write side: a
    /// last word (408) on a connection being abandoned.
    pub(crate) fn write_now_and_close(&self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = match &self.stream {
                Stream::Tcp(s) => s.try_write(rest),
                Stream::Unix(s) => s.try_write(rest),
            };
            match n {
                Ok(0) | Err(_) => break,
                Ok(n) => rest = &rest[n..],
            }
        }
        let _ = match &self.stream {
            Stream::Tcp(s) => socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write),
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
        };
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.saw_bytes();
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
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.stream {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.stream {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
