//! The server under test as a process: temp dirs, `corral serve` started and stopped like
//! an operator does it (port 0, the `Listening at:` line, real signals), one-shot commands,
//! and the `/proc` view of its processes.
//!
//! Every wait is for an event (a log line, a pid change, a process exit) with a bounded
//! timeout; on timeout the test fails with the server's log.

#![allow(dead_code)]

use super::client::{http, Response};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_corral");

/// Set it to see every line the servers write. Not `CORRAL_…`, which is configuration.
pub const ECHO_VAR: &str = "TEST_ECHO";

/// A fresh directory per test, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "corral-e2e-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lines a process wrote, shared with the thread reading them; the flag is set at end of
/// file (the process, and every child sharing the pipe, closed it).
#[derive(Clone, Default)]
pub struct Lines(Arc<(Mutex<Vec<String>>, Condvar, AtomicBool)>);

impl Lines {
    fn collect<R: Read + Send + 'static>(&self, r: R, echo: bool) {
        let me = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if echo {
                    eprintln!("    | {line}");
                }
                let (m, cv, _) = &*me.0;
                m.lock().unwrap().push(line);
                cv.notify_all();
            }
            let (m, cv, eof) = &*me.0;
            let _held = m.lock().unwrap();
            eof.store(true, Ordering::SeqCst);
            cv.notify_all();
        });
    }

    /// Waits until end of file: every line the writers wrote is here.
    pub fn wait_eof(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (m, cv, eof) = &*self.0;
        let mut lines = m.lock().unwrap();
        while !eof.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            lines = cv.wait_timeout(lines, deadline - now).unwrap().0;
        }
        true
    }

    /// Collects lines from `r` (a child's stdout or stderr) in the background.
    pub fn collect_from<R: Read + Send + 'static>(&self, r: R) {
        self.collect(r, std::env::var_os(ECHO_VAR).is_some());
    }

    pub fn all(&self) -> Vec<String> {
        self.0 .0.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.0 .0.lock().unwrap().len()
    }

    /// Waits for a line at index `from` or later that contains `pat`.
    pub fn wait_for(&self, from: usize, pat: &str, timeout: Duration) -> Option<(usize, String)> {
        let deadline = Instant::now() + timeout;
        let (m, cv, _) = &*self.0;
        let mut lines = m.lock().unwrap();
        loop {
            if let Some((i, l)) = lines
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, l)| l.contains(pat))
            {
                return Some((i, l.clone()));
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            lines = cv.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    pub fn count(&self, pat: &str) -> usize {
        self.all().iter().filter(|l| l.contains(pat)).count()
    }
}

/// How to start a server.
pub struct Builder {
    args: Vec<String>,
    env: BTreeMap<String, String>,
    dir: Option<PathBuf>,
    exe: PathBuf,
    wait_ready: bool,
    /// A command that execs corral (`setpriv … --`), keeping its pid.
    wrap: Vec<String>,
}

impl Builder {
    pub fn arg(mut self, a: impl Into<String>) -> Builder {
        self.args.push(a.into());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Builder {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }
    pub fn env(mut self, k: &str, v: impl Into<String>) -> Builder {
        self.env.insert(k.into(), v.into());
        self
    }
    pub fn dir(mut self, d: &Path) -> Builder {
        self.dir = Some(d.to_path_buf());
        self
    }
    /// Run another executable (a copy of corral, for upgrade tests).
    pub fn exe(mut self, p: &Path) -> Builder {
        self.exe = p.to_path_buf();
        self
    }
    /// Start corral through `wrapper` (a command that ends by exec'ing its arguments, such
    /// as `setpriv --reuid …`), so the pid stays corral's.
    pub fn wrap<I: IntoIterator<Item = S>, S: Into<String>>(mut self, wrapper: I) -> Builder {
        self.wrap = wrapper.into_iter().map(Into::into).collect();
        self
    }
    /// Do not wait for the first generation to be ready.
    pub fn no_wait(mut self) -> Builder {
        self.wait_ready = false;
        self
    }

    pub fn start(self) -> Corral {
        let own_dir = if self.dir.is_none() {
            Some(TempDir::new("srv"))
        } else {
            None
        };
        let dir = self
            .dir
            .clone()
            .unwrap_or_else(|| own_dir.as_ref().unwrap().0.clone());
        let mut cmd = match self.wrap.split_first() {
            Some((first, rest)) => {
                let mut c = base_command(Path::new(first), &dir);
                c.args(rest).arg(&self.exe);
                c
            }
            None => base_command(&self.exe, &dir),
        };
        cmd.arg("serve")
            .args(&self.args)
            .envs(&self.env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn corral");
        let (stderr, stdout) = (Lines::default(), Lines::default());
        let echo = std::env::var_os(ECHO_VAR).is_some();
        stderr.collect(child.stderr.take().unwrap(), echo);
        stdout.collect(child.stdout.take().unwrap(), echo);
        let mut c = Corral {
            pid: child.id(),
            child,
            stderr,
            stdout,
            addr: String::new(),
            dir,
            _own_dir: own_dir,
            exited: None,
        };
        if let Some((_, line)) = c
            .stderr
            .wait_for(0, "Listening at: ", Duration::from_secs(20))
        {
            let url = line
                .split("Listening at: ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            c.addr = url
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .to_string();
        } else {
            let status = c.wait_exit(Duration::from_secs(5));
            panic!(
                "corral did not print `Listening at:` (exit {status:?}); log:\n{}",
                c.log()
            );
        }
        if self.wait_ready {
            c.expect_log("ready (", Duration::from_secs(30));
        }
        c
    }
}

/// A `Command` for the corral binary with an environment free of the host's settings.
pub fn base_command(exe: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("CORRAL_")
            || [
                "PORT",
                "WEB_CONCURRENCY",
                "DATABASE_URL",
                "SECRET_KEY",
                "DYNO",
                "INVOCATION_ID",
                "NOTIFY_SOCKET",
                "LISTEN_FDS",
                "LISTEN_PID",
                "RUST_LOG",
            ]
            .contains(&k.as_str())
        {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs a one-shot corral command (`check`, `migrate status`, …) and captures its output.
pub fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    run_stdin(dir, args, env, None)
}

pub fn run_stdin(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = base_command(Path::new(BIN), dir);
    cmd.args(args)
        .envs(env.iter().cloned())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn corral");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    wait_output(child, Duration::from_secs(60))
}

fn wait_output(mut child: Child, timeout: Duration) -> Output {
    let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("command did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        code: status.code(),
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// A running `corral serve`.
pub struct Corral {
    pub pid: u32,
    child: Child,
    pub stderr: Lines,
    pub stdout: Lines,
    /// `127.0.0.1:PORT` of the first listener.
    pub addr: String,
    pub dir: PathBuf,
    _own_dir: Option<TempDir>,
    exited: Option<ExitStatus>,
}

impl Corral {
    pub fn builder() -> Builder {
        Builder {
            args: vec![],
            env: BTreeMap::new(),
            dir: None,
            exe: PathBuf::from(BIN),
            wait_ready: true,
            wrap: vec![],
        }
    }

    /// `corral serve -b 127.0.0.1:0 --migrate off -w N` plus `extra`.
    pub fn plain(workers: u32) -> Builder {
        Corral::builder().args([
            "-b",
            "127.0.0.1:0",
            "--migrate",
            "off",
            "-w",
            &workers.to_string(),
        ])
    }

    pub fn log(&self) -> String {
        self.stderr.all().join("\n")
    }

    /// Index to pass to `wait_log_after` to see only what comes next.
    pub fn mark(&self) -> usize {
        self.stderr.len()
    }

    pub fn expect_log(&self, pat: &str, timeout: Duration) -> String {
        self.expect_log_after(0, pat, timeout)
    }

    pub fn expect_log_after(&self, from: usize, pat: &str, timeout: Duration) -> String {
        match self.stderr.wait_for(from, pat, timeout) {
            Some((_, l)) => l,
            None => panic!(
                "no log line containing {pat:?} within {timeout:?}; log:\n{}",
                self.log()
            ),
        }
    }

    pub fn signal(&self, sig: &str) {
        kill(self.pid, sig);
    }

    /// Live worker processes of this master, oldest first.
    pub fn worker_pids(&self) -> Vec<u32> {
        children(self.pid)
            .into_iter()
            .filter(|p| cmdline(*p).contains(" worker "))
            .collect()
    }

    /// Waits until the master has exactly `n` workers, none of them in `not`.
    pub fn wait_workers(&self, n: usize, not: &[u32], timeout: Duration) -> Vec<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            let pids = self.worker_pids();
            if pids.len() == n && pids.iter().all(|p| !not.contains(p)) {
                return pids;
            }
            if Instant::now() > deadline {
                panic!(
                    "expected {n} workers not in {not:?}, have {pids:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn get(&self, path: &str) -> Response {
        http(&self.addr, "GET", path, &[], b"")
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exited.is_some() {
            return self.exited;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                self.exited = Some(s);
                // Its last lines may still be in the pipe: read them before anyone looks.
                // Bounded: after a USR2 upgrade the new master still holds the pipe.
                self.stderr.wait_eof(Duration::from_secs(1));
                self.stdout.wait_eof(Duration::from_secs(1));
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Corral {
    fn drop(&mut self) {
        if self.exited.is_some() {
            return;
        }
        let workers = self.worker_pids();
        kill(self.pid, "TERM");
        if self.wait_exit(Duration::from_secs(10)).is_none() {
            kill(self.pid, "KILL");
            for w in workers {
                kill(w, "KILL");
            }
            let _ = self.child.wait();
        }
    }
}

pub fn kill(pid: u32, sig: &str) {
    let s = match sig {
        "TERM" => libc_sig::TERM,
        "KILL" => libc_sig::KILL,
        "HUP" => libc_sig::HUP,
        "INT" => libc_sig::INT,
        "QUIT" => libc_sig::QUIT,
        "STOP" => libc_sig::STOP,
        "CONT" => libc_sig::CONT,
        "TTIN" => libc_sig::TTIN,
        "TTOU" => libc_sig::TTOU,
        "USR1" => libc_sig::USR1,
        "USR2" => libc_sig::USR2,
        other => panic!("unknown signal {other}"),
    };
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), s);
}

mod libc_sig {
    pub use nix::sys::signal::Signal::{
        SIGCONT as CONT, SIGHUP as HUP, SIGINT as INT, SIGKILL as KILL, SIGQUIT as QUIT,
        SIGSTOP as STOP, SIGTERM as TERM, SIGTTIN as TTIN, SIGTTOU as TTOU, SIGUSR1 as USR1,
        SIGUSR2 as USR2,
    };
}

pub fn alive(pid: u32) -> bool {
    // A zombie still "exists" for kill(0); read its state instead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Child pids of `pid`, in pid order.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let rest = stat.rsplit(')').next().unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[1].parse::<u32>().ok() == Some(pid) && fields[0] != "Z" {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The pid in a pidfile.
pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

pub fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether an external tool is installed; outside CI a missing one skips the test, loudly.
pub fn have(tool: &str, test: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{tool} is required under CI (.ci/run installs it)");
        }
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {tool} is not installed");
    }
    found
}

/// Seconds since the epoch, as the server counts token times.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
