//! Three hotspots on one simulated air, end to end: an in-process air (seeded) served on a
//! loopback hub, a 50-device ABP fleet spread so that some devices are out of range of some
//! hotspots, three real `gatewayd` processes with `radio.kind = "simulated"` at known
//! positions, one real Mosquitto and a subscriber on every gateway's events.
//!
//! The expected outcome comes from the air itself ([`AirHandle::observe`]): for each hotspot,
//! the set of frames published with its gateway id must equal the set the air delivered to
//! its node, with the RSSI/SNR the air computed (as the radio rounds them) and the frame's
//! frequency and data rate; frames below sensitivity or lost to a collision at that node are
//! never published; collisions happen and the air's counter equals the collisions observed
//! at the hotspots.

use testkit as support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chirpstack_api::gw;
use chirpstack_api::prost::Message as _;
use drivers::radio::Modulation;
use sim::air::{NodeId, Outcome, Reception};
use sim::fleet::{Fleet, FleetConfig};
use sim::fleet_task::run_fleet;
use sim::hub::{serve_hub, spawn_air, AirEvent};
use sim::model::{sensitivity_dbm, AirModel, SimPosition};
use support::hotspot::Hotspot;
use support::mosquitto::{online, Mosquitto, Received, Subscriber};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SEED: u64 = 4;
/// How long the fleet transmits.
const TRAFFIC: Duration = Duration::from_secs(20);
/// Longer than the longest frame (SF12, 25 bytes: about 1.5 s): every frame has ended and
/// been reported when this has passed after the fleet stopped.
const DRAIN: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(20);

/// Hotspot gateway ids and positions (metres); devices are spread around them.
const HOTSPOTS: [(&str, f64, f64); 3] = [
    ("0016c001ff10a001", -3000.0, 0.0),
    ("0016c001ff10a002", 3000.0, 0.0),
    ("0016c001ff10a003", 0.0, 5000.0),
];

/// What the air did to the fleet's frames at one hotspot node.
#[derive(Debug, Default)]
struct Expected {
    /// Delivered frames by payload.
    delivered: BTreeMap<Vec<u8>, Reception>,
    /// Frames lost to a collision at this node.
    collided: BTreeSet<Vec<u8>>,
    /// Frames below sensitivity at this node (transmitted, never reported here).
    below: BTreeSet<Vec<u8>>,
    /// Frames lost because the hotspot was transmitting (hotspots do not transmit here).
    half_duplex: usize,
}

/// Receive air events (bounded) until `done` holds for what has been seen.
async fn events_until(
    rx: &mut mpsc::UnboundedReceiver<AirEvent>,
    seen: &mut Vec<AirEvent>,
    what: &str,
    done: impl Fn(&[AirEvent]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(seen) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) => seen.push(ev),
            Ok(None) => panic!("the air stopped while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

fn hotspot_nodes(seen: &[AirEvent]) -> HashMap<NodeId, &'static str> {
    seen.iter()
        .filter_map(|e| match e {
            AirEvent::Attached { node, config } if !config.listen.inverted_iq => HOTSPOTS
                .iter()
                .find(|(_, x, y)| config.position == SimPosition::xy(*x, *y))
                .map(|(id, _, _)| (*node, *id)),
            _ => None,
        })
        .collect()
}

/// Uplinks published per gateway id (from the topic), checking the payload's gateway id.
fn published(received: &[Received]) -> HashMap<String, Vec<gw::UplinkFrame>> {
    let mut out: HashMap<String, Vec<gw::UplinkFrame>> = HashMap::new();
    for r in received.iter().filter(|r| r.topic.ends_with("/event/up")) {
        let id = r.topic.split('/').nth(2).unwrap_or_default().to_string();
        let up = gw::UplinkFrame::decode(r.payload.as_slice()).expect("gw.UplinkFrame");
        let rx = up.rx_info.as_ref().expect("rx_info");
        assert_eq!(rx.gateway_id, id, "topic and rx_info name the same gateway");
        out.entry(id).or_default().push(up);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hotspots_publish_exactly_what_the_air_delivered_to_them() {
    let broker = Mosquitto::start();
    let sub = Subscriber::connect(broker.port(), "eu868/gateway/#").await;

    let stop = CancellationToken::new();
    let air = spawn_air(AirModel::default(), SEED, stop.clone());
    let mut events = air.observe().await.expect("observe the air");
    let hub = serve_hub("127.0.0.1:0".parse().unwrap(), air.clone(), stop.clone())
        .await
        .expect("air hub");

    let mut hotspots: Vec<Hotspot> = HOTSPOTS
        .iter()
        .map(|(id, x, y)| {
            Hotspot::start(
                id,
                &format!("x_m = {x:?}\ny_m = {y:?}"),
                hub,
                broker.port(),
                "",
            )
        })
        .collect();
    let logs = |hs: &[Hotspot]| {
        hs.iter()
            .map(|h| format!("--- {} ({}):\n{}", h.id, h.log_path().display(), h.log()))
            .collect::<Vec<_>>()
            .join("\n")
    };

    // Ready: each hotspot's radio is on the air and its MQTT link is online.
    let mut seen = Vec::new();
    let attach = events_until(&mut events, &mut seen, "3 hotspot radios", |s| {
        hotspot_nodes(s).len() == 3
    });
    if tokio::time::timeout(WAIT + Duration::from_secs(1), attach)
        .await
        .is_err()
    {
        panic!("hotspots did not attach:\n{}", logs(&hotspots));
    }
    let nodes = hotspot_nodes(&seen);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !HOTSPOTS
        .iter()
        .all(|(id, _, _)| online(&sub.received(), id))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "hotspots not online:\n{}",
            logs(&hotspots)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 50 devices, one uplink every ~5 s each, SF7–SF12 on three channels, within 6.5 km of
    // (0, 1000): SF7 reaches ~4 km, SF12 ~13 km, so near devices reach every hotspot and
    // far ones only some; SF12 frames last ~1.5 s, so same-channel overlaps happen.
    let fleet_cfg = FleetConfig {
        devices: 50,
        seed: SEED,
        interval_us: 5_000_000,
        center: SimPosition::xy(0.0, 1000.0),
        radius_m: 6500.0,
        ..FleetConfig::default()
    };
    let fleet = Fleet::new(&fleet_cfg, 0).expect("fleet");
    let fleet_stop = CancellationToken::new();
    let counters = run_fleet(fleet, air.clone(), fleet_stop.clone())
        .await
        .expect("fleet on the air");
    tokio::time::sleep(TRAFFIC).await;
    fleet_stop.cancel();
    tokio::time::sleep(DRAIN).await;
    let sent = counters.borrow().uplinks;
    let stats = air.stats().await.expect("air stats");
    while let Ok(ev) = events.try_recv() {
        seen.push(ev);
    }

    // The expected outcome at each hotspot, from the air's own record of this run.
    let hotspot_ids: BTreeSet<NodeId> = nodes.keys().copied().collect();
    let mut expected: HashMap<&str, Expected> = HashMap::new();
    let mut transmitted: Vec<(NodeId, Vec<u8>, u64)> = Vec::new();
    for ev in &seen {
        match ev {
            AirEvent::Transmitted {
                node, tx, frame, ..
            } => {
                assert!(!hotspot_ids.contains(node), "hotspots do not transmit here");
                transmitted.push((*node, frame.payload.clone(), tx.0));
            }
            AirEvent::Received(r) => {
                let Some(id) = nodes.get(&r.to) else {
                    panic!("only hotspots hear uplinks: {r:?}");
                };
                let e = expected.entry(id).or_default();
                match r.outcome {
                    Outcome::Delivered => {
                        assert!(
                            e.delivered
                                .insert(r.frame.payload.clone(), r.clone())
                                .is_none(),
                            "each frame once"
                        );
                    }
                    Outcome::Collision => {
                        e.collided.insert(r.frame.payload.clone());
                    }
                    Outcome::HalfDuplex => e.half_duplex += 1,
                }
            }
            AirEvent::Attached { .. } => {}
        }
    }
    let reported: BTreeSet<(NodeId, u64)> = seen
        .iter()
        .filter_map(|e| match e {
            AirEvent::Received(r) => Some((r.to, r.tx.0)),
            _ => None,
        })
        .collect();
    for (node, id) in &nodes {
        let e = expected.entry(id).or_default();
        for (_, payload, tx) in &transmitted {
            if !reported.contains(&(*node, *tx)) {
                e.below.insert(payload.clone());
            }
        }
    }
    let collisions: usize = expected.values().map(|e| e.collided.len()).sum();
    let below: usize = expected.values().map(|e| e.below.len()).sum();
    let delivered: usize = expected.values().map(|e| e.delivered.len()).sum();
    eprintln!(
        "air: {} frames from {} devices ({sent} uplinks counted by the fleet); at the hotspots \
         {delivered} delivered, {collisions} collided, {below} below sensitivity",
        transmitted.len(),
        fleet_cfg.devices
    );

    // The air's record is complete and consistent with its counters.
    assert_eq!(stats.transmissions, transmitted.len() as u64);
    assert_eq!(
        transmitted.len() as u64,
        sent,
        "every fleet uplink went on the air"
    );
    assert_eq!(stats.delivered, delivered as u64);
    assert_eq!(stats.below_sensitivity, below as u64);
    assert_eq!(stats.half_duplex, 0);
    assert!(collisions > 0, "the seeded run has collisions");
    assert_eq!(
        stats.collisions, collisions as u64,
        "the air's collision count is the collisions at the hotspots"
    );
    assert!(
        transmitted.len() >= 100,
        "enough traffic: {}",
        transmitted.len()
    );
    for (id, _, _) in &HOTSPOTS {
        let e = &expected[id];
        assert!(
            !e.delivered.is_empty() && !e.below.is_empty(),
            "{id}: some frames in range and some out of range ({} delivered, {} below)",
            e.delivered.len(),
            e.below.len()
        );
        assert_eq!(e.half_duplex, 0);
    }
    let in_range_somewhere_not_everywhere = transmitted.iter().any(|(_, p, _)| {
        let heard = HOTSPOTS
            .iter()
            .filter(|(id, _, _)| expected[id].delivered.contains_key(p))
            .count();
        (1..3).contains(&heard)
    });
    assert!(
        in_range_somewhere_not_everywhere,
        "the spread puts some frames in range of some hotspots only"
    );

    // Wait (bounded) until every hotspot published what it was delivered, then a little
    // longer so that anything extra would show.
    let want: usize = delivered;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got: usize = published(&sub.received()).values().map(Vec::len).sum();
        if got >= want || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let by_gateway = published(&sub.received());

    for (id, _, _) in &HOTSPOTS {
        let e = &expected[id];
        let ups = by_gateway.get(*id).cloned().unwrap_or_default();
        let mut payloads = BTreeSet::new();
        for up in &ups {
            assert!(
                payloads.insert(up.phy_payload.clone()),
                "{id}: a frame published twice"
            );
            assert!(
                !e.collided.contains(&up.phy_payload),
                "{id}: published a frame the air destroyed by collision at it"
            );
            assert!(
                !e.below.contains(&up.phy_payload),
                "{id}: published a frame below sensitivity at it"
            );
            let Some(r) = e.delivered.get(&up.phy_payload) else {
                panic!("{id}: published a frame the air never delivered to it");
            };
            // Radio metadata as the simulated radio reports it: RSSI in whole dBm, SNR in
            // quarter dB, from the air's values for this very reception.
            let rx = up.rx_info.as_ref().expect("rx_info");
            assert_eq!(rx.rssi, r.rssi_dbm.round() as i32, "{id}: RSSI");
            assert_eq!(rx.snr, ((r.snr_db * 4.0).round() / 4.0) as f32, "{id}: SNR");
            assert!(
                f64::from(rx.rssi) >= sensitivity_dbm(&r.frame.modulation) - 0.5,
                "{id}: RSSI {} at or above sensitivity",
                rx.rssi
            );
            assert!(
                (-20.5..=13.5).contains(&rx.snr),
                "{id}: SNR {} plausible",
                rx.snr
            );
            let tx = up.tx_info.as_ref().expect("tx_info");
            assert_eq!(u64::from(tx.frequency), r.frame.freq_hz, "{id}: frequency");
            let Modulation::Lora { sf, bw_hz, .. } = r.frame.modulation else {
                panic!("the fleet sends LoRa");
            };
            match tx.modulation.as_ref().and_then(|m| m.parameters.as_ref()) {
                Some(gw::modulation::Parameters::Lora(l)) => {
                    assert_eq!((l.spreading_factor, l.bandwidth), (u32::from(sf), bw_hz));
                }
                other => panic!("{id}: LoRa modulation expected, got {other:?}"),
            }
        }
        let delivered: BTreeSet<Vec<u8>> = e.delivered.keys().cloned().collect();
        let missing = delivered.difference(&payloads).count();
        assert_eq!(
            payloads,
            delivered,
            "{id}: published exactly what the air delivered ({missing} missing)\n{}",
            logs(&hotspots)
        );
        eprintln!(
            "{id}: {} published = delivered; {} collided and {} below sensitivity not published",
            payloads.len(),
            e.collided.len(),
            e.below.len()
        );
    }

    for h in &mut hotspots {
        let status = h.terminate(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "{} stops cleanly on SIGTERM ({status:?}):\n{}",
            h.id,
            h.log()
        );
    }
    stop.cancel();
}
