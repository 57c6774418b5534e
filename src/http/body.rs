//! [`RequestBody`]: a request body as applications read it, capped at
//! `--limit-request-body` and with `--body-timeout` between two reads.
//!
//! `--header-timeout` covers the request head only; without a body timeout a client that
//! declares `Content-Length: 100` and sends 10 bytes (or stalls a chunked body) would keep
//! its connection, and its place under `--worker-connections`, for good. Like nginx's
//! `client_body_timeout`, the timeout is the longest gap between two reads, so a slow but
//! steady upload still works.
//!
//! A body that overruns either limit fails with a [`BodyError`] for the application, and
//! the fault is noted for the connection's wrapper, which then answers the core's own 413
//! or 408 (with `Connection: close`) whatever the application made of the error: every
//! service gets the same answer, with the same words.

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Why reading a request body failed.
#[derive(Debug)]
pub enum BodyError {
    /// More than `--limit-request-body` bytes.
    TooLarge { limit: u64 },
    /// No byte arrived for `--body-timeout`.
    TimedOut,
    /// The connection failed (the client went away, a malformed chunk).
    Io(hyper::Error),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge { limit } => write!(f, "request body over {limit} bytes"),
            BodyError::TimedOut => f.write_str("request body timed out"),
            BodyError::Io(e) => write!(f, "reading the request body: {e}"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BodyError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// What went wrong with a request's body, for the connection's wrapper.
#[derive(Debug, Default)]
pub(crate) struct Fault(AtomicU8);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultKind {
    TooLarge,
    TimedOut,
}

impl Fault {
    pub(crate) fn get(&self) -> Option<FaultKind> {
        match self.0.load(Relaxed) {
            1 => Some(FaultKind::TooLarge),
            2 => Some(FaultKind::TimedOut),
            _ => None,
        }
    }

    fn set(&self, k: FaultKind) {
        self.0.store(
            match k {
                FaultKind::TooLarge => 1,
                FaultKind::TimedOut => 2,
            },
            Relaxed,
        );
    }
}

/// A request body: at most `limit` bytes, with at most `gap` between two reads.
pub struct RequestBody {
    inner: Incoming,
    limit: u64,
    read: u64,
    gap: Duration,
    /// Armed while waiting for the next frame.
    timer: Option<Pin<Box<Sleep>>>,
    fault: Arc<Fault>,
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("limit", &self.limit)
            .field("read", &self.read)
            .finish()
    }
}

impl RequestBody {
    pub(crate) fn new(
        inner: Incoming,
        limit: u64,
        gap: Duration,
        fault: Arc<Fault>,
    ) -> RequestBody {
        RequestBody {
            inner,
            limit,
            read: 0,
            gap,
            timer: None,
            fault,
        }
    }

    fn fail(&mut self, k: FaultKind) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.fault.set(k);
        Poll::Ready(Some(Err(match k {
            FaultKind::TooLarge => BodyError::TooLarge { limit: self.limit },
            FaultKind::TimedOut => BodyError::TimedOut,
        })))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.fault.get().is_some() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.timer = None;
                if let Some(data) = frame.data_ref() {
                    self.read += data.len() as u64;
                    if self.read > self.limit {
                        return self.fail(FaultKind::TooLarge);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Io(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let gap = self.gap;
                let timer = self.timer.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(Instant::now() + gap))
                });
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => self.fail(FaultKind::TimedOut),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
