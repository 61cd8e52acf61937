//! The real daemon with `[poc] clock = "kernel"` says in `gatewayd status` which time its
//! reports would carry, as the kernel reports the clock (`adjtimex`, asked by this test too):
//! with an unsynchronized clock and no GPS, a beacon heard without a GPS stamp is not
//! witnessed and receipts are held, both counted, while uplinks flow on; with a synchronized
//! clock the witness report is published. (Which branch runs depends on this machine's
//! kernel; the forced answers are unit-tested with an injected check.)

use testkit as support;

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use gatewayd::poc::beacon::{plan, BeaconWindow};
use gatewayd::poc::identity::{KeyFileSigner, Signer};
use gatewayd::region::Region;
use support::daemon::*;
use support::observe::{status_json, wait_until};

const WAIT: Duration = Duration::from_secs(20);

/// An rxpk as a forwarder without GPS reports it: no `time`, no `tmms`.
fn rxpk_without_gps(phy: &[u8], tmst: u32) -> String {
    format!(
        "{{\"tmst\":{tmst},\"chan\":2,\"rfch\":0,\"freq\":868.1,\"stat\":1,\"modu\":\"LORA\",\
         \"datr\":\"SF9BW125\",\"codr\":\"4/5\",\"rssi\":-60,\"lsnr\":7.0,\"size\":{},\"data\":\"{}\"}}",
        phy.len(),
        base64::engine::general_purpose::STANDARD.encode(phy)
    )
}

#[test]
fn status_names_the_time_source_and_an_unsynchronized_clock_holds_reports() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/#");
    let daemon = Daemon::start(
        broker.port(),
        "[gateway.location]\nlatitude = 52.0\nlongitude = 4.0\n\
         [poc]\nclock = \"kernel\"\nreceipt_interval_secs = 1\n",
    );
    let synced = gatewayd::timesync::kernel_synchronized();
    let expected = if synced {
        "ntp-synced"
    } else {
        "unsynchronized"
    };
    wait_until("the time source in status", WAIT, || {
        let s = status_json(&daemon);
        (s["time_source"] == expected)
            .then_some(())
            .ok_or_else(|| s.to_string())
    });

    let dir = tempfile::tempdir().unwrap();
    let other = KeyFileSigner::generate(&dir.path().join("other.pk8")).unwrap();
    let window = BeaconWindow::containing(300, SystemTime::now()).unwrap();
    let region = Region::by_name("EU868").unwrap();
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
    pf.push_json(&format!(
        "{{\"rxpk\":[{},{}]}}",
        rxpk_without_gps(&beacon.frame, 1),
        rxpk_without_gps(&data_frame(1), 2)
    ));
    assert_eq!(pf.acks(1, WAIT).len(), 1);
    sub.wait_uplinks(WAIT, |u| !u.is_empty());
    assert_eq!(sub.uplinks().len(), 1, "uplinks flow whatever the clock");

    let published = |suffix: &str| {
        sub.all()
            .into_iter()
            .filter(|r| r.topic.ends_with(suffix))
            .count()
    };
    if synced {
        wait_until("a witness report", WAIT, || {
            (published("/poc/witness") == 1)
                .then_some(())
                .ok_or_else(|| daemon.log())
        });
    } else {
        wait_until("the witness skipped and receipts held", WAIT, || {
            let s = status_json(&daemon);
            let skipped = s["witnesses_skipped"]["clock_unsynchronized"].as_u64();
            let held = s["receipts_held_total"].as_u64();
            (skipped == Some(1) && held.is_some_and(|h| h >= 2))
                .then_some(())
                .ok_or_else(|| s.to_string())
        });
        assert_eq!(published("/poc/witness"), 0, "nothing signed");
        assert_eq!(published("/poc/receipt"), 0, "nothing signed");
        assert!(daemon.log().contains("receipts held"), "{}", daemon.log());
    }
}
