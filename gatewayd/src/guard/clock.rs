//! The duty-cycle timeline: the clock the guard charges airtime on, immune to wall-clock
//! steps.
//!
//! A Raspberry Pi without a real-time clock boots at its last saved time (or 1970) and NTP
//! steps the wall clock minutes to years later; backward steps happen too. Airtime charged at
//! wall-clock times would then leave the one-hour window at once (a forward step: a fresh
//! budget after seconds of real time) or never have entered it (a backward step). So the
//! ledger keeps its own timeline: within a run it advances with the kernel's boot-time
//! clock (`CLOCK_BOOTTIME`, monotonic, counts suspend), and each charge records where the
//! timeline stood ([`TimelineMark`]: boot id, time since boot, ledger time). At the next start:
//! - same boot (a daemon restart): the timeline resumes exactly, by the boot-time elapsed;
//! - another boot: the real time that passed is unknown (the wall clock cannot be trusted),
//!   so none is assumed: the airtime of the last hour before the reboot still counts for up
//!   to an hour after it (never more airtime than legal, at worst a little less);
//! - no mark (a new or older ledger file): the timeline starts at the wall clock, or after
//!   the latest charge in the file if that is later (a clock that went backwards).
//!
//! The ledger timeline is only for duty-cycle accounting: it need not equal the UTC time.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A clock that never steps, and the identity of the boot it counts from.
pub trait Monotonic: Send + Sync + Debug {
    /// Changes whenever the machine boots (empty when unknown: every start is a new boot).
    fn boot_id(&self) -> String;
    /// Time since boot, including suspend.
    fn since_boot(&self) -> Duration;
}

/// The kernel's `CLOCK_BOOTTIME` and `/proc/sys/kernel/random/boot_id`.
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelClock;

impl Monotonic for KernelClock {
    fn boot_id(&self) -> String {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    fn since_boot(&self) -> Duration {
        use nix::time::{clock_gettime, ClockId};
        clock_gettime(ClockId::CLOCK_BOOTTIME)
            .or_else(|_| clock_gettime(ClockId::CLOCK_MONOTONIC))
            .map(|t| {
                Duration::new(
                    u64::try_from(t.tv_sec()).unwrap_or(0),
                    u32::try_from(t.tv_nsec()).unwrap_or(0),
                )
            })
            .unwrap_or_default()
    }
}

/// Where the ledger timeline stood at a moment of one boot (persisted with each charge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineMark {
    /// The boot.
    pub boot_id: String,
    /// Time since that boot.
    pub since_boot: Duration,
    /// The ledger time then.
    pub ledger: SystemTime,
}

/// How a [`LedgerClock`] picked up the timeline at start (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// No mark in the ledger: from the wall clock (or the latest charge, if later).
    Fresh,
    /// Same boot: by the exact time elapsed since the last charge.
    SameBoot(Duration),
    /// Another boot: as if no time had passed since the last charge.
    AfterReboot,
}

/// The guard's duty-cycle clock: a ledger time that advances with a [`Monotonic`] clock.
#[derive(Debug, Clone)]
pub struct LedgerClock {
    source: Arc<dyn Monotonic>,
    boot_id: String,
    base_ledger: SystemTime,
    base_since_boot: Duration,
}

impl LedgerClock {
    /// Resume the timeline from the ledger's last `mark` and its `latest_start` charge, at
    /// wall time `wall_now` (see the module doc for the rules).
    pub fn resume(
        source: Arc<dyn Monotonic>,
        mark: Option<&TimelineMark>,
        latest_start: Option<SystemTime>,
        wall_now: SystemTime,
    ) -> (LedgerClock, Resumed) {
        let boot_id = source.boot_id();
        let since_boot = source.since_boot();
        let (base_ledger, resumed) = match mark {
            Some(m)
                if !boot_id.is_empty() && m.boot_id == boot_id && since_boot >= m.since_boot =>
            {
                let elapsed = since_boot - m.since_boot;
                (m.ledger + elapsed, Resumed::SameBoot(elapsed))
            }
            Some(m) => (m.ledger, Resumed::AfterReboot),
            None => (
                latest_start.map_or(wall_now, |l| l.max(wall_now)),
                Resumed::Fresh,
            ),
        };
        let clock = LedgerClock {
            source,
            boot_id,
            base_ledger,
            base_since_boot: since_boot,
        };
        (clock, resumed)
    }

    /// The ledger time now.
    pub fn now(&self) -> SystemTime {
        self.base_ledger
            + self
                .source
                .since_boot()
                .saturating_sub(self.base_since_boot)
    }

    /// Where the timeline stands now (to persist with a charge).
    pub fn mark(&self) -> TimelineMark {
        let since_boot = self.source.since_boot();
        TimelineMark {
            boot_id: self.boot_id.clone(),
            ledger: self.base_ledger + since_boot.saturating_sub(self.base_since_boot),
            since_boot,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;
    use std::time::UNIX_EPOCH;

    use super::*;

    /// A monotonic clock the test moves; `reboot` starts a new boot at zero.
    #[derive(Debug, Default)]
    pub(crate) struct FakeMonotonic {
        state: Mutex<(u32, Duration)>,
    }

    impl FakeMonotonic {
        pub(crate) fn advance(&self, d: Duration) {
            self.state.lock().unwrap().1 += d;
        }
        pub(crate) fn reboot(&self) {
            let mut s = self.state.lock().unwrap();
            *s = (s.0 + 1, Duration::ZERO);
        }
    }

    impl Monotonic for FakeMonotonic {
        fn boot_id(&self) -> String {
            format!("boot-{}", self.state.lock().unwrap().0)
        }
        fn since_boot(&self) -> Duration {
            self.state.lock().unwrap().1
        }
    }

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn resumes_exactly_in_the_same_boot_and_assumes_nothing_after_a_reboot() {
        let m = Arc::new(FakeMonotonic::default());
        m.advance(Duration::from_secs(100));
        let (c, how) = LedgerClock::resume(m.clone(), None, None, t(1_000));
        assert_eq!(how, Resumed::Fresh);
        assert_eq!(c.now(), t(1_000));
        m.advance(Duration::from_secs(30));
        assert_eq!(c.now(), t(1_030));
        let mark = c.mark();
        assert_eq!(mark.ledger, t(1_030));

        // A daemon restart 60 s later with the wall clock stepped 10 years ahead.
        m.advance(Duration::from_secs(60));
        let ten_years = t(1_000 + 10 * 365 * 86_400);
        let (c, how) = LedgerClock::resume(m.clone(), Some(&mark), None, ten_years);
        assert_eq!(how, Resumed::SameBoot(Duration::from_secs(60)));
        assert_eq!(c.now(), t(1_090));

        // A reboot: whatever the wall clock says, no time is assumed to have passed.
        m.reboot();
        m.advance(Duration::from_secs(5));
        let (c, how) = LedgerClock::resume(m.clone(), Some(&mark), None, ten_years);
        assert_eq!(how, Resumed::AfterReboot);
        assert_eq!(c.now(), t(1_030));
        m.advance(Duration::from_secs(1));
        assert_eq!(c.now(), t(1_031));
    }

    #[test]
    fn a_fresh_timeline_starts_after_charges_from_the_future() {
        let m = Arc::new(FakeMonotonic::default());
        let (c, _) = LedgerClock::resume(m.clone(), None, Some(t(5_000)), t(1_000));
        assert_eq!(
            c.now(),
            t(5_000),
            "a clock stepped back: continue after them"
        );
        let (c, _) = LedgerClock::resume(m, None, Some(t(500)), t(1_000));
        assert_eq!(c.now(), t(1_000));
    }

    #[test]
    fn the_kernel_clock_runs_and_names_the_boot() {
        let k = KernelClock;
        let a = k.since_boot();
        assert!(a > Duration::ZERO);
        assert!(k.since_boot() >= a);
        assert_eq!(k.boot_id(), k.boot_id());
    }
}
