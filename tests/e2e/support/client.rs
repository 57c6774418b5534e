//! A small raw HTTP/1.1 client: one-shot requests, keep-alive connections that can send
//! raw bytes, and a load generator that counts every failure.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }
}

/// One request on a new connection (`Connection: close`).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut c = Conn::open(addr);
    let mut h: Vec<(&str, &str)> = headers.to_vec();
    h.push(("Connection", "close"));
    c.request(method, path, &h, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub fn post_json(addr: &str, path: &str, body: &serde_json::Value) -> Response {
    http(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// A keep-alive client connection.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: vec![],
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        self.request_to("test", method, path, headers, body)
    }

    /// [`Conn::request`] with another `Host` (Django's ALLOWED_HOSTS refuses `test`).
    pub fn request_to(
        &mut self,
        host: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes)?;
        if method == "HEAD" {
            self.read_head_response()
        } else {
            self.read_response()
        }
    }

    /// Reads the response to a HEAD request: never a body, whatever its Content-Length.
    pub fn read_head_response(&mut self) -> std::io::Result<Response> {
        self.read_response_inner(true)
    }

    /// Reads one response (Content-Length or chunked bodies, or until close).
    pub fn read_response(&mut self) -> std::io::Result<Response> {
        self.read_response_inner(false)
    }

    fn read_response_inner(&mut self, head_request: bool) -> std::io::Result<Response> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        self.buf.drain(..head_end + 4);
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok());
        let chunked = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        });
        let body = match len {
            // Interim (1xx), 204 and 304 responses have no body.
            _ if head_request || status < 200 || status == 204 || status == 304 => vec![],
            _ if chunked => self.read_chunked()?,
            Some(n) => {
                while self.buf.len() < n {
                    self.fill()?;
                }
                self.buf.drain(..n).collect()
            }
            None => {
                while self.fill().is_ok() {}
                std::mem::take(&mut self.buf)
            }
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// A chunked body, decoded (trailers skipped).
    fn read_chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = vec![];
        loop {
            let line = self.line()?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !self.line()?.is_empty() {}
                return Ok(body);
            }
            while self.buf.len() < size + 2 {
                self.fill()?;
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// The next CRLF-terminated line, without its CRLF.
    fn line(&mut self) -> std::io::Result<String> {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                break i;
            }
            self.fill()?;
        };
        let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 2);
        Ok(line)
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// True when the server has closed the connection (reads EOF).
    pub fn closed_by_peer(&mut self, timeout: Duration) -> bool {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let mut b = [0u8; 1];
        // A close with unread bytes in the server's buffer is a reset, not an EOF.
        matches!(self.stream.read(&mut b), Ok(0))
            || matches!(self.stream.read(&mut b), Ok(0))
            || matches!(self.stream.read(&mut b), Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// A client hammering `path` on `threads` keep-alive connections until stopped; counts
/// successes and every failure (non-200, reset, timeout).
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handles: Vec<std::thread::JoinHandle<(u64, Vec<String>)>>,
}

impl Load {
    pub fn start(addr: &str, path: &str, headers: Vec<(String, String)>, threads: usize) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handles = (0..threads)
            .map(|_| {
                let (addr, path, headers, stop) = (
                    addr.to_string(),
                    path.to_string(),
                    headers.clone(),
                    stop.clone(),
                );
                std::thread::spawn(move || {
                    let (mut ok, mut failures) = (0u64, vec![]);
                    let h: Vec<(&str, &str)> = headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    let mut conn: Option<Conn> = None;
                    while !stop.load(Ordering::Relaxed) {
                        let c = conn.get_or_insert_with(|| Conn::open(&addr));
                        match c.request("GET", &path, &h, b"") {
                            Ok(r) if r.status == 200 => {
                                ok += 1;
                                if r.header("connection")
                                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                                {
                                    conn = None; // the server asked us to reconnect
                                }
                            }
                            Ok(r) => {
                                failures.push(format!("status {}: {}", r.status, r.text()));
                                conn = None;
                            }
                            Err(e) => {
                                failures.push(format!("io: {e}"));
                                conn = None;
                            }
                        }
                    }
                    (ok, failures)
                })
            })
            .collect();
        Load { stop, handles }
    }

    /// Stops the clients; returns (successes, failures).
    pub fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut ok = 0;
        let mut failures = vec![];
        for h in self.handles {
            let (o, f) = h.join().unwrap();
            ok += o;
            failures.extend(f);
        }
        (ok, failures)
    }
}

/// One request's outcome under load.
pub struct Outcome {
    pub sent: Instant,
    pub took: Duration,
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

/// Clients sending `GET /hello/` with an `Authorization` header (each on a keep-alive connection, reopened after any
/// failure) until stopped; every outcome is kept with its time.
pub struct Traffic {
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Requests answered so far (any status).
    pub progress: Arc<std::sync::atomic::AtomicU64>,
    handles: Vec<std::thread::JoinHandle<Vec<Outcome>>>,
}

impl Traffic {
    pub fn start(addr: &str, auth: &str, clients: usize) -> Traffic {
        use std::sync::atomic::Ordering::Relaxed;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let handles = (0..clients)
            .map(|_| {
                let (addr, auth, stop, progress) = (
                    addr.to_string(),
                    auth.to_string(),
                    stop.clone(),
                    progress.clone(),
                );
                std::thread::spawn(move || {
                    let mut out = vec![];
                    let mut conn: Option<Conn> = None;
                    while !stop.load(Relaxed) {
                        let c = conn.get_or_insert_with(|| Conn::open(&addr));
                        let sent = Instant::now();
                        let r = c.request("GET", "/hello/", &[("Authorization", &auth)], b"");
                        let took = sent.elapsed();
                        progress.fetch_add(1, Relaxed);
                        match r {
                            Ok(r) => {
                                let close = r
                                    .header("connection")
                                    .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                                if r.status != 200 || close {
                                    conn = None; // as a client must, on `Connection: close`
                                }
                                out.push(Outcome {
                                    sent,
                                    took,
                                    status: r.status,
                                    retry_after: r.header("retry-after").map(str::to_string),
                                    body: r.text(),
                                });
                            }
                            Err(e) => {
                                conn = None;
                                out.push(Outcome {
                                    sent,
                                    took,
                                    status: 0,
                                    retry_after: None,
                                    body: e.to_string(),
                                });
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        Traffic {
            stop,
            progress,
            handles,
        }
    }

    /// Stops the clients; every outcome, in no particular order.
    pub fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    }
}
