//! How long a request waited in front of corral, from `X-Request-Start`: Heroku's router
//! sends milliseconds since the epoch, nginx (`t=${msec}` or `t=…` in microseconds) and
//! others send seconds or microseconds; the unit is told by the number's size.

use hyper::header::{HeaderMap, HeaderName};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const X_REQUEST_START: HeaderName = HeaderName::from_static("x-request-start");

/// The time since the request's start, if the header is there and sensible (not in the
/// future, not over a day old: clocks that disagree say nothing).
pub(crate) fn queued(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(&X_REQUEST_START)?.to_str().ok()?;
    let started = parse(v)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    let q = now.checked_sub(started)?;
    (q < Duration::from_secs(86_400)).then_some(q)
}

/// `1700000000123` (ms), `t=1700000000123456` (µs), `t=1700000000.123` (s).
/// Integers are told apart by size: above 10^15 microseconds (milliseconds reach that in
/// year 33658), above 10^11 milliseconds, else seconds.
fn parse(v: &str) -> Option<Duration> {
    let v = v.trim();
    let v = v.strip_prefix("t=").unwrap_or(v);
    if v.contains('.') {
        let s: f64 = v.parse().ok().filter(|n: &f64| n.is_finite() && *n > 0.0)?;
        return Some(Duration::from_secs_f64(s));
    }
    let n: u64 = v.parse().ok().filter(|n| *n > 0)?;
    Some(if n > 1_000_000_000_000_000 {
        Duration::from_nanos(n.saturating_mul(1_000))
    } else if n > 100_000_000_000 {
        Duration::from_millis(n)
    } else {
        Duration::from_secs(n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_by_size() {
        let want = Duration::from_millis(1_700_000_000_123);
        assert_eq!(parse("1700000000123"), Some(want));
        let us = parse("t=1700000000123456").unwrap();
        assert!((us.as_secs_f64() - 1_700_000_000.123456).abs() < 1e-3);
        let s = parse("t=1700000000.123").unwrap();
        assert!((s.as_secs_f64() - 1_700_000_000.123).abs() < 1e-3);
        for bad in ["", "t=", "soon", "-5", "NaN"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
