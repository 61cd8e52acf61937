//! Unit tests of the downlink codec, the pure scheduler, the status mapping, and the task
//! against an in-process fake backend (real guard, real outbox).

use std::time::Duration;

use chirpstack_api::gw;
use chirpstack_api::pbjson_types;
use chirpstack_api::prost::Message as _;
use drivers::radio::{CodeRate, Eui64, Modulation, RadioControl, TxStatus, TxTiming};

use super::*;

const GW: Eui64 = Eui64([1, 2, 3, 4, 5, 6, 7, 8]);

fn lora(sf: u32, bw: u32) -> gw::Modulation {
    gw::Modulation {
        parameters: Some(gw::modulation::Parameters::Lora(gw::LoraModulationInfo {
            bandwidth: bw,
            spreading_factor: sf,
            code_rate: gw::CodeRate::Cr45.into(),
            polarization_inversion: true,
            ..Default::default()
        })),
    }
}

fn delay(d: Duration) -> gw::Timing {
    gw::Timing {
        parameters: Some(gw::timing::Parameters::Delay(gw::DelayTimingInfo {
            delay: Some(pbjson_types::Duration {
                seconds: d.as_secs() as i64,
                nanos: d.subsec_nanos() as i32,
            }),
        })),
    }
}

fn item(freq: u32, sf: u32, power: i32, timing: gw::Timing, tmst: u32) -> gw::DownlinkFrameItem {
    gw::DownlinkFrameItem {
        phy_payload: vec![0x60, 1, 2, 3, 4, 0, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd],
        tx_info: Some(gw::DownlinkTxInfo {
            frequency: freq,
            power,
            modulation: Some(lora(sf, 125_000)),
            timing: Some(timing),
            context: tmst.to_be_bytes().to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn rx1_rx2(tmst: u32) -> gw::DownlinkFrame {
    gw::DownlinkFrame {
        downlink_id: 4242,
        gateway_id: GW.to_string(),
        items: vec![
            item(868_100_000, 7, 14, delay(Duration::from_secs(1)), tmst),
            item(869_525_000, 12, 27, delay(Duration::from_secs(2)), tmst),
        ],
        ..Default::default()
    }
}

fn gain_2(eirp: f32) -> i8 {
    (eirp - 2.0).floor() as i8
}

#[test]
fn rx1_item_becomes_a_request_at_tmst_plus_delay() {
    let f = rx1_rx2(3_512_348_611);
    let r = build_request(&f.items[0], gain_2).unwrap();
    assert_eq!(r.freq_hz, 868_100_000);
    assert_eq!(r.power_dbm, 12, "EIRP 14 dBm through a 2 dBi antenna");
    assert_eq!(
        r.modulation,
        Modulation::Lora {
            sf: 7,
            bw_hz: 125_000,
            cr: Some(CodeRate::Cr45)
        }
    );
    assert!(r.invert_iq);
    assert!(r.crc, "no_crc = false keeps the CRC flag");
    assert_eq!(r.preamble, None);
    assert_eq!(r.timing, TxTiming::AtCounter(3_513_348_611));
    assert_eq!(r.payload, f.items[0].phy_payload);
    let r2 = build_request(&f.items[1], gain_2).unwrap();
    assert_eq!(r2.freq_hz, 869_525_000);
    assert_eq!(r2.timing, TxTiming::AtCounter(3_514_348_611));
}

#[test]
fn counter_wraps_at_two_to_the_32() {
    let f = rx1_rx2(0xFFFF_FF00);
    let r = build_request(&f.items[0], gain_2).unwrap();
    let expected = ((0xFFFF_FF00u64 + 1_000_000) % (1u64 << 32)) as u32;
    assert_eq!(r.timing, TxTiming::AtCounter(expected));
    assert_eq!(expected, 999_744);
}

#[test]
fn immediately_and_gps_epoch_timings() {
    let mut i = item(869_525_000, 9, 14, delay(Duration::ZERO), 0);
    let tx = i.tx_info.as_mut().unwrap();
    tx.timing = Some(gw::Timing {
        parameters: Some(gw::timing::Parameters::Immediately(
            gw::ImmediatelyTimingInfo {},
        )),
    });
    tx.context.clear();
    assert_eq!(
        build_request(&i, gain_2).unwrap().timing,
        TxTiming::Immediate
    );
    let tx = i.tx_info.as_mut().unwrap();
    tx.timing = Some(gw::Timing {
        parameters: Some(gw::timing::Parameters::GpsEpoch(gw::GpsEpochTimingInfo {
            time_since_gps_epoch: Some(pbjson_types::Duration {
                seconds: 1_400_000_000,
                nanos: 500_000_000,
            }),
        })),
    });
    assert_eq!(
        build_request(&i, gain_2).unwrap().timing,
        TxTiming::AtGpsTime(Duration::new(1_400_000_000, 500_000_000))
    );
}

#[test]
fn malformed_items_are_named() {
    let good = item(868_100_000, 7, 14, delay(Duration::from_secs(1)), 5);
    let mut no_ctx = good.clone();
    no_ctx.tx_info.as_mut().unwrap().context = vec![1, 2];
    assert_eq!(
        build_request(&no_ctx, gain_2),
        Err(ItemError::NoContext { len: 2 })
    );
    let mut negative = good.clone();
    negative.tx_info.as_mut().unwrap().timing = Some(gw::Timing {
        parameters: Some(gw::timing::Parameters::Delay(gw::DelayTimingInfo {
            delay: Some(pbjson_types::Duration {
                seconds: -1,
                nanos: 0,
            }),
        })),
    });
    assert!(matches!(
        build_request(&negative, gain_2),
        Err(ItemError::BadDuration { what: "delay", .. })
    ));
    let too_long = item(868_100_000, 7, 14, delay(Duration::from_secs(5000)), 5);
    assert!(matches!(
        build_request(&too_long, gain_2),
        Err(ItemError::BadDuration { .. })
    ));
    let sf13 = item(868_100_000, 13, 14, delay(Duration::from_secs(1)), 5);
    assert!(matches!(
        build_request(&sf13, gain_2),
        Err(ItemError::BadLora { sf: 13, .. })
    ));
    let mut cr38 = good.clone();
    if let Some(gw::modulation::Parameters::Lora(l)) = cr38
        .tx_info
        .as_mut()
        .and_then(|t| t.modulation.as_mut())
        .and_then(|m| m.parameters.as_mut())
    {
        l.code_rate = gw::CodeRate::Cr38.into();
    }
    let e = build_request(&cr38, gain_2).unwrap_err();
    assert!(e.to_string().contains("CR_3_8"), "{e}");
    let mut empty = good.clone();
    empty.phy_payload.clear();
    assert_eq!(build_request(&empty, gain_2), Err(ItemError::EmptyPayload));
    let mut no_timing = good.clone();
    no_timing.tx_info.as_mut().unwrap().timing = None;
    assert_eq!(build_request(&no_timing, gain_2), Err(ItemError::NoTiming));
    let mut no_tx = good;
    no_tx.tx_info = None;
    assert_eq!(build_request(&no_tx, gain_2), Err(ItemError::NoTxInfo));
}

#[test]
fn first_item_sent_leaves_the_rest_ignored() {
    let mut a = Attempt::new(&rx1_rx2(100), gain_2);
    let Step::Send { index: 0, request } = a.step() else {
        panic!("RX1 first")
    };
    assert_eq!(request.freq_hz, 868_100_000);
    a.report(0, TxStatus::Ok);
    assert_eq!(
        a.step(),
        Step::Done(vec![gw::TxAckStatus::Ok, gw::TxAckStatus::Ignored])
    );
}

#[test]
fn a_failed_item_falls_back_to_the_next() {
    let mut a = Attempt::new(&rx1_rx2(100), gain_2);
    assert!(matches!(a.step(), Step::Send { index: 0, .. }));
    // A report for an item not being sent changes nothing.
    a.report(1, TxStatus::Ok);
    // Asking again before the report repeats the same request.
    assert!(matches!(a.step(), Step::Send { index: 0, .. }));
    a.report(0, TxStatus::TooLate);
    let Step::Send { index: 1, request } = a.step() else {
        panic!("RX2 next")
    };
    assert_eq!(request.freq_hz, 869_525_000);
    a.report(1, TxStatus::Ok);
    assert_eq!(
        a.step(),
        Step::Done(vec![gw::TxAckStatus::TooLate, gw::TxAckStatus::Ok])
    );
}

#[test]
fn all_items_failing_and_malformed_items() {
    let mut f = rx1_rx2(100);
    f.items[0].tx_info.as_mut().unwrap().context.clear();
    let mut a = Attempt::new(&f, gain_2);
    assert!(matches!(
        a.step(),
        Step::Skipped {
            index: 0,
            error: ItemError::NoContext { len: 0 }
        }
    ));
    assert!(matches!(a.step(), Step::Send { index: 1, .. }));
    a.report(1, TxStatus::DutyCycleOverflow);
    assert_eq!(
        a.step(),
        Step::Done(vec![
            gw::TxAckStatus::InternalError,
            gw::TxAckStatus::DutyCycleOverflow
        ])
    );
}

#[test]
fn every_tx_status_maps_to_its_ack_status() {
    use gw::TxAckStatus as A;
    let cases = [
        (TxStatus::Ok, A::Ok),
        (TxStatus::TooLate, A::TooLate),
        (TxStatus::TooEarly, A::TooEarly),
        (TxStatus::CollisionPacket, A::CollisionPacket),
        (TxStatus::CollisionBeacon, A::CollisionBeacon),
        (TxStatus::TxFreq, A::TxFreq),
        (TxStatus::TxPower, A::TxPower),
        (TxStatus::GpsUnlocked, A::GpsUnlocked),
        (TxStatus::QueueFull, A::QueueFull),
        (TxStatus::LbtBusy, A::InternalError),
        (TxStatus::InternalError, A::InternalError),
        (TxStatus::DutyCycleOverflow, A::DutyCycleOverflow),
    ];
    for (s, a) in cases {
        assert_eq!(ack_status(s), a, "{s:?}");
    }
}

#[test]
fn decode_protobuf_and_json() {
    let f = rx1_rx2(7);
    assert_eq!(
        decode_downlink(&f.encode_to_vec(), false, GW),
        Ok(f.clone())
    );
    let json = serde_json::to_vec(&f).unwrap();
    assert!(String::from_utf8_lossy(&json).contains("\"gatewayId\""));
    assert_eq!(decode_downlink(&json, true, GW), Ok(f.clone()));
    // JSON sent while protobuf is configured (and vice versa) is rejected.
    assert!(matches!(
        decode_downlink(&json, false, GW),
        Err(CommandError::Protobuf { .. })
    ));
    assert!(matches!(
        decode_downlink(&f.encode_to_vec(), true, GW),
        Err(CommandError::Json { .. })
    ));
}

#[test]
fn decode_rejects_other_gateways_and_bad_item_counts() {
    let mut f = rx1_rx2(7);
    f.gateway_id = "0102030405060709".into();
    let e = decode_downlink(&f.encode_to_vec(), false, GW).unwrap_err();
    assert_eq!(e.kind(), "other_gateway");
    assert!(e.to_string().contains("0102030405060709"), "{e}");
    f.gateway_id = "nonsense".into();
    assert_eq!(
        decode_downlink(&f.encode_to_vec(), false, GW),
        Err(CommandError::BadGatewayId("nonsense".into()))
    );
    f.gateway_id = GW.to_string();
    f.items.clear();
    assert!(matches!(
        decode_downlink(&f.encode_to_vec(), false, GW),
        Err(CommandError::ItemCount { items: 0, .. })
    ));
    assert!(matches!(
        decode_downlink(&[0xff, 0xff, 0xff], false, GW),
        Err(CommandError::Protobuf { len: 3, .. })
    ));
}

/// A frame with `n` copies of its first item.
fn many_items(n: usize) -> gw::DownlinkFrame {
    let mut f = rx1_rx2(7);
    let item = f.items[0].clone();
    f.items = vec![item; n];
    f
}

#[test]
fn a_10000_item_frame_is_counted_not_decoded_and_named_by_its_id() {
    let f = many_items(10_000);
    let bytes = f.encode_to_vec();
    assert_eq!(
        decode_downlink(&bytes, false, GW),
        Err(CommandError::ItemCount {
            downlink_id: 4242,
            items: 10_000
        })
    );
    let json = serde_json::to_vec(&f).unwrap();
    assert_eq!(
        decode_downlink(&json, true, GW),
        Err(CommandError::ItemCount {
            downlink_id: 4242,
            items: 10_000
        })
    );
    let e = decode_downlink(&bytes, false, GW).unwrap_err();
    assert!(e.to_string().contains("10000 items"), "{e}");
    // Another gateway's is still not ours, and gets no answer.
    let mut other = many_items(10_000);
    other.gateway_id = "0102030405060709".into();
    let e = decode_downlink(&other.encode_to_vec(), false, GW).unwrap_err();
    assert_eq!(e.kind(), "other_gateway");
    assert_eq!(reject_ack(GW, &e), None);
    // Ours gets one INTERNAL_ERROR item for its id.
    let ack = reject_ack(GW, &decode_downlink(&bytes, false, GW).unwrap_err()).unwrap();
    assert_eq!(ack.downlink_id, 4242);
    assert_eq!(ack.gateway_id, GW.to_string());
    let s: Vec<_> = ack.items.iter().map(|i| i.status()).collect();
    assert_eq!(s, [gw::TxAckStatus::InternalError]);
    // MAX_ITEMS still decodes; truncated wire bytes are a protobuf error as before.
    assert_eq!(
        decode_downlink(&many_items(MAX_ITEMS).encode_to_vec(), false, GW)
            .unwrap()
            .items
            .len(),
        MAX_ITEMS
    );
    assert!(matches!(
        decode_downlink(&bytes[..bytes.len() - 3], false, GW),
        Err(CommandError::Protobuf { .. })
    ));
}

#[test]
fn ack_carries_ids_and_statuses() {
    let f = rx1_rx2(7);
    let ack = tx_ack(GW, &f, &[gw::TxAckStatus::TooLate, gw::TxAckStatus::Ok]);
    assert_eq!(ack.gateway_id, "0102030405060708");
    assert_eq!(ack.downlink_id, 4242);
    let s: Vec<_> = ack.items.iter().map(|i| i.status()).collect();
    assert_eq!(s, [gw::TxAckStatus::TooLate, gw::TxAckStatus::Ok]);
    let json = String::from_utf8(crate::chirpstack::encode(&ack, true)).unwrap();
    assert!(
        json.contains("TOO_LATE") && json.contains("\"OK\""),
        "{json}"
    );
}

#[path = "task_tests.rs"]
mod task_tests;
