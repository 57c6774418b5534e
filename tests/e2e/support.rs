//! Test support: a `Corral` process driven like an operator drives it (port 0, the
//! `Listening at:` line, real signals), a small raw HTTP/1.1 client, and `/proc` helpers.
//!
//! Every wait is for an event (a log line, a pid change, a process exit) with a bounded
//! timeout; on timeout the test fails with the server's log.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_corral");

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
        self.collect(r, std::env::var_os("CORRAL_TEST_ECHO").is_some());
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
        let mut cmd = base_command(&self.exe, &dir);
        cmd.arg("serve")
            .args(&self.args)
            .envs(&self.env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn corral");
        let (stderr, stdout) = (Lines::default(), Lines::default());
        let echo = std::env::var_os("CORRAL_TEST_ECHO").is_some();
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
            c.addr = url.trim_start_matches("http://").to_string();
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

// ---------------------------------------------------------------- HTTP

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }
}

/// One request on a new connection (`Connection: close`).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut c = Conn::open(addr);
    let mut h: Vec<(&str, &str)> = headers.to_vec();
    h.push(("Connection", "close"));
    c.request(method, path, &h, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub fn post_json(addr: &str, path: &str, body: &serde_json::Value) -> Response {
    http(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// A keep-alive client connection.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: vec![],
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes)?;
        self.read_response()
    }

    /// Reads one response (Content-Length bodies, or until close).
    pub fn read_response(&mut self) -> std::io::Result<Response> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        self.buf.drain(..head_end + 4);
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok());
        let body = match len {
            // Interim (1xx), 204 and 304 responses have no body.
            _ if status < 200 || status == 204 || status == 304 => vec![],
            Some(n) => {
                while self.buf.len() < n {
                    self.fill()?;
                }
                self.buf.drain(..n).collect()
            }
            None => {
                while self.fill().is_ok() {}
                std::mem::take(&mut self.buf)
            }
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// True when the server has closed the connection (reads EOF).
    pub fn closed_by_peer(&mut self, timeout: Duration) -> bool {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0))
            || matches!(self.stream.read(&mut b), Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// A client hammering `path` on `threads` keep-alive connections until stopped; counts
/// successes and every failure (non-200, reset, timeout).
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handles: Vec<std::thread::JoinHandle<(u64, Vec<String>)>>,
}

impl Load {
    pub fn start(addr: &str, path: &str, headers: Vec<(String, String)>, threads: usize) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handles = (0..threads)
            .map(|_| {
                let (addr, path, headers, stop) = (
                    addr.to_string(),
                    path.to_string(),
                    headers.clone(),
                    stop.clone(),
                );
                std::thread::spawn(move || {
                    let (mut ok, mut failures) = (0u64, vec![]);
                    let h: Vec<(&str, &str)> = headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    let mut conn: Option<Conn> = None;
                    while !stop.load(Ordering::Relaxed) {
                        let c = conn.get_or_insert_with(|| Conn::open(&addr));
                        match c.request("GET", &path, &h, b"") {
                            Ok(r) if r.status == 200 => {
                                ok += 1;
                                if r.header("connection")
                                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                                {
                                    conn = None; // the server asked us to reconnect
                                }
                            }
                            Ok(r) => {
                                failures.push(format!("status {}: {}", r.status, r.text()));
                                conn = None;
                            }
                            Err(e) => {
                                failures.push(format!("io: {e}"));
                                conn = None;
                            }
                        }
                    }
                    (ok, failures)
                })
            })
            .collect();
        Load { stop, handles }
    }

    /// Stops the clients; returns (successes, failures).
    pub fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut ok = 0;
        let mut failures = vec![];
        for h in self.handles {
            let (o, f) = h.join().unwrap();
            ok += o;
            failures.extend(f);
        }
        (ok, failures)
    }
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

// ---------------------------------------------------------------- databases

/// Where the tests' PostgreSQL server is (`CORRAL_TEST_PG`, default the local one).
pub fn pg_base() -> String {
    std::env::var("CORRAL_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Runs SQL against the server's `postgres` database.
pub fn pg_admin(sql: &str) -> Result<(), String> {
    use sqlx::Connection;
    let url = format!("{}/postgres", pg_base());
    let sql = sql.to_string();
    block_on(async move {
        let mut c = tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&url))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .map_err(|e| e.to_string())?;
        let _ = c.close().await;
        Ok(())
    })
}

/// A database for one test: a fresh SQLite file, or a fresh PostgreSQL database that is
/// dropped afterwards.
pub enum TestDb {
    Sqlite { url: String, _dir: TempDir },
    Postgres { url: String, name: String },
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = TempDir::new("db");
        TestDb::Sqlite {
            url: format!("sqlite://{}", dir.join("test.db").display()),
            _dir: dir,
        }
    }

    /// `None` (after saying so on stderr) when PostgreSQL is not reachable and this is not
    /// CI; under CI (`CI` set) an unreachable server fails the test.
    pub fn postgres(test: &str) -> Option<TestDb> {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "corral_t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        match pg_admin(&format!("CREATE DATABASE {name}")) {
            Ok(()) => Some(TestDb::Postgres {
                url: format!("{}/{name}", pg_base()),
                name,
            }),
            Err(e) if std::env::var_os("CI").is_some() => {
                panic!("PostgreSQL is required under CI ({}): {e}", pg_base())
            }
            Err(e) => {
                // Written past libtest's capture on purpose, so a skip is never silent.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {test}: PostgreSQL not reachable at {} ({e})",
                    pg_base()
                );
                None
            }
        }
    }

    /// Both kinds, PostgreSQL only when available.
    pub fn each(test: &str) -> Vec<TestDb> {
        let mut v = vec![TestDb::sqlite()];
        v.extend(TestDb::postgres(test));
        v
    }

    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite { url, .. } | TestDb::Postgres { url, .. } => url,
        }
    }

    pub fn is_pg(&self) -> bool {
        matches!(self, TestDb::Postgres { .. })
    }

    /// Runs a query returning one integer (e.g. a count).
    pub fn scalar(&self, sql: &str) -> i64 {
        self.try_scalar(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn try_scalar(&self, sql: &str) -> Result<i64, String> {
        use sqlx::Connection;
        let (url, sql) = (self.url().to_string(), sql.to_string());
        let pg = self.is_pg();
        block_on(async move {
            if pg {
                let mut c = sqlx::PgConnection::connect(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                let v: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&mut c)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = c.close().await;
                Ok(v)
            } else {
                let mut c = sqlx::SqliteConnection::connect(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                let v: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&mut c)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = c.close().await;
                Ok(v)
            }
        })
    }

    /// Whether a table exists.
    pub fn has_table(&self, table: &str) -> bool {
        let sql = if self.is_pg() {
            format!("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = '{table}'")
        } else {
            format!("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '{table}'")
        };
        self.scalar(&sql) > 0
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { name, .. } = self {
            let _ = pg_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// The migrations shipped in the repository, for building test migration directories.
pub fn shipped_migration(dialect: &str, file: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/storage/migrations")
            .join(dialect)
            .join(file),
    )
    .unwrap()
}

/// A migrations directory with the shipped `0001_initial` for both dialects plus `extra`
/// files (`(name, postgres sql, sqlite sql)`).
pub fn migrations_dir(extra: &[(&str, &str, &str)]) -> TempDir {
    let dir = TempDir::new("mig");
    for d in ["postgres", "sqlite"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
        std::fs::write(
            dir.join(d).join("0001_initial.up.sql"),
            shipped_migration(d, "0001_initial.up.sql"),
        )
        .unwrap();
        std::fs::write(
            dir.join(d).join("0001_initial.down.sql"),
            shipped_migration(d, "0001_initial.down.sql"),
        )
        .unwrap();
    }
    for (name, pg, lite) in extra {
        std::fs::write(dir.join("postgres").join(name), pg).unwrap();
        std::fs::write(dir.join("sqlite").join(name), lite).unwrap();
    }
    dir
}
