//! A worker's metrics in shared memory: a fixed table of series (counters, gauges and
//! histograms), keyed by their text, that the worker's threads update with atomics and
//! its master reads and sums.
//!
//! No lock anywhere: a series is claimed once with a compare-and-swap on its state and
//! then only ever added to. The table lives in the worker's scoreboard, which the master
//! created and keeps mapped, so a worker's counts outlive the worker, even after
//! `kill -9`, until the master has folded them into its totals.

use super::scoreboard::{read_words, write_words};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

/// Series one worker can hold; more are counted in [`Stats::dropped`] and not recorded.
pub const SERIES: usize = 256;
/// Histogram buckets: the bounds of [`crate::metrics::BOUNDS`] and `+Inf`.
pub const BUCKETS: usize = 15;
const NAME_WORDS: usize = 24; // 192 bytes: "family{labels}"
const EMPTY: u32 = 0;
const CLAIMING: u32 = 1;
const READY: u32 = 2;

/// What a series measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
}

impl Kind {
    fn from_raw(n: u32) -> Option<Kind> {
        Some(match n {
            1 => Kind::Counter,
            2 => Kind::Gauge,
            3 => Kind::Histogram,
            _ => return None,
        })
    }
}

#[repr(C)]
struct Series {
    state: AtomicU32,
    kind: AtomicU32,
    name_len: AtomicU32,
    _pad: AtomicU32,
    hash: AtomicU64,
    name: [AtomicU64; NAME_WORDS],
    /// A counter's count, or a gauge's value (an `i64` stored as `u64`).
    value: AtomicU64,
    /// A histogram's sum of observations, in nanoseconds (or billionths of the unit).
    sum: AtomicU64,
    /// A histogram's observations per bucket (not cumulative).
    buckets: [AtomicU64; BUCKETS],
}

/// The table (all-zero bytes are an empty table).
#[repr(C)]
pub struct Stats {
    dropped: AtomicU64,
    series: [Series; SERIES],
}

/// One series as read by the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub kind: Kind,
    /// `family{labels}` or `family`.
    pub name: String,
    pub value: u64,
    pub sum: u64,
    pub buckets: [u64; BUCKETS],
}

impl Stats {
    /// Adds `n` to a counter.
    pub fn add(&self, name: &[u8], n: u64) {
        if let Some(s) = self.find(Kind::Counter, name) {
            s.value.fetch_add(n, Relaxed);
        }
    }

    /// Moves a gauge by `delta`.
    pub fn gauge_add(&self, name: &[u8], delta: i64) {
        if let Some(s) = self.find(Kind::Gauge, name) {
            s.value.fetch_add(delta as u64, Relaxed);
        }
    }

    /// Sets a gauge.
    pub fn gauge_set(&self, name: &[u8], value: i64) {
        if let Some(s) = self.find(Kind::Gauge, name) {
            s.value.store(value as u64, Relaxed);
        }
    }

    /// Records one observation of `nanos` in `bucket` (`0..BUCKETS`).
    pub fn observe(&self, name: &[u8], bucket: usize, nanos: u64) {
        if let Some(i) = self.index(Kind::Histogram, name) {
            self.observe_at(i, bucket, nanos);
        }
    }

    /// The slot of a series (claimed on first use), for callers that remember it.
    pub fn index(&self, kind: Kind, name: &[u8]) -> Option<usize> {
        let s = self.find(kind, name)?;
        Some(
            (s as *const Series as usize - self.series.as_ptr() as usize)
                / std::mem::size_of::<Series>(),
        )
    }

    /// [`Stats::observe`] into the histogram at slot `i` (from [`Stats::index`]).
    pub fn observe_at(&self, i: usize, bucket: usize, nanos: u64) {
        if let Some(s) = self.series.get(i) {
            s.buckets[bucket.min(BUCKETS - 1)].fetch_add(1, Relaxed);
            s.sum.fetch_add(nanos, Relaxed);
        }
    }

    /// Series that found no room (the table was full or the name too long).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Every recorded series.
    pub fn samples(&self) -> Vec<Sample> {
        let mut out = vec![];
        for s in &self.series {
            if s.state.load(Acquire) != READY {
                continue;
            }
            let Some(kind) = Kind::from_raw(s.kind.load(Relaxed)) else {
                continue;
            };
            let len = s.name_len.load(Relaxed) as usize;
            let name = String::from_utf8_lossy(&read_words(&s.name, len)).into_owned();
            let mut buckets = [0; BUCKETS];
            for (b, a) in buckets.iter_mut().zip(&s.buckets) {
                *b = a.load(Relaxed);
            }
            out.push(Sample {
                kind,
                name,
                value: s.value.load(Relaxed),
                sum: s.sum.load(Relaxed),
                buckets,
            });
        }
        out
    }

    /// The series named `name`, claimed on first use (open addressing, linear probing).
    fn find(&self, kind: Kind, name: &[u8]) -> Option<&Series> {
        if name.len() > NAME_WORDS * 8 {
            self.dropped.fetch_add(1, Relaxed);
            return None;
        }
        let hash = fnv1a(name) | 1; // never 0, so a claimed slot is told from a fresh one
        let start = (hash % SERIES as u64) as usize;
        for i in 0..SERIES {
            let s = &self.series[(start + i) % SERIES];
            let mut state = s.state.load(Acquire);
            if state == EMPTY {
                match s.state.compare_exchange(EMPTY, CLAIMING, AcqRel, Acquire) {
                    Ok(_) => {
                        write_words(&s.name, name);
                        s.name_len.store(name.len() as u32, Relaxed);
                        s.kind.store(kind as u32, Relaxed);
                        s.hash.store(hash, Relaxed);
                        s.state.store(READY, Release);
                        return Some(s);
                    }
                    Err(now) => state = now,
                }
            }
            // Another thread of this worker is writing the name: it takes a few stores.
            let mut spins = 0u32;
            while state == CLAIMING {
                spins += 1;
                if spins > 64 {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
                state = s.state.load(Acquire);
            }
            if s.hash.load(Relaxed) == hash
                && s.kind.load(Relaxed) == kind as u32
                && s.name_len.load(Relaxed) as usize == name.len()
                && same_words(&s.name, name)
            {
                return Some(s);
            }
        }
        self.dropped.fetch_add(1, Relaxed);
        None
    }
}

/// Whether `words` hold `bytes` (compared in place: this runs on every request).
fn same_words(words: &[AtomicU64], bytes: &[u8]) -> bool {
    bytes.chunks(8).zip(words).all(|(chunk, w)| {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        w.load(Relaxed) == u64::from_le_bytes(b)
    })
}

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, c| {
        (h ^ u64::from(*c)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use crate::sys::scoreboard::Scoreboard;

    #[test]
    fn counts_gauges_and_histograms_by_name() {
        let sb = Scoreboard::create().unwrap();
        let st = sb.stats();
        st.add(b"a_total", 2);
        st.add(b"a_total", 3);
        st.add(b"b_total{x=\"1\"}", 1);
        st.gauge_add(b"g", 5);
        st.gauge_add(b"g", -7);
        st.observe(b"h", 0, 1_000);
        st.observe(b"h", 14, 2_000);
        let mut s = st.samples();
        s.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<_> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a_total", "b_total{x=\"1\"}", "g", "h"]);
        assert_eq!(s[0].value, 5);
        assert_eq!(s[2].value as i64, -2);
        assert_eq!((s[3].buckets[0], s[3].buckets[14], s[3].sum), (1, 1, 3_000));
    }

    #[test]
    fn a_full_table_drops_and_counts_instead_of_overwriting() {
        let sb = Scoreboard::create().unwrap();
        let st = sb.stats();
        for i in 0..super::SERIES + 10 {
            st.add(format!("c{i}_total").as_bytes(), 1);
        }
        assert_eq!(st.samples().len(), super::SERIES);
        assert_eq!(st.dropped(), 10);
        st.add(&[b'x'; 300], 1);
        assert_eq!(st.dropped(), 11, "too long a name is dropped too");
    }
}
