//! Unit tests of each guard rule in several regions, the ledger restart and the gate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use drivers::radio::{CodeRate, Modulation, RadioControl, TxRequest, TxStatus, TxTiming};
use drivers::time::{GPS_EPOCH_UNIX_SECS, GPS_LEAP_SECONDS};

use super::*;

pub(super) fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

pub(super) fn lora(sf: u8, bw_hz: u32) -> Modulation {
    Modulation::Lora {
        sf,
        bw_hz,
        cr: Some(CodeRate::Cr45),
    }
}

/// A downlink request (inverted IQ, no CRC, preamble 8, immediate).
pub(super) fn req(freq_hz: u64, power_dbm: i8, modulation: Modulation, len: usize) -> TxRequest {
    TxRequest {
        freq_hz,
        power_dbm,
        modulation,
        invert_iq: true,
        preamble: None,
        crc: false,
        timing: TxTiming::Immediate,
        rf_chain: 0,
        board: 0,
        antenna: 0,
        payload: vec![0x60; len],
    }
}

fn beacon(freq_hz: u64, modulation: Modulation, len: usize) -> TxRequest {
    TxRequest {
        invert_iq: false,
        crc: true,
        ..req(freq_hz, 14, modulation, len)
    }
}

fn guard(region: &str, config: GuardConfig) -> Guard {
    Guard::new(
        Region::by_name(region).unwrap(),
        config,
        DutyCycleLedger::in_memory().unwrap(),
    )
    .unwrap()
}

fn gain_loss(gain: f32, loss: f32) -> GuardConfig {
    GuardConfig {
        antenna_gain_dbi: gain,
        cable_loss_db: loss,
        ..GuardConfig::default()
    }
}

#[test]
fn power_is_clamped_to_band_eirp_minus_gain_plus_loss() {
    let mut g = guard("EU868", GuardConfig::default());
    let a = g
        .approve(t0(), req(869_525_000, 30, lora(12, 125_000), 20))
        .unwrap();
    assert_eq!(a.request().power_dbm, 29); // band P: 29.15 dBm EIRP
    assert!(a.verdict().clamped);
    let a = g
        .approve(t0(), req(868_100_000, 20, lora(7, 125_000), 20))
        .unwrap();
    assert_eq!(a.request().power_dbm, 16); // band M: 16.15 dBm
    let a = g
        .approve(t0(), req(868_100_000, 10, lora(7, 125_000), 20))
        .unwrap();
    assert_eq!((a.request().power_dbm, a.verdict().clamped), (10, false));

    let mut g = guard("EU868", gain_loss(3.0, 1.0));
    let a = g
        .approve(t0(), req(869_525_000, 30, lora(12, 125_000), 20))
        .unwrap();
    assert_eq!(a.request().power_dbm, 27); // 29.15 − 3 + 1
    assert_eq!(g.conducted_limit_dbm(868_300_000), Some(14));

    let mut g = guard("US915", gain_loss(6.0, 0.5));
    let a = g
        .approve(t0(), req(923_300_000, 30, lora(12, 500_000), 20))
        .unwrap();
    assert_eq!(a.request().power_dbm, 22); // 28.15 − 6 + 0.5 = 22.65
                                           // 16.15 − 2.15 is exactly 14, not 13 after float error.
    let g = guard("EU868", gain_loss(2.15, 0.0));
    assert_eq!(g.conducted_limit_dbm(868_100_000), Some(14));
    assert_eq!(g.conducted_for_eirp(20.0), 17);
    assert_eq!(g.counters().snapshot().approved, 0);
}

#[test]
fn frequencies_outside_channels_or_bands_are_refused() {
    let mut g = guard("EU868", GuardConfig::default());
    for f in [869_300_000, 868_550_000, 915_000_000, 862_000_000] {
        let r = g
            .approve(t0(), req(f, 14, lora(7, 125_000), 10))
            .unwrap_err();
        assert!(matches!(r, Refusal::FrequencyNotAllowed { freq_hz, .. } if freq_hz == f));
        assert_eq!(r.tx_status(), TxStatus::TxFreq);
        assert!(r.to_string().contains(&f.to_string()), "{r}");
    }
    // 250 kHz at 868.5 MHz sticks out of band M (868.375–868.625).
    assert!(g
        .approve(t0(), req(868_500_000, 14, lora(7, 250_000), 10))
        .is_err());

    let config = GuardConfig {
        sub_band: Some(2),
        ..GuardConfig::default()
    };
    let mut g = guard("US915", config);
    // A downlink on an uplink channel is refused; a beacon on sub-band 2 is fine.
    assert!(g
        .approve(t0(), req(903_900_000, 20, lora(9, 125_000), 20))
        .is_err());
    g.approve(t0(), beacon(903_900_000, lora(9, 125_000), 52))
        .unwrap();
    // Sub-band 1 channel 902.3 MHz is outside sub-band 2.
    let r = g
        .approve(t0(), beacon(902_300_000, lora(9, 125_000), 52))
        .unwrap_err();
    assert!(matches!(r, Refusal::FrequencyNotAllowed { .. }));

    let mut g = guard(
        "KR920",
        GuardConfig {
            backend_can_lbt: true,
            ..GuardConfig::default()
        },
    );
    assert!(g
        .approve(t0(), req(922_200_000, 10, lora(7, 125_000), 10))
        .is_err());
    g.approve(t0(), req(922_100_000, 10, lora(7, 125_000), 10))
        .unwrap();
    assert_eq!(g.counters().snapshot().frequency, 1);
}

#[test]
fn data_rates_the_region_does_not_allow_are_refused() {
    let mut g = guard("EU868", GuardConfig::default());
    let lr = Modulation::LrFhss {
        ocw_hz: 137_000,
        cr: CodeRate::Cr13,
        grid_steps: 52,
    };
    let off = Modulation::Lora {
        sf: 7,
        bw_hz: 125_000,
        cr: Some(CodeRate::Off),
    };
    for m in [lora(7, 500_000), lora(6, 125_000), lr, off] {
        let r = g.approve(t0(), req(866_000_000, 14, m, 10)).unwrap_err();
        assert!(
            matches!(r, Refusal::DataRateNotAllowed { .. }),
            "{m:?}: {r}"
        );
        assert_eq!(r.tx_status(), TxStatus::InternalError);
    }
    g.approve(
        t0(),
        req(868_300_000, 14, Modulation::Fsk { bitrate: 50_000 }, 10),
    )
    .unwrap();
    let mut g = guard("US915", GuardConfig::default());
    // SF10/125k is an uplink DR only; SF8/500k downlink is DR12.
    assert!(g
        .approve(t0(), req(923_300_000, 14, lora(10, 125_000), 10))
        .is_err());
    let a = g
        .approve(t0(), req(923_300_000, 14, lora(8, 500_000), 10))
        .unwrap();
    assert_eq!(a.verdict().dr, 12);
    assert_eq!(g.counters().snapshot().data_rate, 1);
}

#[test]
fn payloads_longer_than_the_dr_allows_are_refused() {
    let mut g = guard("EU868", GuardConfig::default());
    g.approve(t0(), req(869_525_000, 14, lora(12, 125_000), 64))
        .unwrap();
    let r = g
        .approve(t0(), req(869_525_000, 14, lora(12, 125_000), 65))
        .unwrap_err();
    assert_eq!(
        r,
        Refusal::PayloadTooLong {
            region: "EU868",
            len: 65,
            dr: 0,
            max: 64
        }
    );
    assert!(r.to_string().contains("65 B"), "{r}");
    let mut g = guard("US915", GuardConfig::default());
    assert!(g
        .approve(t0(), req(923_300_000, 14, lora(12, 500_000), 67))
        .is_err());
    g.approve(t0(), req(923_300_000, 14, lora(12, 500_000), 66))
        .unwrap();
}

#[test]
fn dwell_time_is_enforced_where_the_region_requires_it() {
    // AS923 beacons (uplink rules, dwell on): SF10 max PHY 24 B fits 400 ms at preamble 8 …
    let mut g = guard("AS923-1", GuardConfig::default());
    g.approve(t0(), beacon(923_200_000, lora(10, 125_000), 24))
        .unwrap();
    // … but not with a longer preamble.
    let long = TxRequest {
        preamble: Some(20),
        ..beacon(923_200_000, lora(10, 125_000), 24)
    };
    let r = g.approve(t0(), long).unwrap_err();
    assert!(
        matches!(r, Refusal::DwellTimeExceeded { airtime, limit }
        if airtime > limit && limit == Duration::from_millis(400)),
        "{r}"
    );
    // SF12 is not allowed at all under uplink dwell; downlinks have no dwell by default.
    assert!(matches!(
        g.approve(t0(), beacon(923_200_000, lora(12, 125_000), 10)),
        Err(Refusal::DataRateNotAllowed { .. })
    ));
    g.approve(t0(), req(923_200_000, 14, lora(12, 125_000), 20))
        .unwrap();
    // With downlink dwell configured, the SF12 downlink is refused too.
    let mut g = guard(
        "AS923-1",
        GuardConfig {
            downlink_dwell: true,
            ..GuardConfig::default()
        },
    );
    assert!(g
        .approve(t0(), req(923_200_000, 14, lora(12, 125_000), 20))
        .is_err());
    // US915 beacon SF9/125k, 52 B (328.7 ms) passes the uplink dwell limit; CR 4/8 does not.
    let mut g = guard("US915", GuardConfig::default());
    let a = g
        .approve(t0(), beacon(903_900_000, lora(9, 125_000), 52))
        .unwrap();
    assert_eq!(a.verdict().airtime, Duration::from_micros(328_704));
    let cr48 = Modulation::Lora {
        sf: 9,
        bw_hz: 125_000,
        cr: Some(CodeRate::Cr48),
    };
    assert!(matches!(
        g.approve(t0(), beacon(903_900_000, cr48, 52)),
        Err(Refusal::DwellTimeExceeded { .. })
    ));
    // EU868 has no dwell limit: a 2.8 s SF12 frame is fine.
    let mut g = guard("EU868", GuardConfig::default());
    g.approve(t0(), req(869_525_000, 14, lora(12, 125_000), 64))
        .unwrap();
}

#[test]
fn lbt_is_required_in_kr920_and_under_japanese_rules() {
    let mut g = guard("KR920", GuardConfig::default());
    let r = g
        .approve(t0(), req(922_100_000, 10, lora(7, 125_000), 10))
        .unwrap_err();
    assert_eq!(r, Refusal::LbtRequiredButUnsupported { region: "KR920" });
    assert!(r.to_string().contains("listen-before-talk"));
    let mut g = guard(
        "KR920",
        GuardConfig {
            backend_can_lbt: true,
            ..GuardConfig::default()
        },
    );
    let a = g
        .approve(t0(), req(921_900_000, 20, lora(12, 125_000), 10))
        .unwrap();
    assert_eq!(a.verdict().lbt.map(|p| p.rssi_threshold_dbm), Some(-65));
    assert_eq!(a.request().power_dbm, 10); // below 922.1 MHz: 10 dBm

    // AS923-1 outside Japan: no LBT; under Japanese rules: LBT, 13 dBm, DR ≤ 5.
    let mut g = guard("AS923-1", GuardConfig::default());
    assert_eq!(
        g.approve(t0(), req(923_200_000, 20, lora(7, 125_000), 10))
            .unwrap()
            .verdict()
            .lbt,
        None
    );
    let jp = GuardConfig {
        japan: true,
        ..GuardConfig::default()
    };
    let mut g = guard("AS923-1", jp.clone());
    assert!(matches!(
        g.approve(t0(), req(923_200_000, 20, lora(7, 125_000), 10)),
        Err(Refusal::LbtRequiredButUnsupported { .. })
    ));
    let mut g = guard(
        "AS923-1",
        GuardConfig {
            backend_can_lbt: true,
            ..jp
        },
    );
    let a = g
        .approve(t0(), req(923_200_000, 20, lora(7, 125_000), 10))
        .unwrap();
    assert_eq!(a.request().power_dbm, 13);
    assert!(a.verdict().lbt.is_some());
    assert!(matches!(
        g.approve(t0(), req(923_200_000, 20, lora(7, 250_000), 10)),
        Err(Refusal::DataRateNotAllowed { .. })
    ));
}

#[test]
fn bad_settings_are_rejected() {
    let eu = Region::by_name("EU868").unwrap();
    let us = Region::by_name("US915").unwrap();
    let mk = |r, c| Guard::new(r, c, DutyCycleLedger::in_memory().unwrap());
    assert!(matches!(
        mk(eu, gain_loss(0.0, -1.0)),
        Err(GuardError::BadGainOrLoss { .. })
    ));
    assert!(matches!(
        mk(eu, gain_loss(f32::NAN, 0.0)),
        Err(GuardError::BadGainOrLoss { .. })
    ));
    let sb = |s| GuardConfig {
        sub_band: Some(s),
        ..GuardConfig::default()
    };
    assert!(matches!(mk(eu, sb(2)), Err(GuardError::BadSubBand { .. })));
    assert!(matches!(mk(us, sb(9)), Err(GuardError::BadSubBand { .. })));
    assert!(mk(us, sb(8)).is_ok());
    let jp = GuardConfig {
        japan: true,
        ..GuardConfig::default()
    };
    let err = mk(Region::by_name("AS923-2").unwrap(), jp).unwrap_err();
    assert!(err.to_string().contains("AS923-2"), "{err}");
}

/// EU868 DR0 downlink of 64 B: 2 793 472 µs minus the CRC → 2 629 632 µs.
fn sf12_64(freq: u64) -> TxRequest {
    req(freq, 14, lora(12, 125_000), 64)
}

#[test]
fn duty_cycle_budget_per_band_over_a_sliding_hour() {
    let mut g = guard("EU868", GuardConfig::default());
    let airtime = g.check(t0(), &sf12_64(868_100_000)).unwrap().airtime;
    let budget = Duration::from_secs(36); // band M 1 %
    let fits = (budget.as_micros() / airtime.as_micros()) as u32;
    for i in 0..fits {
        g.approve(t0() + Duration::from_secs(60) * i, sf12_64(868_100_000))
            .unwrap();
    }
    let now = t0() + Duration::from_secs(60) * fits;
    let r = g.approve(now, sf12_64(868_300_000)).unwrap_err();
    let Refusal::DutyCycleExceeded {
        band,
        used,
        budget: b,
        retry_after,
        ..
    } = r.clone()
    else {
        panic!("{r}")
    };
    assert_eq!((band, b, used), ("M", budget, airtime * fits));
    assert_eq!(r.tx_status(), TxStatus::DutyCycleOverflow);
    assert!(r.to_string().contains("band M"), "{r}");
    // The first charge leaves the window one hour (plus slack) after it was made.
    let retry = retry_after.unwrap();
    assert_eq!(
        now + retry,
        t0() + DUTY_CYCLE_WINDOW + SCHEDULE_SLACK + Duration::from_micros(1)
    );
    assert!(g
        .approve(now + retry - Duration::from_secs(1), sf12_64(868_100_000))
        .is_err());
    g.approve(now + retry, sf12_64(868_100_000)).unwrap();
    // Band P has its own 360 s budget, untouched.
    g.approve(now, sf12_64(869_525_000)).unwrap();
    assert_eq!(g.counters().snapshot().duty_cycle, 2);
    // A frame longer than band K's 3.6 s budget can never go.
    let mut long = sf12_64(864_100_000);
    long.modulation = Modulation::Lora {
        sf: 12,
        bw_hz: 125_000,
        cr: Some(CodeRate::Cr48),
    };
    let r = g.approve(now, long).unwrap_err();
    assert!(
        matches!(r, Refusal::DutyCycleExceeded { band: "K", airtime, budget, retry_after: None, .. }
            if airtime > budget),
        "{r}"
    );
    assert!(r.to_string().contains("alone exceeds"), "{r}");
}

#[test]
fn duty_cycle_use_lists_every_limited_band_with_its_budget() {
    let mut g = guard("EU868", GuardConfig::default());
    let a = g.approve(t0(), sf12_64(868_100_000)).unwrap();
    g.approve(t0(), sf12_64(868_300_000)).unwrap();
    let p = g.approve(t0(), sf12_64(869_525_000)).unwrap();
    let use_now = g.duty_cycle_use(t0()).unwrap();
    let names: Vec<_> = use_now.iter().map(|u| u.band).collect();
    assert_eq!(names, ["K", "L", "M", "N", "P", "R"]);
    let m = use_now.iter().find(|u| u.band == "M").unwrap();
    assert_eq!(m.used, a.verdict().airtime * 2);
    assert_eq!(m.budget, Duration::from_secs(36));
    let p_use = use_now.iter().find(|u| u.band == "P").unwrap();
    assert_eq!(
        (p_use.used, p_use.budget),
        (p.verdict().airtime, Duration::from_secs(360))
    );
    assert_eq!(
        use_now.iter().find(|u| u.band == "K").unwrap().used,
        Duration::ZERO
    );
    // Once the charges have left the window, the bands read empty again.
    let later = t0() + DUTY_CYCLE_WINDOW + SCHEDULE_SLACK + Duration::from_secs(1);
    assert!(g
        .duty_cycle_use(later)
        .unwrap()
        .iter()
        .all(|u| u.used == Duration::ZERO));
    // Regions without duty cycle list nothing.
    assert!(guard("US915", GuardConfig::default())
        .duty_cycle_use(t0())
        .unwrap()
        .is_empty());
}

#[test]
fn regions_without_duty_cycle_do_not_charge_and_clock_steps_back_are_safe() {
    let mut g = guard("US915", GuardConfig::default());
    for i in 0..2000 {
        g.approve(
            t0() + Duration::from_millis(i),
            req(923_900_000, 20, lora(12, 500_000), 60),
        )
        .unwrap();
    }
    assert_eq!(g.duty_cycle_used(t0(), "923-928").unwrap(), Duration::ZERO);

    let mut g = guard("RU864", GuardConfig::default());
    let mut n = 0;
    while g.approve(t0(), sf12_64(868_900_000)).is_ok() {
        n += 1;
        assert!(n < 100);
    }
    // The clock steps back half an hour: the charges "in the future" still count.
    let back = t0() - Duration::from_secs(1800);
    assert!(g.approve(back, sf12_64(868_900_000)).is_err());
}

#[test]
fn gps_timed_transmissions_are_charged_at_their_time() {
    let mut g = guard("EU868", GuardConfig::default());
    let gps = Duration::from_secs(1_750_000_000 - GPS_EPOCH_UNIX_SECS + GPS_LEAP_SECONDS + 7200);
    let r = TxRequest {
        timing: TxTiming::AtGpsTime(gps),
        ..sf12_64(869_525_000)
    };
    let a = g.approve(t0(), r).unwrap();
    assert_eq!(a.verdict().start, t0() + Duration::from_secs(7200));
    assert_eq!(g.duty_cycle_used(t0(), "P").unwrap(), Duration::ZERO);
    assert_eq!(
        g.duty_cycle_used(t0() + Duration::from_secs(7200), "P")
            .unwrap(),
        a.verdict().airtime
    );
}

#[test]
fn release_refunds_and_the_ledger_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dutycycle.sqlite");
    let eu = Region::by_name("EU868").unwrap();
    let used;
    {
        let mut g = Guard::new(
            eu,
            GuardConfig::default(),
            DutyCycleLedger::open(&path).unwrap(),
        )
        .unwrap();
        let a = g.approve(t0(), sf12_64(868_100_000)).unwrap();
        let (_, receipt) = a.into_parts();
        g.release(receipt).unwrap();
        assert_eq!(g.duty_cycle_used(t0(), "M").unwrap(), Duration::ZERO);
        assert_eq!(g.counters().snapshot().released, 1);
        while g.approve(t0(), sf12_64(868_100_000)).is_ok() {}
        used = g.duty_cycle_used(t0(), "M").unwrap();
        assert!(used > Duration::from_secs(30));
    }
    let mut g = Guard::new(
        eu,
        GuardConfig::default(),
        DutyCycleLedger::open(&path).unwrap(),
    )
    .unwrap();
    assert_eq!(g.duty_cycle_used(t0(), "M").unwrap(), used);
    assert!(matches!(
        g.approve(t0() + Duration::from_secs(60), sf12_64(868_500_000)),
        Err(Refusal::DutyCycleExceeded { .. })
    ));
}

#[tokio::test]
async fn the_gate_releases_airtime_the_backend_did_not_send() {
    let (control, mut rx) = RadioControl::channel(4);
    let backend = tokio::spawn(async move {
        let mut seen = Vec::new();
        for status in [TxStatus::Ok, TxStatus::TooLate] {
            let cmd = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap();
            seen.push(cmd.request.power_dbm);
            cmd.reply.send(status).unwrap();
        }
        seen
    });
    let mut gate = TxGate::new(
        guard("EU868", GuardConfig::default()),
        control,
        Duration::from_secs(5),
    );
    let (status, v) = gate.send(t0(), sf12_64(868_100_000)).await.unwrap();
    assert_eq!(status, TxStatus::Ok);
    let (status, _) = gate.send(t0(), sf12_64(868_100_000)).await.unwrap();
    assert_eq!(status, TxStatus::TooLate);
    assert_eq!(gate.guard().duty_cycle_used(t0(), "M").unwrap(), v.airtime);
    // Refused requests never reach the backend.
    let err = gate
        .send(t0(), req(915_000_000, 14, lora(7, 125_000), 5))
        .await
        .unwrap_err();
    assert_eq!(err.tx_status(), TxStatus::TxFreq);
    assert_eq!(backend.await.unwrap(), vec![14, 14]);
    drop(gate);
}

#[test]
fn a_broken_ledger_fails_closed() {
    let mut g = guard("EU868", GuardConfig::default());
    g.ledger.break_for_test();
    let r = g.approve(t0(), sf12_64(868_100_000)).unwrap_err();
    assert!(
        matches!(r, Refusal::LedgerUnavailable(ref m) if m.contains("duty-cycle ledger")),
        "{r}"
    );
    assert_eq!(r.tx_status(), TxStatus::InternalError);
    assert_eq!(g.counters().snapshot().ledger_unavailable, 1);
    // Regions without a duty cycle do not need the ledger.
    let mut g = guard("US915", GuardConfig::default());
    g.ledger.break_for_test();
    g.approve(t0(), req(923_300_000, 20, lora(10, 500_000), 20))
        .unwrap();
}
