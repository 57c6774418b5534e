//! Password hashes: argon2id for new ones, Django's `pbkdf2_sha256$…` and `argon2$…` for
//! imported ones, and a small pool of low-priority threads to compute them.
//!
//! New hashes use OWASP's argon2id parameters (19 MiB, 2 passes, 1 lane) and Django's
//! storage format (`argon2$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), so a Django project
//! sharing the table verifies them too. A verified hash in any other form or with other
//! parameters is re-hashed on that login. A stored hash may not demand more than
//! `max_pbkdf2_iterations` PBKDF2 rounds, or more than 256 MiB / 16 passes / 16 lanes of
//! argon2: a hostile row must not turn a login into a denial of service.
//!
//! Hashing never runs on a worker's event loop: [`Pool`] runs it on dedicated threads at a
//! lower scheduling priority, so logins at full speed leave other requests responsive.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::Sha256;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tracing::warn;

const M_COST: u32 = 19_456;
const T_COST: u32 = 2;
const P_COST: u32 = 1;
const MAX_M_COST: u32 = 262_144;
const MAX_T_COST: u32 = 16;
const MAX_P_COST: u32 = 16;

fn ours() -> Argon2<'static> {
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(M_COST, T_COST, P_COST, None).expect("valid parameters"),
    )
}

/// A new hash, in Django's argon2 format.
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    let phc = ours()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with valid parameters")
        .to_string();
    format!("argon2{phc}")
}

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Match { rehash: bool },
    NoMatch,
}

/// Checks `password` against a stored hash in any supported format.
pub fn check(password: &str, encoded: &str, max_pbkdf2_iterations: u64) -> Check {
    if let Some(phc) = encoded.strip_prefix("argon2$") {
        return check_argon2(password, &format!("${phc}"));
    }
    if let Some(rest) = encoded.strip_prefix("pbkdf2_sha256$") {
        return check_pbkdf2(password, rest, max_pbkdf2_iterations);
    }
    // `!…` is Django's unusable password; bcrypt, scrypt, md5… are not supported here and
    // never match (import such users and set their password with `corral user passwd`).
    Check::NoMatch
}

fn check_argon2(password: &str, phc: &str) -> Check {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return Check::NoMatch;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return Check::NoMatch;
    };
    if params.m_cost() > MAX_M_COST || params.t_cost() > MAX_T_COST || params.p_cost() > MAX_P_COST
    {
        warn!(
            "Refusing to verify an argon2 hash that demands m={} t={} p={}",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        );
        return Check::NoMatch;
    }
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => {
            let current = parsed.algorithm.as_str() == "argon2id"
                && params.m_cost() == M_COST
                && params.t_cost() == T_COST
                && params.p_cost() == P_COST;
            Check::Match { rehash: !current }
        }
        Err(_) => Check::NoMatch,
    }
}

fn check_pbkdf2(password: &str, rest: &str, max_iterations: u64) -> Check {
    let mut parts = rest.splitn(3, '$');
    let (Some(iterations), Some(salt), Some(expected)) = (parts.next(), parts.next(), parts.next())
    else {
        return Check::NoMatch;
    };
    let Ok(iterations) = iterations.parse::<u32>() else {
        return Check::NoMatch;
    };
    if iterations == 0 || u64::from(iterations) > max_iterations {
        warn!("Refusing to verify a PBKDF2 hash that demands {iterations} iterations (auth.max_pbkdf2_iterations = {max_iterations})");
        return Check::NoMatch;
    }
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt.as_bytes(), iterations, &mut out);
    if constant_time_eq(STANDARD.encode(out).as_bytes(), expected.as_bytes()) {
        Check::Match { rehash: true }
    } else {
        Check::NoMatch
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Computes one PBKDF2-SHA256 of `iterations` rounds and throws it away: what checking a
/// Django hash of that strength costs.
pub fn pbkdf2_work(iterations: u32) {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(b"corral-calibration", b"salt", iterations.max(1), &mut out);
}

/// The iteration count of a stored Django `pbkdf2_sha256$…` hash.
pub fn pbkdf2_iterations(encoded: &str) -> Option<u64> {
    let rest = encoded.strip_prefix("pbkdf2_sha256$")?;
    rest.split('$').next()?.parse().ok()
}

/// Spends the time a real check would, for a user that does not exist, so response times
/// do not reveal which usernames exist (Django ticket #20760).
pub fn burn(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("corral-dummy-password"));
    let _ = check(password, dummy, 0);
}

type Job = Box<dyn FnOnce() + Send>;

/// Threads that hash passwords for one worker.
#[derive(Clone)]
pub struct Pool {
    jobs: mpsc::Sender<Job>,
}

impl Pool {
    /// Starts `threads` hashing threads at nice +10.
    pub fn new(threads: usize) -> std::io::Result<Pool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("corral-hash-{i}"))
                .spawn(move || {
                    crate::sys::lower_thread_priority(10);
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // the pool was dropped
                        }
                    }
                })?;
        }
        Ok(Pool { jobs: tx })
    }

    /// Runs `f` on a hashing thread and waits for it without blocking the event loop.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs.send(Box::new(move || drop(tx.send(f())))).ok()?;
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn django_pbkdf2_vectors_verify() {
        // reference/jwt.md §2.2, computed with hashlib; the first two are Django's own.
        let vectors = [
            "pbkdf2_sha256$216000$seasalt$youGZxOw6ZOcfrXv2i8/AhrnpZflJJ9EshS9XmUJTUg=",
            "pbkdf2_sha256$260000$seasalt$YlZ2Vggtqdc61YjArZuoApoBh9JNGYoDRBUGu6tcJQo=",
            "pbkdf2_sha256$1000000$seasalt$r1uLUxoxpP2Ued/qxvmje7UH9PUJBkRrvf9gGPL7Cps=",
        ];
        for v in vectors {
            assert_eq!(
                check("lètmein", v, 3_000_000),
                Check::Match { rehash: true },
                "{v}"
            );
            assert_eq!(check("letmein", v, 3_000_000), Check::NoMatch);
        }
        // Above the cap, a correct password is refused rather than computed.
        assert_eq!(check("lètmein", vectors[2], 999_999), Check::NoMatch);
    }

    #[test]
    fn argon2_round_trip_and_django_format() {
        let h = hash("s3cret pass");
        assert!(
            h.starts_with("argon2$argon2id$v=19$m=19456,t=2,p=1$"),
            "{h}"
        );
        assert_eq!(check("s3cret pass", &h, 0), Check::Match { rehash: false });
        assert_eq!(check("s3cret pas", &h, 0), Check::NoMatch);
        // Django's default argon2 parameters verify, and ask for a re-hash.
        let django = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(102_400, 2, 8, None).unwrap(),
        );
        let salt = SaltString::encode_b64(b"abcdefghijklmnopqrstuv").unwrap();
        let stored = format!("argon2{}", django.hash_password(b"pw", &salt).unwrap());
        assert_eq!(check("pw", &stored, 0), Check::Match { rehash: true });
        assert_eq!(check("pw", "!unusable", 0), Check::NoMatch);
    }
}
