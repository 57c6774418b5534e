//! Secrets: the rules for `SECRET_KEY` in production, the development key created when
//! there is none, and that no secret, password or token reaches a log.

use super::*;

/// Production (Heroku, systemd or `CORRAL_PRODUCTION`) refuses to serve with a missing,
/// short or placeholder key, saying why, and `check` refuses too.
#[test]
fn production_refuses_a_missing_short_or_placeholder_key() {
    let dir = TempDir::new("secret");
    let serve = |env: &[(&str, &str)]| {
        run(
            dir.path(),
            &["serve", "-b", "127.0.0.1:0", "--migrate", "off"],
            env,
        )
    };
    for (env, want) in [
        (
            vec![
                ("DYNO", "web.1"),
                ("CORRAL_DATABASE_ALLOW_EPHEMERAL", "true"),
            ],
            "Heroku (DYNO is set)",
        ),
        (
            vec![("INVOCATION_ID", "abc")],
            "systemd (INVOCATION_ID is set)",
        ),
        (
            vec![("CORRAL_PRODUCTION", "true"), ("SECRET_KEY", "short")],
            "needs at least 32",
        ),
        (
            vec![
                ("DYNO", "web.1"),
                ("CORRAL_DATABASE_ALLOW_EPHEMERAL", "true"),
                (
                    "SECRET_KEY",
                    "django-insecure-0123456789abcdef0123456789abcdef",
                ),
            ],
            "placeholder",
        ),
    ] {
        let out = serve(&env);
        assert_eq!(out.code, Some(2), "{env:?}: {out:?}");
        assert!(out.stderr.contains(want), "{env:?}: {}", out.stderr);
    }
    let check = run(
        dir.path(),
        &["check"],
        &[
            ("DYNO", "web.1"),
            ("CORRAL_DATABASE_ALLOW_EPHEMERAL", "true"),
        ],
    );
    assert_eq!(check.code, Some(2));
    assert!(
        check.stderr.contains("Heroku (DYNO is set)"),
        "{}",
        check.stderr
    );
}

/// Development: without `SECRET_KEY` a key is generated, kept next to the database with
/// mode 0600, never logged, and the same after a restart (its tokens stay valid).
#[test]
fn development_creates_a_private_key_that_survives_restarts() {
    let dir = TempDir::new("secret");
    let db = TestDb::sqlite();
    let start = || {
        Corral::builder()
            .dir(dir.path())
            .args(["-b", "127.0.0.1:0", "-w", "1"])
            .env("DATABASE_URL", db.url())
            .start()
    };
    let c = start();
    let keyfile = format!("{}.secret", db.url().trim_start_matches("sqlite://"));
    c.expect_log(
        &format!("signing with the development key created in {keyfile}"),
        T,
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&keyfile).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key = std::fs::read_to_string(&keyfile).unwrap();
    assert!(!c.log().contains(key.trim()), "the key is not logged");
    assert_eq!(
        run_stdin(
            dir.path(),
            &["user", "create", "dev", "--password-stdin"],
            &[("DATABASE_URL", db.url())],
            Some("dev-pass-1")
        )
        .code,
        Some(0)
    );
    let token = post_json(
        &c.addr,
        "/api/token/",
        &json!({"username": "dev", "password": "dev-pass-1"}),
    )
    .json()["access"]
        .as_str()
        .unwrap()
        .to_string();
    drop(c);
    let c = start();
    c.expect_log("development key kept in", T);
    assert_eq!(
        http(
            &c.addr,
            "GET",
            "/hello/",
            &[("Authorization", &format!("Bearer {token}"))],
            b""
        )
        .status,
        200
    );
    drop(c);
}

/// Nothing secret in any log, at debug level, access log on, errors provoked: not the
/// key, a password (right or wrong), a token, or a forged token.
#[test]
fn no_secret_password_or_token_reaches_a_log() {
    let a = Api::start(
        TestDb::sqlite(),
        &["--log-level", "debug", "--access-logfile", "-"],
        &[],
    );
    let (access, refresh) = a.login();
    a.post(
        "/api/token/",
        json!({"username": "alice", "password": "wrong-password-xyz"}),
    );
    a.post("/api/token/refresh/", json!({"refresh": refresh}));
    a.hello(&format!("Bearer {access}"));
    a.hello("Bearer forged.token.here");
    let logs = format!("{}\n{}", a.c.log(), a.c.stdout.all().join("\n"));
    for secret in [
        SECRET,
        "wonderland-42",
        "wrong-password-xyz",
        access.as_str(),
        refresh.as_str(),
        "forged.token.here",
    ] {
        assert!(!logs.contains(secret), "{secret:?} leaked into the logs");
    }
}

/// A development key file that is a dangling symbolic link, a directory or empty stops
/// `serve` with exit 2 and a message that says what is wrong (a dangling link used to
/// overflow the stack, exit 134), and `check` says the same instead of "OK".
#[test]
fn a_broken_development_key_file_is_refused_by_serve_and_check() {
    for (what, make) in [
        (
            "symbolic link",
            (|p: &std::path::Path| std::os::unix::fs::symlink("/nonexistent/key", p).unwrap())
                as fn(&std::path::Path),
        ),
        ("directory", |p| std::fs::create_dir(p).unwrap()),
        ("no usable key", |p| std::fs::write(p, "").unwrap()),
    ] {
        let dir = TempDir::new("badkey");
        make(&dir.join("corral.db.secret"));
        let out = run(
            dir.path(),
            &["serve", "-b", "127.0.0.1:0", "--migrate", "off"],
            &[],
        );
        assert_eq!(out.code, Some(2), "{what}: {out:?}");
        assert!(
            out.stderr.contains("corral.db.secret") && out.stderr.contains(what),
            "{what}: {out:?}"
        );
        let check = run(dir.path(), &["check"], &[]);
        assert_eq!(check.code, Some(2), "{what}: {check:?}");
        assert!(check.stderr.contains(what), "{what}: {check:?}");
    }
}
