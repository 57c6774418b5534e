//! Where corral runs: systemd (socket activation, the notify protocol, the watchdog),
//! binary upgrades on USR2, Heroku (the Procfile under honcho, TERM to every process, log
//! format) and the development runner (`--reload`), each against the real tool.

use crate::support::*;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A test-owned `NOTIFY_SOCKET`, collecting what corral sends.
struct NotifySocket {
    path: std::path::PathBuf,
    got: Arc<Mutex<Vec<(Instant, String)>>>,
    _dir: TempDir,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = TempDir::new("notify");
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let got = Arc::new(Mutex::new(vec![]));
        let g = got.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                g.lock().unwrap().push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
        });
        NotifySocket {
            path,
            got,
            _dir: dir,
        }
    }

    fn messages(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Index of the first message at or after `from` containing `pat`, waiting for it.
    fn wait(&self, from: usize, pat: &str) -> usize {
        eventually(T, &format!("sd_notify {pat:?}"), || {
            self.messages()
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, m)| m.contains(pat))
                .map(|(i, _)| i)
        })
    }
}

/// systemd-socket-activate starts corral on an activated TCP socket named with
/// `--fdname`; corral adopts it instead of binding and serves through it.
#[test]
fn systemd_socket_activation() {
    if !have("systemd-socket-activate", "systemd_socket_activation") {
        return;
    }
    let dir = TempDir::new("sockact");
    let port = free_port();
    let mut child = Command::new("systemd-socket-activate")
        .current_dir(dir.path())
        .args([
            "-l",
            &format!("127.0.0.1:{port}"),
            "--fdname=web",
            BIN,
            "serve",
            "--migrate",
            "off",
            "-w",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Lines::default();
    log.collect_from(child.stderr.take().unwrap());
    log.wait_for(0, "Listening on", T)
        .expect("systemd-socket-activate listens");
    // The first connection makes systemd-socket-activate exec corral; it waits in the
    // socket's backlog until a worker accepts it.
    let r = http(&format!("127.0.0.1:{port}"), "GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200);
    log.wait_for(0, "Adopted socket 3 (web) from systemd", T)
        .expect("adoption logged");
    assert_eq!(
        http(&format!("127.0.0.1:{port}"), "GET", "/healthz", &[], b"").status,
        200
    );
    kill(child.id(), "TERM");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", log.all().join("\n"));
}

/// Stops a process this test started indirectly (an upgraded master), whatever happens.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            let kids = children(self.0);
            kill(self.0, "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(self.0) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            for p in kids.into_iter().chain([self.0]) {
                if alive(p) {
                    kill(p, "KILL");
                }
            }
        }
    }
}

/// The notify protocol, in order: EXTEND_TIMEOUT_USEC while migrating, READY=1 once
/// every first-generation worker is up, RELOADING=1 with MONOTONIC_USEC then READY=1 on
/// HUP, WATCHDOG=1 at half of WATCHDOG_USEC, STATUS lines, STOPPING=1 on TERM.
#[test]
fn systemd_notify_protocol_and_watchdog() {
    let n = NotifySocket::new();
    let db = TestDb::sqlite();
    let mut c = Corral::builder()
        .args(["-b", "127.0.0.1:0", "-w", "2"])
        .env("DATABASE_URL", db.url())
        .env("NOTIFY_SOCKET", n.path.to_str().unwrap())
        .env("WATCHDOG_USEC", "400000")
        .start();
    let extend = n.wait(0, "EXTEND_TIMEOUT_USEC=");
    let ready = n.wait(0, "READY=1");
    assert!(extend < ready, "{:?}", n.messages());
    // READY comes after both workers reported ready, never before.
    let log = c.log();
    assert_eq!(log.matches("Booting worker").count(), 2);
    assert!(n.messages()[..ready].iter().all(|m| !m.contains("READY=1")));

    // Watchdog: every 200 ms (half of 400 ms), from the master loop.
    let start = n.messages().len();
    std::thread::sleep(Duration::from_millis(2000));
    let pings = n.messages()[start..]
        .iter()
        .filter(|m| m.contains("WATCHDOG=1"))
        .count();
    assert!((7..=13).contains(&pings), "{pings} watchdog pings in 2 s");
    assert!(
        n.messages()
            .iter()
            .any(|m| m.starts_with("STATUS=2/2 workers ready, generation 1")),
        "{:?}",
        n.messages()
    );

    let mark = n.messages().len();
    c.signal("HUP");
    let reloading = n.wait(mark, "RELOADING=1");
    let msg = &n.messages()[reloading];
    let usec: u64 = msg
        .split("MONOTONIC_USEC=")
        .nth(1)
        .and_then(|v| v.lines().next())
        .and_then(|v| v.parse().ok())
        .expect("MONOTONIC_USEC");
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    let now_us = now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1000;
    assert!(
        usec <= now_us && now_us - usec < 10_000_000,
        "MONOTONIC_USEC {usec} vs now {now_us}"
    );
    let ready_again = n.wait(reloading, "READY=1");
    assert!(ready_again > reloading);
    c.expect_log("reload complete", T);

    let mark = n.messages().len();
    c.signal("TERM");
    n.wait(mark, "STOPPING=1");
    assert_eq!(c.wait_exit(T).and_then(|s| s.code()), Some(0));
}

/// USR2 while clients send requests: a new master starts from the binary on disk with the
/// inherited sockets, the old one retires by itself once the new generation is ready,
/// the pidfile moves (FILE.2, then FILE), systemd is told the new MAINPID, and no request
/// fails.
#[test]
fn usr2_upgrade_under_load() {
    let dir = TempDir::new("usr2");
    let exe = dir.join("corral-copy");
    std::fs::copy(BIN, &exe).unwrap();
    let pidfile = dir.join("corral.pid");
    let n = NotifySocket::new();
    let mut c = Corral::plain(2)
        .exe(&exe)
        .dir(dir.path())
        .args(["--pid", pidfile.to_str().unwrap()])
        .env("NOTIFY_SOCKET", n.path.to_str().unwrap())
        .start();
    let old = c.pid;
    let old_workers = c.wait_workers(2, &[], T);
    let load = Load::start(&c.addr, "/healthz", vec![], 4);
    eventually(T, "requests flowing", || {
        (c.get("/healthz").status == 200).then_some(())
    });
    let mark = c.mark();
    c.signal("USR2");
    let line = c.expect_log_after(mark, "Starting new master (pid: ", T);
    let new: u32 = line
        .split("(pid: ")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let _cleanup = KillOnDrop(new);
    c.expect_log_after(
        mark,
        &format!("New master (pid: {new}) is ready; retiring this one"),
        T,
    );
    n.wait(0, &format!("MAINPID={new}"));
    assert_eq!(
        c.wait_exit(T).and_then(|s| s.code()),
        Some(0),
        "the old master retires cleanly"
    );
    c.expect_log_after(mark, "Master promoted", T);
    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 100, "only {ok} requests");
    assert!(!alive(old));
    assert!(old_workers.iter().all(|w| !alive(*w)));
    assert_eq!(
        eventually(T, "pidfile names the new master", || {
            crate::support::read_pid(&pidfile).filter(|p| *p == new)
        }),
        new
    );
    assert!(!dir.join("corral.pid.2").exists());
    assert_eq!(http(&c.addr, "GET", "/healthz", &[], b"").status, 200);
    assert!(!children(new).is_empty());
    // The control socket (beside the pidfile by default) passed to the new master.
    let sock = dir.join("corral.sock");
    let status = eventually(T, "the new master on the control socket", || {
        let out = run(
            dir.path(),
            &[
                "status",
                "--json",
                "--control-socket",
                sock.to_str().unwrap(),
            ],
            &[],
        );
        let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        (v["master"]["pid"] == new).then_some(v)
    });
    assert_eq!(status["workers"].as_array().unwrap().len(), 2);
}

/// USR2 with a binary that cannot boot: the old master says so and keeps serving.
#[test]
fn usr2_with_a_broken_binary_keeps_the_old_master() {
    let dir = TempDir::new("usr2bad");
    let exe = dir.join("corral-copy");
    std::fs::copy(BIN, &exe).unwrap();
    let c = Corral::plain(1)
        .exe(&exe)
        .dir(dir.path())
        .args(["--control-socket", dir.join("ctl.sock").to_str().unwrap()])
        .start();
    let workers = c.wait_workers(1, &[], T);
    // Replace the binary on disk (rename, as a deploy would) with one that fails at once.
    let broken = dir.join("broken");
    std::fs::write(&broken, "#!/bin/sh\necho 'cannot start' >&2\nexit 1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&broken, &exe).unwrap();
    let mark = c.mark();
    // `ctl upgrade` is USR2 answered once done: here, with the failure.
    let sock = dir.join("ctl.sock");
    let sock = sock.to_str().unwrap();
    let out = run(
        dir.path(),
        &["ctl", "upgrade", "--control-socket", sock],
        &[],
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("upgrade failed"), "{}", out.stderr);
    assert!(out.stderr.contains("keeps serving"), "{}", out.stderr);
    let line = c.expect_log_after(mark, "Upgrade failed", T);
    assert!(
        line.contains("exit code 1") && line.contains("keeps serving"),
        "{line}"
    );
    assert_eq!(c.get("/healthz").status, 200);
    assert_eq!(c.worker_pids(), workers);
    assert!(alive(c.pid));
    let out = run(dir.path(), &["status", "--control-socket", sock], &[]);
    assert_eq!(out.code, Some(0), "the control socket is back: {out:?}");
}

/// The Procfile's `web:` line, run by honcho (as `heroku local` would) with PORT set,
/// answers on that port and stops cleanly on SIGTERM.
#[test]
fn procfile_web_line_under_honcho() {
    if !have("honcho", "procfile_web_line_under_honcho") {
        return;
    }
    let procfile =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Procfile"))
            .unwrap();
    let web = procfile
        .lines()
        .find_map(|l| l.strip_prefix("web:"))
        .expect("a web: line")
        .trim();
    assert!(web.starts_with("./target/release/corral serve"), "{web}");
    let dir = TempDir::new("honcho");
    std::fs::write(
        dir.join("Procfile"),
        format!("web: {}\n", web.replace("./target/release/corral", BIN)),
    )
    .unwrap();
    let port = free_port();
    let mut child = Command::new("honcho")
        .current_dir(dir.path())
        .args(["start", "-p", &port.to_string(), "web"])
        .env("WEB_CONCURRENCY", "2")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Lines::default();
    out.collect_from(child.stdout.take().unwrap());
    out.wait_for(0, "Generation 1 ready (2 workers)", T)
        .unwrap_or_else(|| panic!("{}", out.all().join("\n")));
    assert!(out
        .all()
        .iter()
        .any(|l| l.contains(&format!("Listening at: http://0.0.0.0:{port}"))));
    assert_eq!(
        http(&format!("127.0.0.1:{port}"), "GET", "/healthz", &[], b"").status,
        200
    );
    kill(child.id(), "TERM");
    let status = child.wait().unwrap();
    out.wait_for(0, "Shutting down: Master", T)
        .unwrap_or_else(|| panic!("{}", out.all().join("\n")));
    assert!(status.success() || status.code().is_some(), "{status:?}");
    assert!(!out.all().iter().any(|l| l.contains("SIGKILL")));
}

/// `--reload`: a change to the configuration file, or to a migration in a dialect
/// subfolder of `--migrations-dir`, replaces every worker.
#[test]
fn reload_flag_restarts_workers_when_the_config_changes() {
    let dir = TempDir::new("reload");
    let cfg = dir.join("corral.toml");
    std::fs::write(&cfg, "workers = 2\n[database]\nmigrate = \"off\"\n").unwrap();
    let migrations = dir.join("migrations");
    std::fs::create_dir_all(migrations.join("sqlite")).unwrap();
    let c = Corral::builder()
        .dir(dir.path())
        .args(["-b", "127.0.0.1:0", "-c", cfg.to_str().unwrap(), "--reload"])
        .args(["--migrations-dir", migrations.to_str().unwrap()])
        .start();
    let before = c.wait_workers(2, &[], T);
    c.expect_log("Reloading on changes to", T);
    let mark = c.mark();
    std::fs::write(
        &cfg,
        "workers = 2\nkeep_alive = 3\n[database]\nmigrate = \"off\"\n",
    )
    .unwrap();
    c.expect_log_after(mark, "Reload: watched files changed", T);
    c.expect_log_after(mark, "Generation 2 ready (2 workers); reload complete", T);
    let second = c.wait_workers(2, &before, T);

    let mark = c.mark();
    std::fs::write(
        migrations.join("sqlite/0002_more.up.sql"),
        "CREATE TABLE t (x INT);\n",
    )
    .unwrap();
    c.expect_log_after(mark, "Reload: watched files changed", T);
    c.expect_log_after(mark, "Generation 3 ready (2 workers); reload complete", T);
    c.wait_workers(2, &second, T);
}

/// Heroku sends SIGTERM to every process of the dyno at once: a clean exit, well within
/// the 30 s window.
#[test]
fn term_to_every_process_at_once_exits_cleanly() {
    let mut c = Corral::plain(2).args(["--log-level", "debug"]).start();
    let workers = c.wait_workers(2, &[], T);
    let t = Instant::now();
    for p in workers.iter().chain([&c.pid]) {
        kill(*p, "TERM");
    }
    assert_eq!(
        c.wait_exit(T).and_then(|s| s.code()),
        Some(0),
        "{}",
        c.log()
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert!(!c.log().contains("SIGKILL"));
}

/// Under Heroku (DYNO set) log lines carry no timestamp: the platform adds its own.
#[test]
fn heroku_logs_have_no_timestamp() {
    let c = Corral::plain(1)
        .env("DYNO", "web.1")
        .env("SECRET_KEY", crate::api::SECRET)
        .env("CORRAL_DATABASE_ALLOW_EPHEMERAL", "true")
        .start();
    let line = c.expect_log("Listening at: ", T);
    assert!(
        line.starts_with(&format!("[{}] [INFO] Listening at: ", c.pid)),
        "{line}"
    );
}

/// Workers run the master's own image: with a binary that cannot boot put in place (as
/// before a USR2), a worker killed with SIGKILL is replaced by one that still serves, and
/// a HUP's new generation boots too. Only USR2 would pick up the new file.
#[test]
fn workers_run_the_masters_image_not_the_file_on_disk() {
    let dir = TempDir::new("image");
    let exe = dir.join("corral-copy");
    std::fs::copy(BIN, &exe).unwrap();
    let c = Corral::plain(1).exe(&exe).dir(dir.path()).start();
    let first = c.wait_workers(1, &[], T);
    let broken = dir.join("broken");
    std::fs::write(&broken, "#!/bin/sh\necho 'cannot start' >&2\nexit 1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&broken, &exe).unwrap();
    kill(first[0], "KILL");
    let second = c.wait_workers(1, &first, T);
    eventually(T, "the replacement to serve", || {
        (c.get("/healthz").status == 200).then_some(())
    });
    let mark = c.mark();
    c.signal("HUP");
    c.expect_log_after(mark, "reload complete", T);
    c.wait_workers(1, &second, T);
    assert_eq!(c.get("/healthz").status, 200);
    assert!(!c.log().contains("cannot start"), "{}", c.log());
}

/// `--reload` watches the binary itself, not every file whose name starts with it: a
/// binary `corral` beside `corral.db` is not re-executed when a login writes the database.
#[test]
fn reload_does_not_mistake_the_database_for_the_binary() {
    let dir = TempDir::new("reload-bin");
    let exe = dir.join("corral");
    std::fs::copy(BIN, &exe).unwrap();
    let env = [("SECRET_KEY", crate::api::SECRET)];
    let mut cmd = base_command(&exe, dir.path());
    let out = cmd.args(["migrate", "apply"]).envs(env).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut cmd = base_command(&exe, dir.path());
    let mut child = cmd
        .args(["user", "create", "alice", "--password-stdin"])
        .envs(env)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"alice-password-1")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let extra = dir.join("extra.txt");
    std::fs::write(&extra, "1").unwrap();
    let c = Corral::plain(1)
        .exe(&exe)
        .dir(dir.path())
        .args(["--reload", "--reload-extra-file", extra.to_str().unwrap()])
        .env("SECRET_KEY", crate::api::SECRET)
        .start();
    for _ in 0..3 {
        let r = post_json(
            &c.addr,
            "/api/token/",
            &serde_json::json!({"username": "alice", "password": "alice-password-1"}),
        );
        assert_eq!(r.status, 200);
    }
    let mark = c.mark();
    std::fs::write(&extra, "2").unwrap();
    c.expect_log_after(mark, "Reload: watched files changed", T);
    c.expect_log_after(mark, "reload complete", T);
    assert!(
        !c.log().contains("the binary changed"),
        "re-executed without a change to the binary:\n{}",
        c.log()
    );
}
