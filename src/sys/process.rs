//! Processes: start a copy of this binary with chosen descriptors inherited, send
//! signals, reap children, and count this process's threads.
//!
//! Children are started by fork+exec of our own executable (`std::process::Command`), never
//! by a bare `fork()`: the child gets a clean image with default signal dispositions, no
//! inherited runtime and no inherited locks, which is what makes the master's
//! "one thread, no runtime" invariant sufficient. The same function starts workers, the
//! migration runner and, on USR2, a new master.

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The executable image this process runs, held open from the start: children exec it
/// through `/proc/self/fd/N`, so a worker always runs the master's own code, never
/// whatever file is at the binary's path now (a rebuilt or broken binary put in place
/// for a `USR2` upgrade). Only the upgrade itself execs the path on disk.
#[derive(Debug)]
pub struct Image {
    fd: std::os::fd::OwnedFd,
}

impl Image {
    /// Opens `/proc/self/exe` (close-on-exec; the exec resolves the path before the
    /// descriptor closes).
    pub fn current() -> io::Result<Image> {
        let file = std::fs::File::open("/proc/self/exe")?;
        Ok(Image { fd: file.into() })
    }

    /// The path that execs this image in a child.
    pub fn path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Spawn {
    pub exe: PathBuf,
    /// `argv[0]` (what `ps` shows), when it is not `exe`.
    pub arg0: Option<OsString>,
    pub args: Vec<OsString>,
    /// Descriptors the child keeps, at the same numbers (close-on-exec cleared in the child).
    pub inherit: Vec<RawFd>,
    /// Environment variables to remove from the child's environment.
    pub env_remove: Vec<String>,
    /// Extra environment variables for the child.
    pub env: Vec<(String, String)>,
    /// Signal the child receives when this process dies (`PR_SET_PDEATHSIG`).
    pub parent_death_signal: Option<Signal>,
}

/// Why a spawn did not happen.
#[derive(Debug)]
pub enum SpawnError {
    /// The invariant that forks happen only from a single-threaded process was violated.
    Threads(usize),
    Io(io::Error),
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::Threads(n) => write!(
                f,
                "refusing to fork: this process has {n} threads, expected 1"
            ),
            SpawnError::Io(e) => write!(f, "cannot start process: {e}"),
        }
    }
}

impl std::error::Error for SpawnError {}

/// Starts `spec` and returns the child's pid. Fails, without forking, if this process has
/// more than one thread.
pub fn spawn(spec: &Spawn) -> Result<Pid, SpawnError> {
    let threads = thread_count();
    if threads != 1 {
        return Err(SpawnError::Threads(threads));
    }
    let mut cmd = Command::new(&spec.exe);
    if let Some(a) = &spec.arg0 {
        cmd.arg0(a);
    }
    cmd.args(&spec.args).stdin(Stdio::null());
    for k in &spec.env_remove {
        cmd.env_remove(k);
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    let inherit = spec.inherit.clone();
    let death = spec.parent_death_signal;
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe functions may be called. It makes only raw syscalls (fcntl and
    // prctl through nix, which allocate nothing) on descriptor numbers that the parent
    // holds open for the duration of `spawn`, and touches no lock or allocator.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &inherit {
                let b = BorrowedFd::borrow_raw(fd);
                fcntl(b, FcntlArg::F_SETFD(FdFlag::empty()))?;
            }
            if let Some(sig) = death {
                nix::sys::prctl::set_pdeathsig(sig)?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(SpawnError::Io)?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(Signal),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "signal {}", s.as_str()),
        }
    }
}

/// Collects every child that has ended, without blocking.
pub fn reap() -> Vec<(Pid, Exit)> {
    let mut out = vec![];
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => out.push((pid, Exit::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, _core)) => out.push((pid, Exit::Signal(sig))),
            Ok(WaitStatus::StillAlive) => break,
            Ok(_) => continue, // stopped/continued: not an exit
            Err(Errno::EINTR) => continue,
            Err(_) => break, // ECHILD: no children at all
        }
    }
    out
}

/// Sends `sig` to `pid`. `Ok(false)` when the process no longer exists.
pub fn signal(pid: Pid, sig: Signal) -> io::Result<bool> {
    match kill(pid, sig) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Sends `sig` to `pids`, reaps them for up to `grace`, then SIGKILLs and reaps what is
/// left: how a master that must exit now makes sure no child outlives it.
pub fn stop_all(pids: &[Pid], sig: Signal, grace: std::time::Duration) {
    for pid in pids {
        let _ = signal(*pid, sig);
    }
    let deadline = std::time::Instant::now() + grace;
    let mut left: Vec<Pid> = pids.to_vec();
    while !left.is_empty() && std::time::Instant::now() < deadline {
        let gone: Vec<Pid> = reap().into_iter().map(|(p, _)| p).collect();
        left.retain(|p| !gone.contains(p));
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for pid in left {
        let _ = signal(pid, Signal::SIGKILL);
    }
    let _ = reap();
}

/// Whether a process with this pid exists (it may belong to someone else).
pub fn exists(pid: Pid) -> bool {
    matches!(kill(pid, None), Ok(()) | Err(Errno::EPERM))
}

/// Threads of this process, from `/proc/self/task`.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// This process's executable, resolved once at start so that a later exec picks up a
/// rebuilt binary at the same path (USR2, `--reload`).
pub fn current_exe() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // After the file is replaced, /proc/self/exe reads "<path> (deleted)".
    let s = exe.to_string_lossy();
    Ok(match s.strip_suffix(" (deleted)") {
        Some(p) => PathBuf::from(p),
        None => exe,
    })
}

/// The parent's pid.
pub fn parent_pid() -> Pid {
    nix::unistd::getppid()
}

/// What a process uses, from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub rss_bytes: u64,
    /// User and system time.
    pub cpu_secs: f64,
}

/// `pid`'s resident memory and CPU time; `None` once it is gone.
pub fn usage(pid: Pid) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let ticks = clock_ticks();
    Some(Usage {
        cpu_secs: (num(11)? + num(12)?) as f64 / ticks,
        rss_bytes: num(21)? * page_size(),
    })
}

/// CPU time of this process's children that have ended and been reaped.
pub fn reaped_children_cpu_secs() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as u64)
}
