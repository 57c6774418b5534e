//! A worker's HTTP/1.1 server: accept loops on the inherited sockets, hyper per
//! connection, and the hygiene every response gets whatever the application.
//!
//! This module knows nothing of JWT or databases. It serves any hyper service taking a
//! [`RequestBody`] and adds, around it:
//! - Gunicorn's request limits (request line, header count, header field size) and a body
//!   cap, answered with JSON 414/431/413 bodies instead of reaching the application;
//! - a header-read timeout (408) against slow clients and a keep-alive idle timeout;
//! - an `X-Request-ID` on every response (the client's when it is well-formed, as Heroku's
//!   router sends it, else a new UUID);
//! - the access log, and the scoreboard entries the master reads when a worker hangs;
//! - graceful draining: on TERM the listeners close, every later response carries
//!   `Connection: close`, and the worker exits once its connections are gone.

pub(crate) mod access_log;
mod body;
mod conn;
pub mod forwarded;
mod io;
mod proxy_protocol;
mod queue;
mod redact;
pub mod tls;

use crate::sys::scoreboard::{Balance, Scoreboard, State, SLOTS};
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use io::Stream;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify, Semaphore};
use tracing::{debug, error, info};

pub use body::{BodyError, RequestBody};
/// Errors applications may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Response bodies: ours (errors) or the application's.
pub(crate) type ResponseBody<B> = Either<Full<Bytes>, B>;

/// What a worker can serve: any hyper service over [`RequestBody`] whose futures and
/// bodies can move between tasks. Implemented for every such service; never implement it
/// by hand.
pub trait AppService: Clone + Send + Sync + 'static {
    type Body: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static;
    type Error: Into<BoxError>;
    fn call(
        &self,
        req: Request<RequestBody>,
    ) -> impl std::future::Future<Output = Result<Response<Self::Body>, Self::Error>> + Send + 'static;
}

/// Names the body type of a service's `Response<B>` (lets [`AppService`] be implemented
/// for every service without an unconstrained type parameter).
pub trait HttpResponse {
    type Body;
    fn into_response(self) -> Response<Self::Body>;
}

impl<B> HttpResponse for Response<B> {
    type Body = B;
    fn into_response(self) -> Response<B> {
        self
    }
}

impl<S> AppService for S
where
    S: hyper::service::Service<Request<RequestBody>> + Clone + Send + Sync + 'static,
    S::Response: HttpResponse,
    <S::Response as HttpResponse>::Body:
        hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Body = <S::Response as HttpResponse>::Body;
    type Error = S::Error;
    fn call(
        &self,
        req: Request<RequestBody>,
    ) -> impl std::future::Future<Output = Result<Response<Self::Body>, Self::Error>> + Send + 'static
    {
        let fut = hyper::service::Service::call(self, req);
        async move { fut.await.map(HttpResponse::into_response) }
    }
}

/// The client's address, in request extensions: the peer's, or the one a trusted proxy
/// forwarded (`--forwarded-allow-ips`; its port is then 0). `None` on a unix socket
/// without forwarding headers.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<std::net::SocketAddr>);

/// Whether the client spoke HTTPS to the proxy in front (`X-Forwarded-Proto` or
/// `Forwarded: proto=` from a trusted peer), in request extensions when it said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardedHttps(pub bool);

/// The endpoint that answered, which a service may put in its response's extensions:
/// the `route` label of the request metrics (a name, never the raw path, so the number
/// of series stays bounded). Responses without one count as `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route(pub &'static str);

/// Longest a worker waits for a less busy sibling to take a connection.
const MAX_DEFER_MS: u32 = 5;

/// The header carrying the request id, in and out (a `HeaderName`, so the three uses
/// per request do not parse the name each time).
pub const REQUEST_ID: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("x-request-id");

/// The `detail` of a 500 (Django's words), for the core's own answer to a failing
/// service and for applications that answer the same way.
pub const SERVER_ERROR: &str = "A server error occurred.";

/// What the worker was told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Run,
    /// Graceful: stop accepting, finish in-flight requests, close keep-alives.
    Drain,
    /// Immediate.
    Quit,
}

/// HTTP settings of one worker, from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) keep_alive: Duration,
    pub(crate) header_timeout: Duration,
    pub(crate) limit_request_line: usize,
    pub(crate) limit_request_fields: usize,
    pub(crate) limit_request_field_size: usize,
    pub(crate) limit_request_body: u64,
    /// Longest gap between two reads of a request body (408 after that).
    pub(crate) body_timeout: Duration,
    /// Requests after which the worker asks to be replaced; 0 = never.
    pub(crate) max_requests: u64,
    pub(crate) worker_connections: usize,
    /// Peers whose forwarding headers are believed.
    pub(crate) forwarded: forwarded::Trusted,
    /// Connections from `proxy_allow` start with a PROXY protocol header.
    pub(crate) proxy_protocol: bool,
    pub(crate) proxy_allow: forwarded::Trusted,
    /// HTTP/1.1, HTTP/2 or both.
    pub(crate) http: tls::HttpVersions,
    /// A request that waited longer in front of corral gets 503 at once; 0 = off.
    pub(crate) max_queue_time: Duration,
    /// A handler running longer is cancelled and answered 503; 0 = off.
    pub(crate) request_timeout: Duration,
}

impl Settings {
    pub(crate) fn from_config(c: &crate::config::Config) -> Settings {
        let jitter = if c.max_requests_jitter > 0 {
            uuid::Uuid::new_v4().as_u128() as u64 % (c.max_requests_jitter + 1)
        } else {
            0
        };
        Settings {
            keep_alive: Duration::from_secs(c.keep_alive.max(1)),
            header_timeout: Duration::from_secs(c.header_timeout.max(1)),
            limit_request_line: c.limit_request_line as usize,
            limit_request_fields: c.limit_request_fields as usize,
            limit_request_field_size: c.limit_request_field_size as usize,
            limit_request_body: c.limit_request_body,
            body_timeout: Duration::from_secs(c.body_timeout.max(1)),
            max_requests: if c.max_requests == 0 {
                0
            } else {
                c.max_requests + jitter
            },
            worker_connections: c.worker_connections as usize,
            forwarded: c.forwarded_allow_ips.clone(),
            http: c.http,
            proxy_protocol: c.proxy_protocol,
            proxy_allow: c.proxy_allow_ips.clone(),
            max_queue_time: Duration::from_secs(c.max_queue_time),
            request_timeout: Duration::from_secs(c.request_timeout),
        }
    }
}

/// State shared by every connection of a worker.
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) board: Arc<Scoreboard>,
    pub(crate) access_log: Option<access_log::AccessLog>,
    /// TLS on the TCP listeners.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    wake: OwnedFd,
    balance: Option<(Arc<Balance>, usize)>,
    draining: AtomicBool,
    /// Flips to true when the worker starts draining: every connection closes once idle.
    drain: watch::Sender<bool>,
    /// At `--worker-connections`: idle keep-alive connections close to make room.
    reclaim: Notify,
    free_slots: AtomicU32,
    connections: AtomicUsize,
    all_closed: Notify,
    accept_errors: Mutex<AcceptErrors>,
}

/// `accept` failures (EMFILE and friends), logged at most every [`ACCEPT_ERROR_EVERY`].
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<std::time::Instant>,
    since: u64,
}

/// How often a run of `accept` failures is logged.
const ACCEPT_ERROR_EVERY: Duration = Duration::from_secs(10);
/// How long a worker stops accepting after a failure (out of descriptors, say).
const ACCEPT_PAUSE: Duration = Duration::from_secs(1);

impl Shared {
    pub(crate) fn new(
        settings: Settings,
        board: Arc<Scoreboard>,
        access_log: Option<access_log::AccessLog>,
        wake: OwnedFd,
        balance: Option<(Arc<Balance>, usize)>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Shared {
        Shared {
            settings,
            board,
            access_log,
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
            wake,
            balance,
            draining: AtomicBool::new(false),
            drain: watch::Sender::new(false),
            reclaim: Notify::new(),
            free_slots: AtomicU32::new((1u32 << SLOTS) - 1),
            connections: AtomicUsize::new(0),
            all_closed: Notify::new(),
            accept_errors: Mutex::new(AcceptErrors::default()),
        }
    }

    /// A connection's view of the drain signal.
    fn drain_signal(&self) -> watch::Receiver<bool> {
        self.drain.subscribe()
    }

    /// Logs an `accept` failure, or counts it when one was logged recently.
    fn accept_failed(&self, e: &std::io::Error) {
        let mut a = self.accept_errors.lock().expect("not poisoned");
        let now = std::time::Instant::now();
        if a.last_logged.is_none_or(|t| now - t >= ACCEPT_ERROR_EVERY) {
            let more = std::mem::take(&mut a.since);
            let also = if more > 0 {
                format!(" ({more} more since the last report)")
            } else {
                String::new()
            };
            error!(
                "accept failed: {e}{also}; not accepting for {} s",
                ACCEPT_PAUSE.as_secs()
            );
            a.last_logged = Some(now);
        } else {
            a.since += 1;
        }
    }

    /// Wakes the master so it looks at this worker's scoreboard now.
    pub(crate) fn wake_master(&self) {
        let _ = nix::unistd::write(&self.wake, b"!");
    }

    fn draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    /// Counts a finished request; at `--max-requests`, asks the master for a replacement.
    fn request_done(&self) {
        let n = self.board.add_request();
        if self.settings.max_requests > 0 && n == self.settings.max_requests {
            info!(
                requests = n,
                "Reached max requests ({n}); asking to be replaced"
            );
            self.board.set_state(State::WantsRetire);
            self.wake_master();
        }
    }

    fn take_slot(&self) -> Option<usize> {
        let mut cur = self.free_slots.load(Relaxed);
        loop {
            if cur == 0 {
                return None;
            }
            let i = cur.trailing_zeros();
            match self
                .free_slots
                .compare_exchange_weak(cur, cur & !(1 << i), Relaxed, Relaxed)
            {
                Ok(_) => return Some(i as usize),
                Err(now) => cur = now,
            }
        }
    }

    fn free_slot(&self, i: usize) {
        self.board.slot_end(i);
        self.free_slots.fetch_or(1 << i, Relaxed);
    }

    fn connection_opened(&self) {
        let n = self.connections.fetch_add(1, Relaxed) + 1;
        self.publish(n);
        crate::metrics::connection_accepted();
    }

    fn connection_closed(&self) {
        let n = self.connections.fetch_sub(1, Relaxed) - 1;
        self.publish(n);
        if n == 0 {
            self.all_closed.notify_waiters();
        }
    }

    /// Tells the master (scoreboard) and the siblings (balance board) how busy we are.
    fn publish(&self, connections: usize) {
        self.board.set_connections(connections as u64);
        if let Some((b, slot)) = &self.balance {
            b.publish(*slot, (!self.draining()).then_some(connections as u64));
        }
    }

    /// Starts publishing on the balance board: this worker accepts from now on.
    pub(crate) fn accepting(&self) {
        self.publish(self.connections.load(Relaxed));
    }

    /// Load-aware accept: while a sibling holds clearly fewer connections, leave the next
    /// one to it, for a few milliseconds at most (so a stuck sibling cannot stall us).
    async fn defer_to_siblings(&self) {
        let Some((b, slot)) = &self.balance else {
            return;
        };
        for _ in 0..MAX_DEFER_MS {
            if !b.busier_than_others(*slot) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// A listening socket handed to the worker.
pub(crate) enum Listening {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Listening {
    /// Wraps an inherited descriptor (must be called inside the runtime).
    pub(crate) fn from_fd(fd: OwnedFd, unix: bool) -> std::io::Result<Listening> {
        if unix {
            let l = std::os::unix::net::UnixListener::from(fd);
            l.set_nonblocking(true)?;
            Ok(Listening::Unix(tokio::net::UnixListener::from_std(l)?))
        } else {
            let l = std::net::TcpListener::from(fd);
            l.set_nonblocking(true)?;
            Ok(Listening::Tcp(tokio::net::TcpListener::from_std(l)?))
        }
    }

    async fn accept(&self) -> std::io::Result<(Stream, Option<std::net::SocketAddr>)> {
        match self {
            Listening::Tcp(l) => {
                let (s, a) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Stream::Tcp(s), Some(a)))
            }
            Listening::Unix(l) => Ok((Stream::Unix(l.accept().await?.0), None)),
        }
    }
}

/// Serves `service` on `listeners` until `stop` says otherwise, then drains.
pub(crate) async fn serve<S: AppService>(
    listeners: Vec<Listening>,
    service: S,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<Stop>,
) {
    let builder = Arc::new(conn::builder(&shared.settings));
    let permits = Arc::new(Semaphore::new(shared.settings.worker_connections));
    let mut accepting = tokio::task::JoinSet::new();
    for l in listeners {
        let (service, shared, builder, permits, stop) = (
            service.clone(),
            shared.clone(),
            builder.clone(),
            permits.clone(),
            stop.clone(),
        );
        accepting.spawn(accept_loop(l, service, shared, builder, permits, stop));
    }
    let how = wait_stop(&mut stop).await;
    // The accept loops end on their own copy of `stop`; their listeners close with them.
    while accepting.join_next().await.is_some() {}
    if how == Stop::Quit {
        return;
    }
    shared.draining.store(true, Relaxed);
    shared.drain.send_replace(true);
    shared.board.set_state(State::Draining);
    shared.publish(shared.connections.load(Relaxed));
    debug!(
        connections = shared.connections.load(Relaxed),
        "Worker draining (pid: {})",
        std::process::id()
    );
    loop {
        let closed = shared.all_closed.notified();
        if shared.connections.load(Relaxed) == 0 {
            break;
        }
        tokio::select! {
            _ = closed => {}
            s = stop.changed() => if s.is_err() || *stop.borrow() == Stop::Quit { break },
        }
    }
}

async fn wait_stop(stop: &mut watch::Receiver<Stop>) -> Stop {
    loop {
        let now = *stop.borrow_and_update();
        if now != Stop::Run {
            return now;
        }
        if stop.changed().await.is_err() {
            return Stop::Quit;
        }
    }
}

async fn accept_loop<S: AppService>(
    listener: Listening,
    service: S,
    shared: Arc<Shared>,
    builder: Arc<hyper::server::conn::http1::Builder>,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<Stop>,
) {
    loop {
        // At the connection limit, idle keep-alive connections make room first; until a
        // connection closes this loop stops accepting, and the kernel queues new
        // connections for the other workers.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                shared.reclaim.notify_waiters();
                tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
                    _ = wait_stop(&mut stop) => return,
                }
            }
        };
        shared.defer_to_siblings().await;
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = wait_stop(&mut stop) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                shared.connection_opened();
                let (service, shared, builder) = (service.clone(), shared.clone(), builder.clone());
                tokio::spawn(async move {
                    conn::run(stream, peer, service, shared.clone(), builder).await;
                    drop(permit);
                    shared.connection_closed();
                });
            }
            Err(e) => {
                // EMFILE and friends: pause instead of spinning (and flooding the log);
                // the connection stays in the backlog for another worker or a later try,
                // and idle keep-alive connections give back their descriptors.
                shared.accept_failed(&e);
                drop(permit);
                shared.reclaim.notify_waiters();
                tokio::select! {
                    _ = tokio::time::sleep(ACCEPT_PAUSE) => {}
                    _ = wait_stop(&mut stop) => return,
                }
            }
        }
    }
}

/// A well-formed incoming `X-Request-ID` (Heroku's rule: 20–200 characters of letters,
/// digits, `+`, `=`, `/`, `-`) is kept; anything else is replaced by a fresh UUID.
pub(crate) fn request_id(incoming: Option<&HeaderValue>) -> HeaderValue {
    if let Some(v) = incoming {
        let b = v.as_bytes();
        if (20..=200).contains(&b.len())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"+=/-".contains(c))
        {
            return v.clone();
        }
    }
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let s = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(s).expect("a UUID is a valid header value")
}

/// A JSON error response with DRF's `{"detail": …}` shape.
pub fn json_error(status: StatusCode, detail: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "detail": detail }).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn log_debug_conn_error(e: &hyper::Error) {
    debug!("connection error: {e}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        let good = HeaderValue::from_static("0123456789abcdef-0123/+=");
        assert_eq!(request_id(Some(&good)), good);
        let short = HeaderValue::from_static("abc");
        assert_ne!(request_id(Some(&short)), short);
        let evil = HeaderValue::from_static("aaaaaaaaaaaaaaaaaaaaaaa bad");
        assert_ne!(request_id(Some(&evil)), evil);
        assert_eq!(request_id(None).len(), 36);
    }
}
