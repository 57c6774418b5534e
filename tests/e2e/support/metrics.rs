//! Prometheus metrics as a test reads them: the master's metrics address from its log,
//! a scrape, and its samples by name.

use super::{http, Corral};
use std::collections::BTreeMap;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// The metrics address from the master's log.
pub fn metrics_addr(c: &Corral) -> String {
    let line = c.expect_log("Serving metrics at: ", T);
    let url = line.split("Serving metrics at: ").nth(1).unwrap();
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

pub fn scrape(addr: &str) -> String {
    let r = http(addr, "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.text()
}

/// Samples by full name (`family{labels}`), from the text format.
pub fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, v) = l.rsplit_once(' ').expect("`name value`");
            (name.to_string(), v.parse::<f64>().expect("a number"))
        })
        .collect()
}

/// The sum of every sample whose name starts with `prefix` and contains all of `has`.
pub fn sum(s: &BTreeMap<String, f64>, prefix: &str, has: &[&str]) -> f64 {
    s.iter()
        .filter(|(k, _)| k.starts_with(prefix) && has.iter().all(|h| k.contains(h)))
        .map(|(_, v)| v)
        .sum()
}
