//! A pure per-kind log rate limiter: at most one line per kind per interval, reporting how
//! many were suppressed in between. Takes the current time as an argument.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Decides whether a warning of a given kind may be logged now.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    kinds: HashMap<&'static str, (Instant, u64)>,
}

impl RateLimiter {
    /// At most one line per kind per `interval`.
    pub fn new(interval: Duration) -> Self {
        RateLimiter {
            interval,
            kinds: HashMap::new(),
        }
    }

    /// `Some(n)` when a line of `kind` may be logged at `now` (`n` lines of that kind were
    /// suppressed since the last one); `None` when it must be suppressed.
    pub fn check(&mut self, kind: &'static str, now: Instant) -> Option<u64> {
        match self.kinds.get_mut(kind) {
            Some((last, suppressed)) => {
                if now.saturating_duration_since(*last) >= self.interval {
                    let n = *suppressed;
                    *last = now;
                    *suppressed = 0;
                    Some(n)
                } else {
                    *suppressed += 1;
                    None
                }
            }
            None => {
                self.kinds.insert(kind, (now, 0));
                Some(0)
            }
        }
    }

    /// Log `msg` at warn level unless a line of `kind` was logged less than an interval ago;
    /// the line says how many of that kind were suppressed since the last one.
    pub fn warn(&mut self, kind: &'static str, msg: &str) {
        match self.check(kind, Instant::now()) {
            Some(0) => log::warn!("{msg}"),
            Some(n) => log::warn!("{msg} ({n} similar messages suppressed)"),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_interval() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut r = RateLimiter::new(Duration::from_secs(10));
        assert_eq!(r.check("a", t0), Some(0));
        assert_eq!(r.check("a", t0 + s), None);
        assert_eq!(r.check("a", t0 + 9 * s), None);
        // Other kinds are independent.
        assert_eq!(r.check("b", t0 + 9 * s), Some(0));
        assert_eq!(r.check("a", t0 + 10 * s), Some(2));
        assert_eq!(r.check("a", t0 + 11 * s), None);
        assert_eq!(r.check("a", t0 + 25 * s), Some(1));
        assert_eq!(r.check("a", t0 + 36 * s), Some(0));
        // A clock that goes backwards suppresses instead of panicking.
        assert_eq!(r.check("a", t0), None);
    }
}
