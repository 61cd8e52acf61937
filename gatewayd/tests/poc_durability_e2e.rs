//! Durability of PoC reports through the real daemon: witness reports made while the broker
//! is down survive a `kill -9` and arrive (and verify) once it is back; with a short
//! `[poc] report_validity_secs`, reports that expire during the outage are dropped unsent
//! and counted per outbox class in status and metrics.

mod support;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use gatewayd::poc::beacon::{plan, BeaconPlan, Window};
use gatewayd::poc::identity::{KeyFileSigner, Signer};
use gatewayd::poc::report::BeaconReport;
use gatewayd::poc::verify::{Policy, Verifier};
use gatewayd::poc::wire::{Position, PositionSource, TimeSource};
use gatewayd::poc::witness::unix_ms;
use gatewayd::poc::{Body, Kind, Report, SignedReport};
use gatewayd::region::Region;
use support::daemon::*;

const WAIT: Duration = Duration::from_secs(30);
const WINDOW_S: u32 = 300;
const ENTROPY: [u8; 32] = [7; 32];

fn wait_for(what: &str, wait: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + wait;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status_json(daemon: &Daemon) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_gatewayd"))
        .arg("--config")
        .arg(&daemon.config)
        .args(["status", "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn expired(s: &serde_json::Value, class: &str) -> Option<u64> {
    s["outbox_expired"]
        .as_array()?
        .iter()
        .find(|c| c["class"] == class)?["count"]
        .as_u64()
}

/// A window with at least a minute left, so beacons and witnesses fall into the same one.
fn current_window() -> Window {
    let w = Window::containing(WINDOW_S, SystemTime::now()).unwrap();
    if w.end_ms() - unix_ms(SystemTime::now()) > 60_000 {
        return w;
    }
    std::thread::sleep(Duration::from_millis(
        w.end_ms() - unix_ms(SystemTime::now()) + 100,
    ));
    Window::containing(WINDOW_S, SystemTime::now()).unwrap()
}

/// Another hotspot 5 km north of the daemon (52.0 N, 4.0 E) with its beacon in `window`
/// and the signed beacon report the network would have from it.
struct Beaconer {
    plan: BeaconPlan,
    report: SignedReport,
}

fn beaconer(dir: &std::path::Path, name: &str, window: &Window) -> Beaconer {
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
        location: Some(Position::from_degrees(
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
        .filter(|r| r.topic == format!("eu868/gateway/{GATEWAY_ID}/event/witness"))
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

    wait_for("two witness reports on event/witness", WAIT, || {
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
