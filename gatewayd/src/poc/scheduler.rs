//! The beacon scheduler (docs/proof-of-coverage.md §4) as a pure state machine: the caller
//! passes the current time, the entropy book, whether a position is known and a random
//! source; it answers what to do — sleep until an instant, send the beacon of a window, or
//! skip a window (with the reason). One beacon per aligned window at most, at a uniformly
//! random instant inside it.

use std::time::{Duration, SystemTime};

use super::beacon::{BeaconWindow, WINDOW_MARGIN};
use super::entropy::EntropyBook;
use drivers::time::{from_unix_ms, unix_ms};

/// The random numbers the scheduler needs: the OS secure RNG in the daemon
/// (`ring::rand::SystemRandom`), a fixed sequence in tests.
pub trait RandomSource {
    /// A uniformly random `u64`, or `None` when the source failed.
    fn random_u64(&self) -> Option<u64>;
}

impl RandomSource for ring::rand::SystemRandom {
    fn random_u64(&self) -> Option<u64> {
        let mut b = [0u8; 8];
        ring::rand::SecureRandom::fill(self, &mut b).ok()?;
        Some(u64::from_be_bytes(b))
    }
}

/// Why a window went without a beacon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// The network's entropy for the window was not known at the beacon instant.
    NoEntropy,
    /// The hotspot had no position (no GPS fix, no configured location).
    NoPosition,
    /// The regulatory guard refused the transmission (duty cycle, LBT, …).
    Refused,
    /// The radio did not send it (busy, error, no answer).
    NotSent,
    /// The instant passed without the task running (clock jump, stall) before the window ended.
    Missed,
    /// The secure random source failed.
    RandomFailed,
    /// No trustworthy time (no GPS fix, the local clock not synchronized): a beacon report
    /// would carry a time nobody can check, so the beacon is not sent.
    ClockUnsynchronized,
}

impl SkipReason {
    /// Every reason, in a fixed order (for counters and metrics).
    pub const ALL: [SkipReason; 7] = [
        SkipReason::NoEntropy,
        SkipReason::NoPosition,
        SkipReason::Refused,
        SkipReason::NotSent,
        SkipReason::Missed,
        SkipReason::RandomFailed,
        SkipReason::ClockUnsynchronized,
    ];

    /// The name used in logs, status and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoEntropy => "no_entropy",
            SkipReason::NoPosition => "no_position",
            SkipReason::Refused => "refused",
            SkipReason::NotSent => "not_sent",
            SkipReason::Missed => "missed",
            SkipReason::RandomFailed => "random_failed",
            SkipReason::ClockUnsynchronized => "clock_unsynchronized",
        }
    }

    /// Position in [`SkipReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What the caller does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing to do before `until` (poll again then, or earlier, e.g. when entropy arrives).
    Sleep {
        /// The planned beacon instant.
        until: SystemTime,
    },
    /// Send the beacon of `window` now, with the network's `entropy` for it.
    Beacon {
        /// The window.
        window: BeaconWindow,
        /// The network's entropy of that window.
        entropy: [u8; 32],
    },
    /// The beacon of `window` is not sent.
    Skip {
        /// The window.
        window: BeaconWindow,
        /// Why.
        reason: SkipReason,
    },
}

/// One beacon per window of `len_s` seconds, at a random instant; see the module doc.
#[derive(Debug, Clone)]
pub struct Scheduler {
    len_s: u32,
    airtime: Duration,
    planned: Option<(BeaconWindow, u64)>,
    last_done: Option<BeaconWindow>,
}

impl Scheduler {
    /// A scheduler for windows of `len_s` seconds (a valid length: [`BeaconWindow::valid_len`])
    /// and beacons of `airtime`.
    pub fn new(len_s: u32, airtime: Duration) -> Scheduler {
        Scheduler {
            len_s,
            airtime,
            planned: None,
            last_done: None,
        }
    }

    /// The planned window and beacon instant, if any.
    pub fn planned(&self) -> Option<(BeaconWindow, SystemTime)> {
        self.planned.map(|(w, ms)| (w, from_unix_ms(ms)))
    }

    /// Latest instant (Unix ms) a beacon of `w` may start: it ends a margin before the end.
    fn latest_ms(&self, w: &BeaconWindow) -> u64 {
        let margin = WINDOW_MARGIN.as_millis() as u64;
        w.end_ms()
            .saturating_sub(margin + self.airtime.as_millis() as u64 + 1)
    }

    /// Plan the first window after the last one handled that still has time left at `now`:
    /// a uniform instant in `[max(start + margin, now), latest]`.
    fn plan(
        &mut self,
        now_ms: u64,
        rng: &dyn RandomSource,
    ) -> Result<(BeaconWindow, u64), BeaconWindow> {
        let margin = WINDOW_MARGIN.as_millis() as u64;
        let id = now_ms / 1000 / u64::from(self.len_s);
        let mut w = BeaconWindow {
            len_s: self.len_s,
            id,
        };
        if let Some(done) = self.last_done {
            if done.id >= w.id {
                w = done.next();
            }
        }
        let lo = loop {
            let lo = (w.start_ms() + margin).max(now_ms);
            if lo <= self.latest_ms(&w) {
                break lo;
            }
            w = w.next();
        };
        let hi = self.latest_ms(&w);
        let r = rng.random_u64().ok_or(w)?;
        Ok((w, lo + r % (hi - lo + 1)))
    }

    /// What to do at `now`. `book` holds the network's entropy, `has_position` says whether
    /// the hotspot knows where it is, `rng` draws the instant of the next window.
    pub fn poll(
        &mut self,
        now: SystemTime,
        book: &EntropyBook,
        has_position: bool,
        rng: &dyn RandomSource,
    ) -> Step {
        let now_ms = unix_ms(now);
        let (window, at_ms) = match self.planned {
            Some(p) => p,
            None => match self.plan(now_ms, rng) {
                Ok(p) => {
                    self.planned = Some(p);
                    p
                }
                Err(window) => {
                    self.last_done = Some(window);
                    return Step::Skip {
                        window,
                        reason: SkipReason::RandomFailed,
                    };
                }
            },
        };
        if now_ms < at_ms {
            return Step::Sleep {
                until: from_unix_ms(at_ms),
            };
        }
        self.planned = None;
        self.last_done = Some(window);
        let reason = if now_ms > self.latest_ms(&window) {
            SkipReason::Missed
        } else if !has_position {
            SkipReason::NoPosition
        } else {
            match book.get(&window) {
                Some(entropy) => return Step::Beacon { window, entropy },
                None => SkipReason::NoEntropy,
            }
        };
        Step::Skip { window, reason }
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
