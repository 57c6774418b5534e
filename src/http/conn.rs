//! One connection: hyper's HTTP/1.1 state machine, the service wrapper that applies the
//! limits and bookkeeping to each request, and a supervisor enforcing the keep-alive and
//! header timeouts, the worker's drain and making room at `--worker-connections`.
//!
//! hyper's own `header_read_timeout` also counts keep-alive idle time and closes the
//! connection without a response, so both timeouts are enforced here instead: the socket
//! records when a request head starts arriving ([`Activity`]), and a timer checks
//! it. A slow head gets a real `408`, written on the socket taken back from hyper.

use super::access_log::Entry;
use super::body::{Fault, FaultKind, RequestBody};
use super::io::{Activity, Conn, Phase, Stream};
use super::{
    json_error, redact, AppService, BoxError, PeerAddr, ResponseBody, Route, Settings, Shared,
    REQUEST_ID,
};
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Incoming};
use hyper::header::{
    HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, REFERER, TRANSFER_ENCODING, USER_AGENT,
};
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) fn builder(s: &Settings) -> http1::Builder {
    let mut b = http1::Builder::new();
    // hyper's own limits sit above ours, so that requests a little over a limit get our
    // JSON answer (with a request id); only grossly oversized heads meet hyper's bare 431.
    // With no per-field limit (0), heads may be as large as 16 MiB.
    let head = if s.limit_request_field_size == 0 {
        16 * 1024 * 1024
    } else {
        (s.limit_request_line + s.limit_request_fields * s.limit_request_field_size + 4096)
            .clamp(8192, 1024 * 1024)
    };
    b.keep_alive(true)
        .header_read_timeout(None)
        // A client that sends a complete request and then shuts down its write side
        // (`printf … | socat`, many scripts) still gets its answer, as from Gunicorn.
        .half_close(true)
        .max_headers(s.limit_request_fields + 64)
        .max_buf_size(head);
    b
}

/// Serves one connection until it closes.
pub(super) async fn run<S: AppService>(
    mut stream: Stream,
    mut peer: Option<SocketAddr>,
    inner: S,
    shared: Arc<Shared>,
    builder: Arc<http1::Builder>,
) {
    if shared.settings.proxy_protocol {
        match proxy_header(&mut stream, peer, &shared.settings).await {
            Ok(Some(client)) => peer = Some(client),
            Ok(None) => {}
            Err(why) => {
                let from = peer.map_or_else(|| "a unix socket".to_string(), |p| p.to_string());
                return tracing::warn!(peer = %from, "PROXY protocol: {why} (from {from}); closing the connection");
            }
        }
    }
    if let Some(acceptor) = &shared.tls {
        if let Stream::Tcp(tcp) = stream {
            match handshake(acceptor, tcp, peer, &shared.settings).await {
                Some(tls) => stream = Stream::Tls(Box::new(tls)),
                None => return,
            }
        }
    }
    if speaks_h2(&stream, &shared.settings).await {
        return serve_h2(stream, peer, inner, shared).await;
    }
    let (svc, activity) = Wrap::new(inner, &shared, peer);
    // Not pinned in place: on a header timeout the socket is taken back (`into_parts`)
    // to answer 408, which needs the connection by value (it is `Unpin`).
    let io = TokioIo::new(Conn::new(stream, activity.clone()));
    let mut conn = builder.serve_connection(io, svc);
    let (keep_alive, header_timeout) = (shared.settings.keep_alive, shared.settings.header_timeout);
    let mut drain = shared.drain_signal();
    let mut closing = false;
    loop {
        let now_ms = crate::sys::monotonic_ms();
        let draining = *drain.borrow_and_update();
        if draining && !closing {
            // Draining: a busy connection closes after its response (it carries
            // `Connection: close`); an idle one closes now, unless it went idle a moment
            // ago: its client is likely sending the next request on it already, and
            // closing under it would fail that request. It gets a short grace instead.
            if let Phase::Idle(since) = activity.phase() {
                if ms_left(since, DRAIN_IDLE_GRACE, now_ms).is_zero() {
                    Pin::new(&mut conn).graceful_shutdown();
                    closing = true;
                }
            }
        }
        let idle_limit = if draining {
            DRAIN_IDLE_GRACE
        } else {
            keep_alive
        };
        let wait = match activity.phase() {
            Phase::Idle(since) => ms_left(since, idle_limit, now_ms),
            Phase::Head(since) => ms_left(since, header_timeout, now_ms),
            Phase::Busy => idle_limit,
        };
        tokio::select! {
            res = &mut conn => {
                if let Err(e) = res {
                    super::log_debug_conn_error(&e);
                }
                return;
            }
            _ = drain.changed(), if !draining => {}
            _ = shared.reclaim.notified(), if !closing => {
                // The worker is at --worker-connections: an idle connection makes room.
                if matches!(activity.phase(), Phase::Idle(_)) {
                    Pin::new(&mut conn).graceful_shutdown();
                    closing = true;
                }
            }
            _ = tokio::time::sleep(wait) => {
                let now_ms = crate::sys::monotonic_ms();
                match activity.phase() {
                    Phase::Idle(since) if ms_left(since, keep_alive, now_ms).is_zero() => {
                        // Idle past keep-alive: hyper closes an idle connection at once.
                        Pin::new(&mut conn).graceful_shutdown();
                        closing = true;
                    }
                    Phase::Head(since) if ms_left(since, header_timeout, now_ms).is_zero() => {
                        request_timeout(conn.into_parts().io.inner(), peer, &shared);
                        return;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The TLS handshake, within the header timeout. A plain HTTP request on the TLS port
/// gets nginx's answer, a 400 that says so; a failed or stalled handshake closes.
async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: Option<SocketAddr>,
    s: &Settings,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(s.header_timeout, tcp.peek(&mut first)).await {
        Ok(Ok(1)) if first[0].is_ascii_uppercase() => {
            let body = r#"{"detail":"The plain HTTP request was sent to HTTPS port."}"#;
            let reply = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\ndate: {}\r\n\r\n{body}",
                body.len(),
                http_date()
            );
            let mut tcp = tcp;
            let _ = tokio::io::AsyncWriteExt::write_all(&mut tcp, reply.as_bytes()).await;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut tcp).await;
            return None;
        }
        Ok(Ok(1)) => {}
        _ => return None,
    }
    match tokio::time::timeout(s.header_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(peer = ?peer, "TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(peer = ?peer, "TLS handshake did not finish within the header timeout");
            None
        }
    }
}

/// Whether this connection speaks HTTP/2: ALPN `h2` on TLS; on plain TCP with
/// `--http auto`, the client's first bytes are HTTP/2's preface (prior knowledge).
async fn speaks_h2(stream: &Stream, s: &Settings) -> bool {
    use super::tls::HttpVersions;
    match (stream, s.http) {
        (_, HttpVersions::One) => false,
        (Stream::Tls(t), _) => t.get_ref().1.alpn_protocol() == Some(b"h2"),
        (_, HttpVersions::Two) => true,
        (Stream::Tcp(t), HttpVersions::Auto) => {
            const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";
            let mut buf = [0u8; 16];
            let deadline = tokio::time::Instant::now() + s.header_timeout;
            loop {
                let n = match tokio::time::timeout_at(deadline, t.peek(&mut buf)).await {
                    Ok(Ok(n)) => n,
                    _ => return false,
                };
                if n == 0 || !PREFACE.starts_with(&buf[..n.min(PREFACE.len())]) {
                    return false;
                }
                if n >= PREFACE.len() {
                    return true;
                }
                // A preface split across packets: wait for more without spinning.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        (Stream::Unix(_), HttpVersions::Auto) => false,
    }
}

/// Serves one HTTP/2 connection: the same service wrapper (limits, request ids, access
/// log, metrics, `--max-requests`), hyper's HTTP/2 protections (concurrent streams,
/// header list size, the rapid-reset bound), GOAWAY on drain and when idle past
/// keep-alive.
async fn serve_h2<S: AppService>(
    stream: Stream,
    peer: Option<SocketAddr>,
    inner: S,
    shared: Arc<Shared>,
) {
    let (svc, activity) = Wrap::new(inner, &shared, peer);
    let st = &shared.settings;
    let header_list = (st.limit_request_fields * st.limit_request_field_size.max(256))
        .clamp(16 * 1024, 1024 * 1024) as u32;
    let mut b = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    b.timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(header_list)
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(256))
        .keep_alive_interval(Some(st.keep_alive))
        .keep_alive_timeout(st.header_timeout);
    let io = TokioIo::new(Conn::binary(stream, activity.clone()));
    let conn = b.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut drain = shared.drain_signal();
    let mut closing = false;
    loop {
        let idle_left = match activity.phase() {
            Phase::Idle(since) => ms_left(since, st.keep_alive, crate::sys::monotonic_ms()),
            _ => st.keep_alive,
        };
        tokio::select! {
            res = &mut conn => {
                if let Err(e) = res {
                    super::log_debug_conn_error(&e);
                }
                return;
            }
            _ = drain.changed(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = shared.reclaim.notified(), if !closing => {
                if matches!(activity.phase(), Phase::Idle(_)) {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            _ = tokio::time::sleep(idle_left), if !closing => {
                if let Phase::Idle(since) = activity.phase() {
                    if ms_left(since, st.keep_alive, crate::sys::monotonic_ms()).is_zero() {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
    }
}

/// Concurrent streams per HTTP/2 connection.
const MAX_STREAMS: u32 = 100;

/// The client a PROXY header names, for a TCP peer in `--proxy-allow-ips` (which must
/// send one, within the header timeout); other peers are served as they are.
async fn proxy_header(
    stream: &mut Stream,
    peer: Option<SocketAddr>,
    s: &Settings,
) -> Result<Option<SocketAddr>, String> {
    let (Stream::Tcp(tcp), Some(p)) = (stream, peer) else {
        return Ok(None);
    };
    if !s.proxy_allow.trusts(p.ip()) {
        return Ok(None);
    }
    match tokio::time::timeout(s.header_timeout, super::proxy_protocol::read(tcp)).await {
        Ok(Ok(super::proxy_protocol::Header::Proxied(client))) => Ok(Some(client)),
        Ok(Ok(super::proxy_protocol::Header::Local)) => Ok(None),
        Ok(Err(why)) => Err(why),
        Err(_) => Err(format!(
            "no complete header within {} s",
            s.header_timeout.as_secs()
        )),
    }
}

/// While draining, how long a connection that has just gone idle is kept for the request
/// its client may already be sending.
const DRAIN_IDLE_GRACE: Duration = Duration::from_millis(250);

fn ms_left(since_ms: u64, limit: Duration, now_ms: u64) -> Duration {
    Duration::from_millis((since_ms + limit.as_millis() as u64).saturating_sub(now_ms))
}

/// `Date` as RFC 9110 §5.6.7 writes it, for the responses the core writes itself.
fn http_date() -> String {
    crate::logging::http_date(crate::storage::now_secs())
}

/// Answers a client that did not finish its request head in time.
fn request_timeout(io: &Conn, peer: Option<SocketAddr>, shared: &Shared) {
    let id = super::request_id(None);
    let body = r#"{"detail":"Request timeout: the request head did not arrive in time."}"#;
    let head = format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\ndate: {}\r\nx-request-id: {}\r\n\r\n",
        body.len(),
        http_date(),
        id.to_str().unwrap_or("-")
    );
    io.write_now_and_close(format!("{head}{body}").as_bytes());
    if let Some(log) = &shared.access_log {
        log.log(&Entry {
            peer,
            method: "-",
            target: "-",
            version: "-",
            status: 408,
            bytes: Some(body.len() as u64),
            referer: None,
            user_agent: None,
            request_id: id.to_str().unwrap_or("-"),
            duration: shared.settings.header_timeout,
            request_headers: &[],
            response_headers: None,
            queued: None,
        });
    }
}

/// The per-connection service around the application.
struct Wrap<S> {
    inner: S,
    activity: Arc<Activity>,
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
}

impl<S> Wrap<S> {
    fn new(inner: S, shared: &Arc<Shared>, peer: Option<SocketAddr>) -> (Wrap<S>, Arc<Activity>) {
        let activity = Activity::new();
        let w = Wrap {
            inner,
            activity: activity.clone(),
            shared: shared.clone(),
            peer,
        };
        (w, activity)
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S: AppService> hyper::service::Service<Request<Incoming>> for Wrap<S> {
    type Response = Response<ResponseBody<S::Body>>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let bare_lf = self.activity.mark_busy();
        let started = Instant::now();
        let metered = crate::metrics::enabled();
        let method = crate::metrics::method_label(req.method());
        let active = metered.then(ActiveRequest::begin);
        let id = super::request_id(req.headers().get(REQUEST_ID));
        let shared = self.shared.clone();
        let activity = self.activity.clone();
        let fwd =
            super::forwarded::from_headers(req.headers(), self.peer, &shared.settings.forwarded);
        // The client, as everything after this point shows and uses it.
        let peer = match fwd.and_then(|f| f.client) {
            Some(ip) => Some(SocketAddr::new(ip, 0)),
            None => self.peer,
        };
        let log = shared.access_log.as_ref().map(|a| Logged::of(&req, a));
        let slot = shared.take_slot();
        if let Some(i) = slot {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            shared.board.slot_begin(
                i,
                req.method().as_str(),
                &redact::target(path),
                id.to_str().unwrap_or(""),
            );
        }
        let queued = super::queue::queued(req.headers());
        if let (Some(q), true) = (queued, metered) {
            crate::metrics::observe_seconds("http_server_queue_time_seconds", &[], q);
        }
        let max_queue = shared.settings.max_queue_time;
        let rejected = if bare_lf {
            Some(protocol_error(
                StatusCode::BAD_REQUEST,
                "Bad request: header lines must end with CRLF.",
            ))
        } else if queued.is_some_and(|q| !max_queue.is_zero() && q > max_queue) {
            // The client (or the router, at 30 s) has likely given up: do not spend a
            // worker on it.
            let q = queued.unwrap_or_default().as_millis();
            let mut r = json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "Request waited too long in the queue ({q} ms, limit {} s).",
                    max_queue.as_secs()
                ),
            );
            r.headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
            Some(r)
        } else {
            check_request(&req, &shared.settings)
        };
        let fault = Arc::new(Fault::default());
        let fut = match rejected {
            Some(resp) => Either::Left(std::future::ready(resp)),
            None => {
                req.headers_mut().insert(REQUEST_ID, id.clone());
                req.extensions_mut().insert(PeerAddr(peer));
                if let Some(https) = fwd.and_then(|f| f.https) {
                    req.extensions_mut().insert(super::ForwardedHttps(https));
                }
                let s = &shared.settings;
                let (limit, gap) = (s.limit_request_body, s.body_timeout);
                let req = req.map(|b| RequestBody::new(b, limit, gap, fault.clone()));
                let app = self.inner.call(req);
                let timeout = s.request_timeout;
                Either::Right(async move {
                    if timeout.is_zero() {
                        Ok(app.await)
                    } else {
                        tokio::time::timeout(timeout, app).await
                    }
                })
            }
        };
        Box::pin(async move {
            let mut resp: Response<ResponseBody<S::Body>> = match fut {
                Either::Left(r) => r.await.map(Either::Left),
                Either::Right(f) => match f.await {
                    Ok(Ok(r)) => r.map(Either::Right),
                    Err(_elapsed) => {
                        // The handler's future is dropped here: it is cancelled at its
                        // next await, and the worker goes on.
                        let secs = shared.settings.request_timeout.as_secs();
                        tracing::warn!(
                            request_id = id.to_str().unwrap_or(""),
                            timeout_s = secs,
                            "Request cancelled: no answer within --request-timeout ({secs} s)"
                        );
                        let mut r = json_error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            &format!("Request timeout: no answer within {secs} s."),
                        );
                        r.headers_mut()
                            .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
                        r.map(Either::Left)
                    }
                    Ok(Err(e)) => {
                        let e: BoxError = e.into();
                        tracing::error!(
                            request_id = id.to_str().unwrap_or(""),
                            "application error: {e}"
                        );
                        json_error(StatusCode::INTERNAL_SERVER_ERROR, super::SERVER_ERROR)
                            .map(Either::Left)
                    }
                },
            };
            // A body the client did not deliver within the limits gets the core's answer,
            // whatever the application made of the error.
            match fault.get() {
                Some(FaultKind::TooLarge) => {
                    resp = too_large(shared.settings.limit_request_body).map(Either::Left)
                }
                Some(FaultKind::TimedOut) => {
                    resp = protocol_error(
                        StatusCode::REQUEST_TIMEOUT,
                        "Request timeout: the request body did not arrive in time.",
                    )
                    .map(Either::Left)
                }
                None => {}
            }
            let headers = resp.headers_mut();
            headers.insert(REQUEST_ID, id.clone());
            if shared.draining() {
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
            }
            if let (Some(log), Some(access)) = (log, &shared.access_log) {
                access.log(&Entry {
                    peer,
                    method: &log.method,
                    target: &log.target,
                    version: log.version,
                    status: resp.status().as_u16(),
                    bytes: resp.body().size_hint().exact(),
                    referer: log.referer.as_deref(),
                    user_agent: log.user_agent.as_deref(),
                    request_id: id.to_str().unwrap_or("-"),
                    duration: started.elapsed(),
                    request_headers: &log.headers,
                    response_headers: Some(resp.headers()),
                    queued,
                });
            }
            if metered {
                let route = resp.extensions().get::<Route>().map_or("other", |r| r.0);
                let status = resp.status().as_u16();
                crate::metrics::observe_request(method, route, status, started.elapsed());
            }
            drop(active);
            if let Some(i) = slot {
                shared.free_slot(i);
            }
            activity.mark_idle();
            shared.request_done();
            Ok(resp)
        })
    }
}

/// One request in `http_server_active_requests`, until it is answered or dropped (hyper
/// drops the future when the client goes away mid-request).
struct ActiveRequest;

impl ActiveRequest {
    fn begin() -> ActiveRequest {
        crate::metrics::active_requests(1);
        ActiveRequest
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        crate::metrics::active_requests(-1);
    }
}

/// What the access log needs from the request, copied (and redacted) before the request
/// moves on.
struct Logged {
    method: String,
    target: String,
    version: &'static str,
    referer: Option<String>,
    user_agent: Option<String>,
    /// The headers `--access-logformat` names.
    headers: Vec<(hyper::header::HeaderName, String)>,
}

impl Logged {
    fn of(req: &Request<Incoming>, log: &super::access_log::AccessLog) -> Logged {
        let headers = log
            .wanted_request_headers()
            .iter()
            .filter_map(|n| {
                let v = req.headers().get(n)?;
                Some((n.clone(), super::access_log::logged_header(n, v.as_bytes())))
            })
            .collect();
        let header = |n| {
            req.headers()
                .get(n)
                .map(|v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let target = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().to_string(), |p| p.to_string());
        Logged {
            headers,
            method: req.method().to_string(),
            target: redact::target(&target).into_owned(),
            version: match req.version() {
                Version::HTTP_10 => "HTTP/1.0",
                Version::HTTP_11 => "HTTP/1.1",
                Version::HTTP_2 => "HTTP/2.0",
                _ => "HTTP",
            },
            referer: header(REFERER).map(|r| redact::target(&r).into_owned()),
            user_agent: header(USER_AGENT).map(|u| redact::jwt(&u).into_owned()),
        }
    }
}

/// A 4xx/5xx the core writes about the request itself; the connection closes after it,
/// since what follows on the wire cannot be trusted.
fn protocol_error(status: StatusCode, detail: &str) -> Response<Full<Bytes>> {
    let mut r = json_error(status, detail);
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

fn too_large(limit: u64) -> Response<Full<Bytes>> {
    protocol_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("Request body is too large (limit {limit} bytes)"),
    )
}

/// The request's framing (RFC 9112) and Gunicorn's limits on the request line and headers,
/// and the body cap when the length is declared up front.
fn check_request(req: &Request<Incoming>, s: &Settings) -> Option<Response<Full<Bytes>>> {
    let h = req.headers();
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1, at most one before.
    let hosts = h.get_all(HOST).iter().count();
    if hosts > 1 || (hosts == 0 && req.version() == Version::HTTP_11) {
        return Some(protocol_error(
            StatusCode::BAD_REQUEST,
            "Bad request: a request must carry exactly one Host header.",
        ));
    }
    // Only `chunked` alone is a transfer coding corral decodes (Gunicorn answers the same).
    let mut codings = h.get_all(TRANSFER_ENCODING).iter();
    if let Some(first) = codings.next() {
        let chunked = first
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked");
        if !chunked || codings.next().is_some() {
            return Some(protocol_error(
                StatusCode::NOT_IMPLEMENTED,
                "Transfer-Encoding other than chunked is not implemented.",
            ));
        }
    }
    if s.limit_request_line > 0 {
        // METHOD SP request-target SP HTTP/1.1
        let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len())
            + req
                .uri()
                .authority()
                .map_or(0, |a| a.as_str().len() + "http://".len());
        let line = req.method().as_str().len() + 1 + target + 1 + 8;
        if line > s.limit_request_line {
            let msg = format!(
                "Request line is too large ({line} > {})",
                s.limit_request_line
            );
            return Some(json_error(StatusCode::URI_TOO_LONG, &msg));
        }
    }
    if h.len() > s.limit_request_fields {
        let msg = format!(
            "Too many header fields ({} > {})",
            h.len(),
            s.limit_request_fields
        );
        return Some(json_error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &msg,
        ));
    }
    if s.limit_request_field_size > 0 {
        for (name, value) in h {
            // Gunicorn counts the whole line: `Name: value` and its CRLF.
            let size = name.as_str().len() + ": ".len() + value.len() + "\r\n".len();
            if size > s.limit_request_field_size {
                let msg = format!(
                    "Header field {name} is too large ({size} > {})",
                    s.limit_request_field_size
                );
                return Some(json_error(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    &msg,
                ));
            }
        }
    }
    let declared = h
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > s.limit_request_body) {
        return Some(too_large(s.limit_request_body));
    }
    None
}
