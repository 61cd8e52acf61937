//! Device state machine: OTAA join with a test-side network server, retries, ABP fallback,
//! receive windows, downlink counting.

use super::*;
use crate::crypto::{join_accept, open_data_frame, open_join_request};

const EU_RX2: u64 = 869_525_000;

fn lora(sf: u8) -> Modulation {
    Modulation::Lora {
        sf,
        bw_hz: 125_000,
        cr: None,
    }
}

fn abp_session() -> Session {
    Session {
        dev_addr: 0x2600_0001,
        nwk_skey: [0x11; 16],
        app_skey: [0x22; 16],
    }
}

fn config(activation: Activation) -> DeviceConfig {
    DeviceConfig {
        dev_eui: Eui64([0, 0, 0, 0, 0, 0, 0, 1]),
        join_eui: Eui64([0x70, 0xb3, 0xd5, 0x7e, 0xd0, 0, 0, 0]),
        app_key: [0x5a; 16],
        activation,
        interval_us: 60_000_000,
        payload_len: 12,
        fport: 10,
        modulation: lora(7),
        channels_hz: vec![868_100_000, 868_300_000, 868_500_000],
        power_dbm: 14.0,
        rx2_freq_hz: EU_RX2,
        rx2_modulation: lora(12),
        join_backoff_us: 10_000_000,
        join_backoff_max_us: 80_000_000,
        window_tolerance_us: 20_000,
    }
}

fn otaa(fallback_after: Option<u32>) -> DeviceConfig {
    config(Activation::Otaa {
        abp_fallback_after: fallback_after,
        fallback: abp_session(),
    })
}

fn downlink(freq_hz: u64, modulation: Modulation, payload: Vec<u8>) -> Transmission {
    Transmission {
        freq_hz,
        modulation,
        power_dbm: 27.0,
        invert_iq: true,
        preamble: 8,
        crc: false,
        payload,
    }
}

/// Poll until the device transmits; returns (start time, frame).
fn next_frame(d: &mut Device, mut now: SimTime) -> (SimTime, Transmission) {
    for _ in 0..1000 {
        now = now.max(d.next_wake());
        if let Some(tx) = d.poll(now) {
            return (now, tx);
        }
    }
    panic!("device never transmitted");
}

#[test]
fn otaa_join_then_data_with_the_new_session() {
    let cfg = otaa(None);
    let mut d = Device::new(cfg.clone(), 7, 0);
    let (t0, jr) = next_frame(&mut d, 0);
    assert!(t0 < cfg.interval_us);
    assert!(!jr.invert_iq && jr.crc);
    let req = open_join_request(&jr.payload, Some(&cfg.app_key)).unwrap();
    assert_eq!((req.dev_eui, req.join_eui), (cfg.dev_eui, cfg.join_eui));
    // Network server answers in RX1 (5 s after the end of the request).
    let ja = join_accept(&cfg.app_key, 0x000102, 0x13, 0x2601_abcd, 0, 1);
    let dl = downlink(jr.freq_hz, lora(7), ja);
    let up_end = t0 + jr.airtime_us();
    // Too early (RX1 of a data frame would be at +1 s): ignored.
    let early = up_end + 1_000_000 + dl.airtime_us();
    assert_eq!(d.on_downlink(early, &dl), DownlinkOutcome::OutsideWindow);
    let end = up_end + 5_000_000 + dl.airtime_us();
    let DownlinkOutcome::Joined(s) = d.on_downlink(end, &dl) else {
        panic!("join-accept not taken");
    };
    assert_eq!(s.dev_addr, 0x2601_abcd);
    assert_eq!(d.counters().joins, 1);
    let (_, up) = next_frame(&mut d, end);
    let f = open_data_frame(&up.payload, &s, 0).unwrap();
    assert_eq!((f.dev_addr, f.fcnt, f.fport), (0x2601_abcd, 0, Some(10)));
    assert_eq!(f.payload.len(), 12);
    let (_, up2) = next_frame(&mut d, end + 1);
    assert_eq!(open_data_frame(&up2.payload, &s, 0).unwrap().fcnt, 1);
    assert_eq!(d.counters().uplinks, 2);
}

#[test]
fn unanswered_joins_back_off_then_fall_back_to_abp() {
    let mut d = Device::new(otaa(Some(4)), 3, 0);
    let mut starts = Vec::new();
    let mut nonces = Vec::new();
    let mut now = 0;
    for _ in 0..4 {
        let (t, jr) = next_frame(&mut d, now);
        nonces.push(open_join_request(&jr.payload, None).unwrap().dev_nonce);
        starts.push(t);
        now = t + 1;
    }
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= 6_000_000 + 10_000_000, "{gaps:?}");
    assert!(
        gaps[1] > gaps[0] && gaps[2] > gaps[1],
        "backoff grows: {gaps:?}"
    );
    nonces.dedup();
    assert_eq!(nonces.len(), 4, "a fresh DevNonce per attempt");
    // After the 4th unanswered attempt: ABP data frames.
    let (_, up) = next_frame(&mut d, now);
    let f = open_data_frame(&up.payload, &abp_session(), 0).unwrap();
    assert_eq!(f.dev_addr, abp_session().dev_addr);
    assert_eq!(d.counters().abp_fallbacks, 1);
    assert_eq!(d.counters().join_requests, 4);
}

#[test]
fn downlinks_are_counted_in_rx1_and_rx2_only() {
    let s = abp_session();
    let mut d = Device::new(config(Activation::Abp(s)), 9, 0);
    let (t0, up) = next_frame(&mut d, 0);
    let up_end = t0 + up.airtime_us();
    let params = DataParams {
        uplink: false,
        confirmed: true,
        ack: false,
        fcnt: 0,
        fport: 5,
    };
    let phy = crypto::data_frame(&s, params, b"hi").unwrap();
    // RX1 on the wrong frequency: outside the window.
    let wrong = downlink(868_900_000, lora(7), phy.clone());
    let at_rx1 = up_end + 1_000_000 + wrong.airtime_us();
    assert_eq!(
        d.on_downlink(at_rx1, &wrong),
        DownlinkOutcome::OutsideWindow
    );
    // Another device's frame in RX1: rejected, window stays open.
    let other = Session {
        dev_addr: 0x2600_0002,
        ..s
    };
    let theirs = downlink(
        up.freq_hz,
        lora(7),
        crypto::data_frame(&other, params, b"x").unwrap(),
    );
    assert!(matches!(
        d.on_downlink(up_end + 1_000_000 + theirs.airtime_us(), &theirs),
        DownlinkOutcome::Rejected(_)
    ));
    // Ours in RX2 (869.525 MHz SF12).
    let rx2 = downlink(EU_RX2, lora(12), phy);
    let at_rx2 = up_end + 2_000_000 + rx2.airtime_us();
    let DownlinkOutcome::Data(f) = d.on_downlink(at_rx2, &rx2) else {
        panic!("downlink in RX2 not decoded");
    };
    assert_eq!(f.payload, b"hi");
    assert_eq!(d.counters().downlinks, 1);
    assert_eq!(d.counters().rejected, 1);
    // The confirmed downlink is acknowledged in the next uplink.
    let (_, up2) = next_frame(&mut d, at_rx2);
    assert!(open_data_frame(&up2.payload, &s, 0).unwrap().ack);
}

#[test]
fn rx_delay_from_the_join_accept_moves_the_data_windows() {
    let cfg = otaa(None);
    let mut d = Device::new(cfg.clone(), 8, 0);
    let (t0, jr) = next_frame(&mut d, 0);
    let ja = join_accept(&cfg.app_key, 7, 0x13, 0x2601_0001, 0, 3);
    let dl = downlink(jr.freq_hz, lora(7), ja);
    let end = t0 + jr.airtime_us() + 5_000_000 + dl.airtime_us();
    let DownlinkOutcome::Joined(s) = d.on_downlink(end, &dl) else {
        panic!("join-accept not taken");
    };
    let (t1, up) = next_frame(&mut d, end);
    let up_end = t1 + up.airtime_us();
    let params = DataParams {
        uplink: false,
        confirmed: false,
        ack: false,
        fcnt: 0,
        fport: 1,
    };
    let dl = downlink(
        up.freq_hz,
        lora(7),
        crypto::data_frame(&s, params, b"z").unwrap(),
    );
    let at = |delay: u64| up_end + delay + dl.airtime_us();
    assert_eq!(
        d.on_downlink(at(1_000_000), &dl),
        DownlinkOutcome::OutsideWindow
    );
    assert!(matches!(
        d.on_downlink(at(3_000_000), &dl),
        DownlinkOutcome::Data(_)
    ));
}

#[test]
fn a_long_rx2_join_accept_is_taken_after_the_window_closed() {
    // RX2 at SF12: the join-accept lasts ~1.2 s, so it ends (and is handed over) long after
    // the window's close, when the fleet has already polled the device.
    let cfg = otaa(None);
    let mut d = Device::new(cfg.clone(), 11, 0);
    let (t0, jr) = next_frame(&mut d, 0);
    let up_end = t0 + jr.airtime_us();
    let ja = join_accept(&cfg.app_key, 9, 0x13, 0x2601_0042, 0, 1);
    let dl = downlink(EU_RX2, lora(12), ja);
    assert!(dl.airtime_us() > 1_000_000);
    let close = d.next_wake();
    assert!(close < up_end + 6_000_000 + dl.airtime_us());
    assert_eq!(d.poll(close), None, "windows closed, retry scheduled");
    // Started 1 s after RX2 opened: not in the window, even among the closed ones.
    let late = downlink(EU_RX2, lora(12), dl.payload.clone());
    assert_eq!(
        d.on_downlink(up_end + 7_000_000 + late.airtime_us(), &late),
        DownlinkOutcome::OutsideWindow
    );
    // Started at RX2: taken.
    let DownlinkOutcome::Joined(s) = d.on_downlink(up_end + 6_000_000 + dl.airtime_us(), &dl)
    else {
        panic!("RX2 join-accept not taken after the window closed");
    };
    assert_eq!(s.dev_addr, 0x2601_0042);
    assert_eq!(d.counters().joins, 1);
    // Once only: the same frame again is outside every window.
    assert_eq!(
        d.on_downlink(up_end + 6_000_000 + dl.airtime_us(), &dl),
        DownlinkOutcome::OutsideWindow
    );
}
