//! The one declaration of every configuration key: its type, flag, environment
//! variables, default and help text.
//!
//! Everything that accepts configuration reads a [`Schema`]: the core's [`KEYS`] plus the
//! application's own [`Section`] (`[auth]` for the bundled JWT app). It drives the clap
//! flags of `serve`, `check` and `config`; the environment overlay; the `corral.toml`
//! validator; the `corral config` printer. Every key `a.b` can also be set with the
//! environment variable `CORRAL_A_B`; platform variables (`PORT`, `WEB_CONCURRENCY`,
//! `DATABASE_URL`, `SECRET_KEY`) are listed per key and lose to `CORRAL_*` ones.

use super::{AppSection, Config};
use crate::logging::{LogFormat, LogLevel};
use crate::storage::{self, DbUrl, MigrateMode};
use crate::sys::listener::BindAddr;

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
    /// How `corral config` prints a value that is secret only in part (a URL's password).
    pub redact: Option<fn(&str) -> String>,
    /// The parser of each string value, when the key is typed beyond its [`Kind`]: the
    /// same parser that builds the typed [`Config`] field, so the error can name the key
    /// and where the value came from.
    pub parse: Option<ParseFn>,
    pub help: &'static str,
}

/// A key's own parser: `Err(why)` for a value its typed field would refuse.
pub type ParseFn = fn(&str) -> Result<(), String>;

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

/// A key without a flag (file and environment only).
pub const fn key(path: &'static str, kind: Kind, help: &'static str) -> Key {
    Key {
        path,
        kind,
        short: None,
        flag: None,
        platform_env: &[],
        secret: false,
        redact: None,
        parse: None,
        help,
    }
}

/// A key with a flag.
pub const fn flag(
    path: &'static str,
    short: Option<char>,
    flag: &'static str,
    kind: Kind,
    help: &'static str,
) -> Key {
    Key {
        flag: Some(flag),
        short,
        ..key(path, kind, help)
    }
}

/// Whole seconds, up to a year.
pub const SECS: Kind = Kind::Int {
    min: 0,
    max: 31_536_000,
};
const BIG: Kind = Kind::Int {
    min: 0,
    max: i64::MAX,
};

fn parse_bind(s: &str) -> Result<(), String> {
    BindAddr::parse(s).map(drop).map_err(|e| e.to_string())
}

fn parse_trusted(s: &str) -> Result<(), String> {
    // Gunicorn's form is one comma-separated string, as a flag or in the environment.
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part != "*" {
            crate::http::forwarded::IpNet::parse(part)?;
        }
    }
    Ok(())
}

fn parse_logformat(s: &str) -> Result<(), String> {
    crate::http::access_log::Template::parse(s).map(drop)
}

fn parse_control_socket(s: &str) -> Result<(), String> {
    super::ControlSocket::try_from(s.to_string()).map(drop)
}

fn parse_pg_url(s: &str) -> Result<(), String> {
    match DbUrl::parse(s) {
        Ok(u) if u.dialect() == storage::Dialect::Postgres => Ok(()),
        _ => Err("expected postgres://…".to_string()),
    }
}

fn parse_db_url(s: &str) -> Result<(), String> {
    DbUrl::parse(s)
        .map(drop)
        .map_err(|_| "expected sqlite://PATH or postgres://…".to_string())
}

/// An application's own `[section]` of the configuration: its keys (paths
/// `section.key`), their defaults, and the checks that need more than one key.
#[derive(Debug)]
pub struct Section {
    pub name: &'static str,
    pub keys: &'static [Key],
    /// The defaults, as the section's TOML table (every key that has one).
    pub defaults: fn() -> toml::Table,
    /// Cross-key checks on the merged section: `Err((key path, why))`.
    pub validate: fn(&toml::Table) -> Result<(), (&'static str, String)>,
}

/// The keys one binary accepts: the core's, then its application's section.
#[derive(Debug)]
pub(crate) struct Schema {
    section: Option<&'static Section>,
}

impl Schema {
    pub const fn new(section: Option<&'static Section>) -> Schema {
        Schema { section }
    }

    /// The application's section, if it has one.
    pub fn section(&self) -> Option<&'static Section> {
        self.section
    }

    /// Every key, in the order `corral config` prints them.
    pub fn keys(&self) -> impl Iterator<Item = &'static Key> + Clone + '_ {
        KEYS.iter()
            .chain(self.section.into_iter().flat_map(|s| s.keys.iter()))
    }

    /// The key declared at `path`.
    pub fn find(&self, path: &str) -> Option<&'static Key> {
        self.keys().find(|k| k.path == path)
    }

    /// The sections a file may hold: `[database]` and the application's.
    pub fn is_section(&self, name: &str) -> bool {
        name == "database" || self.section.is_some_and(|s| s.name == name)
    }

    /// The defaults of every key, as one TOML table.
    pub fn defaults_table(&self) -> toml::Table {
        let mut t = toml::Table::try_from(defaults()).expect("defaults serialise");
        t.remove("app");
        if let Some(s) = self.section {
            t.insert(s.name.into(), toml::Value::Table((s.defaults)()));
        }
        t
    }
}

/// The core's keys, in the order `corral config` prints them.
pub(crate) static KEYS: &[Key] = &[
    Key {
        platform_env: &["PORT"],
        parse: Some(parse_bind),
        ..flag(
            "bind",
            Some('b'),
            "bind",
            Kind::List,
            "Address to listen on: HOST:PORT, [IPv6]:PORT or unix:PATH; repeat for several; \
             0.0.0.0:$PORT when PORT is set",
        )
    },
    Key {
        platform_env: &["WEB_CONCURRENCY"],
        ..flag(
            "workers",
            Some('w'),
            "workers",
            Kind::Int { min: 1, max: 4096 },
            "Number of worker processes; $WEB_CONCURRENCY when set, else the number of CPUs",
        )
    },
    flag("threads", None, "threads", Kind::Int { min: 1, max: 256 }, "Event-loop threads per worker process (Gunicorn's --threads); above 1, a preempted thread's connections are served by the others"),
    flag("timeout", Some('t'), "timeout", SECS, "Seconds without a heartbeat before a worker is aborted (SIGABRT, then SIGKILL); also bounds its boot. 0 disables"),
    flag("shutdown_delay", None, "shutdown-delay", SECS, "On TERM, keep serving this long with /readyz answering 503 (so a load balancer or Kubernetes stops sending), then drain; 0 drains at once"),
    flag("graceful_timeout", None, "graceful-timeout", SECS, "Seconds stopping workers get to finish in-flight requests before SIGKILL"),
    flag("keep_alive", None, "keep-alive", SECS, "Seconds an idle keep-alive connection stays open"),
    flag("header_timeout", None, "header-timeout", Kind::Int { min: 1, max: 3600 }, "Seconds a client has to send a whole request head; slower clients get 408"),
    flag("body_timeout", None, "body-timeout", Kind::Int { min: 1, max: 3600 }, "Longest gap in seconds between two reads of a request body (nginx's client_body_timeout); slower bodies get 408"),
    flag("max_queue_time", None, "max-queue-time", SECS, "A request whose X-Request-Start (Heroku's router, nginx's t=…) says it waited longer than this gets 503 at once; 0 disables"),
    flag("request_timeout", None, "request-timeout", SECS, "A handler running longer than this is cancelled and answered 503; the worker lives. 0 disables"),
    flag("maintenance_interval", None, "maintenance-interval", SECS, "Seconds between runs of the application's maintenance in a short-lived child of the master (the JWT app: deleting expired refresh tokens); 0 disables"),
    flag("max_requests", None, "max-requests", BIG, "Requests a worker serves before it is replaced gracefully; 0 disables"),
    flag("max_requests_jitter", None, "max-requests-jitter", BIG, "Random 0..=J requests added to --max-requests for each worker"),
    flag("limit_request_line", None, "limit-request-line", Kind::Int { min: 0, max: 65_535 }, "Largest request line in bytes (414 above); 0 = hyper's own limit"),
    flag("limit_request_fields", None, "limit-request-fields", Kind::Int { min: 1, max: 32_768 }, "Most header fields per request (431 above)"),
    flag("limit_request_field_size", None, "limit-request-field-size", Kind::Int { min: 0, max: 65_535 }, "Longest header field line in bytes, `Name: value` and its CRLF as Gunicorn counts it (431 above); 0 = hyper's own limit"),
    flag("limit_request_body", None, "limit-request-body", BIG, "Largest request body in bytes (413 above)"),
    flag("worker_connections", None, "worker-connections", Kind::Int { min: 1, max: 1_000_000 }, "Most simultaneous connections per worker; at the limit, idle keep-alive connections close to make room"),
    flag("backlog", None, "backlog", Kind::Int { min: 1, max: 65_535 }, "Listen backlog of each socket"),
    Key {
        parse: Some(|s| crate::sys::privileges::user(s).map(drop)),
        ..flag("user", Some('u'), "user", Kind::Str, "Run as this user (name or uid) once the sockets are bound: the workers, the migration runner and the master itself; needs root")
    },
    Key {
        parse: Some(|s| crate::sys::privileges::group(s).map(drop)),
        ..flag("group", Some('g'), "group", Kind::Str, "Run as this group (name or gid); default: the --user's own group. Unix sockets corral binds are given to it")
    },
    Key {
        parse: Some(|s| crate::sys::privileges::parse_mode(s).map(drop)),
        ..flag("umask", Some('m'), "umask", Kind::Str, "The umask of the master and its children, in octal (0022); unset: inherited")
    },
    flag("chdir", None, "chdir", Kind::Path, "Change to this directory first: relative paths (the database, logs, pidfile) resolve from it"),
    Key {
        parse: Some(|s| crate::sys::privileges::parse_mode(s).map(drop)),
        ..flag("bind_mode", None, "bind-mode", Kind::Str, "Mode of the unix sockets corral binds, in octal (0660 with --group www-data lets nginx in); unset: as the umask leaves it")
    },
    flag("pid", Some('p'), "pid", Kind::Path, "Pidfile: written after binding, removed at exit"),
    Key {
        platform_env: &["FORWARDED_ALLOW_IPS"],
        parse: Some(parse_trusted),
        ..flag("forwarded_allow_ips", None, "forwarded-allow-ips", Kind::List, "Proxies whose X-Forwarded-For, X-Forwarded-Proto and Forwarded headers give the client's address and scheme: addresses or CIDR blocks, comma-separated or repeated; * trusts every peer (the default under Heroku, DYNO set); unix-socket peers are always trusted")
    },
    flag("certfile", None, "certfile", Kind::Path, "TLS on every TCP bind: the certificate, with its chain (PEM); needs --keyfile. Unix sockets stay plain"),
    flag("keyfile", None, "keyfile", Kind::Path, "The certificate's private key (PEM); never logged"),
    flag("ca_certs", None, "ca-certs", Kind::Path, "CA certificates (PEM) that sign the client certificates --cert-reqs accepts"),
    flag("cert_reqs", None, "cert-reqs", Kind::Enum(crate::http::tls::CertReqs::NAMES), "Client certificates: none, optional (verified when sent) or required"),
    flag("http", None, "http", Kind::Enum(crate::http::tls::HttpVersions::NAMES), "HTTP versions: 1 (HTTP/1.1), 2 (HTTP/2 only) or auto (both: ALPN on TLS, the HTTP/2 preface on plain TCP)"),
    flag("proxy_protocol", None, "proxy-protocol", Kind::Bool, "TCP connections from --proxy-allow-ips start with a PROXY protocol header, v1 or v2 (HAProxy, AWS NLB), naming the client; a missing or malformed one closes the connection"),
    Key {
        parse: Some(parse_trusted),
        ..flag("proxy_allow_ips", None, "proxy-allow-ips", Kind::List, "Peers that send PROXY headers (with --proxy-protocol): addresses or CIDR blocks, comma-separated; * for every peer. Others are served without one")
    },
    Key {
        parse: Some(parse_bind),
        ..flag("metrics_bind", None, "metrics-bind", Kind::Str, "Where the master serves Prometheus metrics (GET /metrics): HOST:PORT or unix:PATH; off when unset")
    },
    Key {
        parse: Some(parse_control_socket),
        ..flag("control_socket", None, "control-socket", Kind::Str, "The master's control socket, for corral status, ctl and top: a path, `none`, or `default` (beside the pidfile, else $RUNTIME_DIRECTORY or $XDG_RUNTIME_DIR)")
    },
    flag("access_logfile", None, "access-logfile", Kind::Str, "Access log file, in Gunicorn's format ('-' = stdout); off when unset"),
    Key {
        parse: Some(parse_logformat),
        ..flag("access_logformat", None, "access-logformat", Kind::Str, "The access log's format, with Gunicorn's atoms: %(h)s %(l)s %(u)s %(t)s %(r)s %(m)s %(U)s %(q)s %(H)s %(s)s %(B)s %(b)s %(f)s %(a)s %(T)s %(D)s %(M)s %(L)s %(p)s, %({header}i)s and %({header}o)s; Gunicorn's default when unset")
    },
    flag("error_logfile", None, "error-logfile", Kind::Str, "Error log file ('-' = stderr)"),
    flag("log_level", None, "log-level", Kind::Enum(LogLevel::NAMES), "debug, info, warning, error or critical"),
    flag("log_format", None, "log-format", Kind::Enum(LogFormat::NAMES), "text (Gunicorn-like lines) or json (one object per line)"),
    flag("reload", None, "reload", Kind::Bool, "Development: restart workers when the config file, the migrations or the binary change"),
    flag("reload_extra_file", None, "reload-extra-file", Kind::List, "Extra file watched by --reload; repeat for several"),
    flag("production", None, "production", Kind::Bool, "Production mode: the application refuses its development conveniences (the JWT app: a generated, short or placeholder SECRET_KEY); implied under Heroku (DYNO) and systemd (INVOCATION_ID)"),
    Key {
        platform_env: &["DATABASE_URL"],
        redact: Some(storage::url::redact),
        parse: Some(parse_db_url),
        ..flag("database.url", None, "database-url", Kind::Str, "sqlite://PATH (default sqlite://corral.db) or postgres://…")
    },
    flag("database.migrate", None, "migrate", Kind::Enum(MigrateMode::NAMES), "At boot: apply pending migrations, check that none is pending, or skip"),
    flag("database.migrations_dir", None, "migrations-dir", Kind::Path, "Read migrations from this directory instead of those built into the binary"),
    key("database.pool_size", Kind::Int { min: 1, max: 1000 }, "Database connections per worker process; unset: 4 on SQLite, 2 on PostgreSQL (most requests need none there)"),
    Key {
        redact: Some(storage::url::redact),
        parse: Some(parse_pg_url),
        ..key("database.listen_url", Kind::Str, "A direct PostgreSQL connection, for what needs a session: LISTEN (the user-change notifications) and migrations (their lock); set it when database.url goes through a transaction-mode pooler such as PgBouncer")
    },
    key("database.statement_cache", Kind::Bool, "Prepare each statement once per connection and reuse it; false behind a transaction-mode pooler that cannot keep prepared statements (PgBouncer before 1.21)"),
    key("database.connect_timeout", Kind::Int { min: 1, max: 3600 }, "Seconds to wait for a database connection before answering 503"),
    key("database.lock_timeout", SECS, "Seconds to wait for the migration lock"),
    key("database.allow_ephemeral", Kind::Bool, "Allow SQLite under Heroku (DYNO set), where the dyno's disk and every user on it are lost at the next restart (one-off dynos, demos)"),
];

/// Built-in defaults. `workers` is the number of CPUs.
pub(crate) fn defaults() -> Config {
    Config {
        bind: vec![BindAddr::Tcp(([127, 0, 0, 1], 8000).into())],
        threads: 1,
        workers: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        timeout: 30,
        graceful_timeout: 25,
        shutdown_delay: 0,
        keep_alive: 5,
        header_timeout: 10,
        body_timeout: 60,
        maintenance_interval: 3600,
        max_queue_time: 0,
        request_timeout: 0,
        max_requests: 0,
        max_requests_jitter: 0,
        limit_request_line: 4094,
        limit_request_fields: 100,
        limit_request_field_size: 8190,
        limit_request_body: 1024 * 1024,
        worker_connections: 1000,
        backlog: 2048,
        pid: None,
        user: None,
        group: None,
        umask: None,
        chdir: None,
        bind_mode: None,
        forwarded_allow_ips: crate::http::forwarded::Trusted::loopback(),
        certfile: None,
        keyfile: None,
        ca_certs: None,
        cert_reqs: crate::http::tls::CertReqs::None,
        http: crate::http::tls::HttpVersions::Auto,
        proxy_protocol: false,
        proxy_allow_ips: crate::http::forwarded::Trusted::loopback(),
        metrics_bind: None,
        control_socket: super::ControlSocket::Default,
        access_logfile: None,
        access_logformat: None,
        error_logfile: "-".into(),
        log_level: LogLevel::Info,
        log_format: LogFormat::Text,
        reload: false,
        reload_extra_file: vec![],
        production: false,
        database: storage::Settings {
            url: DbUrl::parse("sqlite://corral.db").expect("a valid URL"),
            migrate: MigrateMode::Apply,
            migrations_dir: None,
            pool_size: None,
            listen_url: None,
            statement_cache: true,
            connect_timeout: 5,
            lock_timeout: 120,
            allow_ephemeral: false,
        },
        app: AppSection::default(),
    }
}

/// Fails the calling test if the README lacks one of `keys` or its flag.
#[cfg(test)]
pub(crate) fn assert_documented(keys: &[Key]) {
    let readme = include_str!("../../README.md");
    for k in keys {
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
        c.user = Some("x".into());
        c.group = Some("x".into());
        c.umask = Some(crate::config::Mode(0o22));
        c.chdir = Some("x".into());
        c.certfile = Some("x".into());
        c.keyfile = Some("x".into());
        c.ca_certs = Some("x".into());
        c.bind_mode = Some(crate::config::Mode(0o660));
        c.access_logfile = Some("-".into());
        c.access_logformat = Some(crate::http::access_log::Template::parse("%(h)s").unwrap());
        c.metrics_bind = Some(BindAddr::parse("127.0.0.1:9100").unwrap());
        c.database.migrations_dir = Some("x".into());
        c.database.pool_size = Some(2);
        c.database.listen_url = Some(DbUrl::parse("postgres://h/d").unwrap());
        let mut table = toml::Table::try_from(&c).unwrap();
        table.remove("app");
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
        assert_documented(KEYS);
    }
}
