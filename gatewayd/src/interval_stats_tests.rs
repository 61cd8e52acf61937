use std::time::{Duration, UNIX_EPOCH};

use chirpstack_api::prost::Message as _;
use drivers::radio::CodeRate;

use super::*;
use crate::region::Region;

fn gw_id() -> Eui64 {
    "0102030405060708".parse().unwrap()
}

fn lora(sf: u8, cr: Option<CodeRate>) -> Modulation {
    Modulation::Lora {
        sf,
        bw_hz: 125_000,
        cr,
    }
}

fn meta(freq_hz: u64, modulation: Modulation, crc: CrcStatus) -> RxMeta {
    RxMeta::single_channel(freq_hz, modulation, 0, -80, None, crc)
}

fn emitted(freq_hz: u64, sf: u8) -> Emitted {
    Emitted {
        freq_hz,
        modulation: lora(sf, Some(CodeRate::Cr45)),
        invert_iq: true,
    }
}

fn stats(rx: &RxInterval, tx: &TxInterval, dc: Option<gw::DutyCycleStats>) -> gw::GatewayStats {
    gateway_stats(
        gw_id(),
        UNIX_EPOCH + Duration::from_secs(5),
        rx,
        tx,
        dc,
        None,
        HashMap::new(),
    )
}

#[test]
fn received_frames_by_frequency_and_modulation() {
    let mut rx = RxInterval::default();
    let sf7 = lora(7, Some(CodeRate::Cr46));
    let fsk = Modulation::Fsk { bitrate: 50_000 };
    let lr_fhss = Modulation::LrFhss {
        ocw_hz: 137_000,
        cr: CodeRate::Cr13,
        grid_steps: 52,
    };
    rx.count(&meta(868_100_000, sf7, CrcStatus::Ok));
    rx.count(&meta(868_100_000, sf7, CrcStatus::Bad));
    rx.count(&meta(868_800_000, fsk, CrcStatus::Ok));
    rx.count(&meta(868_300_000, lr_fhss, CrcStatus::Ok));
    assert_eq!(rx.per_modulation.count((sf7, false)), 2);
    assert_eq!(
        rx.per_modulation.count((sf7, true)),
        0,
        "uplinks are not inverted"
    );

    let s = stats(&rx, &TxInterval::default(), None);
    let back = gw::GatewayStats::decode(s.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back, s);
    assert_eq!((s.rx_packets_received, s.rx_packets_received_ok), (4, 3));
    assert_eq!(s.gateway_id, "0102030405060708");
    assert_eq!(s.time.unwrap().seconds, 5);
    assert_eq!(
        s.rx_packets_per_frequency,
        HashMap::from([(868_100_000, 2), (868_800_000, 1), (868_300_000, 1)])
    );
    use gw::modulation::Parameters;
    let per: Vec<(Parameters, u32)> = s
        .rx_packets_per_modulation
        .iter()
        .map(|c| (c.modulation.clone().unwrap().parameters.unwrap(), c.count))
        .collect();
    assert_eq!(per.len(), 3, "{per:?}");
    match &per[0] {
        (Parameters::Lora(l), 2) => {
            assert_eq!((l.spreading_factor, l.bandwidth), (7, 125_000));
            assert_eq!(l.code_rate(), gw::CodeRate::Cr46);
            assert!(!l.polarization_inversion);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&per[1], (Parameters::Fsk(f), 1) if f.datarate == 50_000));
    match &per[2] {
        (Parameters::LrFhss(f), 1) => {
            assert_eq!((f.operating_channel_width, f.grid_steps), (137_000, 52));
            assert_eq!(f.code_rate(), gw::CodeRate::Cr26);
        }
        other => panic!("{other:?}"),
    }
    // Nothing was asked to transmit: the tx fields stay empty, no duty-cycle figures.
    assert_eq!((s.tx_packets_received, s.tx_packets_emitted), (0, 0));
    assert!(s.tx_packets_per_status.is_empty() && s.tx_packets_per_modulation.is_empty());
    assert_eq!(s.duty_cycle_stats, None);
}

#[test]
fn downlinks_by_status_frequency_and_modulation() {
    use gw::TxAckStatus::*;
    let mut tx = TxInterval::default();
    // RX1 sent; RX1 too late and RX2 sent; a frame rejected with one INTERNAL_ERROR item;
    // a downlink none of whose items could go out.
    tx.count_downlink(&[Ok, Ignored], Some(&emitted(868_100_000, 7)));
    tx.count_downlink(&[TooLate, Ok], Some(&emitted(869_525_000, 12)));
    tx.count_downlink(&[InternalError], None);
    tx.count_downlink(&[DutyCycleOverflow, TxFreq], None);
    let s = stats(&RxInterval::default(), &tx, None);
    assert_eq!((s.tx_packets_received, s.tx_packets_emitted), (4, 2));
    let statuses: HashMap<String, u32> = [
        ("OK", 2),
        ("TOO_LATE", 1),
        ("INTERNAL_ERROR", 1),
        ("DUTY_CYCLE_OVERFLOW", 1),
        ("TX_FREQ", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(s.tx_packets_per_status, statuses, "IGNORED is left out");
    assert_eq!(
        s.tx_packets_per_frequency,
        HashMap::from([(868_100_000, 1), (869_525_000, 1)])
    );
    let sfs: Vec<(u32, bool, u32)> = s
        .tx_packets_per_modulation
        .iter()
        .map(
            |c| match c.modulation.clone().unwrap().parameters.unwrap() {
                gw::modulation::Parameters::Lora(l) => {
                    assert_eq!(l.code_rate(), gw::CodeRate::Cr45);
                    (l.spreading_factor, l.polarization_inversion, c.count)
                }
                other => panic!("{other:?}"),
            },
        )
        .collect();
    assert_eq!(sfs, [(7, true, 1), (12, true, 1)]);
}

#[test]
fn json_mapping_has_chirpstack_names() {
    let mut rx = RxInterval::default();
    rx.count(&meta(
        868_100_000,
        lora(9, Some(CodeRate::Cr45)),
        CrcStatus::Ok,
    ));
    let mut tx = TxInterval::default();
    tx.count_downlink(
        &[gw::TxAckStatus::TooLate, gw::TxAckStatus::Ok],
        Some(&emitted(869_525_000, 12)),
    );
    let uses = [BandUse {
        band: "P",
        used: Duration::from_millis(1483),
        budget: Duration::from_secs(360),
    }];
    let dc = duty_cycle_stats(Region::by_name("EU868").unwrap(), &uses);
    let s = stats(&rx, &tx, dc);
    let v: serde_json::Value =
        serde_json::from_slice(&crate::chirpstack::encode(&s, true)).unwrap();
    assert_eq!(v["txPacketsPerStatus"]["TOO_LATE"], 1, "{v}");
    assert_eq!(v["txPacketsPerStatus"]["OK"], 1, "{v}");
    assert_eq!(v["txPacketsPerFrequency"]["869525000"], 1, "{v}");
    assert_eq!(
        v["rxPacketsPerModulation"][0]["modulation"]["lora"]["spreadingFactor"], 9,
        "{v}"
    );
    assert_eq!(v["dutyCycleStats"]["regulation"], "ETSI_EN_300_220", "{v}");
    assert_eq!(
        v["dutyCycleStats"]["bands"][0]["loadTracked"], "1.483s",
        "{v}"
    );
}

#[test]
fn the_handle_hands_over_each_interval_once_and_keeps_the_duty_cycle() {
    let handle = TxStatsHandle::default();
    let downlink_task = handle.clone();
    downlink_task.count_downlink(&[gw::TxAckStatus::Ok], Some(&emitted(868_100_000, 7)));
    let dc = gw::DutyCycleStats {
        regulation: common::Regulation::EtsiEn300220.into(),
        ..Default::default()
    };
    downlink_task.set_duty_cycle(Some(dc.clone()));
    let (first, first_dc) = handle.take();
    assert_eq!((first.received, first.emitted), (1, 1));
    assert_eq!(first_dc, Some(dc.clone()));
    let (second, second_dc) = handle.take();
    assert_eq!(
        second,
        TxInterval::default(),
        "counted in one interval only"
    );
    assert_eq!(second_dc, Some(dc), "a level, still the latest");
    downlink_task.count_downlink(&[gw::TxAckStatus::TooLate], None);
    let (third, _) = handle.take();
    assert_eq!((third.received, third.emitted), (1, 0));
    assert_eq!(third.per_status.count("TOO_LATE"), 1);
}

#[test]
fn duty_cycle_per_band_with_edges_budget_and_regulation() {
    let eu868 = Region::by_name("EU868").unwrap();
    let uses = [
        BandUse {
            band: "M",
            used: Duration::from_millis(62),
            budget: Duration::from_secs(36),
        },
        BandUse {
            band: "P",
            used: Duration::ZERO,
            budget: Duration::from_secs(360),
        },
    ];
    let dc = duty_cycle_stats(eu868, &uses).unwrap();
    assert_eq!(dc.regulation(), common::Regulation::EtsiEn300220);
    assert_eq!(dc.window, Some(duration(Duration::from_secs(3600))));
    let m = &dc.bands[0];
    assert_eq!(m.name, "M");
    assert_eq!(
        (m.frequency_min, m.frequency_max),
        (868_000_000, 868_600_000)
    );
    assert_eq!(m.load_max, Some(duration(Duration::from_secs(36))));
    assert_eq!(m.load_tracked, Some(duration(Duration::from_millis(62))));
    let p = &dc.bands[1];
    assert_eq!(
        (p.frequency_min, p.frequency_max),
        (869_400_000, 869_650_000)
    );
    assert_eq!(p.load_tracked, Some(duration(Duration::ZERO)));

    // Outside ETSI the limits are not EN 300 220's; without limited bands there is nothing.
    let ru864 = Region::by_name("RU864").unwrap();
    let ru = [BandUse {
        band: "864-870",
        used: Duration::ZERO,
        budget: Duration::from_secs(36),
    }];
    let dc = duty_cycle_stats(ru864, &ru).unwrap();
    assert_eq!(dc.regulation(), common::Regulation::Unknown);
    assert_eq!(dc.bands[0].frequency_max, 870_000_000);
    assert_eq!(
        regulation(Region::by_name("EU433").unwrap()),
        common::Regulation::EtsiEn300220
    );
    assert_eq!(
        duty_cycle_stats(Region::by_name("US915").unwrap(), &[]),
        None
    );
}
