//! Fleet on an in-process air: 3 hotspots × 50 devices against the model; OTAA with a
//! test-side network server; all frames valid LoRaWAN.

use std::collections::{BTreeSet, HashMap};

use super::*;
use crate::air::Transmission;
use crate::crypto::{self, open_data_frame, open_join_request, DataParams};
use crate::model::sensitivity_dbm;
use crate::model::AirModel;

const HOTSPOTS: [(f64, f64); 3] = [(0.0, 0.0), (4000.0, 0.0), (-2000.0, 3000.0)];

fn setup(model: AirModel, cfg: &FleetConfig) -> (Air, Fleet, Vec<NodeId>, Vec<NodeId>) {
    let mut air = Air::new(model, cfg.seed);
    let hs = HOTSPOTS
        .iter()
        .map(|&(x, y)| {
            air.add_node(NodeConfig {
                position: SimPosition::xy(x, y),
                antenna_gain_dbi: 2.0,
                listen: Listen::hotspot(),
            })
            .unwrap()
        })
        .collect();
    let fleet = Fleet::new(cfg, 0).unwrap();
    let nodes = attach(&fleet, &mut air).unwrap();
    (air, fleet, hs, nodes)
}

fn fifty(seed: u64) -> FleetConfig {
    FleetConfig {
        devices: 50,
        seed,
        interval_us: 20_000_000,
        radius_m: 9000.0,
        center: SimPosition::xy(1000.0, 1000.0),
        ..FleetConfig::default()
    }
}

fn pos(air: &Air, n: NodeId) -> SimPosition {
    air.node(n).unwrap().position
}

#[test]
fn hotspots_hear_exactly_what_the_model_puts_in_range() {
    let model = AirModel {
        shadowing_sigma_db: 0.0,
        ..AirModel::default()
    };
    let cfg = fifty(11);
    let (mut air, mut fleet, hs, nodes) = setup(model, &cfg);
    let until = 600_000_000;
    let log = simulate(&mut air, &mut fleet, &nodes, 0, until, |_| Vec::new()).unwrap();
    let ups = &log.transmissions;
    assert_eq!(ups.len() as u64, fleet.counters().uplinks);
    assert!(ups.len() > 1000, "{}", ups.len());
    // Independent model: 14 dBm + 0 + 2 dBi - (40 + 27·log10 d) >= sensitivity(SF).
    let mut in_range = BTreeSet::new();
    let mut out_of_range = 0;
    let rssi = |t: &Scheduled, h: NodeId| {
        let d = pos(&air, t.from).distance_m(&pos(&air, h)).unwrap();
        16.0 - (40.0 + 10.0 * 2.7 * d.max(1.0).log10())
    };
    for (k, t) in ups.iter().enumerate() {
        for &h in &hs {
            if rssi(t, h) >= sensitivity_dbm(&t.frame.modulation) {
                in_range.insert((h, k));
            } else {
                out_of_range += 1;
            }
        }
    }
    assert!(
        out_of_range > 100,
        "the layout puts some devices out of range"
    );
    let start_index: HashMap<(NodeId, SimTime), usize> = ups
        .iter()
        .enumerate()
        .map(|(k, t)| ((t.from, t.at), k))
        .collect();
    let heard: BTreeSet<(NodeId, usize)> = log
        .receptions
        .iter()
        .map(|r| (r.to, start_index[&(r.from, r.start)]))
        .collect();
    assert_eq!(heard.len(), log.receptions.len());
    // Frames still in the air at the end of the run are not reported yet.
    let reported: BTreeSet<(NodeId, usize)> = in_range
        .iter()
        .filter(|&&(_, k)| ups[k].at + ups[k].frame.airtime_us() <= until)
        .copied()
        .collect();
    let extra: Vec<_> = heard.difference(&reported).take(5).collect();
    let missing: Vec<_> = reported.difference(&heard).take(5).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "heard out of range: {extra:?}; in range, not heard: {missing:?}"
    );
    assert!(reported.len() > 1000, "{}", reported.len());
    // Collisions from the model: an in-range frame at a hotspot is lost when another
    // in-range frame on the same channel and SF overlaps it and is not 6 dB weaker.
    let mut expected = 0u64;
    for &(h, k) in &reported {
        let t = &ups[k];
        let end = t.at + t.frame.airtime_us();
        let lost = in_range.iter().any(|&(h2, k2)| {
            let o = &ups[k2];
            h2 == h
                && k2 != k
                && o.at < end
                && o.at + o.frame.airtime_us() > t.at
                && o.frame.freq_hz == t.frame.freq_hz
                && o.frame.modulation == t.frame.modulation
                && rssi(t, h) - rssi(o, h) < 6.0
        });
        expected += u64::from(lost);
        let r = log
            .receptions
            .iter()
            .find(|r| r.to == h && r.from == t.from && r.start == t.at)
            .unwrap();
        let want = if lost {
            Outcome::Collision
        } else {
            Outcome::Delivered
        };
        assert_eq!(r.outcome, want);
    }
    assert_eq!(air.stats().collisions, expected);
    assert!(
        expected > 5,
        "the run is busy enough to collide: {expected}"
    );
    // Every delivered frame is a valid LoRaWAN data uplink under its device's ABP keys.
    for r in log
        .receptions
        .iter()
        .filter(|r| r.outcome == Outcome::Delivered)
    {
        let i = nodes.iter().position(|n| *n == r.from).unwrap();
        let s = device_keys(cfg.seed, i as u32).abp;
        let f = open_data_frame(&r.frame.payload, &s, 0).unwrap();
        assert!(f.uplink && f.fport == Some(1) && f.payload.len() == cfg.payload_len);
    }
}

#[test]
fn seeded_shadowed_runs_repeat_exactly() {
    let run = |seed| {
        let (mut air, mut fleet, _, nodes) = setup(AirModel::default(), &fifty(seed));
        let log = simulate(&mut air, &mut fleet, &nodes, 0, 120_000_000, |_| Vec::new()).unwrap();
        (log, air.stats().clone())
    };
    let (a, sa) = run(5);
    let (b, sb) = run(5);
    assert_eq!(a, b);
    assert_eq!(sa, sb);
    assert_ne!(a.receptions, run(6).0.receptions);
    assert_eq!(sa.delivered + sa.collisions, a.receptions.len() as u64);
}

/// A minimal network server for the test: answers join-requests in RX1 through the
/// hotspot that heard them, and sends a downlink in RX1 after every 3rd data uplink.
struct TestServer {
    seed: u64,
    sessions: HashMap<u32, (crypto::Session, u32)>,
    valid_uplinks: u64,
    downlinks_sent: u64,
    answered: BTreeSet<(NodeId, u64)>,
}

impl TestServer {
    fn on_reception(&mut self, r: &Reception) -> Vec<Scheduled> {
        if r.outcome != Outcome::Delivered || !self.answered.insert((r.from, r.start)) {
            return Vec::new(); // lost, or already answered via another hotspot
        }
        let reply = |payload: Vec<u8>| Scheduled {
            at: 0,
            from: r.to,
            frame: Transmission {
                freq_hz: r.frame.freq_hz,
                modulation: r.frame.modulation,
                power_dbm: 27.0,
                invert_iq: true,
                preamble: 8,
                crc: false,
                payload,
            },
        };
        let p = &r.frame.payload;
        if p[0] == 0x00 {
            let jr = open_join_request(p, None).unwrap();
            let idx = u32::from_be_bytes(jr.dev_eui.0[4..8].try_into().unwrap());
            let keys = device_keys(self.seed, idx);
            assert!(
                open_join_request(p, Some(&keys.app_key)).is_ok(),
                "join MIC"
            );
            let dev_addr = 0x2700_0000 + idx;
            let ja = crypto::join_accept(&keys.app_key, idx + 1, 0x13, dev_addr, 0, 1);
            let session = crypto::open_join_accept(&ja, &keys.app_key, jr.dev_nonce)
                .unwrap()
                .session;
            self.sessions.insert(dev_addr, (session, 0));
            return vec![Scheduled {
                at: r.end + 5_000_000,
                ..reply(ja)
            }];
        }
        let addr = crypto::data_dev_addr(p).unwrap();
        let Some((s, fdown)) = self.sessions.get_mut(&addr) else {
            panic!("uplink from unknown DevAddr {addr:08x}");
        };
        let f = open_data_frame(p, s, 0).expect("uplink MIC with the joined session");
        self.valid_uplinks += 1;
        if f.fcnt % 3 != 2 {
            return Vec::new();
        }
        let params = DataParams {
            uplink: false,
            confirmed: false,
            ack: false,
            fcnt: *fdown,
            fport: 3,
        };
        *fdown += 1;
        self.downlinks_sent += 1;
        let phy = crypto::data_frame(s, params, b"ok").unwrap();
        vec![Scheduled {
            at: r.end + 1_000_000,
            ..reply(phy)
        }]
    }
}

#[test]
fn otaa_fleet_joins_and_counts_downlinks() {
    let cfg = FleetConfig {
        devices: 20,
        seed: 21,
        interval_us: 30_000_000,
        radius_m: 1500.0,
        sf_mix: vec![7, 8, 9],
        activation: FleetActivation::Otaa {
            abp_fallback_after: None,
        },
        ..FleetConfig::default()
    };
    let (mut air, mut fleet, _, nodes) = setup(AirModel::default(), &cfg);
    let mut ns = TestServer {
        seed: cfg.seed,
        sessions: HashMap::new(),
        valid_uplinks: 0,
        downlinks_sent: 0,
        answered: BTreeSet::new(),
    };
    simulate(&mut air, &mut fleet, &nodes, 0, 900_000_000, |r| {
        ns.on_reception(r)
    })
    .unwrap();
    let c = fleet.counters();
    assert_eq!(c.joins, 20, "every device joined: {c:?}");
    assert!(c.join_requests >= 20);
    assert!(ns.valid_uplinks > 200, "{}", ns.valid_uplinks);
    assert!(ns.valid_uplinks <= c.uplinks);
    assert!(ns.downlinks_sent > 50);
    // Devices decode the downlinks that reached them; none is decoded twice.
    assert!(
        c.downlinks > 0 && c.downlinks <= ns.downlinks_sent,
        "{c:?} {}",
        ns.downlinks_sent
    );
    for i in 0..fleet.len() {
        let s = fleet.device(i).unwrap().session().unwrap();
        assert_eq!(s.dev_addr, 0x2700_0000 + i as u32);
    }
}

#[test]
fn bad_fleet_configs_name_the_field() {
    let bad = |f: fn(&mut FleetConfig)| {
        let mut c = FleetConfig::default();
        f(&mut c);
        match Fleet::new(&c, 0) {
            Err(FleetError::Invalid { field, .. }) => field,
            Ok(_) => "accepted",
        }
    };
    assert_eq!(bad(|c| c.sf_mix = vec![13]), "sf_mix");
    assert_eq!(bad(|c| c.channels_hz.clear()), "channels_hz");
    assert_eq!(bad(|c| c.interval_us = 1000), "interval");
    assert_eq!(bad(|c| c.payload_len = 300), "payload_len");
}

#[test]
fn device_keys_are_deterministic_and_distinct() {
    assert_eq!(device_keys(1, 5), device_keys(1, 5));
    assert_ne!(device_keys(1, 5).app_key, device_keys(1, 6).app_key);
    assert_ne!(device_keys(1, 5).app_key, device_keys(2, 5).app_key);
    assert_eq!(device_keys(1, 5).abp.dev_addr, 0x2600_0005);
    assert_eq!(device_keys(1, 5).dev_eui.0[4..], [0, 0, 0, 5]);
}
