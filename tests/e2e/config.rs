//! Configuration: precedence, validation messages and exit codes, `check`, `config`,
//! Heroku's variables, bind forms, and the pidfile.

use crate::support::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

#[test]
fn check_accepts_good_and_names_the_bad_key() {
    let dir = TempDir::new("check");
    std::fs::write(
        dir.join("corral.toml"),
        "workers = 3\n[database]\nmigrate = \"off\"\n",
    )
    .unwrap();
    let ok = run(dir.path(), &["check"], &[]);
    assert_eq!(ok.code, Some(0), "{ok:?}");
    assert!(ok.stdout.contains("Configuration OK (corral.toml)"));

    std::fs::write(dir.join("corral.toml"), "wrkers = 3\n").unwrap();
    let bad = run(dir.path(), &["check"], &[]);
    assert_eq!(bad.code, Some(2));
    assert_eq!(bad.stderr.trim().lines().count(), 1, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("unknown key `wrkers`"),
        "{}",
        bad.stderr
    );

    std::fs::remove_file(dir.join("corral.toml")).unwrap();
    let env = run(dir.path(), &["check"], &[("WEB_CONCURRENCY", "zero")]);
    assert_eq!(env.code, Some(2));
    assert!(
        env.stderr.contains("`workers` (env WEB_CONCURRENCY)"),
        "{}",
        env.stderr
    );

    // A key file that cannot be loaded stops `serve` itself with 2, naming the key,
    // rather than failing in every worker.
    let no_key = run(
        dir.path(),
        &["serve", "-b", "127.0.0.1:0", "--migrate", "off"],
        &[
            ("CORRAL_AUTH_ALGORITHM", "RS256"),
            ("CORRAL_AUTH_SIGNING_KEY_FILE", "/nonexistent/key.pem"),
        ],
    );
    assert_eq!(no_key.code, Some(2), "{no_key:?}");
    assert!(
        no_key.stderr.contains("/nonexistent/key.pem"),
        "{}",
        no_key.stderr
    );
    assert_eq!(no_key.stderr.matches("Booting worker").count(), 0);

    let flag = run(dir.path(), &["check", "--timeout=-5"], &[]);
    assert_eq!(flag.code, Some(2));
    assert!(
        flag.stderr.contains("`timeout` (flag --timeout)"),
        "{}",
        flag.stderr
    );

    // A usage error is shown whole: the bad flag, clap's suggestion, the usage line.
    let unknown = run(dir.path(), &["serve", "--wrokers", "2"], &[]);
    assert_eq!(unknown.code, Some(2));
    assert!(
        unknown
            .stderr
            .starts_with("corral: unexpected argument '--wrokers' found"),
        "{}",
        unknown.stderr
    );
    assert!(
        unknown.stderr.contains("'--workers'") && unknown.stderr.contains("Usage: corral serve"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn config_prints_effective_values_and_their_origins() {
    let dir = TempDir::new("cfgprint");
    std::fs::write(dir.join("corral.toml"), "timeout = 12\nworkers = 2\n").unwrap();
    let out = run(
        dir.path(),
        &["config", "--keep-alive", "9"],
        &[
            ("WEB_CONCURRENCY", "5"),
            ("SECRET_KEY", "supersecretsupersecretsupersecret123"),
            ("DATABASE_URL", "postgres://u:hunter2@db/x"),
        ],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let has = |s: &str| {
        assert!(
            out.stdout.lines().any(|l| l.contains(s)),
            "missing {s:?} in:\n{}",
            out.stdout
        )
    };
    has("workers = 5");
    has("# env WEB_CONCURRENCY");
    has("timeout = 12");
    has("keep_alive = 9");
    has("# flag --keep-alive");
    has("graceful_timeout = 25");
    assert!(
        !out.stdout.contains("supersecret") && !out.stdout.contains("hunter2"),
        "{}",
        out.stdout
    );
    // The output is TOML that corral itself accepts.
    std::fs::write(dir.join("printed.toml"), &out.stdout).unwrap();
    let again = run(dir.path(), &["check", "-c", "printed.toml"], &[]);
    assert_eq!(again.code, Some(0), "{again:?}");
}

/// PORT (Heroku) sets the default bind to 0.0.0.0:$PORT; WEB_CONCURRENCY the workers.
#[test]
fn heroku_port_and_web_concurrency() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = Corral::builder()
        .args(["--migrate", "off"])
        .env("PORT", port.to_string())
        .env("WEB_CONCURRENCY", "3")
        .start();
    assert_eq!(c.addr, format!("0.0.0.0:{port}"));
    c.wait_workers(3, &[], T);
    assert_eq!(
        http(&format!("127.0.0.1:{port}"), "GET", "/healthz", &[], b"").status,
        200
    );
}

/// Several binds at once: IPv6 loopback and a unix socket, both served.
#[test]
fn binds_ipv6_and_unix_sockets() {
    let dir = TempDir::new("binds");
    let sock = dir.join("app.sock");
    let c = Corral::builder()
        .dir(dir.path())
        .args([
            "--migrate",
            "off",
            "-w",
            "1",
            "-b",
            "127.0.0.1:0",
            "-b",
            &format!("unix:{}", sock.display()),
        ])
        .args(if std::net::TcpListener::bind("[::1]:0").is_ok() {
            vec!["-b", "[::1]:0"]
        } else {
            vec![]
        })
        .start();
    let lines: Vec<String> = c
        .stderr
        .all()
        .into_iter()
        .filter(|l| l.contains("Listening at: "))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("unix:{}", sock.display()))),
        "{lines:?}"
    );
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    if let Some(v6) = lines.iter().find(|l| l.contains("http://[::1]:")) {
        let addr = v6
            .split("http://")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        assert_eq!(http(addr, "GET", "/healthz", &[], b"").status, 200);
    }
    drop(c);
    assert!(!sock.exists(), "the socket file is removed at exit");
}

/// The pidfile holds the master's pid and goes at exit; a stale one is replaced; a live
/// one refuses to start.
#[test]
fn pidfile_lifecycle() {
    let dir = TempDir::new("pid");
    let pid = dir.join("corral.pid");
    std::fs::write(&pid, "999999999\n").unwrap(); // stale
    let mut c = Corral::plain(1)
        .dir(dir.path())
        .args(["--pid", pid.to_str().unwrap()])
        .start();
    assert_eq!(
        std::fs::read_to_string(&pid).unwrap().trim(),
        c.pid.to_string()
    );

    let second = run(
        dir.path(),
        &[
            "serve",
            "-b",
            "127.0.0.1:0",
            "--migrate",
            "off",
            "--pid",
            pid.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(second.code, Some(1));
    assert!(
        second.stderr.contains("is still running"),
        "{}",
        second.stderr
    );

    c.signal("TERM");
    assert_eq!(c.wait_exit(T).and_then(|s| s.code()), Some(0));
    assert!(!pid.exists());
}

/// The annotated sample configuration is valid and lists every key.
#[test]
fn the_sample_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/corral.toml");
    let dir = TempDir::new("sample");
    let out = run(dir.path(), &["check", "-c", path.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    // `corral config` prints `name = value  # origin` or `# name is unset  # origin`.
    let printed = run(dir.path(), &["config"], &[]).stdout;
    let keys: Vec<&str> = printed
        .lines()
        .filter_map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.contains(" is unset") => rest.split(' ').next(),
            Some(_) => None,
            None => l.split(" = ").next().filter(|_| l.contains(" = ")),
        })
        .collect();
    assert!(keys.len() > 40, "{printed}");
    for key in keys {
        assert!(
            text.contains(key),
            "examples/corral.toml does not mention `{key}`"
        );
    }
}

/// The custom-service example, built only on the library: it is served by the same
/// master with no `--migrate` flag (it has no migrations, so boot runs none), and it has
/// none of the JWT app: no `user` command, no `[auth]` keys, no tables.
#[test]
fn the_custom_service_example_is_served_without_the_jwt_app() {
    let exe = std::path::Path::new(BIN)
        .parent()
        .unwrap()
        .join("examples/custom_service");
    if !exe.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs the full `cargo test`, which builds the examples"
        );
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED the_custom_service_example_is_served_without_the_jwt_app: run the full `cargo test` to build the examples");
        return;
    }
    let c = Corral::builder()
        .args(["-b", "127.0.0.1:0", "-w", "2"])
        .exe(&exe)
        .start();
    let r = c.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["hello"], "world");
    assert!(
        r.header("x-request-id").is_some(),
        "corral's hygiene applies to custom services"
    );
    assert_eq!(
        http(&c.addr, "POST", "/echo", &[], &[b'x'; 1000]).json()["bytes"],
        1000
    );
    assert!(
        !c.log().contains("Running migrations"),
        "a service without migrations runs none: {}",
        c.log()
    );
    assert!(
        std::fs::read_dir(&c.dir).unwrap().next().is_none(),
        "no database file was created in {}",
        c.dir.display()
    );
    let before = c.wait_workers(2, &[], T);
    let mark = c.mark();
    c.signal("HUP");
    c.expect_log_after(mark, "reload complete", T);
    c.wait_workers(2, &before, T);

    let output = |args: &[&str]| {
        let o = base_command(&exe, &c.dir).args(args).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (code, help) = output(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(help.contains("serve") && help.contains("migrate"), "{help}");
    assert!(!help.contains("user"), "no user command: {help}");
    let (code, config) = output(&["config"]);
    assert_eq!(code, Some(0));
    assert!(config.contains("[database]"), "{config}");
    assert!(
        !config.contains("[auth]") && !config.contains("secret_key"),
        "no [auth] keys: {config}"
    );
    let (code, _) = output(&["user", "list"]);
    assert_eq!(
        code,
        Some(2),
        "`user` is not a command of the custom service"
    );
}

/// `check` fails wherever `serve` would: a log or pidfile in a directory that does not
/// exist, a missing migrations directory, a pidfile naming a live process; with the
/// code `serve` exits with, and `serve` refuses before `Listening at:`.
#[test]
fn check_refuses_what_serve_would_refuse() {
    let dir = TempDir::new("preflight");
    let live = dir.join("live.pid");
    std::fs::write(&live, format!("{}\n", std::process::id())).unwrap();
    for (args, code, says) in [
        (
            vec!["--error-logfile", "/nonexistent-dir/e.log"],
            1,
            "`error_logfile`",
        ),
        (
            vec!["--access-logfile", "/nonexistent-dir/a.log"],
            1,
            "`access_logfile`",
        ),
        (vec!["--pid", "/nonexistent-dir/c.pid"], 1, "`pid`"),
        (vec!["--pid", live.to_str().unwrap()], 1, "still running"),
        (
            vec!["--migrations-dir", "/nonexistent-dir/migrations"],
            4,
            "`database.migrations_dir`",
        ),
    ] {
        let mut check = vec!["check"];
        check.extend(&args);
        let out = run(dir.path(), &check, &[]);
        assert_eq!(out.code, Some(code), "{args:?}: {out:?}");
        assert!(out.stderr.contains(says), "{args:?}: {out:?}");
        let mut serve = vec!["serve", "-b", "127.0.0.1:0"];
        serve.extend(&args);
        let out = run(dir.path(), &serve, &[]);
        assert_eq!(out.code, Some(code), "{args:?}: {out:?}");
        assert!(out.stderr.contains(says), "{args:?}: {out:?}");
        assert!(
            !out.stderr.contains("Listening at:"),
            "refused before binding: {out:?}"
        );
    }
}

/// The test suite's own variables are not configuration: exported in a shell, as the
/// README suggests, they leave every command working (`CORRAL_TEST_PG` used to make each
/// one fail with "unknown environment variable").
#[test]
fn the_test_suites_variables_leave_commands_working() {
    let dir = TempDir::new("testvars");
    for var in [PG_URL_VAR, ECHO_VAR] {
        assert!(!var.starts_with("CORRAL_"), "{var}");
        let out = run(dir.path(), &["check"], &[(var, "postgres://x@127.0.0.1/y")]);
        assert_eq!(out.code, Some(0), "{var}: {out:?}");
    }
    let out = run(
        dir.path(),
        &["check"],
        &[("CORRAL_TEST_PG", "postgres://x@127.0.0.1/y")],
    );
    assert_eq!(
        out.code,
        Some(2),
        "a CORRAL_ variable is configuration: {out:?}"
    );
}
