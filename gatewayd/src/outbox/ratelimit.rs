//! A pure rate limiter for warnings: at most one per interval, counting what it suppressed.

use std::time::{Duration, Instant};

/// Lets one warning through per `interval`; counts the ones it held back.
#[derive(Debug)]
pub(crate) struct WarnLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    /// A limiter letting one warning through per `interval`.
    pub(crate) fn new(interval: Duration) -> WarnLimiter {
        WarnLimiter {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` if a warning may be logged now (`n` = warnings suppressed since the last
    /// one), `None` if it must be suppressed.
    pub(crate) fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_interval_and_counts_suppressed() {
        let t0 = Instant::now();
        let mut l = WarnLimiter::new(Duration::from_secs(10));
        assert_eq!(l.allow(t0), Some(0));
        assert_eq!(l.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(9)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(l.allow(t0 + Duration::from_secs(11)), None);
    }
}
