//! Filesystem faults for the tests: a small tmpfs that the test fills and empties, and
//! running corral as `nobody`, so that a read-only file is read-only (root ignores
//! permission bits). Both need root; without it the test says it skipped, and under
//! `CI=true` it fails instead.

#![allow(dead_code)]

use super::process::TempDir;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether this test process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `true` when the test may go on; says why not (or fails under CI) otherwise.
pub fn need_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs root (a tmpfs mount, or running corral as nobody); CI runs as root"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: needs root");
    false
}

/// A tmpfs of `size_kib` mounted on a fresh directory, unmounted on drop.
pub struct Tmpfs {
    pub dir: TempDir,
}

impl Tmpfs {
    pub fn mount(size_kib: u64) -> Tmpfs {
        let dir = TempDir::new("tmpfs");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_kib}k,mode=0777"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .expect("mount")
            .success();
        assert!(ok, "cannot mount a tmpfs on {}", dir.path().display());
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    /// Fills the filesystem with `filler`, until a write fails for lack of space.
    pub fn fill(&self) -> PathBuf {
        let path = self.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = [0u8; 4096];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected: {e}");
                    break;
                }
            }
        }
        let _ = f.sync_all();
        path
    }

    /// Removes the filler: the filesystem has room again.
    pub fn empty(&self) {
        let _ = std::fs::remove_file(self.join("filler"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a corral that is still exiting may hold files here.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The wrapper that runs corral as `nobody` (uid and gid 65534).
pub fn as_nobody() -> Vec<String> {
    [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
    ]
    .map(String::from)
    .to_vec()
}

/// Gives `path` (recursively) to `nobody`.
pub fn chown_nobody(path: &Path) {
    let ok = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(path)
        .status()
        .expect("chown")
        .success();
    assert!(ok, "chown {}", path.display());
}

/// `chmod MODE path`.
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
