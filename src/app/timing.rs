//! [`LoginTiming`]: every failed login takes as long as the costliest check this database
//! could make, so response times do not tell which accounts exist.
//!
//! Measured before: an unknown user cost 30–35 ms (a dummy argon2id check), a user with
//! Django's unusable password or a refused iteration count under 1 ms, an imported PBKDF2
//! user with a wrong password 89–170 ms. Hashing alone cannot even these out: a PBKDF2
//! hash of 870,000 rounds cannot be checked in 35 ms. So a failed login answers no sooner
//! than a floor: the time of an argon2id check, or of the strongest PBKDF2 hash among the
//! users (within `auth.max_pbkdf2_iterations`), whichever is longer, measured on this
//! worker's hashing thread. A check that takes longer raises the floor at once, and the
//! floor is measured again every [`RECALIBRATE`] (imports add users). The wait is a timer,
//! not work: a failed login holds no thread while it waits. Successful logins are not
//! delayed: they need the password.

use super::auth::password;
use super::users;
use crate::storage::Db;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How often the floor is measured again.
const RECALIBRATE: Duration = Duration::from_secs(600);

pub(super) struct LoginTiming {
    /// The floor, in microseconds; 0 before the first measurement.
    floor_us: AtomicU64,
    /// `CLOCK_MONOTONIC` ms of the last measurement.
    measured_ms: AtomicU64,
}

impl LoginTiming {
    pub(super) fn new() -> LoginTiming {
        LoginTiming {
            floor_us: AtomicU64::new(0),
            measured_ms: AtomicU64::new(0),
        }
    }

    /// A password check took `spent`: failures wait at least that long from now on.
    pub(super) fn observe(&self, spent: Duration) {
        self.floor_us.fetch_max(spent.as_micros() as u64, Relaxed);
    }

    /// Waits until a failed login that started at `started` has taken the floor.
    pub(super) async fn pad(
        &self,
        started: Instant,
        db: &Db,
        hasher: &password::Pool,
        max_iterations: u64,
    ) {
        let now_ms = crate::sys::monotonic_ms();
        let last = self.measured_ms.load(Relaxed);
        if last == 0 || now_ms.saturating_sub(last) >= RECALIBRATE.as_millis() as u64 {
            self.measured_ms.store(now_ms.max(1), Relaxed);
            self.calibrate(db, hasher, max_iterations).await;
        }
        let floor = Duration::from_micros(self.floor_us.load(Relaxed));
        tokio::time::sleep_until((started + floor).into()).await;
    }

    /// Measures an argon2id check and a check of the strongest PBKDF2 hash in the table,
    /// and makes the longer the floor (a fresh figure: a one-off slow check under load
    /// does not stay the floor for good).
    async fn calibrate(&self, db: &Db, hasher: &password::Pool, max_iterations: u64) {
        let t = Instant::now();
        hasher.run(|| password::burn("calibration")).await;
        let mut floor = t.elapsed();
        let rounds = users::strongest_pbkdf2(db, max_iterations)
            .await
            .ok()
            .flatten()
            .unwrap_or(0);
        if rounds > 0 {
            let t = Instant::now();
            let rounds = rounds.min(u64::from(u32::MAX)) as u32;
            hasher.run(move || password::pbkdf2_work(rounds)).await;
            floor = floor.max(t.elapsed());
        }
        self.floor_us.store(floor.as_micros() as u64, Relaxed);
    }
}
