//! Durability of PoC reports through the real daemon: witness reports made while the broker
//! is down survive a `kill -9` and arrive (and verify) once it is back; so does the signed
//! report of a beacon the daemon sent (through the test's packet forwarder, which answers
//! TX_ACK) during the outage; with a short `[poc] report_validity_secs`, reports that expire
//! during the outage are dropped unsent and counted per outbox class in status and metrics.

use testkit as support;

use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use drivers::time::unix_ms;
use gatewayd::poc::beacon::{parse_frame, plan, BeaconPlan, BeaconWindow};
use gatewayd::poc::entropy::EntropyCommand;
use gatewayd::poc::identity::{KeyFileSigner, Signer};
use gatewayd::poc::report::BeaconReport;
use gatewayd::poc::verify::{Policy, Verifier};
use gatewayd::poc::wire::{PositionSource, TimeSource, WirePosition};
use gatewayd::poc::{Body, Kind, Report, SignedReport};
use gatewayd::region::Region;
use support::daemon::*;
use support::observe::status_json;
use support::wait_for;

const WAIT: Duration = Duration::from_secs(30);
const WINDOW_S: u32 = 300;
const ENTROPY: [u8; 32] = [7; 32];

fn expired(s: &serde_json::Value, class: &str) -> Option<u64> {
    s["outbox_expired"]
        .as_array()?
        .iter()
        .find(|c| c["class"] == class)?["count"]
        .as_u64()
}

/// A window with at least a minute left, so beacons and witnesses fall into the same one.
fn current_window() -> BeaconWindow {
    let w = BeaconWindow::containing(WINDOW_S, SystemTime::now()).unwrap();
    if w.end_ms() - unix_ms(SystemTime::now()) > 60_000 {
        return w;
    }
    std::thread::sleep(Duration::from_millis(
        w.end_ms() - unix_ms(SystemTime::now()) + 100,
    ));
    BeaconWindow::containing(WINDOW_S, SystemTime::now()).unwrap()
}

/// Another hotspot 5 km north of the daemon (52.0 N, 4.0 E) with its beacon in `window`
/// and the signed beacon report the network would have from it.
struct Beaconer {
    plan: BeaconPlan,
    report: SignedReport,
}

fn beaconer(dir: &std::path::Path, name: &str, window: &BeaconWindow) -> Beaconer {
    let key = KeyFileSigner::generate(&dir.join(name)).unwrap();
    let region = Region::by_name("EU868").unwrap();
    let plan = plan(region, None, &ENTROPY, window, &[9; 32], &key.public_key()).unwrap();
    let now = unix_ms(SystemTime::now());
    let body = BeaconReport {
        window: *window,
        network_entropy: ENTROPY,
        local_entropy: [9; 32],
        region,
        sub_band: None,
        tx_time_ms: now.max(window.start_ms() + 1_000),
        time_source: TimeSource::Local,
        freq_hz: plan.freq_hz as u32,
        dr: plan.dr,
        power_dbm: 14,
        antenna_gain_ddbi: 20,
        cable_loss_ddb: 5,
        location: Some(WirePosition::from_degrees(
            PositionSource::Config,
            52.045,
            4.0,
            10.0,
        )),
    };
    let report = Report {
        key: key.public_key(),
        created_ms: now,
        deadline_ms: now + 600_000,
        body: Body::Beacon(body),
    }
    .sign(&key)
    .unwrap();
    Beaconer { plan, report }
}

/// The beacon as the daemon's packet forwarder hears it: on its frequency, SF9, −110 dBm.
fn hear(pf: &mut Forwarder, b: &Beaconer) {
    let json = format!(
        "{{\"rxpk\":[{{\"tmst\":1000,\"chan\":0,\"rfch\":0,\"freq\":{:.6},\"stat\":1,\"modu\":\"LORA\",\
         \"datr\":\"SF9BW125\",\"codr\":\"4/5\",\"rssi\":-110,\"lsnr\":-3.5,\"size\":{},\"data\":\"{}\"}}]}}",
        b.plan.freq_hz as f64 / 1e6,
        b.plan.frame.len(),
        base64::engine::general_purpose::STANDARD.encode(&b.plan.frame)
    );
    pf.push_json(&json);
    assert_eq!(pf.acks(1, WAIT).len(), 1);
}

const LOCATION: &str = "[gateway.location]\nlatitude = 52.0\nlongitude = 4.0\n";

fn witness_reports(sub: &Subscriber) -> Vec<Vec<u8>> {
    sub.all()
        .into_iter()
        .filter(|r| r.topic == format!("eu868/gateway/{GATEWAY_ID}/poc/witness"))
        .map(|r| r.payload)
        .collect()
}

#[test]
fn witness_reports_survive_a_broker_outage_and_a_kill9() {
    // The network's subscriber has a persistent session, so the broker queues for it.
    let mut broker = Mosquitto::start_persistent();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/#");
    broker.stop();

    let mut daemon = Daemon::start(broker.port(), LOCATION);
    let dir = tempfile::tempdir().unwrap();
    let window = current_window();
    let beaconers = [
        beaconer(dir.path(), "a.pk8", &window),
        beaconer(dir.path(), "b.pk8", &window),
    ];
    let mut pf = Forwarder::new(daemon.udp_port);
    for b in &beaconers {
        hear(&mut pf, b);
    }
    // Both reports are in the outbox (the counter moves after the store) with no broker.
    wait_for("two witness reports stored", WAIT, || {
        status_json(&daemon)["witnesses_total"] == 2
    });
    assert_eq!(status_json(&daemon)["mqtt"]["connected"], false);

    daemon.kill9();
    daemon.spawn();
    broker.restart();

    wait_for("two witness reports on poc/witness", WAIT, || {
        witness_reports(&sub).len() >= 2
    });
    let reports = witness_reports(&sub);
    let mut v = Verifier::new(Policy {
        min_window_s: WINDOW_S,
        ..Policy::default()
    });
    v.add_entropy(window, ENTROPY);
    let mut batch: Vec<Vec<u8>> = beaconers
        .iter()
        .map(|b| b.report.bytes().to_vec())
        .collect();
    batch.extend(reports.iter().cloned());
    let verdicts = v.verify_batch(&batch, unix_ms(SystemTime::now()));
    assert_eq!(
        verdicts,
        vec![
            Ok(Kind::Beacon),
            Ok(Kind::Beacon),
            Ok(Kind::Witness),
            Ok(Kind::Witness)
        ],
        "{}",
        daemon.log()
    );
    let frames: Vec<Vec<u8>> = reports
        .iter()
        .map(|r| match SignedReport::decode(r).unwrap().report.body {
            Body::Witness(w) => w.frame,
            other => panic!("{other:?}"),
        })
        .collect();
    for b in &beaconers {
        assert!(frames.contains(&b.plan.frame), "each beacon witnessed");
    }
    assert_eq!(expired(&status_json(&daemon), "poc"), Some(0));
}

#[test]
fn reports_that_expire_during_the_outage_are_dropped_and_counted() {
    let mut broker = Mosquitto::start_persistent();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/#");
    broker.stop();

    let mut daemon = Daemon::start(
        broker.port(),
        &format!("{LOCATION}[poc]\nreport_validity_secs = 2\n"),
    );
    let dir = tempfile::tempdir().unwrap();
    let window = current_window();
    let beaconers = [
        beaconer(dir.path(), "a.pk8", &window),
        beaconer(dir.path(), "b.pk8", &window),
    ];
    let mut pf = Forwarder::new(daemon.udp_port);
    for b in &beaconers {
        hear(&mut pf, b);
    }
    wait_for("two witness reports stored", WAIT, || {
        status_json(&daemon)["witnesses_total"] == 2
    });
    let made = Instant::now();
    daemon.kill9();
    daemon.spawn();
    // The broker stays down longer than the reports' validity.
    std::thread::sleep(Duration::from_secs(3).saturating_sub(made.elapsed()));
    broker.restart();
    // An uplink after the outage: once it is on MQTT, the PoC class (sent first) is done.
    let mut pf = Forwarder::new(daemon.udp_port);
    pf.push_uplink(&data_frame(1), 1);
    assert_eq!(pf.acks(1, WAIT).len(), 1);
    sub.wait_uplinks(WAIT, |u| !u.is_empty());
    assert_eq!(sub.uplinks().len(), 1, "{}", daemon.log());
    wait_for("two expired PoC reports counted", WAIT, || {
        expired(&status_json(&daemon), "poc") == Some(2)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        witness_reports(&sub).is_empty(),
        "expired reports are never published"
    );
    let s = status_json(&daemon);
    assert_eq!(s["outbox_messages"], 0, "nothing left behind: {s}");

    // The metrics endpoint says the same, per class.
    let log = daemon.log();
    let addr = log
        .rsplit("metrics on http://")
        .next()
        .and_then(|r| r.split("/metrics").next())
        .expect("metrics address logged")
        .to_string();
    let body = http_get(&addr);
    assert!(
        body.lines()
            .any(|l| l == "gatewayd_outbox_expired_total{class=\"poc\"} 2"),
        "{body}"
    );
}

fn http_get(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Publishes as the network would (QoS 1), from its own MQTT client.
struct Network {
    client: rumqttc::Client,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Network {
    fn connect(port: u16) -> Network {
        let opts = rumqttc::MqttOptions::new(
            format!("test-network-{}", rand::random::<u32>()),
            "127.0.0.1",
            port,
        );
        let (client, mut conn) = rumqttc::Client::new(opts, 16);
        let thread = std::thread::spawn(move || {
            // Ends on the first error (the disconnect on drop, or the broker going away).
            for event in conn.iter() {
                if event.is_err() {
                    return;
                }
            }
        });
        Network {
            client,
            thread: Some(thread),
        }
    }

    fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .expect("publish");
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The packet forwarder's side of a transmission: a PULL_RESP within `wait` (PULL_DATA
/// keep-alives every 2 s meanwhile, as a forwarder sends them), answered with a successful
/// v2 TX_ACK; its txpk.
fn transmit(pf: &Forwarder, wait: Duration) -> Option<serde_json::Value> {
    let deadline = Instant::now() + wait;
    let mut next_pull = Instant::now();
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        if Instant::now() >= next_pull {
            let mut d = vec![2, 0x12, 0x34, 2];
            d.extend_from_slice(&GATEWAY);
            pf.send_raw(&d);
            next_pull = Instant::now() + Duration::from_secs(2);
        }
        pf.sock
            .set_read_timeout(Some(Duration::from_millis(50)))
            .ok();
        if let Ok(n) = pf.sock.recv(&mut buf) {
            if n > 4 && buf[3] == 3 {
                let mut ack = vec![2, buf[1], buf[2], 5];
                ack.extend_from_slice(&GATEWAY);
                pf.send_raw(&ack);
                let v: serde_json::Value = serde_json::from_slice(&buf[4..n]).expect("txpk");
                return Some(v["txpk"].clone());
            }
        }
    }
    None
}

fn beacon_reports(sub: &Subscriber) -> Vec<Vec<u8>> {
    sub.all()
        .into_iter()
        .filter(|r| r.topic == format!("eu868/gateway/{GATEWAY_ID}/poc/beacon"))
        .map(|r| r.payload)
        .collect()
}

#[test]
fn beacon_reports_survive_a_broker_outage_and_a_kill9() {
    const SHORT_WINDOW_S: u32 = 10;
    let mut broker = Mosquitto::start_persistent();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/#");
    let mut daemon = Daemon::start(
        broker.port(),
        &format!("{LOCATION}[poc]\nwindow_secs = {SHORT_WINDOW_S}\n"),
    );
    let pf = Forwarder::new(daemon.udp_port);
    assert!(pf.pull_data(WAIT), "PULL_ACK");
    wait_for("the daemon online on MQTT", WAIT, || {
        sub.all().iter().any(|r| r.topic.ends_with("/state/conn"))
    });

    // The network's entropy for this window and the next three (the daemon keeps four),
    // delivered before the outage: the daemon logs each one it accepts.
    let first = BeaconWindow::containing(SHORT_WINDOW_S, SystemTime::now()).unwrap();
    let windows: Vec<BeaconWindow> = std::iter::successors(Some(first), |w| Some(w.next()))
        .take(4)
        .collect();
    let entropy_of = |w: &BeaconWindow| [w.id as u8 ^ 0x5a; 32];
    let network = Network::connect(broker.port());
    for w in &windows {
        let payload = EntropyCommand {
            window: *w,
            entropy: entropy_of(w),
        }
        .encode();
        network.publish(
            &format!("eu868/gateway/{GATEWAY_ID}/command/poc_entropy"),
            payload,
        );
    }
    let last = windows[3].id;
    wait_for("the entropy delivered", WAIT, || {
        daemon.log().contains(&format!(
            "poc: entropy for window {last} of {SHORT_WINDOW_S} s"
        ))
    });
    drop(network);
    broker.stop();
    // [poc] radio_max_power_dbm unset and a packet forwarder (its board unknown): 14 dBm.
    assert!(
        daemon.log().contains("(radio max 14 dBm)"),
        "{}",
        daemon.log()
    );

    // A beacon goes out while the broker is down; its report is stored.
    let before = status_json(&daemon)["outbox_messages"]
        .as_u64()
        .unwrap_or(0);
    let txpk = transmit(&pf, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no beacon PULL_RESP:\n{}", daemon.log()));
    assert_eq!(txpk["imme"], true, "{txpk}");
    let frame = base64::engine::general_purpose::STANDARD
        .decode(txpk["data"].as_str().expect("txpk data"))
        .unwrap();
    let body = parse_frame(&frame).expect("a v1 beacon frame");
    wait_for("the beacon report stored", WAIT, || {
        let s = status_json(&daemon);
        s["beacons_sent_total"] == 1 && s["outbox_messages"].as_u64() > Some(before)
    });
    assert_eq!(status_json(&daemon)["mqtt"]["connected"], false);
    assert!(beacon_reports(&sub).is_empty());

    daemon.kill9();
    daemon.spawn();
    broker.restart();
    assert!(pf.pull_data(WAIT), "PULL_ACK after the restart");

    wait_for("the beacon report on poc/beacon", WAIT, || {
        !beacon_reports(&sub).is_empty()
    });
    let reports = beacon_reports(&sub);
    assert!(
        reports.iter().all(|r| *r == reports[0]),
        "one report (at least once: copies are identical)"
    );
    let signed = SignedReport::decode(&reports[0]).unwrap();
    let Body::Beacon(b) = &signed.report.body else {
        panic!("a beacon report");
    };
    assert!(windows.contains(&b.window), "window {:?}", b.window);
    assert!(
        (b.freq_hz as f64 / 1e6 - txpk["freq"].as_f64().unwrap()).abs() < 1e-6,
        "reported {} Hz, sent {txpk}",
        b.freq_hz
    );
    assert_eq!(i64::from(b.power_dbm), txpk["powe"].as_i64().unwrap());
    // The frame on air is the one the verifier recomputes from the report.
    let recomputed = plan(
        b.region,
        b.sub_band,
        &b.network_entropy,
        &b.window,
        &b.local_entropy,
        &signed.report.key,
    )
    .unwrap();
    assert_eq!(recomputed.body, body);

    let mut v = Verifier::new(Policy {
        require_entropy: true,
        min_window_s: SHORT_WINDOW_S,
        ..Policy::default()
    });
    for w in &windows {
        v.add_entropy(*w, entropy_of(w));
    }
    assert_eq!(
        v.verify(&reports[0], unix_ms(SystemTime::now())),
        Ok(Kind::Beacon),
        "{}",
        daemon.log()
    );
    assert_eq!(expired(&status_json(&daemon), "poc"), Some(0));
}
