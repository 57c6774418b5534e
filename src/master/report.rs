//! What the master says about itself: the [`Tally`] of events only it sees (restarts,
//! reloads, durations), the metrics it serves and the `corral status` document.

use super::workers::{Worker, Workers};
use crate::metrics::{self, totals, Kind};
use crate::sys::process;
use crate::sys::scoreboard::State;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Why a worker was replaced, the `cause` label of `corral_worker_restarts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Cause {
    Crash,
    Timeout,
    MaxRequests,
    Reload,
    Ttou,
    Upgrade,
}

impl Cause {
    fn as_str(self) -> &'static str {
        match self {
            Cause::Crash => "crash",
            Cause::Timeout => "timeout",
            Cause::MaxRequests => "max_requests",
            Cause::Reload => "reload",
            Cause::Ttou => "ttou",
            Cause::Upgrade => "upgrade",
        }
    }
}

/// Events only the master sees, counted over its life.
pub(super) struct Tally {
    pub started: Instant,
    restarts: BTreeMap<Cause, u64>,
    reloads_ok: u64,
    reloads_failed: u64,
    pub boot: Option<Duration>,
    pub last_reload: Option<Duration>,
    pub migration: Option<Duration>,
    pub migration_started: Option<Instant>,
    /// The last migration step's outcome, for `corral status`.
    pub migration_state: &'static str,
}

impl Tally {
    pub(super) fn new(migrates: bool) -> Tally {
        Tally {
            started: Instant::now(),
            restarts: BTreeMap::new(),
            reloads_ok: 0,
            reloads_failed: 0,
            boot: None,
            last_reload: None,
            migration: None,
            migration_started: None,
            migration_state: if migrates { "pending" } else { "off" },
        }
    }

    pub(super) fn restarted(&mut self, cause: Cause) {
        *self.restarts.entry(cause).or_default() += 1;
    }

    pub(super) fn reloaded(&mut self, ok: Option<Duration>) {
        match ok {
            Some(d) => {
                self.reloads_ok += 1;
                self.last_reload = Some(d);
            }
            None => self.reloads_failed += 1,
        }
    }

    pub(super) fn migrations_started(&mut self) {
        self.migration_started = Some(Instant::now());
        self.migration_state = "running";
    }

    pub(super) fn migrations_ended(&mut self, ok: bool) {
        self.migration = self.migration_started.take().map(|t| t.elapsed());
        self.migration_state = if ok { "applied" } else { "failed" };
    }
}

/// What a live worker is doing, in words.
fn state(w: &Worker) -> &'static str {
    if w.retire_by.is_some() || w.aborted_at.is_some() {
        return "retiring";
    }
    match w.board.state() {
        State::Booting => "booting",
        State::Ready => "ready",
        State::WantsRetire => "retiring",
        State::Draining => "draining",
    }
}

/// Everything `/metrics` serves.
pub(super) fn metrics(workers: &Workers, tally: &Tally, generation: u64) -> totals::Snapshot {
    let mut s = workers
        .totals
        .snapshot(workers.iter().map(|w| w.board.stats()));
    let mut set =
        |family: &str, labels: &str, kind, v: f64| totals::set(&mut s, family, labels, kind, v);
    for st in ["booting", "ready", "retiring", "draining"] {
        let n = workers.iter().filter(|w| state(w) == st).count();
        set(
            "corral_workers",
            &format!("state=\"{st}\""),
            Kind::Gauge,
            n as f64,
        );
    }
    for c in [
        Cause::Crash,
        Cause::Timeout,
        Cause::MaxRequests,
        Cause::Reload,
        Cause::Ttou,
        Cause::Upgrade,
    ] {
        let n = tally.restarts.get(&c).copied().unwrap_or(0);
        set(
            "corral_worker_restarts_total",
            &format!("cause=\"{}\"", c.as_str()),
            Kind::Counter,
            n as f64,
        );
    }
    set("corral_generation", "", Kind::Gauge, generation as f64);
    set(
        "corral_reloads_total",
        "outcome=\"ok\"",
        Kind::Counter,
        tally.reloads_ok as f64,
    );
    set(
        "corral_reloads_total",
        "outcome=\"failed\"",
        Kind::Counter,
        tally.reloads_failed as f64,
    );
    for (family, d) in [
        ("corral_boot_duration_seconds", tally.boot),
        ("corral_reload_duration_seconds", tally.last_reload),
        ("corral_migration_duration_seconds", tally.migration),
    ] {
        if let Some(d) = d {
            set(family, "", Kind::Gauge, d.as_secs_f64());
        }
    }
    set(
        "corral_requests_total",
        "",
        Kind::Counter,
        workers.requests_served() as f64,
    );
    let live = |f: fn(&Worker) -> f64| workers.iter().map(f).sum::<f64>();
    let active = live(|w| w.board.active_requests() as f64);
    let open = live(|w| w.board.connections() as f64);
    set("http_server_active_requests", "", Kind::Gauge, active);
    set("http_server_open_connections", "", Kind::Gauge, open);
    let accepted = workers.connections_accepted() as f64;
    set("http_server_connections_total", "", Kind::Counter, accepted);
    set(
        "corral_metrics_dropped_total",
        "",
        Kind::Counter,
        workers.dropped_series() as f64,
    );
    let me = process::usage(nix::unistd::getpid()).unwrap_or_default();
    let live: Vec<process::Usage> = workers
        .iter()
        .filter_map(|w| process::usage(w.pid))
        .collect();
    set(
        "process_resident_memory_bytes",
        "process=\"master\"",
        Kind::Gauge,
        me.rss_bytes as f64,
    );
    set(
        "process_resident_memory_bytes",
        "process=\"workers\"",
        Kind::Gauge,
        live.iter().map(|u| u.rss_bytes).sum::<u64>() as f64,
    );
    set(
        "process_cpu_seconds_total",
        "process=\"master\"",
        Kind::Counter,
        me.cpu_secs,
    );
    // Workers that are gone were reaped: their time is in the master's children's usage
    // (with the migration runs', which are workers' work too).
    let workers_cpu =
        process::reaped_children_cpu_secs() + live.iter().map(|u| u.cpu_secs).sum::<f64>();
    set(
        "process_cpu_seconds_total",
        "process=\"workers\"",
        Kind::Counter,
        workers_cpu,
    );
    s
}

/// Encodes [`metrics`] with the core's and the application's descriptions.
pub(super) fn encode(
    s: &totals::Snapshot,
    app: &[metrics::Family],
    format: metrics::Format,
) -> Vec<u8> {
    metrics::encode(s, &[metrics::CORE, app], format).into_bytes()
}

/// Facts about the master for `corral status`.
pub(super) struct MasterFacts<'a> {
    pub generation: u64,
    pub workers_wanted: u32,
    pub phase: &'static str,
    pub config_file: Option<&'a std::path::Path>,
}

/// The `corral status --json` document.
pub(super) fn status(workers: &Workers, tally: &Tally, m: &MasterFacts<'_>) -> Value {
    let now_ms = crate::sys::monotonic_ms();
    let list: Vec<Value> = workers
        .iter()
        .map(|w| {
            let usage = process::usage(w.pid).unwrap_or_default();
            let in_flight: Vec<Value> = w
                .board
                .in_flight()
                .into_iter()
                .map(|r| {
                    json!({
                        "method": r.method,
                        "path": r.path,
                        "request_id": r.request_id,
                        "elapsed_ms": now_ms.saturating_sub(r.started_ms),
                    })
                })
                .collect();
            json!({
                "pid": w.pid.as_raw(),
                "generation": w.generation,
                "state": state(w),
                "age_s": w.spawned_at.elapsed().as_secs_f64(),
                "requests": w.board.requests(),
                "connections": w.board.connections(),
                "rss_bytes": usage.rss_bytes,
                "cpu_s": usage.cpu_secs,
                "in_flight": in_flight,
            })
        })
        .collect();
    json!({
        "ok": true,
        "master": {
            "pid": nix::unistd::getpid().as_raw(),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": tally.started.elapsed().as_secs_f64(),
            "phase": m.phase,
            "generation": m.generation,
            "workers_wanted": m.workers_wanted,
            "config_file": m.config_file.map(|p| p.display().to_string()),
            "migrations": {
                "state": tally.migration_state,
                "duration_s": tally.migration.map(|d| d.as_secs_f64()),
            },
            "requests_total": workers.requests_served(),
            "rss_bytes": process::usage(nix::unistd::getpid()).unwrap_or_default().rss_bytes,
        },
        "workers": list,
    })
}
