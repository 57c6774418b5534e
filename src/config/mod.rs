//! The validated configuration of a corral process, and how it is assembled.
//!
//! One [`Config`] value describes everything a master, a worker or a `migrate` command
//! needs. It is built from four layers, each overriding the one below:
//! **flags > environment > `corral.toml` > defaults** (see [`load`]). Every key is declared
//! once in [`schema::KEYS`], which drives the flags, the environment variables, file
//! validation, `corral config` and the README tables, so they cannot drift apart.
//!
//! Config keys carry the names of their flags (`--graceful-timeout` is
//! `graceful_timeout`), following Gunicorn, so one name works everywhere. Durations are
//! whole seconds unless the key name says otherwise.

pub mod load;
pub mod schema;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub use load::{ConfigError, Layers, Loaded, Origin};

/// Everything a corral process is configured with. Built by [`load::load`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Addresses to listen on: `HOST:PORT`, `[V6]:PORT` or `unix:/path`.
    pub bind: Vec<String>,
    /// Number of worker processes.
    pub workers: u32,
    /// Seconds without a heartbeat (or without booting) before a worker is aborted; 0 = off.
    pub timeout: u64,
    /// Seconds a stopping worker may take to finish in-flight requests before SIGKILL.
    pub graceful_timeout: u64,
    /// Seconds an idle keep-alive connection is kept open.
    pub keep_alive: u64,
    /// Seconds a client may take to send a complete request head (408 after that).
    pub header_timeout: u64,
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
    /// Pidfile written after binding and removed at exit.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pid: Option<PathBuf>,
    /// Access log destination (`-` is stdout); off when unset.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub access_logfile: Option<String>,
    /// Error log destination (`-` is stderr).
    pub error_logfile: String,
    /// `debug`, `info`, `warning`, `error` or `critical`.
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: String,
    /// Development: reload workers when the config, migrations or binary change.
    pub reload: bool,
    /// Extra files watched by `--reload`.
    pub reload_extra_file: Vec<PathBuf>,
    /// Refuse development conveniences (generated secret key). On under Heroku and systemd.
    pub production: bool,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
}

/// `[database]`: where the data lives and how migrations run at boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path` or `postgres://…` (Heroku's `DATABASE_URL`).
    pub url: String,
    /// What `serve` does with migrations at boot: `apply`, `check` or `off`.
    pub migrate: String,
    /// Load migrations from this directory instead of the ones built into the binary.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub migrations_dir: Option<PathBuf>,
    /// Connections per worker process.
    pub pool_size: u64,
    /// Seconds to wait for a connection before answering 503.
    pub connect_timeout: u64,
    /// Seconds to wait for the migration lock before giving up.
    pub lock_timeout: u64,
}

/// `[auth]`: the bundled JWT app, named after djangorestframework-simplejwt's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// HMAC secret (Django's `SECRET_KEY`); generated and stored in development when unset.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secret_key: Option<String>,
    /// `HS256` (default), `HS384`, `HS512`, `RS256`, `ES256`, `EdDSA`, …
    pub algorithm: String,
    /// PEM private key used to sign, for asymmetric algorithms.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub signing_key_file: Option<PathBuf>,
    /// Further PEM public keys accepted when verifying (key rotation), chosen by `kid`.
    pub verifying_key_files: Vec<PathBuf>,
    pub access_token_lifetime_secs: u64,
    pub refresh_token_lifetime_secs: u64,
    pub rotate_refresh_tokens: bool,
    pub blacklist_after_rotation: bool,
    pub update_last_login: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub audience: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub issuer: Option<String>,
    pub leeway_secs: u64,
    pub auth_header_types: Vec<String>,
    pub user_id_claim: String,
    pub check_user_is_active: bool,
    /// Highest PBKDF2 iteration count a stored Django hash may demand.
    pub max_pbkdf2_iterations: u64,
    /// Threads per worker that hash passwords, off the event loop.
    pub password_hash_threads: u64,
}

/// The `--migrate` modes of `corral serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrateMode {
    Apply,
    Check,
    Off,
}

impl Config {
    pub fn migrate_mode(&self) -> MigrateMode {
        match self.database.migrate.as_str() {
            "check" => MigrateMode::Check,
            "off" => MigrateMode::Off,
            _ => MigrateMode::Apply,
        }
    }

    /// Serialises the whole configuration (secrets included) for a child process.
    pub fn to_handoff(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("Config always serialises")
    }

    /// Reads what [`Config::to_handoff`] wrote.
    pub fn from_handoff(bytes: &[u8]) -> Result<Config, ConfigError> {
        serde_json::from_slice(bytes).map_err(|e| {
            ConfigError::new(format!(
                "corrupt configuration handed over by the master: {e}"
            ))
        })
    }
}
