//! A connection's socket, shared between hyper and the connection's supervisor task.
//!
//! hyper owns the I/O object it serves, so a task that wants to answer a slow client with
//! `408 Request Timeout` after hyper gave up on it needs a second handle to the same socket.
//! [`SharedStream`] is a cheap clone (an `Arc`) implementing hyper's `Read` and `Write` on a
//! shared tokio stream, and recording when each request head starts arriving so the
//! supervisor can tell an idle keep-alive connection from a slow client.

use bytes::BufMut;
use hyper::rt::{Read, ReadBufCursor, Write};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::net::{TcpStream, UnixStream};

/// An accepted connection, TCP or unix.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

#[derive(Debug)]
struct Inner {
    stream: Stream,
    /// `CLOCK_MONOTONIC` ms when bytes of the next request head first arrived; 0 = none yet.
    head_started_ms: AtomicU64,
    /// A request is being served (head complete, response not finished).
    busy: AtomicBool,
    /// When the last response finished (or the connection was accepted).
    idle_since_ms: AtomicU64,
}

/// What a connection is doing, as far as timeouts are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a request, since this time (keep-alive timeout applies).
    Idle(u64),
    /// Receiving a request head that started arriving at this time (header timeout applies).
    Head(u64),
    /// Serving a request.
    Busy,
}

/// A clonable handle to one connection's socket.
#[derive(Debug, Clone)]
pub struct SharedStream(Arc<Inner>);

impl SharedStream {
    pub fn new(stream: Stream) -> SharedStream {
        SharedStream(Arc::new(Inner {
            stream,
            head_started_ms: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(super::monotonic_ms()),
        }))
    }

    /// The request head is complete and the request is being served.
    pub fn mark_busy(&self) {
        self.0.busy.store(true, Relaxed);
        self.0.head_started_ms.store(0, Relaxed);
    }

    /// The response is finished; the connection waits for the next request.
    pub fn mark_idle(&self) {
        self.0.idle_since_ms.store(super::monotonic_ms(), Relaxed);
        self.0.busy.store(false, Relaxed);
    }

    pub fn phase(&self) -> Phase {
        if self.0.busy.load(Relaxed) {
            return Phase::Busy;
        }
        match self.0.head_started_ms.load(Relaxed) {
            0 => Phase::Idle(self.0.idle_since_ms.load(Relaxed)),
            t => Phase::Head(t),
        }
    }

    /// Writes as much of `bytes` as the socket takes without waiting, then shuts down the
    /// write side. Used for last-word responses (408) on a connection being abandoned.
    pub fn write_now_and_close(&self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            match self.try_write(rest) {
                Ok(0) | Err(_) => break,
                Ok(n) => rest = &rest[n..],
            }
        }
        let _ = self.shutdown_write();
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match &self.0.stream {
            Stream::Tcp(s) => s.try_write(buf),
            Stream::Unix(s) => s.try_write(buf),
        }
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match &self.0.stream {
            Stream::Tcp(s) => socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write),
        }
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.0.stream {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.0.stream {
            Stream::Tcp(s) => s.poll_write_ready(cx),
            Stream::Unix(s) => s.poll_write_ready(cx),
        }
    }

    fn try_read_buf(&self, buf: &mut &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        match &self.0.stream {
            Stream::Tcp(s) => s.try_read_buf(buf),
            Stream::Unix(s) => s.try_read_buf(buf),
        }
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &self.0.stream {
            Stream::Tcp(s) => s.try_write_vectored(bufs),
            Stream::Unix(s) => s.try_write_vectored(bufs),
        }
    }
}

impl Read for SharedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_read_ready(cx))?;
            // SAFETY: the slice is only written to (never read) by `try_read_buf`, which
            // initialises a prefix of it and reports its length.
            let mut dst: &mut [MaybeUninit<u8>] = unsafe { buf.as_mut() };
            if !dst.has_remaining_mut() {
                return Poll::Ready(Ok(()));
            }
            match self.try_read_buf(&mut dst) {
                Ok(n) => {
                    if n > 0
                        && !self.0.busy.load(Relaxed)
                        && self.0.head_started_ms.load(Relaxed) == 0
                    {
                        self.0.head_started_ms.store(super::monotonic_ms(), Relaxed);
                    }
                    // SAFETY: `try_read_buf` initialised exactly the first `n` bytes of the
                    // cursor's unfilled region.
                    unsafe { buf.advance(n) };
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale; poll_read_ready cleared it and registers again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl Write for SharedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.poll_write_ready(cx))?;
            match self.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.poll_write_ready(cx))?;
            match self.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(match self.shutdown_write() {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            r => r,
        })
    }
}
