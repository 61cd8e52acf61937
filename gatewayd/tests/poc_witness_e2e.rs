//! Witnessing through the real daemon: another hotspot's beacon heard by the radio (here the
//! Semtech UDP backend) becomes a signed witness report on `poc/witness`, stored in the
//! outbox first; it is not forwarded as an uplink; a second copy is not witnessed twice.

use testkit as support;

use std::time::{Duration, SystemTime};

use gatewayd::poc::beacon::{plan, BeaconWindow};
use gatewayd::poc::identity::{KeyFileSigner, Signer};
use gatewayd::poc::{Body, Kind, SignedReport};
use gatewayd::region::Region;
use support::daemon::*;

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn another_hotspots_beacon_becomes_a_signed_witness_report() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/#");
    let daemon = Daemon::start(
        broker.port(),
        "[gateway.location]\nlatitude = 52.0\nlongitude = 4.0\n",
    );

    // The beaconer: another hotspot's key and a beacon planned for the current window.
    let dir = tempfile::tempdir().unwrap();
    let other = KeyFileSigner::generate(&dir.path().join("other.pk8")).unwrap();
    let region = Region::by_name("EU868").unwrap();
    let window = BeaconWindow::containing(300, SystemTime::now()).unwrap();
    let beacon = plan(
        region,
        None,
        &[7; 32],
        &window,
        &[9; 32],
        &other.public_key(),
    )
    .unwrap();

    let mut pf = Forwarder::new(daemon.udp_port);
    pf.push_uplink(&beacon.frame, 123);
    pf.push_uplink(&beacon.frame, 456);
    pf.push_uplink(&data_frame(1), 789);
    assert_eq!(pf.acks(3, WAIT).len(), 3);

    let deadline = std::time::Instant::now() + WAIT;
    let witnesses = || {
        sub.all()
            .into_iter()
            .filter(|r| r.topic.ends_with("/poc/witness"))
            .collect::<Vec<_>>()
    };
    while witnesses().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    sub.wait_uplinks(WAIT, |u| !u.is_empty());
    std::thread::sleep(Duration::from_millis(500));
    let w = witnesses();
    assert_eq!(
        w.len(),
        1,
        "one witness report for two copies of the beacon:\n{}",
        daemon.log()
    );
    assert_eq!(
        w[0].topic,
        format!("eu868/gateway/{GATEWAY_ID}/poc/witness")
    );
    let report = SignedReport::decode(&w[0].payload).expect("a canonical report");
    assert!(report.signature_valid());
    assert_eq!(report.report.kind(), Kind::Witness);
    assert_ne!(
        report.report.key,
        other.public_key(),
        "signed by the witness, not the beaconer"
    );
    assert!(
        daemon.log().contains(&report.report.key.address()),
        "the daemon's own identity"
    );
    let Body::Witness(wr) = &report.report.body else {
        unreachable!()
    };
    assert_eq!(wr.frame, beacon.frame);
    assert!(wr.location.is_some(), "the configured location is reported");
    assert!(report.report.deadline_ms > report.report.created_ms);
    // The beacon is not an uplink; the data frame is.
    let ups = sub.uplinks();
    assert_eq!(ups.len(), 1);
    assert_ne!(ups[0].phy_payload, beacon.frame);
}
