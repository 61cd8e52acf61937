//! Property test: wall-clock steps (forward and backward, milliseconds to years) and restarts
//! (same boot, or a reboot with the wall clock anywhere) interleaved with transmissions never
//! let more airtime on air than the budget in any hour of *real* time. The guard runs with a
//! ledger file and a [`LedgerClock`] on a fake monotonic clock the test moves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};

use super::clock::tests::FakeMonotonic;
use super::proptests::seeded_runner;
use super::tests::{lora, req, t0};
use super::*;

const YEAR_MS: u64 = 365 * 86_400_000;

#[derive(Debug, Clone)]
enum Op {
    /// Real time passes (the wall clock with it).
    Wait(u64),
    /// The wall clock steps forward (NTP after a boot at a stale time).
    StepForward(u64),
    /// The wall clock steps back.
    StepBack(u64),
    /// A downlink on `freq_sel`, SF `sf`, `len` bytes; `sent`: the backend sent it.
    Transmit {
        freq_sel: usize,
        sf: u8,
        len: usize,
        sent: bool,
    },
    /// The daemon restarts after `down_ms` of real time; `reboot`: the machine too, and its
    /// wall clock comes up at 1970 + `boot_wall_ms` (no RTC) or where it was (`false`).
    Restart {
        down_ms: u64,
        reboot: bool,
        at_1970: bool,
        boot_wall_ms: u64,
    },
}

fn size_ms() -> impl Strategy<Value = u64> {
    prop_oneof![
        1u64..1_000,
        1_000u64..600_000,
        600_000u64..7_200_000,
        7_200_000u64..(40 * 86_400_000),
        (40 * 86_400_000u64)..(20 * YEAR_MS),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop_oneof![6 => 1u64..2_000, 2 => 2_000u64..120_000, 1 => 120_000u64..1_800_000]
            .prop_map(Op::Wait),
        2 => size_ms().prop_map(Op::StepForward),
        2 => size_ms().prop_map(Op::StepBack),
        12 => (0usize..4, 9u8..=12, 10usize..=50, prop::bool::weighted(0.9)).prop_map(
            |(freq_sel, sf, len, sent)| Op::Transmit { freq_sel, sf, len, sent }
        ),
        1 => (0u64..600_000, any::<bool>(), any::<bool>(), 0u64..(3 * YEAR_MS)).prop_map(
            |(down_ms, reboot, at_1970, boot_wall_ms)| Op::Restart { down_ms, reboot, at_1970, boot_wall_ms }
        ),
    ]
}

/// EU868: three channels of band M (1 %) and one of band P (10 %).
const FREQS: [u64; 4] = [868_100_000, 868_300_000, 868_500_000, 869_525_000];

struct Rig {
    dir: tempfile::TempDir,
    mono: Arc<FakeMonotonic>,
    guard: Option<Guard>,
}

impl Rig {
    fn new() -> Result<Rig, TestCaseError> {
        let fail = |e: std::io::Error| TestCaseError::fail(e.to_string());
        // A tmpfs keeps the many fsyncs cheap; the file and its reopening are real.
        let dir = match std::path::Path::new("/dev/shm").is_dir() {
            true => tempfile::tempdir_in("/dev/shm").map_err(fail)?,
            false => tempfile::tempdir().map_err(fail)?,
        };
        Ok(Rig {
            dir,
            mono: Arc::new(FakeMonotonic::default()),
            guard: None,
        })
    }

    fn start(&mut self, wall: SystemTime) -> Result<(), TestCaseError> {
        let fail = |e: String| TestCaseError::fail(e);
        let region = Region::by_name("EU868").expect("EU868");
        let ledger = DutyCycleLedger::open(&self.dir.path().join("dutycycle.sqlite"))
            .map_err(|e| fail(e.to_string()))?;
        let guard =
            Guard::new(region, GuardConfig::default(), ledger).map_err(|e| fail(e.to_string()))?;
        let (guard, _) = guard
            .with_ledger_clock(self.mono.clone(), wall)
            .map_err(|e| fail(e.to_string()))?;
        self.guard = Some(guard);
        Ok(())
    }
}

/// Run `ops`; returns the duty-cycle refusals seen.
fn airtime_holds_in_real_time(ops: &[Op]) -> Result<usize, TestCaseError> {
    let mut rig = Rig::new()?;
    let mut wall = t0();
    let mut real = Duration::ZERO;
    rig.start(wall)?;
    // (real start, airtime, band) of what went on air.
    let mut on_air: Vec<(Duration, Duration, &'static str)> = Vec::new();
    let mut refusals = 0;
    for op in ops {
        match *op {
            Op::Wait(ms) => {
                let d = Duration::from_millis(ms);
                real += d;
                wall += d;
                rig.mono.advance(d);
            }
            Op::StepForward(ms) => wall += Duration::from_millis(ms),
            Op::StepBack(ms) => {
                wall = wall
                    .checked_sub(Duration::from_millis(ms))
                    .filter(|w| *w > UNIX_EPOCH)
                    .unwrap_or(UNIX_EPOCH + Duration::from_secs(1));
            }
            Op::Transmit {
                freq_sel,
                sf,
                len,
                sent,
            } => {
                let guard = rig.guard.as_mut().expect("running");
                let r = req(FREQS[freq_sel], 14, lora(sf, 125_000), len);
                match guard.approve(wall, r) {
                    Ok(a) => {
                        let (airtime, band) = (a.verdict().airtime, a.verdict().band.name);
                        let (_, receipt) = a.into_parts();
                        if sent {
                            on_air.push((real, airtime, band));
                        } else {
                            guard
                                .release(receipt)
                                .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        }
                    }
                    Err(Refusal::DutyCycleExceeded { .. }) => refusals += 1,
                    Err(other) => {
                        return Err(TestCaseError::fail(format!("unexpected refusal {other}")))
                    }
                }
            }
            Op::Restart {
                down_ms,
                reboot,
                at_1970,
                boot_wall_ms,
            } => {
                rig.guard = None;
                let d = Duration::from_millis(down_ms);
                real += d;
                if reboot {
                    rig.mono.reboot();
                    wall = if at_1970 {
                        UNIX_EPOCH + Duration::from_millis(boot_wall_ms)
                    } else {
                        wall // the last saved time: the downtime is lost
                    };
                } else {
                    rig.mono.advance(d);
                    wall += d;
                }
                rig.start(wall)?;
            }
        }
    }
    // Every one-hour window of real time (aligned on each frame's start or end) of each band,
    // counting the part of each frame inside it, stays within the budget.
    let region = Region::by_name("EU868").expect("EU868");
    let mut by_band: HashMap<&str, Vec<(Duration, Duration)>> = HashMap::new();
    for (s, a, b) in &on_air {
        by_band.entry(b).or_default().push((*s, *a));
    }
    for (name, frames) in by_band {
        let band = region.bands.iter().find(|b| b.name == name).expect("band");
        let budget = band.budget_per_hour().expect("duty band");
        let starts = frames.iter().map(|(s, _)| *s).chain(
            frames
                .iter()
                .filter_map(|(s, a)| (*s + *a).checked_sub(DUTY_CYCLE_WINDOW)),
        );
        for w0 in starts {
            let w1 = w0 + DUTY_CYCLE_WINDOW;
            let used: Duration = frames
                .iter()
                .map(|(s, a)| (*s + *a).min(w1).saturating_sub((*s).max(w0)))
                .sum();
            prop_assert!(
                used <= budget,
                "band {name}: {used:?} on air in one real hour from {w0:?}, budget {budget:?}"
            );
        }
    }
    Ok(refusals)
}

proptest! {
    #![proptest_config(Config::with_cases(40))]
    #[test]
    fn clock_steps_and_restarts_never_allow_more_airtime(
        ops in prop::collection::vec(arb_op(), 1..300)
    ) {
        airtime_holds_in_real_time(&ops)?;
    }
}

#[test]
fn the_step_sequences_do_reach_the_budget() {
    // Guard against a vacuous property: the sequences must run into the budget.
    let refusals = AtomicUsize::new(0);
    let mut runner = seeded_runner(16);
    runner
        .run(&prop::collection::vec(arb_op(), 100..300), |ops| {
            refusals.fetch_add(airtime_holds_in_real_time(&ops)?, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    assert!(refusals.load(Ordering::Relaxed) > 0);
}

/// Without the ledger clock (airtime charged at the wall clock's `now`), a forward step
/// would hand out a fresh budget at once: the property test above would catch it.
#[test]
fn a_forward_step_right_after_the_budget_is_used_gives_no_fresh_budget() {
    let mut rig = Rig::new().unwrap();
    let mut wall = t0();
    rig.start(wall).unwrap();
    let guard = rig.guard.as_mut().unwrap();
    let frame = || req(868_100_000, 14, lora(12, 125_000), 50);
    let mut sent = 0;
    while guard.approve(wall, frame()).is_ok() {
        sent += 1;
        rig.mono.advance(Duration::from_secs(1));
        wall += Duration::from_secs(1);
    }
    assert!(sent > 5, "{sent}");
    for step in [
        Duration::from_secs(10 * 365 * 86_400),
        Duration::from_secs(3600),
    ] {
        let err = guard.approve(wall + step, frame()).unwrap_err();
        assert!(matches!(err, Refusal::DutyCycleExceeded { .. }), "{err}");
        let err = guard
            .approve(wall.checked_sub(step).unwrap(), frame())
            .unwrap_err();
        assert!(matches!(err, Refusal::DutyCycleExceeded { .. }), "{err}");
    }
    // Real time heals it: an hour later the band has budget again.
    rig.mono.advance(DUTY_CYCLE_WINDOW + SCHEDULE_SLACK * 2);
    assert!(guard.approve(wall, frame()).is_ok());
}
