//! systemd's notification protocol (`sd_notify(3)`): one datagram of `KEY=VALUE` lines to
//! the unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
//! namespace). No crate is needed for one `sendto`.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// A connection to systemd's notification socket, or nothing when not under systemd.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` from `env`; an absent variable gives a notifier that does
    /// nothing.
    pub fn from_env(env: &std::collections::BTreeMap<String, String>) -> io::Result<Notifier> {
        let Some(path) = env.get("NOTIFY_SOCKET").filter(|p| !p.is_empty()) else {
            return Ok(Notifier { target: None });
        };
        let addr = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        } else {
            SocketAddr::from_pathname(path)?
        };
        let sock = UnixDatagram::unbound()?;
        Ok(Notifier {
            target: Some((sock, addr)),
        })
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one message, e.g. `"READY=1\nSTATUS=serving"`. Errors are returned so the
    /// caller can log them; systemd not listening must never stop the server.
    pub fn send(&self, msg: &str) -> io::Result<()> {
        match &self.target {
            Some((sock, addr)) => sock.send_to_addr(msg.as_bytes(), addr).map(drop),
            None => Ok(()),
        }
    }
}
