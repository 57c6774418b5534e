//! Log output: the error log (tracing events) and the access log, in text or JSON, to
//! stderr/stdout or to files that `USR1` reopens.
//!
//! Text lines look like Gunicorn's — `[2026-11-22 10:11:12 +0000] [4242] [INFO] Booting
//! worker with pid: 4243`; the structured fields appear in JSON lines only. Under Heroku
//! (`DYNO` set) the timestamp is left out because the platform adds its own. On a terminal
//! lines are compact and coloured. JSON lines are one object per event, escaped by
//! serde_json, so a header value can never forge a log line.
//!
//! Nothing here starts a thread: the master must stay single-threaded.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// Where a log goes.
#[derive(Debug)]
enum Sink {
    Stderr,
    Stdout,
    File { path: PathBuf, file: File },
}

impl Sink {
    fn open(dest: &str, default_stderr: bool) -> io::Result<Sink> {
        match dest {
            "-" if default_stderr => Ok(Sink::Stderr),
            "-" => Ok(Sink::Stdout),
            path => {
                let path = PathBuf::from(path);
                let file = OpenOptions::new().create(true).append(true).open(&path)?;
                Ok(Sink::File { path, file })
            }
        }
    }

    fn write_line(&mut self, line: &[u8]) {
        // One write per line: with O_APPEND, lines from several processes never interleave.
        let _ = match self {
            Sink::Stderr => io::stderr().write_all(line),
            Sink::Stdout => io::stdout().write_all(line),
            Sink::File { file, .. } => file.write_all(line),
        };
    }

    fn reopen(&mut self) -> io::Result<()> {
        if let Sink::File { path, file } = self {
            *file = OpenOptions::new().create(true).append(true).open(&*path)?;
        }
        Ok(())
    }

    fn is_terminal(&self) -> bool {
        match self {
            Sink::Stderr => io::stderr().is_terminal(),
            Sink::Stdout => io::stdout().is_terminal(),
            Sink::File { .. } => false,
        }
    }
}

/// A log destination shared by every writer of this process, reopenable on USR1.
#[derive(Debug, Clone)]
pub(crate) struct SharedSink(Arc<Mutex<Sink>>);

impl SharedSink {
    pub(crate) fn open(dest: &str, default_stderr: bool) -> io::Result<SharedSink> {
        Ok(SharedSink(Arc::new(Mutex::new(Sink::open(
            dest,
            default_stderr,
        )?))))
    }

    pub(crate) fn write_line(&self, line: &[u8]) {
        if let Ok(mut s) = self.0.lock() {
            s.write_line(line);
        }
    }

    pub(crate) fn reopen(&self) -> io::Result<()> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("log sink poisoned"))?
            .reopen()
    }

    fn is_terminal(&self) -> bool {
        self.0.lock().map(|s| s.is_terminal()).unwrap_or(false)
    }
}

/// `--log-format`: text (Gunicorn-like lines) or JSON (one object per line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    /// The values `--log-format` accepts.
    pub const NAMES: &'static [&'static str] = &["text", "json"];
}

/// `--log-level`: Gunicorn's five levels (`critical` logs what `error` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warning,
    Error,
    Critical,
}

impl LogLevel {
    /// The values `--log-level` accepts (case-insensitive).
    pub const NAMES: &'static [&'static str] = &["debug", "info", "warning", "error", "critical"];

    fn tracing(self) -> Level {
        match self {
            LogLevel::Debug => Level::DEBUG,
            LogLevel::Info => Level::INFO,
            LogLevel::Warning => Level::WARN,
            LogLevel::Error | LogLevel::Critical => Level::ERROR,
        }
    }
}

/// What `init` needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) level: LogLevel,
    pub(crate) format: LogFormat,
    pub(crate) error_logfile: String,
    /// `master`, `worker`, `migrate`, `cli`: added to JSON lines.
    pub(crate) role: &'static str,
}

/// Handle kept by the process to reopen its error log on USR1.
#[derive(Debug, Clone)]
pub(crate) struct Handle {
    sink: SharedSink,
}

impl Handle {
    pub(crate) fn reopen(&self) -> io::Result<()> {
        self.sink.reopen()
    }
}

/// Installs the global tracing subscriber.
pub(crate) fn init(s: &Settings) -> io::Result<Handle> {
    let sink = SharedSink::open(&s.error_logfile, true)?;
    let level = s.level.tracing();
    let style = if s.format == LogFormat::Json {
        Style::Json
    } else if sink.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) {
        // no-color.org: a non-empty NO_COLOR turns colours off.
        Style::Terminal
    } else if std::env::var_os("DYNO").is_some() {
        Style::Heroku
    } else {
        Style::Plain
    };
    // Libraries speak only when something is wrong: sqlx logs every statement at info.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(level)
        .with_target("sqlx", Level::WARN)
        .with_target("hyper", Level::WARN)
        .with_target("hyper_util", Level::WARN)
        .with_target("rustls", Level::WARN);
    let layer = LineLayer {
        sink: sink.clone(),
        style,
        role: s.role,
        pid: std::process::id(),
    };
    let subscriber = tracing_subscriber::registry().with(layer.with_filter(filter));
    // A second init in the same process (tests) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(Handle { sink })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Heroku,
    Terminal,
    Json,
}

struct LineLayer {
    sink: SharedSink,
    style: Style,
    role: &'static str,
    pid: u32,
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(&'static str, serde_json::Value)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.rest.push((
                field.name(),
                serde_json::Value::String(format!("{value:?}")),
            ));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.rest
                .push((field.name(), serde_json::Value::String(value.to_string())));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.rest.push((field.name(), value.into()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.rest.push((field.name(), value.into()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.rest.push((field.name(), value.into()));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.rest.push((field.name(), value.into()));
    }
}

fn gunicorn_level(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        _ => "DEBUG",
    }
}

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let level = event.metadata().level();
        let mut line = String::with_capacity(128);
        if self.style == Style::Json {
            let mut obj = serde_json::Map::new();
            obj.insert("time".into(), rfc3339_now().into());
            obj.insert(
                "level".into(),
                gunicorn_level(level).to_ascii_lowercase().into(),
            );
            obj.insert("pid".into(), self.pid.into());
            obj.insert("role".into(), self.role.into());
            obj.insert("message".into(), f.message.into());
            for (k, v) in f.rest {
                obj.insert(k.into(), v);
            }
            line = serde_json::Value::Object(obj).to_string();
        } else {
            match self.style {
                Style::Plain => {
                    let _ = write!(line, "[{}] ", gunicorn_time_now());
                }
                Style::Terminal => {
                    let t = gunicorn_time_now();
                    let _ = write!(line, "\x1b[2m{}\x1b[0m ", &t[11..19]);
                }
                _ => {}
            }
            let lvl = gunicorn_level(level);
            if self.style == Style::Terminal {
                let color = match *level {
                    Level::ERROR => "31",
                    Level::WARN => "33",
                    Level::INFO => "32",
                    _ => "34",
                };
                let _ = write!(line, "\x1b[{color}m{lvl:<7}\x1b[0m [{}] ", self.pid);
            } else {
                let _ = write!(line, "[{}] [{lvl}] ", self.pid);
            }
            // Text lines are the message alone, as Gunicorn's; structured fields are for
            // the JSON format, where they cannot be confused with the message.
            push_escaped(&mut line, &f.message);
        }
        line.push('\n');
        self.sink.write_line(line.as_bytes());
    }
}

/// Control characters (a newline in a client-supplied path, say) cannot start a new line.
fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// `1 worker`, `3 workers`: a count and its noun, for log lines.
pub(crate) fn count(n: impl Into<u64>, noun: &str) -> String {
    count_as(n, noun, &format!("{noun}s"))
}

/// [`count`] for a noun whose plural is not `-s`.
pub(crate) fn count_as(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Civil date from a Unix time (UTC), Howard Hinnant's algorithm.
pub(crate) fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem / 60 % 60, rem % 60)
}

fn now() -> (i64, u32) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_millis())
}

/// `2026-11-22 10:11:12 +0000`
pub(crate) fn gunicorn_time_now() -> String {
    let (y, mo, d, h, mi, s) = civil(now().0);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} +0000")
}

/// `2026-11-22T10:11:12.345Z`
pub(crate) fn rfc3339_now() -> String {
    let (secs, ms) = now();
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// `Sun, 22 Nov 2026 10:11:12 GMT`: HTTP's `Date` (RFC 9110 §5.6.7, IMF-fixdate).
pub(crate) fn http_date(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let (y, mo, d, h, mi, s) = civil(secs);
    format!(
        "{}, {d:02} {} {y:04} {h:02}:{mi:02}:{s:02} GMT",
        DAYS[secs.div_euclid(86_400).rem_euclid(7) as usize],
        MONTHS[(mo - 1) as usize]
    )
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `22/Nov/2026:10:11:12 +0000`, the access log's `%(t)s` (without brackets).
pub(crate) fn clf_time(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!(
        "{d:02}/{}/{y:04}:{h:02}:{mi:02}:{s:02} +0000",
        MONTHS[(mo - 1) as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(1_700_000_000), (2023, 11, 14, 22, 13, 20));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(clf_time(1_700_000_000), "14/Nov/2023:22:13:20 +0000");
        assert_eq!(http_date(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn escapes_control_characters() {
        let mut s = String::new();
        push_escaped(&mut s, "GET /a\nINFO forged");
        assert_eq!(s, "GET /a\\nINFO forged");
    }
}
