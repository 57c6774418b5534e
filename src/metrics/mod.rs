//! Metrics: what workers record (this module's functions, lock-free, into their
//! scoreboard's [`Stats`] table) and what the master serves (the [`Totals`] it sums over
//! live and past workers, encoded by [`encode`]).
//!
//! Recording is a no-op until a worker has called [`install`], which it does only when
//! `--metrics-bind` is set; applications may record their own series with [`inc`],
//! [`add`], [`gauge_add`] and [`observe_seconds`], and describe them with [`Family`].

mod encode;
pub(crate) mod totals;

pub use encode::{encode, Format};
pub use totals::Totals;

use crate::sys::scoreboard::Scoreboard;
use crate::sys::stats::{Stats, BUCKETS};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Histogram bucket bounds, in seconds: OpenTelemetry's for `http.server.request.duration`.
pub const BOUNDS: [f64; BUCKETS - 1] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// What a family of series measures, for `# TYPE`.
pub use crate::sys::stats::Kind;

/// A family's name, type and `# HELP` text.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

static BOARD: OnceLock<Arc<Scoreboard>> = OnceLock::new();

/// Starts recording into this worker's scoreboard.
pub(crate) fn install(board: Arc<Scoreboard>) {
    let _ = BOARD.set(board);
}

fn stats() -> Option<&'static Stats> {
    BOARD.get().map(|b| b.stats())
}

/// A request began (`+1`) or ended (`-1`): `http_server_active_requests`, a fixed field
/// of the scoreboard.
pub(crate) fn active_requests(delta: i64) {
    if let Some(b) = BOARD.get() {
        b.add_active(delta);
    }
}

/// `http_server_connections_total`, a fixed field of the scoreboard.
pub(crate) fn connection_accepted() {
    if let Some(b) = BOARD.get() {
        b.connection_accepted();
    }
}

/// Whether this process records metrics.
pub fn enabled() -> bool {
    BOARD.get().is_some()
}

/// Adds one to a counter.
pub fn inc(family: &str, labels: &[(&str, &str)]) {
    add(family, labels, 1);
}

/// Adds `n` to a counter.
pub fn add(family: &str, labels: &[(&str, &str)], n: u64) {
    if let Some(s) = stats() {
        with_name(family, labels, |name| s.add(name, n));
    }
}

/// Moves a gauge (summed over workers) by `delta`.
pub fn gauge_add(family: &str, labels: &[(&str, &str)], delta: i64) {
    if let Some(s) = stats() {
        with_name(family, labels, |name| s.gauge_add(name, delta));
    }
}

/// Sets this worker's share of a gauge (the master sums the workers').
pub fn gauge_set(family: &str, labels: &[(&str, &str)], value: i64) {
    if let Some(s) = stats() {
        with_name(family, labels, |name| s.gauge_set(name, value));
    }
}

/// Records a duration in a histogram with the [`BOUNDS`] buckets.
pub fn observe_seconds(family: &str, labels: &[(&str, &str)], d: Duration) {
    if let Some(s) = stats() {
        let secs = d.as_secs_f64();
        let bucket = BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS - 1);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        with_name(family, labels, |name| s.observe(name, bucket, nanos));
    }
}

/// `http_server_request_duration_seconds` for one request. The series' slot is
/// remembered per thread by (method, route, status), so a request costs a short scan and
/// two atomic adds: no name to build or hash (this runs on every request).
pub(crate) fn observe_request(method: &'static str, route: &'static str, status: u16, d: Duration) {
    use std::cell::RefCell;
    thread_local! {
        static SLOTS: RefCell<Vec<(usize, usize, u16, usize)>> = const { RefCell::new(Vec::new()) };
    }
    let Some(s) = stats() else { return };
    let key = (method.as_ptr() as usize, route.as_ptr() as usize, status);
    let cached = SLOTS.with(|c| {
        c.borrow()
            .iter()
            .find(|e| (e.0, e.1, e.2) == key)
            .map(|e| e.3)
    });
    let slot = match cached {
        Some(i) => i,
        None => {
            let mut code = itoa::Buffer::new();
            let labels = [
                ("http_request_method", method),
                ("http_route", route),
                ("http_response_status_code", code.format(status)),
            ];
            let mut found = None;
            with_name("http_server_request_duration_seconds", &labels, |name| {
                found = s.index(Kind::Histogram, name);
            });
            let Some(i) = found else { return };
            SLOTS.with(|c| {
                let mut c = c.borrow_mut();
                if c.len() < 128 {
                    c.push((key.0, key.1, key.2, i));
                }
            });
            i
        }
    };
    let secs = d.as_secs_f64();
    let bucket = BOUNDS
        .iter()
        .position(|b| secs <= *b)
        .unwrap_or(BUCKETS - 1);
    s.observe_at(
        slot,
        bucket,
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
    );
}

/// The series' key, `family{a="x",b="y"}`, built on the stack (no allocation on the
/// request path); a name too long for the table is dropped and counted.
fn with_name(family: &str, labels: &[(&str, &str)], f: impl FnOnce(&[u8])) {
    let mut buf = [0u8; 256];
    let mut w = Writer {
        buf: &mut buf,
        n: 0,
    };
    w.put(family.as_bytes());
    for (i, (k, v)) in labels.iter().enumerate() {
        w.put(if i == 0 { b"{" } else { b"," });
        w.put(k.as_bytes());
        w.put(b"=\"");
        for c in v.bytes() {
            match c {
                b'\\' => w.put(b"\\\\"),
                b'"' => w.put(b"\\\""),
                b'\n' => w.put(b"\\n"),
                c => w.put(&[c]),
            }
        }
        w.put(b"\"");
    }
    if !labels.is_empty() {
        w.put(b"}");
    }
    let n = if w.n > w.buf.len() { usize::MAX } else { w.n };
    match buf.get(..n) {
        Some(name) => f(name),
        None => f(&[b'x'; 257]), // too long: the table counts it as dropped
    }
}

struct Writer<'a> {
    buf: &'a mut [u8; 256],
    n: usize,
}

impl Writer<'_> {
    fn put(&mut self, b: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.n..self.n + b.len()) {
            dst.copy_from_slice(b);
        }
        self.n += b.len();
    }
}

/// The HTTP method as a bounded label: the standard methods, else `_OTHER`
/// (OpenTelemetry's rule).
pub fn method_label(m: &hyper::Method) -> &'static str {
    use hyper::Method as M;
    match *m {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::OPTIONS => "OPTIONS",
        M::CONNECT => "CONNECT",
        M::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// The series the core records and serves.
pub const CORE: &[Family] = &[
    Family {
        name: "http_server_request_duration_seconds",
        kind: Kind::Histogram,
        help: "Duration of HTTP server requests, by method, route and status code.",
    },
    Family {
        name: "http_server_active_requests",
        kind: Kind::Gauge,
        help: "HTTP requests being served now.",
    },
    Family {
        name: "http_server_open_connections",
        kind: Kind::Gauge,
        help: "Client connections open now.",
    },
    Family {
        name: "http_server_connections_total",
        kind: Kind::Counter,
        help: "Client connections accepted.",
    },
    Family {
        name: "http_server_queue_time_seconds",
        kind: Kind::Histogram,
        help: "Time requests waited in front of corral, from X-Request-Start.",
    },
    Family {
        name: "corral_workers",
        kind: Kind::Gauge,
        help: "Worker processes, by state.",
    },
    Family {
        name: "corral_worker_restarts_total",
        kind: Kind::Counter,
        help: "Workers replaced, by cause (crash, timeout, max_requests, reload, ttou, upgrade).",
    },
    Family {
        name: "corral_generation",
        kind: Kind::Gauge,
        help: "The generation serving (each reload starts a new one).",
    },
    Family {
        name: "corral_reloads_total",
        kind: Kind::Counter,
        help: "Reloads, by outcome (ok, failed).",
    },
    Family {
        name: "corral_boot_duration_seconds",
        kind: Kind::Gauge,
        help: "From the master's start to its first generation being ready.",
    },
    Family {
        name: "corral_reload_duration_seconds",
        kind: Kind::Gauge,
        help: "How long the last successful reload took.",
    },
    Family {
        name: "corral_migration_duration_seconds",
        kind: Kind::Gauge,
        help: "How long the last migration step took.",
    },
    Family {
        name: "corral_requests_total",
        kind: Kind::Counter,
        help: "Requests served, as the scoreboards count them (also when metrics were off at a worker's start).",
    },
    Family {
        name: "corral_metrics_dropped_total",
        kind: Kind::Counter,
        help: "Series a worker could not record (its table was full).",
    },
    Family {
        name: "db_client_connections",
        kind: Kind::Gauge,
        help: "Database pool connections, by state (used, idle), summed over workers.",
    },
    Family {
        name: "db_client_errors_total",
        kind: Kind::Counter,
        help: "Database queries that failed.",
    },
    Family {
        name: "process_resident_memory_bytes",
        kind: Kind::Gauge,
        help: "Resident memory, of the master and of its workers summed.",
    },
    Family {
        name: "process_cpu_seconds_total",
        kind: Kind::Counter,
        help: "CPU time (user and system), of the master and of its workers (live and past) summed.",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_built_and_escaped() {
        let mut got = vec![];
        with_name("f", &[("a", "x\"y\\z\n")], |n| got = n.to_vec());
        assert_eq!(got, br#"f{a="x\"y\\z\n"}"#);
        with_name("f", &[], |n| got = n.to_vec());
        assert_eq!(got, b"f");
        with_name("f", &[("a", &"x".repeat(300))], |n| got = n.to_vec());
        assert!(
            got.len() > 256,
            "too long a name reaches the table's own check"
        );
    }
}
