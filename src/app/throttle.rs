//! Login throttling (simplejwt has none; DRF has the vocabulary): failed logins counted
//! per client address and per username, in counters every worker of the host shares.
//!
//! - **Per address** (`auth.login_throttle_per_ip`, 20/min): an address that keeps failing
//!   is refused, whatever usernames it tries.
//! - **Per username** (`auth.login_throttle_per_user`, 10/min), counting only failures
//!   from addresses that never logged in as that user: a distributed guess at one
//!   account is slowed down, but the user's own addresses (a success from them is
//!   remembered for 30 days) keep working, so an attacker cannot lock a known user out.
//! - A success from an address ends that address's window.
//!
//! Refusals are DRF's 429 with `Retry-After`; no password is checked, so they cost
//! nothing. Keys are HMAC-SHA256 of the address or name under a random secret of the
//! host, so no client can aim a collision at someone else's counter.

use super::settings::{AuthConfig, Rate};
use hmac::{Hmac, Mac};
use std::net::IpAddr;

/// How long a successful login makes an address "known" for its user.
const KNOWN_FOR: u64 = 30 * 86_400;

/// The rates, parsed once per worker.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    per_ip: Option<Rate>,
    per_user: Option<Rate>,
}

impl Limits {
    pub(super) fn of(a: &AuthConfig) -> Result<Limits, String> {
        Ok(Limits {
            per_ip: Rate::parse(&a.login_throttle_per_ip)?,
            per_user: Rate::parse(&a.login_throttle_per_user)?,
        })
    }
}

/// One login attempt's view of the counters.
pub(super) struct Attempt {
    limits: Limits,
    ip: Option<u64>,
    user: u64,
    known: Option<u64>,
    now: u64,
}

fn key(secret: &[u8; 32], parts: &[&[u8]]) -> u64 {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    for p in parts {
        m.update(&(p.len() as u64).to_le_bytes());
        m.update(p);
    }
    let out = m.finalize().into_bytes();
    u64::from_le_bytes(out[..8].try_into().expect("8 bytes"))
}

impl Attempt {
    pub(super) fn new(limits: Limits, client: Option<IpAddr>, username: &str) -> Option<Attempt> {
        let rates = crate::worker::host_rates()?;
        let secret = rates.secret();
        let ip = client.map(|c| c.to_string());
        Some(Attempt {
            limits,
            ip: ip.as_ref().map(|ip| key(&secret, &[b"ip", ip.as_bytes()])),
            user: key(&secret, &[b"user", username.as_bytes()]),
            known: ip.map(|ip| key(&secret, &[b"known", username.as_bytes(), ip.as_bytes()])),
            now: crate::storage::now_secs() as u64,
        })
    }

    fn known(&self) -> bool {
        let rates = crate::worker::host_rates().expect("an attempt exists only with them");
        self.known.is_some_and(|k| rates.get(k, self.now).0 > 0)
    }

    /// Seconds until this attempt may be made, when it is throttled now.
    pub(super) fn throttled(&self) -> Option<u64> {
        let rates = crate::worker::host_rates()?;
        let over = |key: u64, rate: Rate| {
            let (count, until) = rates.get(key, self.now);
            (count >= rate.count).then(|| until.saturating_sub(self.now).max(1))
        };
        let by_ip = self
            .ip
            .zip(self.limits.per_ip)
            .and_then(|(k, r)| over(k, r));
        let by_user = match self.limits.per_user {
            Some(r) if !self.known() => over(self.user, r),
            _ => None,
        };
        by_ip.max(by_user)
    }

    pub(super) fn failed(&self) {
        let Some(rates) = crate::worker::host_rates() else {
            return;
        };
        if let (Some(k), Some(r)) = (self.ip, self.limits.per_ip) {
            rates.hit(k, r.period_secs, self.now);
        }
        if let Some(r) = self.limits.per_user {
            if !self.known() {
                rates.hit(self.user, r.period_secs, self.now);
            }
        }
    }

    pub(super) fn succeeded(&self) {
        let Some(rates) = crate::worker::host_rates() else {
            return;
        };
        if let Some(k) = self.ip {
            rates.reset(k, self.now);
        }
        if let Some(k) = self.known {
            rates.hit(k, KNOWN_FOR, self.now);
        }
    }
}
