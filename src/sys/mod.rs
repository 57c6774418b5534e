//! The operating-system layer: sockets, processes, shared memory, pidfiles, systemd's
//! notification socket, and the clock.
//!
//! This is the only module allowed to contain `unsafe` (the crate root denies it
//! elsewhere); each block carries a `// SAFETY:` comment naming the invariant it relies on.
//! Everything here is a thin, safe wrapper that the master, the worker and the HTTP layer
//! call without knowing about file descriptors' ownership rules.

pub mod listener;
pub mod notify;
pub mod pidfile;
pub mod privileges;
pub mod process;
pub mod proctitle;
pub mod rates;
pub mod scoreboard;
pub mod stats;
pub mod watch;

use nix::time::{clock_gettime, ClockId};

/// Milliseconds on `CLOCK_MONOTONIC`: the same clock in every process of the machine,
/// so a worker's heartbeat written here can be compared by its master.
pub fn monotonic_ms() -> u64 {
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always available");
    ts.tv_sec() as u64 * 1000 + ts.tv_nsec() as u64 / 1_000_000
}

/// Microseconds on `CLOCK_MONOTONIC` (systemd's `MONOTONIC_USEC`).
pub fn monotonic_us() -> u64 {
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always available");
    ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1_000
}

/// Takes ownership of a descriptor number handed to this process by its parent (our
/// master, or systemd), after checking that it is open.
pub fn adopt_fd(fd: i32) -> std::io::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use std::os::fd::FromRawFd;
    fcntl(unsafe_borrow(fd)?, FcntlArg::F_GETFD).map_err(std::io::Error::from)?;
    // SAFETY: the number was passed to this process as an inherited descriptor (argv or
    // LISTEN_FDS), it is open (F_GETFD above succeeded), and each number is adopted exactly
    // once by the caller, so no other owner will close it.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // Inherited descriptors arrive without close-on-exec; from here on only an explicit
    // spawn may pass them on.
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(std::io::Error::from)?;
    Ok(owned)
}

fn unsafe_borrow(fd: i32) -> std::io::Result<std::os::fd::BorrowedFd<'static>> {
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(nix::libc::EBADF));
    }
    // SAFETY: used only for the F_GETFD probe in `adopt_fd`, which tolerates a closed
    // descriptor (it reports EBADF); the borrow does not outlive that call.
    Ok(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
}

/// Lowers the calling thread's scheduling priority to `nice` (Linux keeps a nice value
/// per thread), so CPU-heavy helpers yield to the event loop.
pub fn lower_thread_priority(nice: i32) {
    let tid = nix::unistd::gettid().as_raw();
    // SAFETY: setpriority takes only integers and touches no memory of ours; with
    // PRIO_PROCESS and a thread id, Linux changes that thread alone.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice);
    }
}

/// Reads a line from the terminal with echo off (for password prompts).
pub fn read_password(prompt: &str) -> std::io::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::{BufRead, Write};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let saved = tcgetattr(&tty).map_err(std::io::Error::from)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    (&tty).write_all(prompt.as_bytes())?;
    tcsetattr(&tty, SetArg::TCSANOW, &quiet).map_err(std::io::Error::from)?;
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    let _ = tcsetattr(&tty, SetArg::TCSANOW, &saved);
    let _ = (&tty).write_all(b"\n");
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
