//! Prometheus's text exposition format 0.0.4, and OpenMetrics 1.0 for scrapers that ask
//! for it.
//!
//! Written here rather than taken from a crate: the Rust clients' encoders (`prometheus`,
//! `prometheus-client`) encode their own registries' types, while these series are summed
//! from other processes' shared memory; both formats are small, and the tests check the
//! output with `promtool check metrics`.

use super::totals::{Acc, Snapshot};
use super::{Family, Kind, BOUNDS};
use std::fmt::Write as _;

/// Which exposition format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the scraper's `Accept` names it (Prometheus does), else text.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Encodes `s`, describing families from `families`.
pub fn encode(s: &Snapshot, families: &[&[Family]], format: Format) -> String {
    let mut out = String::with_capacity(8192);
    let mut current: Option<&str> = None;
    for ((family, labels), acc) in s {
        if current != Some(family.as_str()) {
            current = Some(family);
            header(&mut out, family, acc.kind, families, format);
        }
        match acc.kind {
            Kind::Counter | Kind::Gauge => sample(&mut out, family, "", labels, acc.value),
            Kind::Histogram => histogram(&mut out, family, labels, acc),
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn header(out: &mut String, family: &str, kind: Kind, families: &[&[Family]], f: Format) {
    let name = match (f, kind) {
        (Format::OpenMetrics, Kind::Counter) => family.strip_suffix("_total").unwrap_or(family),
        _ => family,
    };
    let help = families
        .iter()
        .flat_map(|l| l.iter())
        .find(|d| d.name == family)
        .map(|d| d.help);
    if let Some(h) = help {
        let h = h.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(out, "# HELP {name} {h}");
    }
    let t = match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    };
    let _ = writeln!(out, "# TYPE {name} {t}");
}

fn sample(out: &mut String, family: &str, suffix: &str, labels: &str, v: f64) {
    out.push_str(family);
    out.push_str(suffix);
    if !labels.is_empty() {
        let _ = write!(out, "{{{labels}}}");
    }
    let _ = writeln!(out, " {}", number(v));
}

fn histogram(out: &mut String, family: &str, labels: &str, acc: &Acc) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0u64;
    for (i, n) in acc.buckets.iter().enumerate() {
        cumulative += n;
        let le = BOUNDS.get(i).map_or("+Inf".to_string(), |b| number(*b));
        let _ = writeln!(
            out,
            "{family}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
        );
    }
    sample(out, family, "_sum", labels, acc.sum);
    sample(out, family, "_count", labels, cumulative as f64);
}

/// A float as Prometheus's clients write it: integers with one decimal (`1.0`).
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::totals::set;

    #[test]
    fn both_formats() {
        let mut s = Snapshot::new();
        set(&mut s, "a_total", "x=\"1\"", Kind::Counter, 3.0);
        set(&mut s, "g", "", Kind::Gauge, 0.5);
        let fams = [Family {
            name: "a_total",
            kind: Kind::Counter,
            help: "As.",
        }];
        let text = encode(&s, &[&fams], Format::Text);
        assert_eq!(
            text,
            "# HELP a_total As.\n# TYPE a_total counter\na_total{x=\"1\"} 3.0\n# TYPE g gauge\ng 0.5\n"
        );
        let om = encode(&s, &[&fams], Format::OpenMetrics);
        assert!(om.starts_with("# HELP a As.\n# TYPE a counter\na_total{x=\"1\"} 3.0\n"));
        assert!(om.ends_with("# EOF\n"));
    }
}
