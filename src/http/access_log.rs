//! The access log: one line per response, in Gunicorn's default format or as JSON.
//!
//! Gunicorn's default is `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"`:
//!
//! ```text
//! 127.0.0.1 - - [22/Nov/2026:10:11:12 +0000] "GET /hello/ HTTP/1.1" 200 27 "-" "curl/8.5.0"
//! ```
//!
//! `--access-logformat` takes Gunicorn's atoms instead ([`Template`]).
//!
//! Unlike Gunicorn, client-controlled fields are escaped (`"` and control characters as
//! `\xNN`, nginx-style), so a crafted User-Agent cannot forge a second log line.

use crate::logging::{clf_time, LogFormat, SharedSink};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

/// One logged response.
pub struct Entry<'a> {
    pub peer: Option<SocketAddr>,
    pub method: &'a str,
    pub target: &'a str,
    pub version: &'a str,
    pub status: u16,
    pub bytes: Option<u64>,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub request_id: &'a str,
    pub duration: Duration,
    /// The request headers a template names (`%({name}i)s`), captured before the
    /// request moved on.
    pub request_headers: &'a [(hyper::header::HeaderName, String)],
    pub response_headers: Option<&'a hyper::HeaderMap>,
    /// How long the request waited in front of corral (`X-Request-Start`).
    pub queued: Option<Duration>,
}

/// Where and how access lines are written.
#[derive(Clone)]
pub struct AccessLog {
    sink: SharedSink,
    format: LogFormat,
    template: Option<std::sync::Arc<Template>>,
}

impl AccessLog {
    /// `-` is stdout.
    pub fn open(
        dest: &str,
        format: LogFormat,
        template: Option<Template>,
    ) -> std::io::Result<AccessLog> {
        Ok(AccessLog {
            sink: SharedSink::open(dest, false)?,
            format,
            template: template.map(std::sync::Arc::new),
        })
    }

    /// The request headers the template logs (none without one).
    pub fn wanted_request_headers(&self) -> &[hyper::header::HeaderName] {
        self.template.as_ref().map_or(&[], |t| &t.request_headers)
    }

    pub fn reopen(&self) -> std::io::Result<()> {
        self.sink.reopen()
    }

    pub fn log(&self, e: &Entry<'_>) {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let line = match (self.format, &self.template) {
            (LogFormat::Text, Some(t)) => t.render(e, secs),
            (LogFormat::Text, None) => text_line(e, secs),
            (LogFormat::Json, _) => json_line(e),
        };
        self.sink.write_line(line.as_bytes());
    }
}

fn text_line(e: &Entry<'_>, secs: i64) -> String {
    let mut s = String::with_capacity(160);
    match e.peer {
        Some(a) => {
            let _ = write!(s, "{}", a.ip());
        }
        None => s.push('-'),
    }
    let _ = write!(s, " - - [{}] \"", clf_time(secs));
    escape_into(&mut s, e.method);
    s.push(' ');
    escape_into(&mut s, e.target);
    s.push(' ');
    s.push_str(e.version);
    let _ = write!(s, "\" {} ", e.status);
    match e.bytes {
        Some(b) => {
            let _ = write!(s, "{b}");
        }
        None => s.push('-'),
    }
    s.push_str(" \"");
    escape_into(&mut s, e.referer.unwrap_or("-"));
    s.push_str("\" \"");
    escape_into(&mut s, e.user_agent.unwrap_or("-"));
    s.push_str("\"\n");
    s
}

/// A parsed `--access-logformat`: Gunicorn's `%(atom)s` syntax. Travels as its text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
    request_headers: Vec<hyper::header::HeaderName>,
}

impl TryFrom<String> for Template {
    type Error = String;
    fn try_from(s: String) -> Result<Template, String> {
        Template::parse(&s)
    }
}

impl From<Template> for String {
    fn from(t: Template) -> String {
        t.source
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Atom(char),
    RequestHeader(hyper::header::HeaderName),
    ResponseHeader(hyper::header::HeaderName),
}

/// Gunicorn's atoms, for the error message.
const ATOMS: &str = "h l u t r m U q H s B b f a T D M L p {header}i {header}o";

impl Template {
    /// Parses `%(h)s %(l)s …`; an unknown atom or a malformed one is refused, naming it.
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut pieces = vec![];
        let mut text = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('%') {
            text.push_str(&rest[..i]);
            rest = &rest[i..];
            if let Some(r) = rest.strip_prefix("%%") {
                text.push('%');
                rest = r;
                continue;
            }
            let Some(body) = rest.strip_prefix("%(") else {
                return Err(format!(
                    "a lone % at {rest:?}: write atoms as %(h)s and a percent sign as %%"
                ));
            };
            let Some(end) = body.find(")s") else {
                return Err(format!(
                    "unterminated atom at {rest:?}: write atoms as %(h)s"
                ));
            };
            let atom = &body[..end];
            rest = &body[end + 2..];
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            let header = |name: &str| {
                hyper::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("%({atom})s: {name:?} is not a header name"))
            };
            let piece = match atom {
                a if a.starts_with('{') && a.ends_with("}i") => {
                    Piece::RequestHeader(header(&a[1..a.len() - 2])?)
                }
                a if a.starts_with('{') && a.ends_with("}o") => {
                    Piece::ResponseHeader(header(&a[1..a.len() - 2])?)
                }
                a if a.len() == 1 && "hlutrmUqHsBbfaTDMLp".contains(a) => {
                    Piece::Atom(a.chars().next().expect("one character"))
                }
                a => return Err(format!("unknown atom %({a})s (Gunicorn's atoms: {ATOMS})")),
            };
            pieces.push(piece);
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        let request_headers = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::RequestHeader(h) => Some(h.clone()),
                _ => None,
            })
            .collect();
        Ok(Template {
            source: s.to_string(),
            pieces,
            request_headers,
        })
    }

    fn render(&self, e: &Entry<'_>, secs: i64) -> String {
        let mut s = String::with_capacity(160);
        let (path, query) = e.target.split_once('?').unwrap_or((e.target, ""));
        let micros = e.duration.as_micros();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => s.push_str(t),
                Piece::Atom(a) => {
                    let _ = match a {
                        'h' => match e.peer {
                            Some(addr) => write!(s, "{}", addr.ip()),
                            None => write!(s, "-"),
                        },
                        'l' | 'u' => write!(s, "-"),
                        't' => write!(s, "[{}]", clf_time(secs)),
                        'r' => {
                            escape_into(&mut s, e.method);
                            s.push(' ');
                            escape_into(&mut s, e.target);
                            write!(s, " {}", e.version)
                        }
                        'm' => {
                            escape_into(&mut s, e.method);
                            Ok(())
                        }
                        'U' => {
                            escape_into(&mut s, path);
                            Ok(())
                        }
                        'q' => {
                            escape_into(&mut s, query);
                            Ok(())
                        }
                        'H' => write!(s, "{}", e.version),
                        's' => write!(s, "{}", e.status),
                        'B' => write!(s, "{}", e.bytes.unwrap_or(0)),
                        'b' => match e.bytes {
                            Some(b) => write!(s, "{b}"),
                            None => write!(s, "-"),
                        },
                        'f' => {
                            escape_into(&mut s, e.referer.unwrap_or("-"));
                            Ok(())
                        }
                        'a' => {
                            escape_into(&mut s, e.user_agent.unwrap_or("-"));
                            Ok(())
                        }
                        'T' => write!(s, "{}", e.duration.as_secs()),
                        'D' => write!(s, "{micros}"),
                        'M' => write!(s, "{}", e.duration.as_millis()),
                        'L' => write!(s, "{}.{:06}", micros / 1_000_000, micros % 1_000_000),
                        'p' => write!(s, "<{}>", std::process::id()),
                        _ => Ok(()),
                    };
                }
                Piece::RequestHeader(h) => {
                    let v = e
                        .request_headers
                        .iter()
                        .find(|(n, _)| n == h)
                        .map(|(_, v)| v.as_str());
                    escape_into(&mut s, v.unwrap_or("-"));
                }
                Piece::ResponseHeader(h) => {
                    let v = e.response_headers.and_then(|m| m.get(h));
                    let v = match v {
                        _ if h == hyper::header::SET_COOKIE && v.is_some() => "[redacted]".into(),
                        Some(v) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        None => "-".into(),
                    };
                    escape_into(&mut s, &v);
                }
            }
        }
        s.push('\n');
        s
    }
}

/// A request header's value as a template logs it: credentials never, JWTs masked.
pub(crate) fn logged_header(name: &hyper::header::HeaderName, v: &[u8]) -> String {
    use hyper::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};
    if [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION].contains(name) {
        return "[redacted]".into();
    }
    super::redact::jwt(&String::from_utf8_lossy(v)).into_owned()
}

fn json_line(e: &Entry<'_>) -> String {
    let v = serde_json::json!({
        "time": crate::logging::rfc3339_now(),
        "remote_addr": e.peer.map(|a| a.ip().to_string()),
        "method": e.method,
        "target": e.target,
        "protocol": e.version,
        "status": e.status,
        "bytes": e.bytes,
        "referer": e.referer,
        "user_agent": e.user_agent,
        "request_id": e.request_id,
        "duration_ms": e.duration.as_secs_f64() * 1000.0,
        "queue_ms": e.queued.map(|q| q.as_secs_f64() * 1000.0),
        "pid": std::process::id(),
    });
    let mut line = v.to_string();
    line.push('\n');
    line
}

fn escape_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        match b {
            b'"' | b'\\' => {
                let _ = write!(out, "\\x{b:02X}");
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(ua: &'a str) -> Entry<'a> {
        Entry {
            peer: Some("127.0.0.1:5555".parse().unwrap()),
            method: "GET",
            target: "/hello/?x=1",
            version: "HTTP/1.1",
            status: 200,
            bytes: Some(27),
            referer: None,
            user_agent: Some(ua),
            request_id: "r1",
            duration: Duration::from_millis(2),
            request_headers: &[],
            response_headers: None,
            queued: None,
        }
    }

    #[test]
    fn templates_take_gunicorn_atoms() {
        let t = Template::parse("%(h)s \"%(r)s\" %(s)s %(b)s %(U)s ?%(q)s %(D)s %(L)s %(p)s 100%% %({x-request-id}o)s %({authorization}i)s").unwrap();
        let mut headers = hyper::HeaderMap::new();
        headers.insert("x-request-id", "abc".parse().unwrap());
        let req = [(
            hyper::header::AUTHORIZATION,
            logged_header(&hyper::header::AUTHORIZATION, b"Bearer x"),
        )];
        let e = Entry {
            response_headers: Some(&headers),
            request_headers: &req,
            ..entry("ua")
        };
        let line = t.render(&e, 1_700_000_000);
        let pid = std::process::id();
        assert_eq!(
            line,
            format!("127.0.0.1 \"GET /hello/?x=1 HTTP/1.1\" 200 27 /hello/ ?x=1 2000 0.002000 <{pid}> 100% abc [redacted]\n")
        );
        for bad in ["%(z)s", "%(h", "50%", "%({bad name}i)s"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        assert!(Template::parse("%(z)s")
            .unwrap_err()
            .contains("unknown atom %(z)s"));
    }

    #[test]
    fn gunicorn_format_with_escaping() {
        let line = text_line(&entry("curl/8\"\nforged"), 1_700_000_000);
        assert_eq!(line, "127.0.0.1 - - [14/Nov/2023:22:13:20 +0000] \"GET /hello/?x=1 HTTP/1.1\" 200 27 \"-\" \"curl/8\\x22\\x0Aforged\"\n");
    }

    #[test]
    fn json_is_one_escaped_line() {
        let line = json_line(&entry("a\"b\nc"));
        assert_eq!(line.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["user_agent"], "a\"b\nc");
        assert_eq!(v["status"], 200);
    }
}
