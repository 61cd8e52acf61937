//! Property tests: whatever the guard approves is legal, and the duty-cycle budget holds in
//! every one-hour window of a random sequence over hours of simulated time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use drivers::airtime::{time_on_air, FrameShape};
use drivers::radio::{CodeRate, Modulation, TxRequest, TxTiming};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::tests::{req, t0};
use super::*;
use crate::region::{ChannelPlan, DrKind, REGIONS};

/// A runner of `cases` cases with a fixed seed, for the checks that a property is not
/// vacuous: what they count is a property of the generator, not of luck.
pub(super) fn seeded_runner(cases: u32) -> TestRunner {
    TestRunner::new_with_rng(
        Config::with_cases(cases),
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    )
}

/// Frequencies worth trying in a region: its channels, RX2, band edges, and a few near misses.
fn candidates(r: &Region) -> Vec<u64> {
    let mut v = vec![r.rx2_freq_hz];
    match r.channels {
        ChannelPlan::Dynamic {
            default_channels_hz,
            center_grid,
        } => {
            v.extend_from_slice(default_channels_hz);
            if let Some(g) = center_grid {
                v.extend((0..g.count).filter_map(|i| g.freq(i)));
            }
        }
        ChannelPlan::Fixed {
            uplink_125k,
            uplink_500k,
            downlink,
            ..
        } => {
            for g in [Some(uplink_125k), uplink_500k, Some(downlink)]
                .into_iter()
                .flatten()
            {
                v.extend((0..g.count).filter_map(|i| g.freq(i)));
            }
        }
    }
    for b in r.bands {
        for edge in [b.min_hz, b.max_hz] {
            v.extend([
                edge - 100_000,
                edge - 62_500,
                edge,
                edge + 62_500,
                edge + 100_000,
            ]);
        }
    }
    let near: Vec<u64> = v.iter().map(|f| f + 25_000).collect();
    v.extend(near);
    v
}

fn modulations(r: &Region) -> Vec<Modulation> {
    let mut v: Vec<Modulation> = r
        .data_rates
        .iter()
        .map(|d| match d.kind {
            DrKind::Lora { sf, bw_hz } => Modulation::Lora {
                sf,
                bw_hz,
                cr: Some(CodeRate::Cr45),
            },
            DrKind::Fsk { bitrate } => Modulation::Fsk { bitrate },
            DrKind::LrFhss { ocw_hz, cr } => Modulation::LrFhss {
                ocw_hz,
                cr,
                grid_steps: 52,
            },
        })
        .collect();
    for sf in 5..=12 {
        for bw_hz in [125_000, 250_000, 500_000] {
            v.push(Modulation::Lora {
                sf,
                bw_hz,
                cr: None,
            });
        }
    }
    v.push(Modulation::Fsk { bitrate: 100_000 });
    v
}

const CRS: [Option<CodeRate>; 6] = [
    Some(CodeRate::Cr45),
    Some(CodeRate::Cr46),
    Some(CodeRate::Cr47),
    Some(CodeRate::Cr48),
    Some(CodeRate::Off),
    None,
];

/// One random request against one random guard.
#[derive(Debug, Clone)]
struct Case {
    region: usize,
    freq_sel: usize,
    random_freq: Option<u64>,
    mod_sel: usize,
    cr_sel: usize,
    power: i8,
    len: usize,
    invert_iq: bool,
    preamble: Option<u16>,
    crc: bool,
    gain: f32,
    loss: f32,
    sub_band: u8,
    can_lbt: bool,
    japan: bool,
    downlink_dwell: bool,
}

fn arb_case() -> impl Strategy<Value = Case> {
    (
        (
            0..REGIONS.len(),
            any::<usize>(),
            prop::option::weighted(0.2, 400_000_000u64..1_000_000_000),
            any::<usize>(),
            0..CRS.len(),
            -20i8..=40,
            prop_oneof![0usize..=70, 0usize..=300],
            any::<bool>(),
        ),
        (
            prop::option::of(6u16..=24),
            any::<bool>(),
            -3.0f32..12.0,
            0.0f32..6.0,
            0u8..=8,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(|(a, b)| Case {
            region: a.0,
            freq_sel: a.1,
            random_freq: a.2,
            mod_sel: a.3,
            cr_sel: a.4,
            power: a.5,
            len: a.6,
            invert_iq: a.7,
            preamble: b.0,
            crc: b.1,
            gain: b.2,
            loss: b.3,
            sub_band: b.4,
            can_lbt: b.5,
            japan: b.6,
            downlink_dwell: b.7,
        })
}

/// Run one case; `Ok(true)` when the guard approved it (and the approval was legal).
fn approved_is_legal(c: &Case) -> Result<bool, TestCaseError> {
    let region = REGIONS[c.region];
    let config = GuardConfig {
        antenna_gain_dbi: c.gain,
        cable_loss_db: c.loss,
        sub_band: (region.has_sub_bands() && c.sub_band > 0).then_some(c.sub_band),
        backend_can_lbt: c.can_lbt,
        japan: c.japan && region.name == "AS923-1",
        downlink_dwell: c.downlink_dwell,
    };
    let ledger = DutyCycleLedger::in_memory().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut guard = Guard::new(region, config.clone(), ledger)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let freqs = candidates(region);
    let mods = modulations(region);
    let freq = c.random_freq.unwrap_or(freqs[c.freq_sel % freqs.len()]);
    let mut modulation = mods[c.mod_sel % mods.len()];
    if let Modulation::Lora { cr, .. } = &mut modulation {
        *cr = CRS[c.cr_sel];
    }
    let request = TxRequest {
        invert_iq: c.invert_iq,
        preamble: c.preamble,
        crc: c.crc,
        ..req(freq, c.power, modulation, c.len)
    };
    let Ok(a) = guard.approve(t0(), request.clone()) else {
        return Ok(false);
    };
    let out = a.request();
    let v = a.verdict();
    let dir = if c.invert_iq {
        Direction::Downlink
    } else {
        Direction::Uplink
    };
    let bw = crate::region::occupied_bandwidth_hz(&modulation);
    // Channel: an allowed channel, the whole bandwidth inside the band.
    prop_assert!(region.is_channel_allowed(freq, bw, dir, config.sub_band));
    let band = region.band_for(freq, bw);
    prop_assert_eq!(band, Some(v.band));
    prop_assert!(freq - u64::from(bw / 2) >= v.band.min_hz);
    prop_assert!(freq + u64::from(bw / 2) <= v.band.max_hz);
    // Data rate: one the region allows in that direction.
    let dr = region.data_rate(v.dr).expect("approved DR exists");
    prop_assert!(dr.allows(dir) && dr.kind.matches(&modulation));
    if config.japan {
        prop_assert!(v.dr <= 5);
    }
    // Power: never above the request, EIRP never above the band's limit.
    let mut eirp_limit = v.band.max_eirp_dbm;
    if config.japan {
        eirp_limit = eirp_limit.min(13.0);
    }
    prop_assert!(out.power_dbm <= c.power);
    let eirp = f64::from(out.power_dbm) + f64::from(c.gain) - f64::from(c.loss);
    prop_assert!(
        eirp <= f64::from(eirp_limit) + 1e-3,
        "EIRP {eirp} > {eirp_limit}"
    );
    // Payload and dwell time.
    let dwell = region.dwell.applies(dir) || (dir == Direction::Downlink && c.downlink_dwell);
    let max = region
        .max_payload(v.dr, dwell)
        .expect("approved DR has a size");
    prop_assert!(c.len <= usize::from(max) + 5);
    let shape = FrameShape {
        payload_len: c.len,
        preamble: c.preamble.unwrap_or(8),
        crc: c.crc,
        implicit_header: false,
    };
    let airtime = time_on_air(&modulation, &shape);
    prop_assert_eq!(airtime, v.airtime);
    if dwell {
        prop_assert!(airtime <= Duration::from_millis(400), "{airtime:?}");
    }
    // LBT where required.
    if matches!(region.lbt, LbtRule::Required(_)) || config.japan {
        prop_assert!(c.can_lbt && v.lbt.is_some());
    }
    // Everything else is passed through unchanged.
    prop_assert_eq!(
        &TxRequest {
            power_dbm: c.power,
            ..out.clone()
        },
        &request
    );
    Ok(true)
}

proptest! {
    #![proptest_config(Config::with_cases(2000))]
    #[test]
    fn whatever_the_guard_approves_is_legal(c in arb_case()) {
        approved_is_legal(&c)?;
    }
}

#[test]
fn the_random_requests_are_often_approved() {
    // Guard against a vacuous property: a good share of random requests must pass.
    let approved = AtomicUsize::new(0);
    // A fixed seed: the share approved is a property of the generator, not of luck.
    let mut runner = seeded_runner(1000);
    runner
        .run(&arb_case(), |c| {
            if approved_is_legal(&c)? {
                approved.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
        .unwrap();
    let n = approved.load(Ordering::Relaxed);
    assert!(n >= 50, "only {n} of 1000 random requests approved");
}

/// One step of a simulated day: time moves (rarely backwards: a clock step), one request.
#[derive(Debug, Clone)]
struct Step {
    gap_ms: i64,
    freq_sel: usize,
    dr_sel: usize,
    len: usize,
    sent: bool,
}

fn arb_steps() -> impl Strategy<Value = (usize, Vec<Step>)> {
    let step = (
        prop_oneof![8 => 0i64..5_000, 8 => 0i64..600_000, 1 => -1_800_000i64..0],
        any::<usize>(),
        any::<usize>(),
        0usize..=70,
        prop::bool::weighted(0.85),
    )
        .prop_map(|(gap_ms, freq_sel, dr_sel, len, sent)| Step {
            gap_ms,
            freq_sel,
            dr_sel,
            len,
            sent,
        });
    (0usize..7, prop::collection::vec(step, 1..400))
}

const DUTY_REGIONS: [&str; 7] = [
    "EU868", "EU868", "EU868", "RU864", "EU433", "AS923-1", "AS923-3",
];

/// Run a sequence; returns the duty-cycle refusals seen.
fn duty_budget_holds(region_sel: usize, steps: &[Step]) -> Result<usize, TestCaseError> {
    let region = Region::by_name(DUTY_REGIONS[region_sel]).expect("region");
    let ledger = DutyCycleLedger::in_memory().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut guard = Guard::new(region, GuardConfig::default(), ledger)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let freqs: Vec<u64> = candidates(region)
        .into_iter()
        .filter(|f| region.is_tx_frequency_allowed(*f, 125_000))
        .collect();
    let drs: Vec<Modulation> = modulations(region).into_iter().take(8).collect();
    let mut now = t0();
    let mut sent: Vec<(SystemTime, Duration, &'static str)> = Vec::new();
    let mut refusals = 0;
    for s in steps {
        now = if s.gap_ms >= 0 {
            now + Duration::from_millis(s.gap_ms as u64)
        } else {
            now - Duration::from_millis(s.gap_ms.unsigned_abs())
        };
        let mut r = req(
            freqs[s.freq_sel % freqs.len()],
            14,
            drs[s.dr_sel % drs.len()],
            s.len,
        );
        if s.dr_sel % 3 == 0 {
            r.timing = TxTiming::AtCounter(s.dr_sel as u32);
        }
        match guard.approve(now, r) {
            Ok(a) => {
                let (start, airtime, band) = (
                    a.verdict().start,
                    a.verdict().airtime,
                    a.verdict().band.name,
                );
                prop_assert!(airtime < SCHEDULE_SLACK);
                let (_, receipt) = a.into_parts();
                if s.sent {
                    sent.push((start, airtime, band));
                } else {
                    guard
                        .release(receipt)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
            }
            Err(Refusal::DutyCycleExceeded { .. }) => refusals += 1,
            Err(_) => {}
        }
    }
    // Every one-hour window (aligned on each frame's start or end) of each band, counting
    // the part of each frame's airtime inside the window, stays within the budget.
    let mut by_band: HashMap<&str, Vec<(SystemTime, Duration)>> = HashMap::new();
    for (s, a, b) in &sent {
        by_band.entry(b).or_default().push((*s, *a));
    }
    for (band_name, frames) in by_band {
        let band = region
            .bands
            .iter()
            .find(|b| b.name == band_name)
            .expect("band");
        let budget = band.budget_per_hour().expect("duty band");
        let starts = frames.iter().map(|(s, _)| *s).chain(
            frames
                .iter()
                .filter_map(|(s, a)| (*s + *a).checked_sub(DUTY_CYCLE_WINDOW)),
        );
        for w0 in starts {
            let w1 = w0 + DUTY_CYCLE_WINDOW;
            let on_air: Duration = frames
                .iter()
                .map(|(s, a)| {
                    let (b, e) = ((*s).max(w0), (*s + *a).min(w1));
                    e.duration_since(b).unwrap_or_default()
                })
                .sum();
            prop_assert!(
                on_air <= budget,
                "band {band_name}: {on_air:?} on air in one hour, budget {budget:?}"
            );
        }
    }
    Ok(refusals)
}

proptest! {
    #![proptest_config(Config::with_cases(48))]
    #[test]
    fn duty_cycle_budget_holds_in_every_hour((region, steps) in arb_steps()) {
        duty_budget_holds(region, &steps)?;
    }
}

#[test]
fn the_duty_cycle_sequences_do_hit_the_budget() {
    let refusals = AtomicUsize::new(0);
    let mut runner = seeded_runner(24);
    runner
        .run(&arb_steps(), |(region, steps)| {
            refusals.fetch_add(duty_budget_holds(region, &steps)?, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    assert!(refusals.load(Ordering::Relaxed) > 0);
}
