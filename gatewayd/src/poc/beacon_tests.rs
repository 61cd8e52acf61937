//! Tests of the beacon: fixtures, per-region choices, and the guard property test.

use std::time::UNIX_EPOCH;

use proptest::prelude::*;

use super::*;
use crate::guard::{DutyCycleLedger, Guard, GuardConfig, Refusal};
use crate::region::{LbtRule, REGIONS};

const KEY: PublicKey = PublicKey([7u8; 32]);

fn guard(region: &'static Region, sub_band: Option<u8>) -> Guard {
    let config = GuardConfig {
        sub_band,
        // KR920 requires LBT: the beacon can only go out through a backend that does it.
        backend_can_lbt: matches!(region.lbt, LbtRule::Required(_)),
        ..GuardConfig::default()
    };
    Guard::new(region, config, DutyCycleLedger::in_memory().unwrap()).unwrap()
}

fn sub_bands(region: &Region) -> Vec<Option<u8>> {
    let mut v = vec![None];
    if region.has_sub_bands() {
        v.extend((1..=8).map(Some));
    }
    v
}

#[test]
fn body_fixture() {
    let w = BeaconWindow {
        len_s: 21_600,
        id: 82_000,
    };
    let body = derive_body(&[1u8; 32], &w, &[2u8; 32], &KEY);
    assert_eq!(
        crate::poc::identity::hex(&body),
        "033041d98ce066c0c91bf1a2bc6a18a47784bafb30dff168c2820ebf309caa06"
    );
    // Every input matters.
    assert_ne!(derive_body(&[0u8; 32], &w, &[2u8; 32], &KEY), body);
    assert_ne!(derive_body(&[1u8; 32], &w.next(), &[2u8; 32], &KEY), body);
    assert_ne!(derive_body(&[1u8; 32], &w, &[3u8; 32], &KEY), body);
    assert_ne!(
        derive_body(&[1u8; 32], &w, &[2u8; 32], &PublicKey([8; 32])),
        body
    );
    let f = frame(&body);
    assert_eq!(f.len(), FRAME_LEN);
    assert_eq!(&f[..2], &[0xE0, 0x01]);
    assert_eq!(parse_frame(&f), Some(body));
    assert_eq!(parse_frame(&f[..33]), None);
    let mut g = f.clone();
    g[0] = 0x40;
    assert_eq!(parse_frame(&g), None);
    g[0] = 0xE0;
    g[1] = 2;
    assert_eq!(parse_frame(&g), None);
}

#[test]
fn data_rate_is_sf9_at_125_khz_everywhere() {
    for region in REGIONS {
        let (dr, m) = data_rate(region).unwrap();
        assert_eq!(m, modulation(9, 125_000), "{}", region.name);
        assert_eq!(
            region.data_rate(dr).unwrap().kind,
            DrKind::Lora {
                sf: 9,
                bw_hz: 125_000
            }
        );
        assert_eq!(
            airtime(&m),
            Duration::from_micros(246_784),
            "{}",
            region.name
        );
    }
}

#[test]
fn channels_per_plan() {
    let eu = crate::region::Region::by_name("EU868").unwrap();
    assert_eq!(channels(eu, None), [868_100_000, 868_300_000, 868_500_000]);
    let us = crate::region::Region::by_name("US915").unwrap();
    assert_eq!(channels(us, None).len(), 64);
    let sb2 = channels(us, Some(2));
    assert_eq!(sb2.len(), 8);
    assert_eq!(sb2[0], 903_900_000);
}

#[test]
fn windows_are_aligned() {
    let t = UNIX_EPOCH + Duration::from_secs(21_600 * 5 + 17);
    let w = BeaconWindow::containing(21_600, t).unwrap();
    assert_eq!(w.id, 5);
    assert_eq!(w.start_ms(), 21_600_000 * 5);
    assert!(w.contains_ms(w.start_ms()) && !w.contains_ms(w.end_ms()));
    assert_eq!(
        BeaconWindow::containing(7_000, t),
        Err(BeaconError::BadWindow(7_000))
    );
    assert_eq!(
        BeaconWindow::containing(5, t),
        Err(BeaconError::BadWindow(5))
    );
    assert!(
        BeaconWindow::containing(10, t).is_ok(),
        "the shortest window"
    );
}

#[test]
fn random_instant_stays_inside_the_window() {
    let rng = ring::rand::SystemRandom::new();
    let w = BeaconWindow {
        len_s: 60,
        id: 1000,
    };
    let at = Duration::from_millis(247);
    for _ in 0..200 {
        let t = random_instant(&w, at, &rng).unwrap();
        let ms = unix_ms(t);
        assert!(ms >= w.start_ms() + 1000);
        assert!(ms + 247 + 1000 <= w.end_ms());
    }
}

#[test]
fn kr920_beacon_needs_an_lbt_backend() {
    let kr = crate::region::Region::by_name("KR920").unwrap();
    let g = Guard::new(
        kr,
        GuardConfig::default(),
        DutyCycleLedger::in_memory().unwrap(),
    )
    .unwrap();
    let p = plan(
        kr,
        None,
        &[0; 32],
        &BeaconWindow { len_s: 3600, id: 1 },
        &[0; 32],
        &KEY,
    )
    .unwrap();
    let err = g
        .check(SystemTime::now(), &p.tx_request(14, TxTiming::Immediate))
        .unwrap_err();
    assert!(
        matches!(err, Refusal::LbtRequiredButUnsupported { .. }),
        "{err}"
    );
}

proptest! {
    /// Whatever the entropy, window and key, in every region and sub-band the beacon's
    /// channel, DR, airtime and power pass the regulatory guard, and the power the guard
    /// approves is the conducted limit (nothing is clamped).
    #[test]
    fn every_region_beacon_passes_the_guard(
        net in any::<[u8; 32]>(),
        local in any::<[u8; 32]>(),
        key in any::<[u8; 32]>(),
        id in 0u64..1_000_000,
    ) {
        for region in REGIONS {
            for sb in sub_bands(region) {
                let g = guard(region, sb);
                let w = BeaconWindow { len_s: DEFAULT_WINDOW_S, id };
                let p = plan(region, sb, &net, &w, &local, &PublicKey(key)).unwrap();
                prop_assert!(channels(region, sb).contains(&p.freq_hz));
                let power = power_dbm(&g, p.freq_hz, i8::MAX).unwrap();
                prop_assert_eq!(power_dbm(&g, p.freq_hz, 14), Some(power.min(14)));
                let v = g
                    .check(SystemTime::now(), &p.tx_request(power, TxTiming::Immediate))
                    .map_err(|e| TestCaseError::fail(format!("{} {sb:?}: {e}", region.name)))?;
                prop_assert_eq!(v.dr, p.dr);
                prop_assert_eq!(v.power_dbm, power);
                prop_assert!(!v.clamped);
                prop_assert!(v.airtime <= MAX_BEACON_AIRTIME);
                if region.name == "AS923-1" {
                    // Japanese rules: LBT, EIRP ≤ 13 dBm, DR ≤ 5.
                    let japan = GuardConfig {
                        japan: true,
                        backend_can_lbt: true,
                        ..GuardConfig::default()
                    };
                    let g = Guard::new(region, japan, DutyCycleLedger::in_memory().unwrap()).unwrap();
                    let power = power_dbm(&g, p.freq_hz, i8::MAX).unwrap();
                    prop_assert!(power <= 13);
                    let req = p.tx_request(power, TxTiming::Immediate);
                    prop_assert!(g.check(SystemTime::now(), &req).is_ok());
                }
            }
        }
    }
}

/// One-draw random source for the scheduler.
struct Draw(u64);

impl crate::poc::scheduler::RandomSource for Draw {
    fn random_u64(&self) -> Option<u64> {
        Some(self.0)
    }
}

proptest! {
    /// What the scheduler actually sends passes the guard, in every region and sub-band,
    /// for any valid window, instant, installation (gain, loss within the config's ranges)
    /// and radio maximum: the power from `power_from_limit` is never clamped. With hourly
    /// or longer windows, consecutive beacons charged to the duty-cycle ledger keep passing.
    #[test]
    fn every_scheduled_beacon_passes_the_guard(
        len_idx in 0usize..6,
        start_s in 1_700_000_000u64..1_900_000_000,
        draws in proptest::collection::vec(any::<u64>(), 4),
        gain_d in -100i32..=300,
        loss_d in 0i32..=300,
        radio_max in -10i8..=30,
        net in any::<[u8; 32]>(),
        key in any::<[u8; 32]>(),
    ) {
        use crate::poc::entropy::{EntropyBook, EntropyCommand};
        use crate::poc::scheduler::{Scheduler, Step};
        let len_s = [10u32, 60, 600, 3600, 21_600, 86_400][len_idx];
        for region in REGIONS {
            for sb in sub_bands(region) {
                let config = GuardConfig {
                    sub_band: sb,
                    antenna_gain_dbi: gain_d as f32 / 10.0,
                    cable_loss_db: loss_d as f32 / 10.0,
                    backend_can_lbt: matches!(region.lbt, LbtRule::Required(_)),
                    ..GuardConfig::default()
                };
                let mut g = Guard::new(region, config, DutyCycleLedger::in_memory().unwrap()).unwrap();
                let (_, m) = data_rate(region).unwrap();
                let mut s = Scheduler::new(len_s, airtime(&m));
                let mut book = EntropyBook::default();
                let mut now = UNIX_EPOCH + Duration::from_secs(start_s);
                let mut beacons = 0;
                for draw in &draws {
                    let w = BeaconWindow::containing(len_s, now).unwrap();
                    for window in [w, w.next()] {
                        book.insert(EntropyCommand { window, entropy: net });
                    }
                    let step = match s.poll(now, &book, true, &Draw(*draw)) {
                        Step::Sleep { until } => {
                            now = until;
                            s.poll(now, &book, true, &Draw(*draw))
                        }
                        other => other,
                    };
                    let Step::Beacon { window, entropy } = step else {
                        return Err(TestCaseError::fail(format!("{step:?}")));
                    };
                    let p = plan(region, sb, &entropy, &window, &[1; 32], &PublicKey(key)).unwrap();
                    let power = power_from_limit(g.conducted_limit_dbm(p.freq_hz), radio_max)
                        .ok_or_else(|| TestCaseError::fail("no limit at the beacon frequency"))?;
                    let req = p.tx_request(power, TxTiming::Immediate);
                    let v = if len_s >= 3600 {
                        g.approve(now, req).map(|a| a.verdict().clone())
                    } else {
                        g.check(now, &req)
                    }
                    .map_err(|e| TestCaseError::fail(format!("{} {sb:?} window {len_s} s: {e}", region.name)))?;
                    prop_assert_eq!(v.power_dbm, power);
                    prop_assert!(!v.clamped);
                    prop_assert!(window.contains_ms(drivers::time::unix_ms(now)));
                    beacons += 1;
                    // On to the next window.
                    now = UNIX_EPOCH + Duration::from_millis(window.end_ms());
                }
                prop_assert_eq!(beacons, draws.len());
            }
        }
    }
}
