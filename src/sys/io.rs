//! A connection's socket as hyper sees it, noting when each request head starts to
//! arrive.
//!
//! hyper's own `header_read_timeout` also counts keep-alive idle time and closes without
//! a response. To tell an idle keep-alive connection (close it quietly after
//! `--keep-alive`) from a slow client (answer `408` after `--header-timeout`), [`Conn`]
//! records the time of the first bytes read after each response in a shared
//! [`Activity`], which the connection's supervisor task reads. Reads go through tokio's
//! own `AsyncRead`, which treats a short read as "drained" and so saves a `recv` per
//! request; the one `unsafe` block is the same buffer hand-over hyper-util's `TokioIo`
//! makes.

use hyper::rt::{Read, ReadBufCursor, Write};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// An accepted connection, TCP or unix.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// What a connection is doing, as far as timeouts are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
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
pub struct Activity {
    head_started_ms: AtomicU64,
    busy: AtomicBool,
    idle_since_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            head_started_ms: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(super::monotonic_ms()),
        })
    }

    /// The request head is complete and the request is being served.
    pub fn mark_busy(&self) {
        self.busy.store(true, Relaxed);
        self.head_started_ms.store(0, Relaxed);
    }

    /// The response is done; the connection waits for the next request.
    pub fn mark_idle(&self) {
        self.idle_since_ms.store(super::monotonic_ms(), Relaxed);
        self.busy.store(false, Relaxed);
    }

    fn saw_bytes(&self) {
        if !self.busy.load(Relaxed) && self.head_started_ms.load(Relaxed) == 0 {
            self.head_started_ms.store(super::monotonic_ms(), Relaxed);
        }
    }

    pub fn phase(&self) -> Phase {
        if self.busy.load(Relaxed) {
            return Phase::Busy;
        }
        match self.head_started_ms.load(Relaxed) {
            0 => Phase::Idle(self.idle_since_ms.load(Relaxed)),
            t => Phase::Head(t),
        }
    }
}

/// The I/O object hyper serves.
#[derive(Debug)]
pub struct Conn {
    stream: Stream,
    activity: Arc<Activity>,
}

impl Conn {
    pub fn new(stream: Stream, activity: Arc<Activity>) -> Conn {
        Conn { stream, activity }
    }

    /// Writes what the socket takes without waiting, then shuts down the write side: a
    /// last word (408) on a connection being abandoned.
    pub fn write_now_and_close(&self, bytes: &[u8]) {
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

impl Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // SAFETY: as in hyper-util's TokioIo: the tokio ReadBuf wraps the cursor's
        // unfilled (possibly uninitialised) memory, tokio's `poll_read` only writes to it
        // and reports how many bytes it initialised, and exactly that many are then
        // marked filled.
        let n = unsafe {
            let mut tbuf = ReadBuf::uninit(buf.as_mut());
            let polled = match &mut self.stream {
                Stream::Tcp(s) => Pin::new(s).poll_read(cx, &mut tbuf),
                Stream::Unix(s) => Pin::new(s).poll_read(cx, &mut tbuf),
            };
            match polled {
                Poll::Ready(Ok(())) => tbuf.filled().len(),
                other => return other,
            }
        };
        if n > 0 {
            self.activity.saw_bytes();
        }
        // SAFETY: `n` bytes of the cursor were initialised by the read above.
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl Write for Conn {
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
