//! Proof of coverage end to end on the simulated air: four real `gatewayd` processes at known
//! positions (three within a few km of each other, one 40 km away), one real Mosquitto, an
//! in-process air without shadowing served on a loopback hub, and 10 s beacon windows.
//!
//! The test publishes the network's entropy on each hotspot's `command/poc_entropy`; each
//! hotspot beacons in its windows through its regulatory guard and publishes a signed beacon
//! report on `poc/beacon`; the hotspots the air delivered a beacon to publish a witness
//! report on `poc/witness` — exactly those (as the air's own record says), so the
//! out-of-range one witnesses nothing and is witnessed by nobody. Every report verifies, with
//! the library verifier and with `gatewayd poc verify`. Receipts are made every 2 s and stats
//! published every 2 s too: what a stock ChirpStack subscribes to (`+/gateway/+/event/+`)
//! sees only its own events, never a PoC report (issue 17).

use testkit as support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use drivers::radio::Modulation;
use gatewayd::poc::beacon::{plan, BeaconWindow};
use gatewayd::poc::entropy::EntropyCommand;
use gatewayd::poc::verify::{Policy, Verifier};
use gatewayd::poc::{Body, Kind, SignedReport};
use sim::air::{NodeId, Outcome};
use sim::hub::{serve_hub, spawn_air, AirEvent};
use sim::model::{AirModel, SimPosition};
use support::hotspot::Hotspot;
use support::mosquitto::{online, Mosquitto, Received, Subscriber};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WINDOW_S: u32 = 10;
const WAIT: Duration = Duration::from_secs(20);
/// Beaconing phase at most: six windows.
const RUN: Duration = Duration::from_secs(60);

/// Gateway id, latitude, longitude. B is 2 km east of A, C 3 km north of A (3.6 km from B),
/// D 40 km north: SF9 at 14 dBm reaches about 8.5 km on this air.
const HOTSPOTS: [(&str, f64, f64); 4] = [
    ("0016c001ff10b001", 52.0, 4.0),
    ("0016c001ff10b002", 52.0, 4.029_18),
    ("0016c001ff10b003", 52.026_98, 4.0),
    ("0016c001ff10b004", 52.36, 4.0),
];
const FAR: &str = "0016c001ff10b004";

fn logs(hs: &[Hotspot]) -> String {
    hs.iter()
        .map(|h| format!("--- {}:\n{}", h.id, h.log()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The network's entropy of window `id` (any fixed function will do for the test).
fn entropy_of(id: u64) -> [u8; 32] {
    let mut e = [0u8; 32];
    for (i, b) in e.iter_mut().enumerate() {
        *b = (id as u8).wrapping_mul(31).wrapping_add(i as u8 * 7) ^ 0x5a;
    }
    e
}

fn gateway_of(topic: &str) -> String {
    topic.split('/').nth(2).unwrap_or_default().to_string()
}

/// Reports published on `poc/{kind}`: (gateway id from the topic, raw bytes, decoded).
fn reports(received: &[Received], kind: &str) -> Vec<(String, Vec<u8>, SignedReport)> {
    received
        .iter()
        .filter(|r| r.topic.ends_with(&format!("/poc/{kind}")))
        .map(|r| {
            let s = SignedReport::decode(&r.payload).expect("a canonical report");
            (gateway_of(&r.topic), r.payload.clone(), s)
        })
        .collect()
}

/// The frame a beacon report stands for (the verifier recomputes it the same way).
fn beacon_frame(s: &SignedReport) -> Vec<u8> {
    let Body::Beacon(b) = &s.report.body else {
        panic!("not a beacon report");
    };
    plan(
        b.region,
        b.sub_band,
        &b.network_entropy,
        &b.window,
        &b.local_entropy,
        &s.report.key,
    )
    .expect("plannable")
    .frame
}

fn witness_frame(s: &SignedReport) -> Vec<u8> {
    match &s.report.body {
        Body::Witness(w) => w.frame.clone(),
        _ => panic!("not a witness report"),
    }
}

fn hotspot_nodes(seen: &[AirEvent]) -> HashMap<NodeId, &'static str> {
    seen.iter()
        .filter_map(|e| match e {
            AirEvent::Attached { node, config } => HOTSPOTS
                .iter()
                .find(|(_, lat, lon)| {
                    config.position
                        == SimPosition::LatLon {
                            lat: *lat,
                            lon: *lon,
                        }
                })
                .map(|(id, _, _)| (*node, *id)),
            _ => None,
        })
        .collect()
}

fn drain(rx: &mut mpsc::UnboundedReceiver<AirEvent>, seen: &mut Vec<AirEvent>) {
    while let Ok(ev) = rx.try_recv() {
        seen.push(ev);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hotspots_beacon_in_their_windows_and_those_in_range_witness() {
    let broker = Mosquitto::start();
    let sub = Arc::new(Subscriber::connect(broker.port(), "eu868/gateway/#").await);
    // What a stock ChirpStack network server subscribes to.
    let chirpstack = Subscriber::connect(broker.port(), "+/gateway/+/event/+").await;

    let stop = CancellationToken::new();
    let model = AirModel {
        shadowing_sigma_db: 0.0,
        ..AirModel::default()
    };
    let air = spawn_air(model, 6, stop.clone());
    let mut events = air.observe().await.expect("observe the air");
    let hub = serve_hub("127.0.0.1:0".parse().unwrap(), air.clone(), stop.clone())
        .await
        .expect("air hub");
    let mut hotspots: Vec<Hotspot> = HOTSPOTS
        .iter()
        .map(|(id, lat, lon)| {
            Hotspot::start_with(
                id,
                &format!("lat = {lat:?}\nlon = {lon:?}"),
                hub,
                broker.port(),
                2,
                &format!(
                    "[gateway.location]\nlatitude = {lat:?}\nlongitude = {lon:?}\naltitude = 10.0\n\
                     [poc]\nenabled = true\nwindow_secs = {WINDOW_S}\nradio_max_power_dbm = 14\n\
                     receipt_interval_secs = 2\n"
                ),
            )
        })
        .collect();

    // Ready: every radio is on the air and every MQTT link online.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        drain(&mut events, &mut seen);
        let ready = hotspot_nodes(&seen).len() == HOTSPOTS.len()
            && HOTSPOTS
                .iter()
                .all(|(id, _, _)| online(&sub.received(), id));
        if ready {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "hotspots not ready:\n{}",
            logs(&hotspots)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let nodes = hotspot_nodes(&seen);
    let node_of: HashMap<&str, NodeId> = nodes.iter().map(|(n, id)| (*id, *n)).collect();

    // The network: the entropy of the current and the next window, to every hotspot, every
    // second (a repeat for a window replaces the value with itself).
    let windows: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let network_stop = CancellationToken::new();
    let network = {
        let sub = sub.clone();
        let windows = windows.clone();
        let stop = network_stop.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let now = BeaconWindow::containing(WINDOW_S, SystemTime::now()).unwrap();
                for w in [now, now.next()] {
                    windows.lock().unwrap().insert(w.id);
                    let payload = EntropyCommand {
                        window: w,
                        entropy: entropy_of(w.id),
                    }
                    .encode();
                    for (id, _, _) in &HOTSPOTS {
                        let topic = format!("eu868/gateway/{id}/command/poc_entropy");
                        sub.publish(&topic, payload.clone(), false).await;
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    // Some malformed entropy too: rejected, nothing else changes.
    sub.publish(
        &format!("eu868/gateway/{}/command/poc_entropy", HOTSPOTS[0].0),
        vec![1, 2, 3],
        false,
    )
    .await;

    // Until every hotspot has beaconed twice and each in-range hotspot has witnessed each
    // of the other two (a window may lose a beacon to a collision on the air).
    let in_range: Vec<&str> = HOTSPOTS
        .iter()
        .map(|h| h.0)
        .filter(|id| *id != FAR)
        .collect();
    let deadline = tokio::time::Instant::now() + RUN;
    loop {
        let got = sub.received();
        let beacons = reports(&got, "beacon");
        let frames: HashMap<Vec<u8>, String> = beacons
            .iter()
            .map(|(gw, _, s)| (beacon_frame(s), gw.clone()))
            .collect();
        let pairs: BTreeSet<(String, String)> = reports(&got, "witness")
            .iter()
            .filter_map(|(gw, _, s)| Some((frames.get(&witness_frame(s))?.clone(), gw.clone())))
            .collect();
        let enough_beacons = HOTSPOTS
            .iter()
            .all(|(id, _, _)| beacons.iter().filter(|(gw, _, _)| gw == id).count() >= 2);
        let all_pairs = in_range.iter().all(|b| {
            in_range
                .iter()
                .filter(|w| *w != b)
                .all(|w| pairs.contains(&(b.to_string(), w.to_string())))
        });
        if enough_beacons && all_pairs {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every hotspot beaconed twice and was witnessed by its neighbours within \
             {RUN:?}: {} beacon reports, witnessed pairs {pairs:?}\n{}",
            beacons.len(),
            logs(&hotspots)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Cut-off: the beacons reported so far. Their frames have ended on the air within
    // 250 ms; give the witnesses' reports time to arrive.
    let beacons_at_cutoff = reports(&sub.received(), "beacon");
    tokio::time::sleep(Duration::from_secs(3)).await;
    drain(&mut events, &mut seen);
    let got = sub.received();
    let witnesses = reports(&got, "witness");

    // The air's record: who transmitted which frame, and where it was delivered.
    let mut transmitted: HashMap<Vec<u8>, (NodeId, f64, u64, Modulation)> = HashMap::new();
    let mut delivered: HashMap<Vec<u8>, BTreeSet<NodeId>> = HashMap::new();
    for ev in &seen {
        match ev {
            AirEvent::Transmitted { node, frame, .. } => {
                transmitted.insert(
                    frame.payload.clone(),
                    (*node, frame.power_dbm, frame.freq_hz, frame.modulation),
                );
            }
            AirEvent::Received(r) if r.outcome == Outcome::Delivered => {
                delivered
                    .entry(r.frame.payload.clone())
                    .or_default()
                    .insert(r.to);
            }
            _ => {}
        }
    }
    let far = node_of[FAR];
    assert!(
        !delivered.values().any(|to| to.contains(&far)),
        "nothing reaches the far hotspot"
    );

    let mut per_hotspot: BTreeMap<String, usize> = BTreeMap::new();
    for (gw, _, s) in &beacons_at_cutoff {
        let Body::Beacon(b) = &s.report.body else {
            unreachable!()
        };
        let frame = beacon_frame(s);
        // What went on the air is what the report says: the beaconer's node, the reported
        // frequency and (conducted) power, SF9/125 kHz, in the reported window.
        let Some((node, power, freq, modulation)) = transmitted.get(&frame) else {
            panic!("{gw}: a beacon report without its transmission on the air");
        };
        assert_eq!(nodes[node], gw.as_str(), "sent by the reporting hotspot");
        assert_eq!(*power, f64::from(b.power_dbm), "{gw}: reported power");
        assert_eq!(b.power_dbm, 14, "min(radio 14 dBm, EU868 16.15 dBm EIRP)");
        assert_eq!(*freq, u64::from(b.freq_hz));
        assert!(matches!(
            modulation,
            Modulation::Lora {
                sf: 9,
                bw_hz: 125_000,
                ..
            }
        ));
        assert_eq!(b.window.len_s, WINDOW_S);
        assert!(b.window.contains_ms(b.tx_time_ms));
        assert!(windows.lock().unwrap().contains(&b.window.id));
        *per_hotspot.entry(gw.clone()).or_default() += 1;

        // Exactly the hotspots the air delivered the beacon to witnessed it.
        let expected: BTreeSet<&str> = delivered
            .get(&frame)
            .map(|to| to.iter().map(|n| nodes[n]).collect())
            .unwrap_or_default();
        let witnessed: BTreeSet<&str> = witnesses
            .iter()
            .filter(|(_, _, w)| witness_frame(w) == frame)
            .map(|(wgw, _, _)| {
                HOTSPOTS
                    .iter()
                    .map(|h| h.0)
                    .find(|id| id == wgw)
                    .expect("a known hotspot")
            })
            .collect();
        assert_eq!(
            witnessed, expected,
            "{gw}'s beacon in window {}: witnesses = deliveries",
            b.window.id
        );
        assert!(!witnessed.contains(gw.as_str()), "no self-witness");
        if gw == FAR {
            assert!(witnessed.is_empty(), "the far hotspot is heard by nobody");
        }
    }
    for (id, _, _) in &HOTSPOTS {
        assert!(
            per_hotspot.get(*id).copied().unwrap_or(0) >= 2,
            "{id} beaconed"
        );
    }
    assert!(
        witnesses.iter().all(|(gw, _, _)| gw != FAR),
        "the far hotspot witnesses nothing"
    );
    eprintln!(
        "beacons per hotspot {per_hotspot:?}; {} witness reports",
        witnesses.len()
    );

    // Every report verifies: beacons against the network's entropy, witnesses against
    // their beacons (those whose beacon report is in the batch).
    network_stop.cancel();
    let _ = network.await;
    let all_beacons = reports(&got, "beacon");
    let beacon_frames: BTreeSet<Vec<u8>> = all_beacons.iter().map(|b| beacon_frame(&b.2)).collect();
    let batch: Vec<Vec<u8>> = all_beacons
        .iter()
        .map(|b| b.1.clone())
        .chain(
            witnesses
                .iter()
                .filter(|w| beacon_frames.contains(&witness_frame(&w.2)))
                .map(|w| w.1.clone()),
        )
        .collect();
    let mut verifier = Verifier::new(Policy {
        require_entropy: true,
        min_window_s: WINDOW_S,
        ..Policy::default()
    });
    let ids: Vec<u64> = windows.lock().unwrap().iter().copied().collect();
    for id in &ids {
        verifier.add_entropy(
            BeaconWindow {
                len_s: WINDOW_S,
                id: *id,
            },
            entropy_of(*id),
        );
    }
    let now_ms = drivers::time::unix_ms(SystemTime::now());
    let verdicts = verifier.verify_batch(&batch, now_ms);
    for (bytes, v) in batch.iter().zip(&verdicts) {
        let kind = SignedReport::decode(bytes).unwrap().report.kind();
        assert!(
            matches!(v, Ok(k) if *k == kind),
            "{kind:?} report invalid: {v:?}"
        );
    }
    assert!(verdicts.iter().filter(|v| **v == Ok(Kind::Witness)).count() >= 6);

    // The same batch through `gatewayd poc verify` (hex lines on stdin).
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatewayd"));
    cmd.args(["poc", "verify", "--require-entropy"])
        .arg(format!("--min-window-secs={WINDOW_S}"));
    for id in &ids {
        let hex: String = entropy_of(*id).iter().map(|b| format!("{b:02x}")).collect();
        cmd.arg("--entropy").arg(format!("{WINDOW_S}:{id}:{hex}"));
    }
    let mut child = cmd
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gatewayd poc verify");
    {
        let mut stdin = child.stdin.take().unwrap();
        for r in &batch {
            let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
            writeln!(stdin, "{hex}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "poc verify: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.lines().count(), batch.len(), "{text}");

    // Status: beacons counted, skips by reason, witnesses; the malformed entropy changed
    // nothing (hotspot A beaconed like the others).
    let a = hotspots[0].status();
    assert!(a["beacons_sent_total"].as_u64().unwrap() >= 2, "{a}");
    assert!(a["last_beacon_age_seconds"].as_u64().is_some(), "{a}");
    assert!(a["beacons_skipped"].get("no_entropy").is_some(), "{a}");
    assert!(a["witnesses_total"].as_u64().unwrap() >= 2, "{a}");
    assert!(
        hotspots[0].log().contains("command/poc_entropy rejected"),
        "the malformed entropy is logged with its reason"
    );
    let d = hotspots[3].status();
    assert_eq!(d["witnesses_total"].as_u64(), Some(0), "{d}");

    // Every kind of report, from every hotspot, went to `…/poc/{kind}`; what ChirpStack
    // subscribes to saw each hotspot's stats and none of them.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = sub.received();
        let seen = chirpstack.received();
        let every = |kind: &str, on: &[Received]| {
            HOTSPOTS.iter().all(|(id, _, _)| {
                on.iter()
                    .any(|r| r.topic == format!("eu868/gateway/{id}/{kind}"))
            })
        };
        if every("poc/receipt", &got) && every("event/stats", &seen) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no receipt or no stats from every hotspot: {:?}",
            seen.iter().map(|r| &r.topic).collect::<BTreeSet<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = sub.received();
    let poc: Vec<&Received> = got.iter().filter(|r| r.topic.contains("/poc/")).collect();
    for kind in ["beacon", "witness", "receipt"] {
        assert!(poc
            .iter()
            .any(|r| r.topic.ends_with(&format!("/poc/{kind}"))));
    }
    for r in chirpstack.received() {
        let event = r.topic.rsplit('/').next().unwrap_or_default();
        assert!(
            ["up", "stats", "ack"].contains(&event),
            "ChirpStack would get {} and log \"Unknown event type\"",
            r.topic
        );
        assert!(
            !poc.iter().any(|p| p.payload == r.payload),
            "a PoC report on {}",
            r.topic
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
