//! The master's sums: every live worker's table plus what workers that are gone had
//! counted, so counters never go backwards during a master's life.

use super::Kind;
use crate::sys::stats::{Stats, BUCKETS};
use std::collections::BTreeMap;

/// One series, summed.
#[derive(Debug, Clone, PartialEq)]
pub struct Acc {
    pub kind: Kind,
    /// A counter's or gauge's value.
    pub value: f64,
    /// A histogram's sum, in seconds.
    pub sum: f64,
    /// A histogram's observations per bucket (not cumulative).
    pub buckets: [u64; BUCKETS],
}

impl Acc {
    fn new(kind: Kind) -> Acc {
        Acc {
            kind,
            value: 0.0,
            sum: 0.0,
            buckets: [0; BUCKETS],
        }
    }
}

/// Series by `(family, labels)`, where labels is the text between the braces.
pub type Snapshot = BTreeMap<(String, String), Acc>;

/// What the master keeps of workers that are gone.
#[derive(Debug, Default)]
pub struct Totals {
    gone: Snapshot,
}

impl Totals {
    /// Keeps a departing worker's counters and histograms (its gauges end with it).
    pub fn fold_gone(&mut self, stats: &Stats) {
        fold(&mut self.gone, stats, false);
    }

    /// The totals now: the gone workers' and those of the live ones in `live`.
    pub fn snapshot<'a>(&self, live: impl IntoIterator<Item = &'a Stats>) -> Snapshot {
        let mut s = self.gone.clone();
        for st in live {
            fold(&mut s, st, true);
        }
        s
    }
}

fn fold(into: &mut Snapshot, stats: &Stats, gauges: bool) {
    for sample in stats.samples() {
        if sample.kind == Kind::Gauge && !gauges {
            continue;
        }
        let (family, labels) = match sample.name.split_once('{') {
            Some((f, rest)) => (f.to_string(), rest.trim_end_matches('}').to_string()),
            None => (sample.name.clone(), String::new()),
        };
        let acc = into
            .entry((family, labels))
            .or_insert_with(|| Acc::new(sample.kind));
        if acc.kind != sample.kind {
            continue;
        }
        match sample.kind {
            Kind::Counter => acc.value += sample.value as f64,
            Kind::Gauge => acc.value += sample.value as i64 as f64,
            Kind::Histogram => {
                acc.sum += sample.sum as f64 / 1e9;
                for (a, b) in acc.buckets.iter_mut().zip(sample.buckets) {
                    *a += b;
                }
            }
        }
    }
}

/// Sets a series the master computes itself (a gauge or a counter of its own).
pub fn set(s: &mut Snapshot, family: &str, labels: &str, kind: Kind, value: f64) {
    let acc = s
        .entry((family.to_string(), labels.to_string()))
        .or_insert_with(|| Acc::new(kind));
    acc.kind = kind;
    acc.value = value;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::scoreboard::Scoreboard;

    #[test]
    fn gone_workers_keep_counting_but_not_their_gauges() {
        let (a, b) = (Scoreboard::create().unwrap(), Scoreboard::create().unwrap());
        a.stats().add(b"c_total{x=\"1\"}", 3);
        a.stats().gauge_add(b"g", 2);
        b.stats().add(b"c_total{x=\"1\"}", 4);
        b.stats().observe(b"h", 1, 500_000_000);
        let mut t = Totals::default();
        let key = |f: &str, l: &str| (f.to_string(), l.to_string());
        let s = t.snapshot([a.stats(), b.stats()]);
        assert_eq!(s[&key("c_total", "x=\"1\"")].value, 7.0);
        assert_eq!(s[&key("g", "")].value, 2.0);
        t.fold_gone(a.stats());
        drop(a);
        let s = t.snapshot([b.stats()]);
        assert_eq!(s[&key("c_total", "x=\"1\"")].value, 7.0);
        assert!(!s.contains_key(&key("g", "")));
        assert_eq!(s[&key("h", "")].buckets[1], 1);
        assert_eq!(s[&key("h", "")].sum, 0.5);
    }
}
