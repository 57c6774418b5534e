//! The configuration handoff: the master writes a [`Config`] into a memfd, and a child
//! (worker, migration runner) reads the same typed value from the inherited descriptor.
//!
//! Secrets travel this way rather than in argv or the environment, where `ps` and
//! `/proc/PID/environ` would show them. A child reads with `pread`, so any number of
//! children can share one memfd.

use super::Config;
use nix::sys::memfd::{memfd_create, MFdFlags};
use std::fmt;
use std::io::Write;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::fs::FileExt;

/// Why a child could not read the configuration its master handed over.
#[derive(Debug)]
pub enum HandoffError {
    Io(std::io::Error),
    Corrupt(serde_json::Error),
}

impl fmt::Display for HandoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandoffError::Io(e) => write!(f, "cannot read the configuration handoff: {e}"),
            HandoffError::Corrupt(e) => {
                write!(f, "corrupt configuration handed over by the master: {e}")
            }
        }
    }
}

impl std::error::Error for HandoffError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandoffError::Io(e) => Some(e),
            HandoffError::Corrupt(e) => Some(e),
        }
    }
}

/// Writes `config` into a new memfd (close-on-exec; a spawn passes it on explicitly).
pub fn write(config: &Config) -> std::io::Result<OwnedFd> {
    let fd = memfd_create(c"corral-config", MFdFlags::MFD_CLOEXEC)?;
    let file = std::fs::File::from(fd);
    let bytes = serde_json::to_vec(config).map_err(std::io::Error::other)?;
    (&file).write_all(&bytes)?;
    Ok(OwnedFd::from(file))
}

/// Reads the configuration from an inherited descriptor, taking ownership of it.
pub fn read(fd: RawFd) -> Result<Config, HandoffError> {
    let file = std::fs::File::from(crate::sys::adopt_fd(fd).map_err(HandoffError::Io)?);
    let mut buf = vec![];
    let mut chunk = [0u8; 16384];
    loop {
        let n = file
            .read_at(&mut chunk, buf.len() as u64)
            .map_err(HandoffError::Io)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    serde_json::from_slice(&buf).map_err(HandoffError::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    #[test]
    fn a_config_survives_the_handoff_typed() {
        let mut c = crate::config::schema::defaults();
        c.bind = vec![crate::sys::listener::BindAddr::parse("unix:/tmp/x.sock").unwrap()];
        c.database.url = crate::storage::DbUrl::parse("postgres://u:pw@h/db").unwrap();
        let fd = write(&c).unwrap();
        assert_eq!(read(fd.into_raw_fd()).unwrap(), c);
        assert!(matches!(read(-1), Err(HandoffError::Io(_))));
    }
}
