//! Tests of the beacon scheduler, without I/O: time and randomness are inputs.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::UNIX_EPOCH;

use proptest::prelude::*;

use super::*;
use crate::poc::entropy::EntropyCommand;

const AIRTIME: Duration = Duration::from_micros(246_784);
const LEN: u32 = 60;

/// Random numbers from a fixed list (then `None`: the source fails).
struct Fixed(RefCell<VecDeque<u64>>);

impl Fixed {
    fn new(v: &[u64]) -> Fixed {
        Fixed(RefCell::new(v.iter().copied().collect()))
    }
}

impl RandomSource for Fixed {
    fn random_u64(&self) -> Option<u64> {
        self.0.borrow_mut().pop_front()
    }
}

fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn w(id: u64) -> BeaconWindow {
    BeaconWindow { len_s: LEN, id }
}

fn book_with(ids: &[u64]) -> EntropyBook {
    let mut b = EntropyBook::default();
    for &id in ids {
        b.insert(EntropyCommand {
            window: w(id),
            entropy: [id as u8; 32],
        });
    }
    b
}

/// Latest start in a 60 s window: end − 1 s margin − 246 ms airtime − 1 ms.
const LATEST_OFFSET_MS: u64 = 60_000 - 1_000 - 246 - 1;

#[test]
fn sleeps_until_the_drawn_instant_then_beacons_once() {
    let mut s = Scheduler::new(LEN, AIRTIME);
    let book = book_with(&[100]);
    let start = w(100).start_ms();
    // Drawn 5000 → start + 1 s + 5000 ms.
    let rng = Fixed::new(&[5_000]);
    let step = s.poll(at_ms(start), &book, true, &rng);
    assert_eq!(
        step,
        Step::Sleep {
            until: at_ms(start + 6_000)
        }
    );
    // Early wake-ups keep the plan (no second draw: the source is empty now).
    assert_eq!(s.poll(at_ms(start + 3_000), &book, true, &rng), step);
    assert_eq!(
        s.poll(at_ms(start + 6_000), &book, true, &rng),
        Step::Beacon {
            window: w(100),
            entropy: [100; 32]
        }
    );
    // Next window, never the same one again.
    let rng = Fixed::new(&[0]);
    assert_eq!(
        s.poll(at_ms(start + 6_001), &book, true, &rng),
        Step::Sleep {
            until: at_ms(w(101).start_ms() + 1_000)
        }
    );
}

#[test]
fn joining_mid_window_draws_from_the_rest_of_it() {
    let mut s = Scheduler::new(LEN, AIRTIME);
    let now = w(7).start_ms() + 50_000;
    // r = 0 → now itself; the range is [now, latest].
    assert_eq!(
        s.poll(at_ms(now), &book_with(&[7]), true, &Fixed::new(&[0])),
        Step::Beacon {
            window: w(7),
            entropy: [7; 32]
        }
    );
    let mut s = Scheduler::new(LEN, AIRTIME);
    let span = w(7).start_ms() + LATEST_OFFSET_MS - now + 1;
    assert_eq!(
        s.poll(at_ms(now), &book_with(&[7]), true, &Fixed::new(&[span - 1])),
        Step::Sleep {
            until: at_ms(w(7).start_ms() + LATEST_OFFSET_MS)
        }
    );
    // Too late in the window: the next one is planned.
    let mut s = Scheduler::new(LEN, AIRTIME);
    let late = w(7).start_ms() + 59_500;
    assert_eq!(
        s.poll(at_ms(late), &book_with(&[7]), true, &Fixed::new(&[0])),
        Step::Sleep {
            until: at_ms(w(8).start_ms() + 1_000)
        }
    );
}

#[test]
fn skips_without_entropy_position_or_time_and_counts_each_window_once() {
    let rng = Fixed::new(&[0, 0, 0, 0, 0]);
    let mut s = Scheduler::new(LEN, AIRTIME);
    let t = |id: u64| at_ms(w(id).start_ms() + 1_000);
    let s0 = |id: u64| at_ms(w(id).start_ms());
    // No entropy for window 10 (only for 11).
    let book = book_with(&[11]);
    assert!(matches!(
        s.poll(s0(10), &book, true, &rng),
        Step::Sleep { .. }
    ));
    assert_eq!(
        s.poll(t(10), &book, true, &rng),
        Step::Skip {
            window: w(10),
            reason: SkipReason::NoEntropy
        }
    );
    // No position in window 11.
    assert!(matches!(
        s.poll(s0(11), &book, false, &rng),
        Step::Sleep { .. }
    ));
    assert_eq!(
        s.poll(t(11), &book, false, &rng),
        Step::Skip {
            window: w(11),
            reason: SkipReason::NoPosition
        }
    );
    // Window 12 planned, but the task only runs again after its latest instant: missed.
    assert!(matches!(
        s.poll(s0(12), &book, true, &rng),
        Step::Sleep { .. }
    ));
    let after = at_ms(w(12).start_ms() + LATEST_OFFSET_MS + 1);
    assert_eq!(
        s.poll(after, &book, true, &rng),
        Step::Skip {
            window: w(12),
            reason: SkipReason::Missed
        }
    );
    // The random source fails: that window is skipped with the reason.
    let empty = Fixed::new(&[]);
    assert_eq!(
        s.poll(s0(13), &book, true, &empty),
        Step::Skip {
            window: w(13),
            reason: SkipReason::RandomFailed
        }
    );
    assert!(matches!(
        s.poll(t(13), &book, true, &rng),
        Step::Sleep { until } if until == at_ms(w(14).start_ms() + 1_000)
    ));
}

#[test]
fn a_clock_going_back_does_not_repeat_a_window() {
    let rng = Fixed::new(&[0, 0]);
    let mut s = Scheduler::new(LEN, AIRTIME);
    let book = book_with(&[20, 21]);
    let t = at_ms(w(20).start_ms() + 1_000);
    assert!(matches!(
        s.poll(at_ms(w(20).start_ms()), &book, true, &rng),
        Step::Sleep { .. }
    ));
    assert!(matches!(s.poll(t, &book, true, &rng), Step::Beacon { .. }));
    // Back into window 20: the plan is for window 21.
    assert_eq!(
        s.poll(at_ms(w(20).start_ms()), &book, true, &rng),
        Step::Sleep {
            until: at_ms(w(21).start_ms() + 1_000)
        }
    );
}

#[test]
fn the_system_rng_is_a_random_source() {
    let rng = ring::rand::SystemRandom::new();
    let a = rng.random_u64().unwrap();
    let b = rng.random_u64().unwrap();
    assert_ne!(a, b);
}

proptest! {
    /// Polling at arbitrary increasing times: at most one beacon per window, always at or
    /// after its planned instant, inside the window with room for the airtime, and only
    /// with that window's entropy.
    #[test]
    fn at_most_one_beacon_per_window_inside_it(
        start in 1_000_000u64..2_000_000,
        steps in proptest::collection::vec(1u64..40_000, 1..200),
        draws in proptest::collection::vec(any::<u64>(), 200),
    ) {
        let rng = Fixed::new(&draws);
        let mut s = Scheduler::new(LEN, AIRTIME);
        let book = {
            let mut b = EntropyBook::default();
            let first = start / 60;
            for id in first..first + 4 {
                b.insert(EntropyCommand { window: w(id), entropy: [id as u8; 32] });
            }
            b
        };
        let mut now = start * 1000;
        let mut beaconed = std::collections::BTreeSet::new();
        let mut planned_at = None;
        for step in steps {
            now += step;
            match s.poll(at_ms(now), &book, true, &rng) {
                Step::Sleep { until } => {
                    let ms = unix_ms(until);
                    let (pw, _) = s.planned().unwrap();
                    prop_assert!(ms >= pw.start_ms() + 1_000);
                    prop_assert!(ms + 246 + 1_000 < pw.end_ms());
                    planned_at = Some(ms);
                }
                Step::Beacon { window, entropy } => {
                    prop_assert!(beaconed.insert(window.id), "one beacon per window");
                    prop_assert!(window.contains_ms(now));
                    prop_assert!(now + 246 + 1_000 < window.end_ms());
                    prop_assert_eq!(entropy, [window.id as u8; 32]);
                    if let Some(p) = planned_at.take() {
                        prop_assert!(now >= p);
                    }
                }
                Step::Skip { window, reason } => {
                    prop_assert!(!beaconed.contains(&window.id));
                    prop_assert!(matches!(reason, SkipReason::Missed | SkipReason::NoEntropy | SkipReason::RandomFailed));
                }
            }
        }
    }
}
