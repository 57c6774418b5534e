//! The real client behind a proxy: `X-Forwarded-For`, `X-Forwarded-Proto` and RFC 7239
//! `Forwarded`, believed only from trusted peers (Gunicorn's `--forwarded-allow-ips`).
//!
//! The client is the rightmost address in the chain that is not itself a trusted proxy:
//! a client can put anything at the left of `X-Forwarded-For`, but each trusted proxy
//! appends the address it saw, so the first untrusted one from the right is the last
//! address that no one but a trusted proxy wrote. Headers from an untrusted peer are
//! ignored (left as they are for the application, never believed by corral). Unix-socket
//! peers are trusted: only local processes the socket's mode admits can connect.

use hyper::header::{HeaderMap, HeaderName};
use std::net::{IpAddr, SocketAddr};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// An address or a CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// `10.0.0.0/8`, `127.0.0.1`, `::1`, `fd00::/8`.
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0–{max}")),
            }
        };
        Ok(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let bits = |a: IpAddr| -> (u128, u32) {
            match a {
                IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let ((a, w), (b, w2)) = (bits(self.addr), bits(ip));
        if w != w2 {
            return false;
        }
        let shift = w - u32::from(self.prefix);
        shift >= w || (a >> shift) == (b >> shift)
    }
}

/// Which peers' forwarding headers are believed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub enum Trusted {
    /// `*`: every peer (right behind a router that is the only way in, such as Heroku's).
    All,
    Nets(Vec<IpNet>),
}

impl Trusted {
    /// `127.0.0.1` and `::1`: Gunicorn's default, this host's own proxies only.
    pub fn loopback() -> Trusted {
        Trusted::Nets(vec![
            IpNet::parse("127.0.0.1").expect("an address"),
            IpNet::parse("::1").expect("an address"),
        ])
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        match self {
            Trusted::All => true,
            Trusted::Nets(n) => n.iter().any(|n| n.contains(ip)),
        }
    }

    fn source(&self) -> Vec<String> {
        match self {
            Trusted::All => vec!["*".into()],
            Trusted::Nets(n) => n
                .iter()
                .map(|n| {
                    let full = if n.addr.is_ipv4() { 32 } else { 128 };
                    if n.prefix == full {
                        n.addr.to_string()
                    } else {
                        format!("{}/{}", n.addr, n.prefix)
                    }
                })
                .collect(),
        }
    }
}

impl TryFrom<Vec<String>> for Trusted {
    type Error = String;
    fn try_from(v: Vec<String>) -> Result<Trusted, String> {
        let parts: Vec<&str> = v
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if parts.contains(&"*") {
            return Ok(Trusted::All);
        }
        parts
            .into_iter()
            .map(IpNet::parse)
            .collect::<Result<_, _>>()
            .map(Trusted::Nets)
    }
}

impl From<Trusted> for Vec<String> {
    fn from(t: Trusted) -> Vec<String> {
        t.source()
    }
}

/// What a trusted proxy says of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    pub client: Option<IpAddr>,
    pub https: Option<bool>,
}

/// The client and scheme that `peer`'s headers give, if `peer` is trusted and says.
pub fn from_headers(
    h: &HeaderMap,
    peer: Option<SocketAddr>,
    trusted: &Trusted,
) -> Option<Forwarded> {
    if peer.is_some_and(|p| !trusted.trusts(p.ip())) {
        return None;
    }
    let mut chain: Vec<IpAddr> = vec![];
    let mut https = None;
    let mut bad = false;
    if h.contains_key(&FORWARDED) {
        for v in h.get_all(&FORWARDED) {
            let Ok(v) = v.to_str() else {
                bad = true;
                break;
            };
            for element in v.split(',') {
                for pair in element.split(';') {
                    let Some((k, val)) = pair.trim().split_once('=') else {
                        continue;
                    };
                    let val = val.trim().trim_matches('"');
                    match k.trim().to_ascii_lowercase().as_str() {
                        "for" => match node_ip(val) {
                            Some(ip) => chain.push(ip),
                            None => bad = true,
                        },
                        "proto" => https = Some(val.eq_ignore_ascii_case("https")),
                        _ => {}
                    }
                }
            }
        }
    } else {
        for v in h.get_all(&X_FORWARDED_FOR) {
            let Ok(v) = v.to_str() else {
                bad = true;
                break;
            };
            for a in v.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                match node_ip(a) {
                    Some(ip) => chain.push(ip),
                    None => bad = true,
                }
            }
        }
        if let Some(p) = h.get_all(&X_FORWARDED_PROTO).iter().next_back() {
            let p = p.to_str().unwrap_or("");
            let last = p.rsplit(',').next().unwrap_or("").trim();
            https = Some(last.eq_ignore_ascii_case("https"));
        }
    }
    // An unparsable entry ends what can be believed: take nothing left of it.
    let client = if bad {
        None
    } else {
        chain
            .iter()
            .rev()
            .find(|ip| !trusted.trusts(**ip))
            .or(chain.first())
            .copied()
    };
    (client.is_some() || https.is_some()).then_some(Forwarded { client, https })
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `[::1]:80`, `::1`.
fn node_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')?.split(']').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn trusted(list: &[&str]) -> Trusted {
        Trusted::try_from(list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn nets() {
        let n = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(IpNet::parse("::1")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "1.2.3.4/x"] {
            assert!(IpNet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        let t = trusted(&["127.0.0.1", "10.0.0.0/8"]);
        let peer = Some("127.0.0.1:5000".parse().unwrap());
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.1.1"),
            ("x-forwarded-proto", "https"),
        ]);
        let f = from_headers(&h, peer, &t).unwrap();
        assert_eq!(f.client, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(f.https, Some(true));
        let untrusted = Some("192.0.2.1:5000".parse().unwrap());
        assert_eq!(from_headers(&h, untrusted, &t), None);
        let fwd = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https",
        )]);
        let f = from_headers(&fwd, peer, &t).unwrap();
        assert_eq!(f.client, Some("2001:db8::7".parse().unwrap()));
        assert_eq!(f.https, Some(true));
        let garbage = headers(&[("x-forwarded-for", "1.2.3.4, <script>")]);
        assert_eq!(
            from_headers(&garbage, peer, &t).and_then(|f| f.client),
            None
        );
        assert_eq!(from_headers(&headers(&[]), peer, &t), None);
    }
}
