//! The pidfile: written after binding, removed at exit, refused when a live process
//! already owns it, replaced when the process that wrote it is gone (Gunicorn's
//! `pidfile.py`). During a USR2 upgrade the new master writes `FILE.2` and renames it to
//! `FILE` once the old master has exited.

use nix::unistd::Pid;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
}

/// Fails when `path` names a live process other than this one.
pub fn check_free(path: &Path) -> io::Result<()> {
    if let Some(pid) = read(path) {
        if pid.as_raw() as u32 != std::process::id() && super::process::exists(pid) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} names pid {pid}, which is still running: is corral already running?",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

impl Pidfile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes this process's pid to `path`, unless a live process other than this one is
    /// named there.
    pub fn create(path: &Path) -> io::Result<Pidfile> {
        check_free(path)?;
        write_atomically(path, std::process::id())?;
        Ok(Pidfile {
            path: path.to_path_buf(),
        })
    }

    /// Moves the pidfile (`FILE.2` → `FILE` when an upgraded master is promoted).
    pub fn rename(&mut self, to: &Path) -> io::Result<()> {
        write_atomically(to, std::process::id())?;
        let _ = std::fs::remove_file(&self.path);
        self.path = to.to_path_buf();
        Ok(())
    }
}

impl Drop for Pidfile {
    /// Removes the file only if it still names this process: after an upgrade the file may
    /// already belong to the new master.
    fn drop(&mut self) {
        if read(&self.path).map(|p| p.as_raw() as u32) == Some(std::process::id()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The pid named in a pidfile, if it holds one.
pub fn read(path: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
        .map(Pid::from_raw)
}

fn write_atomically(path: &Path, pid: u32) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, format!("{pid}\n"))?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// `app.pid` → `app.pid.2`.
pub fn upgrade_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".2");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_is_replaced_live_is_refused() {
        let dir = std::env::temp_dir().join(format!("corral-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.pid");
        // A pid that cannot exist (above pid_max) is stale.
        std::fs::write(&path, "99999999\n").unwrap();
        let pf = Pidfile::create(&path).unwrap();
        assert_eq!(read(&path).unwrap().as_raw() as u32, std::process::id());
        drop(pf);
        assert!(!path.exists());
        // pid 1 is alive.
        std::fs::write(&path, "1\n").unwrap();
        assert!(Pidfile::create(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
