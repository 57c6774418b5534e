//! The command line's words: usage errors shown whole, help with each flag's default and
//! variables, and log lines that read right.

use crate::support::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// A usage error is shown whole (what is missing, the usage line, where help is), not cut
/// to its first line.
#[test]
fn usage_errors_are_shown_whole() {
    let dir = TempDir::new("usage");
    let out = run(dir.path(), &["user", "create"], &[]);
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr
            .starts_with("corral: the following required arguments were not provided:"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("<username>") && out.stderr.contains("Usage: corral user create"),
        "{out:?}"
    );
    let out = run(dir.path(), &[], &[]);
    assert_eq!(out.code, Some(2));
    for command in ["serve", "check", "config", "migrate", "user"] {
        assert!(
            out.stderr.contains(command),
            "a bare corral lists {command}: {out:?}"
        );
    }
}

/// With `--json`, a usage error is JSON on stdout too, with the exit code it has.
#[test]
fn json_usage_errors_are_json() {
    let dir = TempDir::new("jsonusage");
    let out = run(
        dir.path(),
        &["migrate", "check", "--json", "--no-such-flag"],
        &[],
    );
    assert_eq!(out.code, Some(1), "migrate keeps 2 for pending: {out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "usage");
    assert_eq!(v["error"]["exit_code"], 1);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--no-such-flag"),
        "{v}"
    );
}

/// `--help` shows each flag's default and the environment variables that set it.
#[test]
fn help_shows_defaults_and_variables() {
    let dir = TempDir::new("help");
    let out = run(dir.path(), &["serve", "--help"], &[]);
    assert_eq!(out.code, Some(0));
    for want in [
        "[default: 30] [env: CORRAL_TIMEOUT]",
        "[default: 127.0.0.1:8000] [env: CORRAL_BIND, PORT]",
        "[env: CORRAL_WORKERS, WEB_CONCURRENCY]",
        "[default: sqlite://corral.db] [env: CORRAL_DATABASE_URL, DATABASE_URL]",
    ] {
        assert!(out.stdout.contains(want), "{want}: {}", out.stdout);
    }
}

/// `-b '[::1]'` (an IPv6 address without a port) says so, instead of `"1]" is not a port`.
#[test]
fn an_ipv6_bind_without_a_port_says_so() {
    let dir = TempDir::new("v6bind");
    let out = run(dir.path(), &["check", "-b", "[::1]"], &[]);
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr
            .contains("an IPv6 address needs a port: [IPv6]:PORT"),
        "{out:?}"
    );
}

/// Log lines read right: "1 worker"; `--reload` with nothing else to watch names only the
/// binary; `TTOU` at one worker says why nothing happens.
#[test]
fn log_lines_read_right() {
    let c = Corral::plain(1).args(["--reload"]).start();
    c.expect_log("Generation 1 ready (1 worker)", T);
    assert!(!c.log().contains("1 workers"), "{}", c.log());
    c.expect_log("Reloading when the binary", T);
    assert!(!c.log().contains("changes to  and"), "{}", c.log());
    let mark = c.mark();
    c.signal("TTOU");
    c.expect_log_after(mark, "Ignoring TTOU: already at one worker", T);
}

/// `NO_COLOR` (no-color.org) turns the terminal's colours off.
#[test]
fn no_color_turns_colours_off() {
    let dir = TempDir::new("nocolor");
    // A port in use: corral logs (through its logger, on `script`'s terminal) that it
    // cannot bind, and exits.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let on_a_terminal = |no_color: bool| {
        let cmd = format!(
            "{}{BIN} serve -b 127.0.0.1:{port} --migrate off",
            if no_color { "NO_COLOR=1 " } else { "" }
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains("Cannot bind"), "{text:?}");
        text
    };
    assert!(
        on_a_terminal(false).contains('\u{1b}'),
        "colours on a terminal"
    );
    let plain = on_a_terminal(true);
    assert!(!plain.contains('\u{1b}'), "{plain:?}");
}
