//! Listening sockets: parse `--bind` addresses, bind them (SO_REUSEADDR, backlog,
//! close-on-exec), adopt inherited ones (our own upgrade, or systemd's `LISTEN_FDS`), and
//! describe them for the `Listening at:` line.

use nix::sys::socket::{getsockopt, sockopt};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// A parsed `--bind` value.
///
/// It lives here, beside the code that binds it, so that the OS layer depends on nothing
/// else in the crate; `config` carries it typed from the moment a value is read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum BindAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// Why a `--bind` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBindAddr(String);

impl fmt::Display for BadBindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadBindAddr {}

impl BindAddr {
    /// `HOST:PORT`, `[IPv6]:PORT` or `unix:PATH`. Host names are resolved (first address).
    pub fn parse(s: &str) -> Result<BindAddr, BadBindAddr> {
        let bad = |why: String| BadBindAddr(why);
        if let Some(path) = s.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(bad(format!("{s:?}: empty unix socket path")));
            }
            return Ok(BindAddr::Unix(PathBuf::from(path)));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(BindAddr::Tcp(addr));
        }
        let expected = || {
            bad(format!(
                "{s:?}: expected HOST:PORT, [IPv6]:PORT or unix:PATH"
            ))
        };
        if s.starts_with('[') && (s.ends_with(']') || !s.contains("]:")) {
            // `[::1]`: an IPv6 address without a port (its colons are not the port's).
            return Err(bad(format!(
                "{s:?}: an IPv6 address needs a port: [IPv6]:PORT"
            )));
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(expected());
        };
        let port: u16 = port
            .parse()
            .map_err(|_| bad(format!("{s:?}: {port:?} is not a port number")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        (host, port)
            .to_socket_addrs()
            .map_err(|e| bad(format!("{s:?}: cannot resolve {host:?}: {e}")))?
            .next()
            .map(BindAddr::Tcp)
            .ok_or_else(|| bad(format!("{s:?}: {host:?} has no address")))
    }
}

impl TryFrom<String> for BindAddr {
    type Error = BadBindAddr;
    fn try_from(s: String) -> Result<BindAddr, BadBindAddr> {
        BindAddr::parse(&s)
    }
}

impl From<BindAddr> for String {
    /// The form `--bind` takes: `127.0.0.1:8000`, `[::1]:8000`, `unix:/run/app.sock`.
    fn from(b: BindAddr) -> String {
        match b {
            BindAddr::Tcp(a) => a.to_string(),
            BindAddr::Unix(p) => format!("unix:{}", p.display()),
        }
    }
}

impl fmt::Display for BindAddr {
    /// `http://127.0.0.1:8000`, `http://[::1]:8000` or `unix:/run/app.sock`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddr::Tcp(a) => write!(f, "http://{a}"),
            BindAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A bound, listening socket owned by this process.
#[derive(Debug)]
pub struct Listener {
    pub fd: OwnedFd,
    /// The real address (port 0 resolved).
    pub addr: BindAddr,
    /// A unix socket path this process created and must unlink when it stops for good.
    created_path: bool,
}

impl Listener {
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Forgets that this process created the socket file, so dropping it will not unlink
    /// it (a new master inherited it, or systemd owns it).
    pub fn keep_path(&mut self) {
        self.created_path = false;
    }

    /// Whether this process created the socket file (and so may set its mode and owner).
    pub fn created_path(&self) -> bool {
        self.created_path
    }

    /// A duplicate of the descriptor (for handing to a runtime that takes ownership).
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let (true, BindAddr::Unix(p)) = (self.created_path, &self.addr) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Binds and listens on `addr`.
pub fn bind(addr: &BindAddr, backlog: i32) -> io::Result<Listener> {
    match addr {
        BindAddr::Tcp(sa) => {
            let socket = Socket::new(Domain::for_address(*sa), Type::STREAM, Some(Protocol::TCP))?;
            // Restarting on a port with connections in TIME_WAIT must work, as in every
            // server since BSD; SO_REUSEPORT is deliberately not set, so a second corral on
            // the same port fails loudly instead of silently sharing it.
            socket.set_reuse_address(true)?;
            socket.set_tcp_nodelay(true)?;
            socket.bind(&SockAddr::from(*sa))?;
            socket.listen(backlog)?;
            let real = socket.local_addr()?.as_socket().unwrap_or(*sa);
            Ok(Listener {
                fd: socket.into(),
                addr: BindAddr::Tcp(real),
                created_path: false,
            })
        }
        BindAddr::Unix(path) => {
            remove_stale_socket(path)?;
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            socket.bind(&SockAddr::unix(path)?)?;
            socket.listen(backlog)?;
            Ok(Listener {
                fd: socket.into(),
                addr: addr.clone(),
                created_path: true,
            })
        }
    }
}

/// A socket file left by a process that died is removed; one that still answers is in use.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is in use by another process", path.display()),
        )),
        Err(_) => std::fs::remove_file(path),
    }
}

/// Takes ownership of an inherited listening socket and works out its address.
pub fn adopt(fd: RawFd) -> io::Result<Listener> {
    let fd = super::adopt_fd(fd)?;
    if !getsockopt(&fd, sockopt::AcceptConn).map_err(io::Error::from)? {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {} is not a listening socket", fd.as_raw_fd()),
        ));
    }
    let socket = socket2::SockRef::from(&fd);
    let local = socket.local_addr()?;
    let addr = if let Some(sa) = local.as_socket() {
        BindAddr::Tcp(sa)
    } else if let Some(p) = local.as_pathname() {
        BindAddr::Unix(p.to_path_buf())
    } else {
        BindAddr::Unix(PathBuf::from("(unnamed)"))
    };
    Ok(Listener {
        fd,
        addr,
        created_path: false,
    })
}

/// Systemd socket activation (`sd_listen_fds(3)`): the descriptors from 3 on, when
/// `LISTEN_PID` is this process. Returns `(fd, name)` pairs; names come from
/// `LISTEN_FDNAMES` when present.
pub fn systemd_fds(
    env: &std::collections::BTreeMap<String, String>,
) -> io::Result<Vec<(RawFd, String)>> {
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_string());
    let Some(pid) = env.get("LISTEN_PID") else {
        return Ok(vec![]);
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(vec![]); // meant for another process (for example our parent)
    }
    let n: i32 = env
        .get("LISTEN_FDS")
        .ok_or_else(|| invalid("LISTEN_PID is set but LISTEN_FDS is not"))?
        .trim()
        .parse()
        .map_err(|_| invalid("LISTEN_FDS is not a number"))?;
    let names: Vec<String> = env
        .get("LISTEN_FDNAMES")
        .map(|s| s.split(':').map(String::from).collect())
        .unwrap_or_default();
    Ok((0..n.max(0))
        .map(|i| {
            (
                3 + i,
                names
                    .get(i as usize)
                    .cloned()
                    .unwrap_or_else(|| "unknown".into()),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bind_forms() {
        assert_eq!(
            BindAddr::parse("127.0.0.1:0").unwrap(),
            BindAddr::Tcp("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(
            BindAddr::parse("[::1]:8000").unwrap(),
            BindAddr::Tcp("[::1]:8000".parse().unwrap())
        );
        assert_eq!(
            BindAddr::parse("unix:/tmp/a.sock").unwrap(),
            BindAddr::Unix("/tmp/a.sock".into())
        );
        assert!(BindAddr::parse("localhost:80").is_ok());
        assert!(BindAddr::parse("nonsense").is_err());
        assert_eq!(
            BindAddr::parse("[::1]").unwrap_err().to_string(),
            "\"[::1]\": an IPv6 address needs a port: [IPv6]:PORT"
        );
        assert!(BindAddr::parse("1.2.3.4:99999").is_err());
        let back: String = BindAddr::parse("[::1]:80").unwrap().into();
        assert_eq!(back, "[::1]:80");
    }

    #[test]
    fn binds_port_zero_and_reports_the_real_port() {
        let l = bind(&BindAddr::parse("127.0.0.1:0").unwrap(), 16).unwrap();
        match l.addr {
            BindAddr::Tcp(a) => assert_ne!(a.port(), 0),
            _ => panic!(),
        }
    }
}
