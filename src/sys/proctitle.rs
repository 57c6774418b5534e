//! Process titles, as Gunicorn sets them with setproctitle: `corral: master`,
//! `corral: worker [gen 3]`, `corral: migrate`, in `ps` (the command line) and `top`
//! (the thread name).

/// Sets this process's title. The command line is rewritten in place, so a title longer
/// than the original command line is cut to fit; the thread name keeps 15 bytes.
pub fn set(title: &str) {
    let name = std::ffi::CString::new(
        title
            .as_bytes()
            .iter()
            .take(15)
            .copied()
            .collect::<Vec<u8>>(),
    );
    if let Ok(name) = name {
        let _ = nix::sys::prctl::set_name(&name);
    }
    if let Some((start, end)) = argv_area() {
        write_argv(start, end, title.as_bytes());
    }
}

/// The `[arg_start, arg_end)` addresses of this process's command line (fields 48 and 49
/// of `/proc/self/stat`).
fn argv_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is f[0]; fields 48 and 49 are f[45] and f[46].
    let start = f.get(45)?.parse::<usize>().ok()?;
    let end = f.get(46)?.parse::<usize>().ok()?;
    (start != 0 && end > start).then_some((start, end))
}

fn write_argv(start: usize, end: usize, title: &[u8]) {
    let len = end - start;
    let n = title.len().min(len - 1);
    // SAFETY: [start, end) is this process's own argv area as the kernel reports it: the
    // writable strings at the top of the main thread's stack that the kernel copied the
    // command line into. corral reads its arguments once, at start (`std::env::args_os`
    // copies them), and nothing holds a reference into this area; the bytes are
    // overwritten in place, within bounds, and the area ends with NULs, so the kernel's
    // /proc/PID/cmdline reads exactly the title.
    unsafe {
        let p = start as *mut u8;
        std::ptr::copy_nonoverlapping(title.as_ptr(), p, n);
        std::ptr::write_bytes(p.add(n), 0, len - n);
    }
}
