//! Wall-clock steps seen by the outbox thread: a Pi without RTC boots at its last saved
//! time (or 1970) and NTP steps the clock minutes to years later; backward steps of an hour
//! happen too. A step is not age: the outbox moves the stored times of every message by the
//! step ([`super::queue::Queue::rebase`]), so an uplink or stats expiry counts the time the
//! message really waited and a +10-year step expires nothing. PoC reports keep their
//! deadlines, which are times of the network, not ages.

use std::time::{Duration, Instant, SystemTime};

/// Wall and monotonic clocks drifting apart by less than this are not a step (NTP slews at
/// most 500 ppm; the outbox thread wakes at least every sweep interval).
pub const STEP_THRESHOLD: Duration = Duration::from_secs(1);

/// Compares the wall clock with the monotonic clock between two observations.
#[derive(Debug, Default)]
pub struct StepDetector {
    last: Option<(SystemTime, Instant)>,
}

impl StepDetector {
    /// Note the clocks now; the wall clock's step since the last observation, in
    /// milliseconds (positive: forward), when it is at least [`STEP_THRESHOLD`].
    pub fn observe(&mut self, wall: SystemTime, mono: Instant) -> Option<i64> {
        let last = self.last.replace((wall, mono));
        let (last_wall, last_mono) = last?;
        let mono_ms = ms(mono.saturating_duration_since(last_mono));
        let wall_ms = match wall.duration_since(last_wall) {
            Ok(d) => ms(d),
            Err(e) => -ms(e.duration()),
        };
        let step = wall_ms - mono_ms;
        (step.unsigned_abs() >= STEP_THRESHOLD.as_millis() as u64).then_some(step)
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_both_ways_are_seen_and_drift_is_not() {
        let (w, m) = (SystemTime::now(), Instant::now());
        let s = Duration::from_secs;
        let mut d = StepDetector::default();
        assert_eq!(d.observe(w, m), None, "nothing to compare with yet");
        assert_eq!(d.observe(w + s(30), m + s(30)), None);
        // Slewing: 2 ms off in 30 s.
        let slewed = w + s(60) + Duration::from_millis(2);
        assert_eq!(d.observe(slewed, m + s(60)), None);
        let ten_years = s(10 * 365 * 86_400);
        assert_eq!(
            d.observe(slewed + ten_years + s(5), m + s(65)),
            Some(ten_years.as_millis() as i64)
        );
        assert_eq!(
            d.observe(slewed + ten_years + s(10) - s(3600), m + s(70)),
            Some(-3_600_000)
        );
        assert_eq!(
            d.observe(slewed + ten_years + s(15) - s(3600), m + s(75)),
            None
        );
    }

    /// Messages of each class with an expiry an hour after `now`, in a queue on a real file.
    fn queue_with_expiring(
        dir: &std::path::Path,
        now: SystemTime,
    ) -> (crate::outbox::queue::Queue, std::path::PathBuf) {
        use crate::outbox::{db, queue::Queue, Class, NewMessage};
        let path = dir.join("outbox.sqlite");
        let mut q = Queue::load(db::open(&path).unwrap(), path.clone(), 1 << 26).unwrap();
        let batch: Vec<NewMessage> = (0..(crate::outbox::HEAD_CAP + 10))
            .map(|i| {
                let class = [Class::Uplink, Class::Stats, Class::Poc][i % 3];
                NewMessage {
                    expires_at: Some(now + Duration::from_secs(3600)),
                    ..NewMessage::new(class, format!("t/{i}"), vec![1])
                }
            })
            .collect();
        q.write(&[batch], now).unwrap();
        (q, path)
    }

    #[test]
    fn a_rebased_queue_keeps_ages_and_expiries_in_memory_and_in_the_file() {
        use crate::outbox::{db, queue::Queue, Class};
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let (mut q, path) = queue_with_expiring(dir.path(), now);
        let n = (crate::outbox::HEAD_CAP + 10) as u64;
        let ten_years = Duration::from_secs(10 * 365 * 86_400);
        // +10 years, then back one hour: an uplink or stats message expires an hour after
        // it was stored, whatever the wall clock did in between.
        q.rebase(ten_years.as_millis() as i64);
        q.rebase(-3_600_000);
        let later = now + ten_years - Duration::from_secs(3600);
        q.sweep(later + Duration::from_secs(1800)).unwrap();
        let s = q.stats(later + Duration::from_secs(1800));
        assert_eq!(
            s.class(Class::Uplink).expired + s.class(Class::Stats).expired,
            0
        );
        // The PoC reports' deadlines are network times: the step put them in the past.
        assert_eq!(s.class(Class::Poc).expired, n / 3);
        assert_eq!(s.oldest_age().map(|a| a.as_secs() / 60), Some(30), "{s:?}");
        q.write(&[], later).unwrap();
        drop(q);
        // The file says the same after a restart.
        let mut q = Queue::load(db::open(&path).unwrap(), path.clone(), 1 << 26).unwrap();
        let got = q
            .take(usize::MAX, later + Duration::from_secs(3599))
            .unwrap();
        assert_eq!(got.len() as u64, n - n / 3);
        assert!(got.iter().all(|m| m.stored_at <= later
            && later.duration_since(m.stored_at).unwrap() < Duration::from_secs(1)));
        drop(q);
        let mut q = Queue::load(db::open(&path).unwrap(), path, 1 << 26).unwrap();
        q.sweep(later + Duration::from_secs(3601)).unwrap();
        assert_eq!(
            q.stats(later).messages(),
            0,
            "an hour of real age expires them"
        );
    }
}
