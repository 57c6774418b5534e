//! The validated configuration of a corral process, and how it is assembled.
//!
//! One [`Config`] value describes everything a master, a worker or a `migrate` command
//! needs. It is built from four layers, each overriding the one below:
//! **flags > environment > `corral.toml` > defaults** (see [`load`]). Every key is declared
//! once in a [`schema::Schema`] (the core's keys and the application's section), which
//! drives the flags, the environment variables, file validation, `corral config` and the
//! README tables, so they cannot drift apart.
//!
//! Values are parsed where they enter and carried typed: bind addresses (resolved once,
//! at load), the database URL, the migrate mode, the log format and level. A child
//! process receives the same typed value through a memfd ([`handoff`]), serialised and
//! read back by the same types.
//!
//! Config keys carry the names of their flags (`--graceful-timeout` is
//! `graceful_timeout`), following Gunicorn, so one name works everywhere. Durations are
//! whole seconds unless the key name says otherwise.

pub(crate) mod handoff;
mod load;
mod platform;
pub(crate) mod preflight;
pub mod schema;

use crate::logging::{LogFormat, LogLevel};
use crate::storage;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub use crate::sys::listener::BindAddr;
pub use load::ConfigError;
pub(crate) use load::{Layers, Loaded};

/// Everything a corral process is configured with. Built by [`Layers::load`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Addresses to listen on.
    pub bind: Vec<BindAddr>,
    /// Number of worker processes.
    pub workers: u32,
    /// tokio runtime threads in each worker (1: a current-thread runtime).
    pub threads: u32,
    /// Seconds without a heartbeat (or without booting) before a worker is aborted; 0 = off.
    pub timeout: u64,
    /// Seconds between TERM and the start of the drain, during which readiness fails and
    /// requests are still served (Kubernetes, load balancers).
    pub shutdown_delay: u64,
    /// Seconds a stopping worker may take to finish in-flight requests before SIGKILL.
    pub graceful_timeout: u64,
    /// Seconds an idle keep-alive connection is kept open.
    pub keep_alive: u64,
    /// Seconds a client may take to send a complete request head (408 after that).
    pub header_timeout: u64,
    /// Longest gap, in seconds, between two reads of a request body (408 after that).
    pub body_timeout: u64,
    /// Seconds a request may have waited in front of corral (`X-Request-Start`) before it
    /// is answered 503 at once; 0 = off.
    pub max_queue_time: u64,
    /// Seconds a handler may run before it is cancelled and answered 503; 0 = off.
    pub request_timeout: u64,
    /// Seconds between runs of the application's maintenance command; 0 = never.
    pub maintenance_interval: u64,
    /// Requests after which a worker retires and is replaced; 0 = never.
    pub max_requests: u64,
    /// Random extra requests (0..=J) added to `max_requests` per worker.
    pub max_requests_jitter: u64,
    /// Largest request line in bytes (Gunicorn: 4094).
    pub limit_request_line: u64,
    /// Most header fields in a request (Gunicorn: 100).
    pub limit_request_fields: u64,
    /// Largest header field (name + value) in bytes (Gunicorn: 8190).
    pub limit_request_field_size: u64,
    /// Largest request body in bytes.
    pub limit_request_body: u64,
    /// Most simultaneous connections per worker; more wait in the kernel backlog.
    pub worker_connections: u64,
    /// Listen backlog of each socket.
    pub backlog: u64,
    /// Switch to this user (name or uid) after binding, before any child starts.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user: Option<String>,
    /// Switch to this group (name or gid); the user's own group by default.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub group: Option<String>,
    /// The umask of the master and its children.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub umask: Option<Mode>,
    /// Change to this directory before anything else (relative paths resolve from it).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub chdir: Option<PathBuf>,
    /// The mode of unix sockets corral binds (`--bind unix:…`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bind_mode: Option<Mode>,
    /// Pidfile written after binding and removed at exit.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pid: Option<PathBuf>,
    /// Peers whose `X-Forwarded-For`/`-Proto` and `Forwarded` headers are believed.
    pub forwarded_allow_ips: crate::http::forwarded::Trusted,
    /// TLS on every TCP bind: the certificate chain (PEM).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub certfile: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub keyfile: Option<PathBuf>,
    /// CAs that sign acceptable client certificates (PEM).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ca_certs: Option<PathBuf>,
    pub cert_reqs: crate::http::tls::CertReqs,
    /// HTTP/1.1, HTTP/2, or both.
    pub http: crate::http::tls::HttpVersions,
    /// TCP connections from `proxy_allow_ips` start with a PROXY protocol header (v1/v2).
    pub proxy_protocol: bool,
    /// Peers that must (and may) send a PROXY header.
    pub proxy_allow_ips: crate::http::forwarded::Trusted,
    /// Where the master serves Prometheus metrics; off when unset.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub metrics_bind: Option<BindAddr>,
    /// The master's control socket (`corral status`, `corral ctl`, `corral top`).
    #[serde(default)]
    pub control_socket: ControlSocket,
    /// Access log destination (`-` is stdout); off when unset.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub access_logfile: Option<String>,
    /// The access log's format, in Gunicorn's atoms; Gunicorn's default when unset.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub access_logformat: Option<crate::http::access_log::Template>,
    /// Error log destination (`-` is stderr).
    pub error_logfile: String,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    /// Development: reload workers when the config, migrations or binary change.
    pub reload: bool,
    /// Extra files watched by `--reload`.
    pub reload_extra_file: Vec<PathBuf>,
    /// Refuse development conveniences (generated secret key). On under Heroku and systemd.
    pub production: bool,
    pub database: storage::Settings,
    /// The application's own section, if it declares one.
    pub app: AppSection,
}

impl Config {
    /// Why this process counts as production, if it does: `--production`, Heroku (`DYNO`
    /// set) or systemd (`INVOCATION_ID` set). Applications refuse their development
    /// conveniences there.
    pub fn production_reason(&self) -> Option<&'static str> {
        if self.production {
            Some("--production")
        } else if std::env::var_os("DYNO").is_some() {
            Some("Heroku (DYNO is set)")
        } else if std::env::var_os("INVOCATION_ID").is_some() {
            Some("systemd (INVOCATION_ID is set)")
        } else {
            None
        }
    }
}

/// A file mode or umask, written in octal (`0660`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mode(pub u32);

impl TryFrom<String> for Mode {
    type Error = String;
    fn try_from(s: String) -> Result<Mode, String> {
        crate::sys::privileges::parse_mode(&s).map(Mode)
    }
}

impl From<Mode> for String {
    fn from(m: Mode) -> String {
        format!("{:04o}", m.0)
    }
}

/// Where the master's control socket goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ControlSocket {
    /// Beside the pidfile, else in `$RUNTIME_DIRECTORY` or `$XDG_RUNTIME_DIR`; none if
    /// there is no such place.
    #[default]
    Default,
    Off,
    At(PathBuf),
}

impl ControlSocket {
    /// The socket's path for a master with `pidfile`, if it has one.
    pub fn path(&self, pidfile: Option<&std::path::Path>) -> Option<PathBuf> {
        match self {
            ControlSocket::Off => None,
            ControlSocket::At(p) => Some(p.clone()),
            ControlSocket::Default => {
                if let Some(p) = pidfile {
                    return Some(p.with_extension("sock"));
                }
                ["RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"]
                    .iter()
                    .filter_map(std::env::var_os)
                    .filter(|d| !d.is_empty())
                    // systemd may list several directories: the first is this unit's.
                    .map(|d| {
                        let d = d
                            .to_string_lossy()
                            .split(':')
                            .next()
                            .unwrap_or("")
                            .to_string();
                        PathBuf::from(d).join("corral.sock")
                    })
                    .next()
            }
        }
    }
}

impl TryFrom<String> for ControlSocket {
    type Error = String;
    fn try_from(s: String) -> Result<ControlSocket, String> {
        match s.as_str() {
            "" => Err("empty path (use `none` to turn the control socket off)".into()),
            "none" => Ok(ControlSocket::Off),
            "default" => Ok(ControlSocket::Default),
            _ => Ok(ControlSocket::At(PathBuf::from(s))),
        }
    }
}

impl From<ControlSocket> for String {
    fn from(c: ControlSocket) -> String {
        match c {
            ControlSocket::Default => "default".into(),
            ControlSocket::Off => "none".into(),
            ControlSocket::At(p) => p.display().to_string(),
        }
    }
}

/// The application's section of the configuration, checked against the application's
/// keys when loaded, and read by the application as its own typed struct.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppSection(toml::Table);

impl AppSection {
    pub(crate) fn new(table: toml::Table) -> AppSection {
        AppSection(table)
    }

    /// The section as the application's settings type.
    pub fn get<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::Value::Table(self.0.clone())
            .try_into()
            .map_err(|e| ConfigError::new(format!("application settings do not fit: {e}")))
    }

    /// Replaces the section (an application's `prepare` hook filling in a value).
    pub fn set<T: Serialize>(&mut self, value: &T) -> Result<(), ConfigError> {
        self.0 = toml::Table::try_from(value)
            .map_err(|e| ConfigError::new(format!("application settings do not serialise: {e}")))?;
        Ok(())
    }

    pub(crate) fn table(&self) -> &toml::Table {
        &self.0
    }
}
