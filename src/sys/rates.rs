//! Fixed-window counters shared by every worker of a host, in the balance board's
//! memfd: what login throttling counts. Keys are 64-bit hashes; a slot is claimed with a
//! compare-and-swap, reused once its window has passed, and when a key's neighbourhood
//! is full the window that ends soonest is evicted. Lock-free and approximate by design:
//! two workers opening a window at the same instant may lose one count.

use std::sync::atomic::{AtomicU64, Ordering::*};

/// Counters a host holds at once.
pub const RATE_SLOTS: usize = 16_384;
const PROBE: usize = 32;

#[repr(C)]
struct Slot {
    key: AtomicU64,
    /// When the window ends (seconds since the epoch).
    until: AtomicU64,
    count: AtomicU64,
}

/// The table (all-zero bytes are an empty table).
#[repr(C)]
pub struct Rates {
    /// A random key the master writes once, so keys can be hashed with a secret the
    /// whole host shares and no client knows (no crafted collisions).
    secret: [AtomicU64; 4],
    slots: [Slot; RATE_SLOTS],
}

impl Rates {
    /// Master side, once: a fresh random secret.
    pub fn init_secret(&self) {
        for w in &self.secret {
            w.store(uuid::Uuid::new_v4().as_u64_pair().0, Relaxed);
        }
    }

    /// The host's secret, for keyed hashing.
    pub fn secret(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, w) in self.secret.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&w.load(Relaxed).to_le_bytes());
        }
        out
    }
    fn slot(&self, key: u64, now: u64, claim: bool) -> Option<&Slot> {
        let key = key | 1; // never 0, which marks a free slot
        let start = (key % RATE_SLOTS as u64) as usize;
        let mut free = None;
        let mut soonest: Option<(&Slot, u64, u64)> = None;
        for i in 0..PROBE {
            let s = &self.slots[(start + i) % RATE_SLOTS];
            let k = s.key.load(Acquire);
            if k == key {
                return Some(s);
            }
            let until = s.until.load(Relaxed);
            if free.is_none() && (k == 0 || until <= now) {
                free = Some((s, k));
            }
            if soonest.is_none_or(|(_, _, u)| until < u) {
                soonest = Some((s, k, until));
            }
        }
        let (s, old) = free.or(soonest.map(|(s, k, _)| (s, k))).filter(|_| claim)?;
        s.key
            .compare_exchange(old, key, AcqRel, Acquire)
            .ok()
            .map(|_| {
                s.count.store(0, Relaxed);
                s.until.store(0, Release);
                s
            })
    }

    /// Counts one event for `key` in its window of `period` seconds; returns the count
    /// in the window, this one included, and when the window ends.
    pub fn hit(&self, key: u64, period: u64, now: u64) -> Option<(u64, u64)> {
        let s = self.slot(key, now, true)?;
        let until = s.until.load(Acquire);
        if until <= now {
            s.until.store(now + period, Release);
            s.count.store(1, Relaxed);
            return Some((1, now + period));
        }
        Some((s.count.fetch_add(1, Relaxed) + 1, until))
    }

    /// The count in `key`'s current window (0 when there is none), and when it ends.
    pub fn get(&self, key: u64, now: u64) -> (u64, u64) {
        match self.slot(key, now, false) {
            Some(s) if s.until.load(Acquire) > now => {
                (s.count.load(Relaxed), s.until.load(Relaxed))
            }
            _ => (0, now),
        }
    }

    /// Ends `key`'s window.
    pub fn reset(&self, key: u64, now: u64) {
        if let Some(s) = self.slot(key, now, false) {
            s.until.store(0, Release);
            s.count.store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::sys::scoreboard::Balance;

    #[test]
    fn windows_count_expire_and_reset() {
        let b = Balance::create().unwrap();
        let r = b.rates();
        assert_eq!(r.hit(42, 60, 1000), Some((1, 1060)));
        assert_eq!(r.hit(42, 60, 1001), Some((2, 1060)));
        assert_eq!(r.get(42, 1001), (2, 1060));
        assert_eq!(r.get(42, 1060), (0, 1060), "expired");
        assert_eq!(r.hit(42, 60, 1060), Some((1, 1120)), "a new window");
        r.reset(42, 1061);
        assert_eq!(r.get(42, 1061).0, 0);
        assert_eq!(r.get(7, 1061).0, 0, "unknown keys count 0");
    }
}
