//! The access log: one line per response, in Gunicorn's default format or as JSON.
//!
//! Gunicorn's default is `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"`:
//!
//! ```text
//! 127.0.0.1 - - [22/Nov/2026:10:11:12 +0000] "GET /hello/ HTTP/1.1" 200 27 "-" "curl/8.5.0"
//! ```
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
}

/// Where and how access lines are written.
#[derive(Clone)]
pub struct AccessLog {
    sink: SharedSink,
    format: LogFormat,
}

impl AccessLog {
    /// `-` is stdout.
    pub fn open(dest: &str, format: LogFormat) -> std::io::Result<AccessLog> {
        Ok(AccessLog {
            sink: SharedSink::open(dest, false)?,
            format,
        })
    }

    pub fn reopen(&self) -> std::io::Result<()> {
        self.sink.reopen()
    }

    pub fn log(&self, e: &Entry<'_>) {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let line = match self.format {
            LogFormat::Text => text_line(e, secs),
            LogFormat::Json => json_line(e),
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
        }
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
