//! The PROXY protocol, v1 (text) and v2 (binary), as HAProxy and AWS NLB send it ahead of
//! the HTTP bytes: the client's real address, for connections from `--proxy-allow-ips`.
//!
//! Parsing is strict, after the 2026 injection fixes in Puma: a v1 line is at most 107
//! bytes, exactly six space-separated fields of the right shape, ended by CRLF, with no
//! other CR or LF; a v2 header's length must cover its address block exactly as its
//! family needs and may not exceed 520 bytes. Anything else, or no header from a peer
//! that must send one, closes the connection (logged by the caller).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_MAX: usize = 107;
const V2_MAX_LEN: usize = 520;

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    /// The client's address.
    Proxied(SocketAddr),
    /// A connection of the proxy's own (v2 `LOCAL`, v1 `UNKNOWN`): keep the peer.
    Local,
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Incomplete,
    Done { len: usize, header: Header },
    Bad(String),
}

/// Reads the header off `s` (only its bytes: what follows is left for HTTP), or says why
/// the connection must close. The caller bounds the time it may take.
pub(crate) async fn read(s: &mut TcpStream) -> Result<Header, String> {
    let mut buf = [0u8; 16 + V2_MAX_LEN];
    loop {
        let n = s
            .peek(&mut buf)
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        if n == 0 {
            return Err("the connection closed before a PROXY header".into());
        }
        match parse(&buf[..n]) {
            Parsed::Done { len, header } => {
                s.read_exact(&mut buf[..len])
                    .await
                    .map_err(|e| format!("read failed: {e}"))?;
                return Ok(header);
            }
            Parsed::Bad(why) => return Err(why),
            // Rare (a header split across packets): wait for the rest without spinning
            // on the bytes already there.
            Parsed::Incomplete => tokio::time::sleep(std::time::Duration::from_millis(2)).await,
        }
    }
}

fn parse(b: &[u8]) -> Parsed {
    if b.starts_with(b"PROXY ") {
        return parse_v1(b);
    }
    if b.starts_with(V2_SIG) {
        return parse_v2(b);
    }
    let n = b.len().min(12);
    if b"PROXY ".starts_with(&b[..n.min(6)]) || V2_SIG.starts_with(&b[..n]) {
        return Parsed::Incomplete;
    }
    Parsed::Bad("no PROXY protocol header".into())
}

fn parse_v1(b: &[u8]) -> Parsed {
    let window = &b[..b.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        if window.iter().any(|c| *c == b'\n' || *c == b'\r') && !window.ends_with(b"\r") {
            return Parsed::Bad("PROXY v1: a CR or LF inside the line".into());
        }
        if b.len() >= V1_MAX {
            return Parsed::Bad(format!("PROXY v1: no CRLF within {V1_MAX} bytes"));
        }
        return Parsed::Incomplete;
    };
    let line = &b[..end];
    if line.iter().any(|c| *c == b'\r' || *c == b'\n') {
        return Parsed::Bad("PROXY v1: a CR or LF inside the line".into());
    }
    if line.iter().any(|c| !(0x20..0x7f).contains(c)) {
        return Parsed::Bad("PROXY v1: a control character inside the line".into());
    }
    let line = std::str::from_utf8(line).expect("printable ASCII");
    let f: Vec<&str> = line.split(' ').collect();
    let len = end + 2;
    match f.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Parsed::Done {
            len,
            header: Header::Local,
        },
        ["PROXY", proto @ ("TCP4" | "TCP6"), src, _dst, sport, dport] => {
            let ip = match (*proto, src.parse::<IpAddr>()) {
                (_, Err(_)) => return Parsed::Bad(format!("PROXY v1: bad source address {src:?}")),
                ("TCP4", Ok(ip @ IpAddr::V4(_))) | ("TCP6", Ok(ip @ IpAddr::V6(_))) => ip,
                (_, Ok(_)) => {
                    return Parsed::Bad(format!("PROXY v1: {src} is not a {proto} address"))
                }
            };
            let port = |p: &str| {
                (!p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()))
                    .then(|| p.parse::<u16>().ok())
                    .flatten()
            };
            match (port(sport), port(dport), _dst.parse::<IpAddr>().is_ok()) {
                (Some(sp), Some(_), true) => Parsed::Done {
                    len,
                    header: Header::Proxied(SocketAddr::new(ip, sp)),
                },
                _ => Parsed::Bad(format!("PROXY v1: bad addresses or ports in {line:?}")),
            }
        }
        _ => Parsed::Bad(format!("PROXY v1: expected 6 fields, got {line:?}")),
    }
}

fn parse_v2(b: &[u8]) -> Parsed {
    if b.len() < 16 {
        return Parsed::Incomplete;
    }
    let (ver_cmd, fam, len) = (
        b[12],
        b[13],
        usize::from(u16::from_be_bytes([b[14], b[15]])),
    );
    if ver_cmd >> 4 != 2 {
        return Parsed::Bad(format!("PROXY v2: version {} is not 2", ver_cmd >> 4));
    }
    if len > V2_MAX_LEN {
        return Parsed::Bad(format!("PROXY v2: length {len} is over {V2_MAX_LEN}"));
    }
    let need = match fam {
        0x11 | 0x12 => 12,
        0x21 | 0x22 => 36,
        0x31 | 0x32 => 216,
        _ => 0,
    };
    if len < need {
        return Parsed::Bad(format!(
            "PROXY v2: length {len} is too short for its address family ({need} bytes)"
        ));
    }
    if b.len() < 16 + len {
        return Parsed::Incomplete;
    }
    let total = 16 + len;
    let a = &b[16..total];
    let header = match (ver_cmd & 0x0f, fam) {
        (0, _) => Header::Local,
        (1, 0x11 | 0x12) => {
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Header::Proxied(SocketAddr::new(
                IpAddr::V4(ip),
                u16::from_be_bytes([a[8], a[9]]),
            ))
        }
        (1, 0x21 | 0x22) => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[32], a[33]]);
            Header::Proxied(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port))
        }
        (1, _) => Header::Local, // UNSPEC or unix: no address to take
        (c, _) => return Parsed::Bad(format!("PROXY v2: unknown command {c}")),
    };
    Parsed::Done { len: total, header }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(cmd: u8, fam: u8, addr: &[u8], len: Option<u16>) -> Vec<u8> {
        let mut v = V2_SIG.to_vec();
        v.extend([0x20 | cmd, fam]);
        v.extend(len.unwrap_or(addr.len() as u16).to_be_bytes());
        v.extend(addr);
        v
    }

    #[test]
    fn v1() {
        let ok = b"PROXY TCP4 198.51.100.7 10.0.0.1 5555 80\r\nGET /";
        assert_eq!(
            parse(ok),
            Parsed::Done {
                len: 42,
                header: Header::Proxied("198.51.100.7:5555".parse().unwrap())
            }
        );
        assert_eq!(
            parse(b"PROXY TCP6 ::1 ::1 1 2\r\n"),
            Parsed::Done {
                len: 24,
                header: Header::Proxied("[::1]:1".parse().unwrap())
            }
        );
        assert!(matches!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parsed::Done {
                header: Header::Local,
                ..
            }
        ));
        assert_eq!(parse(b"PROXY TCP4 1.2"), Parsed::Incomplete);
        assert_eq!(parse(b"PRO"), Parsed::Incomplete);
        for bad in [
            &b"PROXY TCP4 1.2.3.4\r 5.6.7.8 1 2\r\n"[..],
            b"PROXY TCP4 1.2.3.4\n5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 extra\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert!(
                matches!(parse(bad), Parsed::Bad(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(parse(&long), Parsed::Bad(_)));
    }

    #[test]
    fn v2_lengths_that_lie_are_refused() {
        let addr = [203, 0, 113, 5, 10, 0, 0, 1, 0x1f, 0x90, 0, 80];
        let h = v2(1, 0x11, &addr, None);
        assert_eq!(
            parse(&h),
            Parsed::Done {
                len: 28,
                header: Header::Proxied("203.0.113.5:8080".parse().unwrap())
            }
        );
        assert!(matches!(
            parse(&v2(0, 0x00, &[], None)),
            Parsed::Done {
                header: Header::Local,
                ..
            }
        ));
        assert!(
            matches!(parse(&v2(1, 0x11, &addr[..4], None)), Parsed::Bad(_)),
            "too short for TCP4"
        );
        assert!(
            matches!(parse(&v2(1, 0x11, &addr, Some(2000))), Parsed::Bad(_)),
            "oversized"
        );
        assert_eq!(
            parse(&v2(1, 0x11, &addr, Some(40))),
            Parsed::Incomplete,
            "says more than sent"
        );
        let mut bad_version = h.clone();
        bad_version[12] = 0x11;
        assert!(matches!(parse(&bad_version), Parsed::Bad(_)));
    }
}
