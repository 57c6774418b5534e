//! The one declaration of every configuration key: its type, flag, environment
//! variables, default and help text.
//!
//! Everything that accepts configuration reads this table: the clap flags of `serve`,
//! `check` and `config`; the environment overlay; the `corral.toml` validator; the
//! `corral config` printer. Every key `a.b` can also be set with the environment variable
//! `CORRAL_A_B`; platform variables (`PORT`, `WEB_CONCURRENCY`, `DATABASE_URL`,
//! `SECRET_KEY`) are listed per key and lose to `CORRAL_*` ones.

use super::{AuthConfig, Config, DatabaseConfig};

/// How a key's raw text (flag or environment) and TOML value are checked and converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any string.
    Str,
    /// A filesystem path.
    Path,
    /// An integer in `min..=max`.
    Int { min: i64, max: i64 },
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off` from flags and env).
    Bool,
    /// A list of strings (comma-separated in env; repeat the flag).
    List,
    /// One of a fixed set of strings.
    Enum(&'static [&'static str]),
}

/// One configuration key.
#[derive(Debug)]
pub struct Key {
    /// Dotted path: `workers`, `database.url`, `auth.algorithm`.
    pub path: &'static str,
    pub kind: Kind,
    /// Short flag, Gunicorn's where it has one.
    pub short: Option<char>,
    /// Long flag without the dashes; `None` for file/env-only keys.
    pub flag: Option<&'static str>,
    /// Platform environment variables that also set it (lower precedence than `CORRAL_*`).
    pub platform_env: &'static [&'static str],
    /// Never printed in clear (`corral config` shows its length only).
    pub secret: bool,
    pub help: &'static str,
}

impl Key {
    /// `CORRAL_DATABASE_URL` for `database.url`.
    pub fn env_name(&self) -> String {
        format!(
            "CORRAL_{}",
            self.path.replace('.', "_").to_ascii_uppercase()
        )
    }

    /// `--graceful-timeout` (what users type), or the env name for file/env-only keys.
    pub fn flag_display(&self) -> Option<String> {
        self.flag.map(|f| format!("--{f}"))
    }
}

const LOG_LEVELS: &[&str] = &["debug", "info", "warning", "error", "critical"];
const ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

const fn key(path: &'static str, kind: Kind, help: &'static str) -> Key {
    Key {
        path,
        kind,
        short: None,
        flag: None,
        platform_env: &[],
        secret: false,
        help,
    }
}

const fn flag(
    path: &'static str,
    short: Option<char>,
    flag: &'static str,
    kind: Kind,
    help: &'static str,
) -> Key {
    Key {
        path,
        kind,
        short,
        flag: Some(flag),
        platform_env: &[],
        secret: false,
        help,
    }
}

const SECS: Kind = Kind::Int {
    min: 0,
    max: 31_536_000,
};
const BIG: Kind = Kind::Int {
    min: 0,
    max: i64::MAX,
};

/// Every key, in the order `corral config` prints them.
pub static KEYS: &[Key] = &[
    Key {
        platform_env: &["PORT"],
        ..flag(
            "bind",
            Some('b'),
            "bind",
            Kind::List,
            "Address to listen on: HOST:PORT, [IPv6]:PORT or unix:PATH; repeat for several. \
             Default 127.0.0.1:8000, or 0.0.0.0:$PORT when PORT is set",
        )
    },
    Key {
        platform_env: &["WEB_CONCURRENCY"],
        ..flag(
            "workers",
            Some('w'),
            "workers",
            Kind::Int { min: 1, max: 4096 },
            "Number of worker processes. Default $WEB_CONCURRENCY, else the number of CPUs",
        )
    },
    flag("timeout", Some('t'), "timeout", SECS, "Seconds without a heartbeat before a worker is aborted (SIGABRT, then SIGKILL); also bounds its boot. 0 disables"),
    flag("graceful_timeout", None, "graceful-timeout", SECS, "Seconds stopping workers get to finish in-flight requests before SIGKILL"),
    flag("keep_alive", None, "keep-alive", SECS, "Seconds an idle keep-alive connection stays open"),
    flag("header_timeout", None, "header-timeout", Kind::Int { min: 1, max: 3600 }, "Seconds a client has to send a whole request head; slower clients get 408"),
    flag("max_requests", None, "max-requests", BIG, "Requests a worker serves before it is replaced gracefully; 0 disables"),
    flag("max_requests_jitter", None, "max-requests-jitter", BIG, "Random 0..=J requests added to --max-requests for each worker"),
    flag("limit_request_line", None, "limit-request-line", Kind::Int { min: 0, max: 65_535 }, "Largest request line in bytes (414 above); 0 = hyper's own limit"),
    flag("limit_request_fields", None, "limit-request-fields", Kind::Int { min: 1, max: 32_768 }, "Most header fields per request (431 above)"),
    flag("limit_request_field_size", None, "limit-request-field-size", Kind::Int { min: 0, max: 65_535 }, "Largest header field, name and value, in bytes (431 above); 0 = hyper's own limit"),
    flag("limit_request_body", None, "limit-request-body", BIG, "Largest request body in bytes (413 above)"),
    flag("worker_connections", None, "worker-connections", Kind::Int { min: 1, max: 1_000_000 }, "Most simultaneous connections per worker"),
    flag("backlog", None, "backlog", Kind::Int { min: 1, max: 65_535 }, "Listen backlog of each socket"),
    flag("pid", Some('p'), "pid", Kind::Path, "Pidfile: written after binding, removed at exit"),
    flag("access_logfile", None, "access-logfile", Kind::Str, "Access log file, in Gunicorn's format ('-' = stdout); off when unset"),
    flag("error_logfile", None, "error-logfile", Kind::Str, "Error log file ('-' = stderr)"),
    flag("log_level", None, "log-level", Kind::Enum(LOG_LEVELS), "debug, info, warning, error or critical"),
    flag("log_format", None, "log-format", Kind::Enum(&["text", "json"]), "text (Gunicorn-like lines) or json (one object per line)"),
    flag("reload", None, "reload", Kind::Bool, "Development: restart workers when the config file, the migrations or the binary change"),
    flag("reload_extra_file", None, "reload-extra-file", Kind::List, "Extra file watched by --reload; repeat for several"),
    flag("production", None, "production", Kind::Bool, "Refuse development conveniences such as a generated SECRET_KEY; implied under Heroku (DYNO) and systemd (INVOCATION_ID)"),
    Key {
        platform_env: &["DATABASE_URL"],
        secret: true,
        ..flag("database.url", None, "database-url", Kind::Str, "sqlite://PATH (default sqlite://corral.db) or postgres://…")
    },
    flag("database.migrate", None, "migrate", Kind::Enum(&["apply", "check", "off"]), "At boot: apply pending migrations, check that none is pending, or skip"),
    flag("database.migrations_dir", None, "migrations-dir", Kind::Path, "Read migrations from this directory instead of those built into the binary"),
    key("database.pool_size", Kind::Int { min: 1, max: 1000 }, "Database connections per worker process"),
    key("database.connect_timeout", Kind::Int { min: 1, max: 3600 }, "Seconds to wait for a database connection before answering 503"),
    key("database.lock_timeout", SECS, "Seconds to wait for the migration lock"),
    Key {
        platform_env: &["SECRET_KEY"],
        secret: true,
        ..key("auth.secret_key", Kind::Str, "HMAC signing key (Django's SECRET_KEY), at least 32 bytes in production")
    },
    key("auth.algorithm", Kind::Enum(ALGORITHMS), "Signing algorithm; only this one is accepted"),
    key("auth.signing_key_file", Kind::Path, "PEM private key for RS*/PS*/ES*/EdDSA"),
    key("auth.verifying_key_files", Kind::List, "More PEM public keys accepted by kid (key rotation)"),
    key("auth.access_token_lifetime_secs", Kind::Int { min: 1, max: 31_536_000 }, "Access token lifetime (simplejwt ACCESS_TOKEN_LIFETIME)"),
    key("auth.refresh_token_lifetime_secs", Kind::Int { min: 1, max: 315_360_000 }, "Refresh token lifetime (REFRESH_TOKEN_LIFETIME)"),
    key("auth.rotate_refresh_tokens", Kind::Bool, "Refresh returns a new refresh token too (ROTATE_REFRESH_TOKENS)"),
    key("auth.blacklist_after_rotation", Kind::Bool, "A rotated refresh token is single-use; reuse revokes its family (BLACKLIST_AFTER_ROTATION)"),
    key("auth.update_last_login", Kind::Bool, "Record last_login on each token obtain (UPDATE_LAST_LOGIN)"),
    key("auth.audience", Kind::Str, "aud claim added and required (AUDIENCE)"),
    key("auth.issuer", Kind::Str, "iss claim added and required (ISSUER)"),
    key("auth.leeway_secs", SECS, "Clock leeway for exp, nbf and iat (LEEWAY)"),
    key("auth.auth_header_types", Kind::List, "Accepted Authorization schemes (AUTH_HEADER_TYPES)"),
    key("auth.user_id_claim", Kind::Str, "Claim that carries the user id (USER_ID_CLAIM)"),
    key("auth.check_user_is_active", Kind::Bool, "Refuse tokens of inactive users (CHECK_USER_IS_ACTIVE)"),
    key("auth.max_pbkdf2_iterations", Kind::Int { min: 1, max: 100_000_000 }, "Highest PBKDF2 iteration count a stored Django hash may demand"),
    key("auth.password_hash_threads", Kind::Int { min: 1, max: 64 }, "Threads per worker hashing passwords, off the event loop"),
];

/// The key declared at `path`.
pub fn find(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}

/// Built-in defaults. `workers` is the number of CPUs.
pub fn defaults() -> Config {
    Config {
        bind: vec!["127.0.0.1:8000".into()],
        workers: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        timeout: 30,
        graceful_timeout: 25,
        keep_alive: 5,
        header_timeout: 10,
        max_requests: 0,
        max_requests_jitter: 0,
        limit_request_line: 4094,
        limit_request_fields: 100,
        limit_request_field_size: 8190,
        limit_request_body: 1024 * 1024,
        worker_connections: 1000,
        backlog: 2048,
        pid: None,
        access_logfile: None,
        error_logfile: "-".into(),
        log_level: "info".into(),
        log_format: "text".into(),
        reload: false,
        reload_extra_file: vec![],
        production: false,
        database: DatabaseConfig {
            url: "sqlite://corral.db".into(),
            migrate: "apply".into(),
            migrations_dir: None,
            pool_size: 4,
            connect_timeout: 5,
            lock_timeout: 120,
        },
        auth: AuthConfig {
            secret_key: None,
            algorithm: "HS256".into(),
            signing_key_file: None,
            verifying_key_files: vec![],
            access_token_lifetime_secs: 300,
            refresh_token_lifetime_secs: 86_400,
            rotate_refresh_tokens: false,
            blacklist_after_rotation: true,
            update_last_login: false,
            audience: None,
            issuer: None,
            leeway_secs: 0,
            auth_header_types: vec!["Bearer".into()],
            user_id_claim: "user_id".into(),
            check_user_is_active: true,
            max_pbkdf2_iterations: 3_000_000,
            password_hash_threads: 1,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of `Config` is declared in `KEYS`, and every declared key is a field:
    /// a key added to one but not the other fails here, not in production.
    #[test]
    fn schema_matches_struct() {
        let mut c = defaults();
        // Fill the optional fields so they appear in the serialised form.
        c.pid = Some("x".into());
        c.access_logfile = Some("-".into());
        c.database.migrations_dir = Some("x".into());
        c.auth.secret_key = Some("x".into());
        c.auth.signing_key_file = Some("x".into());
        c.auth.audience = Some("x".into());
        c.auth.issuer = Some("x".into());
        let table = toml::Table::try_from(&c).unwrap();
        let mut paths = vec![];
        for (k, v) in &table {
            match v {
                toml::Value::Table(t) => paths.extend(t.keys().map(|s| format!("{k}.{s}"))),
                _ => paths.push(k.clone()),
            }
        }
        let mut declared: Vec<String> = KEYS.iter().map(|k| k.path.to_string()).collect();
        paths.sort();
        declared.sort();
        assert_eq!(paths, declared);
    }

    /// The README documents every key and flag: one added here and not there fails.
    #[test]
    fn readme_documents_every_key_and_flag() {
        let readme = include_str!("../../README.md");
        for k in KEYS {
            assert!(
                readme.contains(&format!("`{}`", k.path)),
                "README lacks key {}",
                k.path
            );
            if let Some(f) = k.flag {
                assert!(
                    readme.contains(&format!("--{f}")),
                    "README lacks flag --{f}"
                );
            }
        }
    }
}
