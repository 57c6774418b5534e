//! The master's console: the Prometheus endpoint (`--metrics-bind`) and the control
//! socket (`--control-socket`), served from the master's own loop.
//!
//! No thread and no runtime: the sockets are non-blocking and polled with the master's
//! other descriptors. A client gets a few seconds to send its request and at most
//! [`MAX_CONNS`] may be connected at once, so a slow or hostile client costs the master
//! nothing but a descriptor. What is asked is handed to the arbiter as an [`Ask`]; the
//! arbiter answers with [`Console::reply`], at once or (for `ctl reload` and friends)
//! once the thing is done.
//!
//! The control protocol is one JSON object per line each way: `{"cmd": "status"}` gets
//! `{"ok": true, …}` or `{"ok": false, "error": "…"}`. The socket is mode 0600 and a peer
//! whose uid is not the master's (`SO_PEERCRED`) is answered an error and closed.

use crate::config::{BindAddr, Config};
use crate::error::Halt;
use crate::metrics::Format;
use crate::sys::listener::{self, Listener};
use nix::sys::socket::{getsockopt, sockopt};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Clients connected at once; more are closed as they arrive.
const MAX_CONNS: usize = 32;
/// How long a client has to send its request (a control client waiting for an answer
/// is not timed out: the answer comes when the operation is done).
const REQUEST_TIME: Duration = Duration::from_secs(5);
/// Largest request: an HTTP head, or one control line.
const MAX_REQUEST: usize = 8192;

/// What a client asked.
#[derive(Debug)]
pub(super) enum Ask {
    Metrics { id: u64, format: Format },
    Control { id: u64, cmd: Cmd },
}

/// A control command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cmd {
    Status,
    Reload,
    Ttin,
    Ttou,
    Upgrade,
    Stop { quick: bool },
}

impl Cmd {
    fn parse(line: &[u8]) -> Result<Cmd, String> {
        let v: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| format!("not a JSON object: {e}"))?;
        let quick = v.get("quick").and_then(|q| q.as_bool()).unwrap_or(false);
        Ok(match v.get("cmd").and_then(|c| c.as_str()) {
            Some("status") => Cmd::Status,
            Some("reload") => Cmd::Reload,
            Some("ttin") => Cmd::Ttin,
            Some("ttou") => Cmd::Ttou,
            Some("upgrade") => Cmd::Upgrade,
            Some("stop") => Cmd::Stop { quick },
            Some(other) => {
                return Err(format!(
                    "unknown command {other:?} (status, reload, ttin, ttou, upgrade, stop)"
                ))
            }
            None => return Err("missing \"cmd\"".into()),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Http,
    Control,
}

enum Stream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Stream {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(b),
            Stream::Unix(s) => s.read(b),
        }
    }
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(b),
            Stream::Unix(s) => s.write(b),
        }
    }
}

struct Conn {
    id: u64,
    proto: Proto,
    stream: Stream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Read no more (an HTTP request was taken, or a control command awaits its answer).
    busy: bool,
    close_when_written: bool,
    /// Closed if it has not sent a whole request by then.
    deadline: Option<Instant>,
}

/// The console's sockets and clients.
pub(super) struct Console {
    metrics_at: Option<BindAddr>,
    metrics: Option<Listener>,
    control_at: Option<PathBuf>,
    control: Option<Listener>,
    conns: Vec<Conn>,
    next_id: u64,
    /// Pipelined commands found while answering, handed over on the next poll.
    pending: Vec<Ask>,
}

impl Console {
    /// Binds what `config` asks for. A metrics address that cannot be bound stops the
    /// boot (it was asked for); a control socket in use by another corral is skipped with
    /// a warning, unless its path was given explicitly.
    pub(super) fn open(
        config: &Config,
        pidfile: Option<&std::path::Path>,
    ) -> Result<Console, Halt> {
        let mut c = Console {
            metrics_at: config.metrics_bind.clone(),
            metrics: None,
            control_at: config.control_socket.path(pidfile),
            control: None,
            conns: vec![],
            next_id: 0,
            pending: vec![],
        };
        c.bind_metrics()?;
        if let Err(e) = c.bind_control() {
            if matches!(config.control_socket, crate::config::ControlSocket::At(_)) {
                return Err(e);
            }
            warn!("{e}; running without a control socket (set --control-socket)");
            c.control_at = None;
        }
        Ok(c)
    }

    fn bind_metrics(&mut self) -> Result<(), Halt> {
        if let Some(at) = &self.metrics_at {
            let l = listener::bind(at, 64).map_err(|e| {
                Halt::failure(format!(
                    "Cannot bind --metrics-bind {}: {e}",
                    String::from(at.clone())
                ))
            })?;
            set_nonblocking(&l.fd)?;
            info!(addr = %l.addr, "Serving metrics at: {}/metrics", l.addr);
            self.metrics = Some(l);
        }
        Ok(())
    }

    fn bind_control(&mut self) -> Result<(), Halt> {
        if let Some(path) = &self.control_at {
            let fail = |e: std::io::Error| {
                Halt::failure(format!(
                    "Cannot bind the control socket {}: {e}",
                    path.display()
                ))
            };
            let l = listener::bind(&BindAddr::Unix(path.clone()), 16).map_err(fail)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
            set_nonblocking(&l.fd)?;
            info!(path = %path.display(), "Control socket at: {}", path.display());
            self.control = Some(l);
        }
        Ok(())
    }

    /// The unix socket files the console created (the control socket, a unix metrics
    /// address).
    pub(super) fn socket_paths(&self) -> impl Iterator<Item = &std::path::Path> {
        [&self.metrics, &self.control]
            .into_iter()
            .flatten()
            .filter(|l| l.created_path())
            .filter_map(|l| match &l.addr {
                BindAddr::Unix(p) => Some(p.as_path()),
                _ => None,
            })
    }

    /// Closes the listening sockets (a `USR2` successor binds them next); clients
    /// already connected stay.
    pub(super) fn release(&mut self) {
        self.metrics = None;
        self.control = None;
    }

    /// Binds again after [`Console::release`], when the upgrade did not happen.
    pub(super) fn rebind(&mut self) {
        if self.metrics.is_none() {
            if let Err(e) = self.bind_metrics() {
                warn!("{e}");
            }
        }
        if self.control.is_none() {
            if let Err(e) = self.bind_control() {
                warn!("{e}");
            }
        }
    }

    /// Descriptors to poll, with what to wait for.
    pub(super) fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, bool)> {
        let listeners = [&self.metrics, &self.control]
            .into_iter()
            .flatten()
            .map(|l| (l.fd.as_fd(), false));
        let conns = self
            .conns
            .iter()
            .map(|c| (c.stream.fd(), !c.output.is_empty()));
        listeners.chain(conns).collect()
    }

    /// The earliest time a client must be dropped.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.conns.iter().filter_map(|c| c.deadline).min()
    }

    /// Accepts, reads, writes and times out; returns the requests that arrived.
    pub(super) fn poll(&mut self) -> Vec<Ask> {
        self.accept();
        let mut asks = std::mem::take(&mut self.pending);
        let now = Instant::now();
        for c in self.conns.iter_mut() {
            flush(c);
            if !c.busy && !c.close_when_written {
                read(c, &mut asks);
            }
            if c.deadline.is_some_and(|d| now >= d) && !c.busy {
                c.close_when_written = true;
                c.output.clear();
            }
        }
        self.conns
            .retain(|c| !(c.close_when_written && c.output.is_empty()));
        asks
    }

    fn accept(&mut self) {
        for proto in [Proto::Http, Proto::Control] {
            loop {
                let l = match proto {
                    Proto::Http => &self.metrics,
                    Proto::Control => &self.control,
                };
                let Some(l) = l else { break };
                let Ok(fd) = nix::sys::socket::accept4(
                    std::os::fd::AsRawFd::as_raw_fd(&l.fd),
                    nix::sys::socket::SockFlag::SOCK_CLOEXEC
                        | nix::sys::socket::SockFlag::SOCK_NONBLOCK,
                ) else {
                    break;
                };
                let Ok(fd) = crate::sys::adopt_fd(fd) else {
                    break;
                };
                let stream = match l.addr {
                    BindAddr::Tcp(_) => Stream::Tcp(std::net::TcpStream::from(fd)),
                    BindAddr::Unix(_) => Stream::Unix(std::os::unix::net::UnixStream::from(fd)),
                };
                if self.conns.len() >= MAX_CONNS {
                    debug!("Console: too many clients; closing a new one");
                    continue;
                }
                self.next_id += 1;
                let mut c = Conn {
                    id: self.next_id,
                    proto,
                    stream,
                    input: vec![],
                    output: vec![],
                    busy: false,
                    close_when_written: false,
                    deadline: Some(Instant::now() + REQUEST_TIME),
                };
                if proto == Proto::Control && !same_uid(&c.stream) {
                    warn!("Control socket: refused a client of another user");
                    c.output = control_error(
                        "permission denied: the control socket accepts only its master's user",
                    );
                    c.close_when_written = true;
                    flush(&mut c);
                }
                self.conns.push(c);
            }
        }
    }

    /// Answers request `id`: HTTP answers close the connection; control answers are one
    /// line, and the client may send the next command.
    pub(super) fn reply(&mut self, id: u64, body: Reply) {
        let Some(c) = self.conns.iter_mut().find(|c| c.id == id) else {
            return; // the client went away
        };
        match body {
            Reply::Http {
                status,
                content_type,
                body,
            } => {
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                c.output.extend_from_slice(head.as_bytes());
                c.output.extend_from_slice(&body);
                c.close_when_written = true;
            }
            Reply::Json(v) => {
                c.output.extend_from_slice(v.to_string().as_bytes());
                c.output.push(b'\n');
                c.busy = false;
                c.deadline = None;
            }
        }
        flush(c);
        if !c.busy && !c.close_when_written {
            // A pipelined next command may already be buffered.
            read(c, &mut self.pending);
        }
    }

    /// Whether pipelined commands wait to be handed over (the loop must not sleep).
    pub(super) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// What the arbiter answers.
pub(super) enum Reply {
    Http {
        status: &'static str,
        content_type: &'static str,
        body: Vec<u8>,
    },
    Json(serde_json::Value),
}

fn control_error(msg: &str) -> Vec<u8> {
    let mut v = serde_json::json!({ "ok": false, "error": msg })
        .to_string()
        .into_bytes();
    v.push(b'\n');
    v
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), Halt> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| Halt::failure(format!("fcntl: {e}")))?;
    fcntl(
        fd,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(|e| Halt::failure(format!("fcntl: {e}")))?;
    Ok(())
}

fn same_uid(s: &Stream) -> bool {
    getsockopt(&s.fd(), sockopt::PeerCredentials)
        .is_ok_and(|c| c.uid() == nix::unistd::geteuid().as_raw())
}

fn flush(c: &mut Conn) {
    while !c.output.is_empty() {
        match c.stream.write(&c.output) {
            Ok(0) => {
                c.output.clear();
                c.close_when_written = true;
            }
            Ok(n) => {
                c.output.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                c.output.clear();
                c.close_when_written = true;
            }
        }
    }
}

/// Reads what is there; a complete request becomes an [`Ask`].
fn read(c: &mut Conn, asks: &mut Vec<Ask>) {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(ask) = take_request(c) {
            asks.push(ask);
            return;
        }
        if c.close_when_written {
            return;
        }
        match c.stream.read(&mut buf) {
            Ok(0) => {
                // The client closed: a control client may still wait for its answer.
                if !c.busy {
                    c.output.clear();
                    c.close_when_written = true;
                }
                return;
            }
            Ok(n) => {
                c.input.extend_from_slice(&buf[..n]);
                if c.input.len() > MAX_REQUEST && take_request_end(c).is_none() {
                    c.output = match c.proto {
                        Proto::Http => b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n".to_vec(),
                        Proto::Control => control_error("request too large"),
                    };
                    c.close_when_written = true;
                    flush(c);
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                c.output.clear();
                c.close_when_written = true;
                return;
            }
        }
    }
}

/// Where the buffered request ends, if it is complete.
fn take_request_end(c: &Conn) -> Option<usize> {
    match c.proto {
        Proto::Http => c
            .input
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4),
        Proto::Control => c.input.iter().position(|b| *b == b'\n').map(|i| i + 1),
    }
}

fn take_request(c: &mut Conn) -> Option<Ask> {
    let end = take_request_end(c)?;
    let req: Vec<u8> = c.input.drain(..end).collect();
    match c.proto {
        Proto::Http => {
            c.busy = true;
            c.deadline = None;
            let head = String::from_utf8_lossy(&req);
            let mut lines = head.split("\r\n");
            let line = lines.next().unwrap_or("");
            let mut parts = line.split(' ');
            let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let path = target.split('?').next().unwrap_or("");
            let accept = lines
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("accept"))
                .map(|(_, v)| v.trim().to_string());
            let answer = |status, text: &str| {
                let mut out = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                )
                .into_bytes();
                if method == "HEAD" {
                    out.truncate(out.len() - text.len());
                }
                out
            };
            if method != "GET" && method != "HEAD" {
                c.output = answer(
                    "405 Method Not Allowed",
                    "Only GET /metrics is served here.\n",
                );
            } else if path != "/metrics" && path != "/" {
                c.output = answer("404 Not Found", "Metrics are at /metrics.\n");
            } else {
                return Some(Ask::Metrics {
                    id: c.id,
                    format: Format::negotiate(accept.as_deref()),
                });
            }
            c.close_when_written = true;
            flush(c);
            None
        }
        Proto::Control => {
            let line = req.trim_ascii();
            if line.is_empty() {
                return None;
            }
            match Cmd::parse(line) {
                Ok(cmd) => {
                    c.busy = true;
                    c.deadline = None;
                    Some(Ask::Control { id: c.id, cmd })
                }
                Err(e) => {
                    c.output.extend(control_error(&e));
                    flush(c);
                    None
                }
            }
        }
    }
}
