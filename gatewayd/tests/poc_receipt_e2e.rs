//! Data-transfer receipts through the real daemon, Mosquitto and a GWMP forwarder: uplinks
//! stored concurrently still give a chain the network recomputes from what it sees on
//! `event/up` (uplink ids from `rx_info`); receipts verify, link across `kill -9` (a period
//! open at the kill becomes a receipt at the next start), and a receipt claiming an uplink
//! never forwarded fails; `gatewayd poc verify` accepts them. A receipt that expires unsent
//! in a broker outage, or a damaged chain state file, does not break the chain: the next
//! receipt is a new segment.

use testkit as support;

use std::process::Command;
use std::time::{Duration, SystemTime};

use drivers::time::unix_ms;
use gatewayd::poc::identity::{KeyFileSigner, Signer};
use gatewayd::poc::receipt::{chain_step, ReceiptError, TransferReceipt};
use gatewayd::poc::receipt_order::select_uplinks;
use gatewayd::poc::receipt_state::{ReceiptState, STATE_FILE_NAME};
use gatewayd::poc::verify::{Policy, Reason, Verifier};
use gatewayd::poc::{Body, Kind, Report, SignedReport};
use support::daemon::*;
use support::observe::status_json;
use support::wait_for;

const WAIT: Duration = Duration::from_secs(30);

/// Distinct receipts seen on MQTT, in chain order (by period end).
fn receipts(sub: &Subscriber) -> Vec<SignedReport> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<SignedReport> = sub
        .all()
        .into_iter()
        .filter(|r| r.topic == format!("eu868/gateway/{GATEWAY_ID}/poc/receipt"))
        .filter(|r| seen.insert(r.payload.clone()))
        .map(|r| SignedReport::decode(&r.payload).expect("a canonical receipt"))
        .collect();
    out.sort_by_key(|r| (body(r).period_end_ms, r.report.created_ms));
    out
}

fn body(r: &SignedReport) -> &TransferReceipt {
    match &r.report.body {
        Body::Receipt(t) => t,
        other => panic!("not a receipt: {other:?}"),
    }
}

fn counted(sub: &Subscriber) -> u64 {
    receipts(sub).iter().map(|r| u64::from(body(r).count)).sum()
}

/// What the network received: (uplink id from rx_info, PHYPayload).
fn network_uplinks(sub: &Subscriber) -> Vec<(u32, Vec<u8>)> {
    sub.uplinks()
        .into_iter()
        .map(|u| (u.rx_info.expect("rx_info").uplink_id, u.phy_payload))
        .collect()
}

/// Verify every receipt in order, each against the uplinks the network received.
fn verify_all(rs: &[SignedReport], net: &[(u32, Vec<u8>)]) -> Vec<Result<Kind, Reason>> {
    let mut v = Verifier::new(Policy::default());
    let now = unix_ms(SystemTime::now());
    rs.iter()
        .map(|r| {
            let t = body(r);
            v.add_uplinks(r.report.key, t.prev_head, select_uplinks(t, net));
            v.verify(r.bytes(), now)
        })
        .collect()
}

/// An rxpk list of `frames`, the ones flagged `bad` with a CRC error.
fn rxpks(frames: &[(Vec<u8>, bool)]) -> String {
    let list: Vec<String> = frames
        .iter()
        .enumerate()
        .map(|(i, (phy, bad))| {
            let r = rxpk(phy, 1000 + i as u32);
            if *bad {
                r.replace("\"stat\":1", "\"stat\":-1")
            } else {
                r
            }
        })
        .collect();
    format!("{{\"rxpk\":[{}]}}", list.join(","))
}

#[test]
fn receipts_match_the_uplinks_on_mqtt_and_link_across_a_kill9() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/#");
    let mut daemon = Daemon::start(broker.port(), "[poc]\nreceipt_interval_secs = 1\n");
    let mut pf = Forwarder::new(daemon.udp_port);

    // 20 uplinks, up to 8 datagrams in flight: the outbox stores batches concurrently.
    assert_eq!(pf.push_frames(0..20, 8, WAIT), 20);
    // One datagram with a duplicate (de-duplicated) and a CRC error (filtered): not forwarded.
    pf.push_json(&rxpks(&[
        (data_frame(100), false),
        (data_frame(100), false),
        (data_frame(101), true),
        (data_frame(102), false),
    ]));
    assert_eq!(pf.acks(1, WAIT).len(), 1);
    let n = 22;
    wait_for("22 uplinks on event/up", WAIT, || sub.uplinks().len() >= n);
    wait_for("receipts covering 22 uplinks", WAIT, || {
        counted(&sub) >= n as u64
    });

    let rs = receipts(&sub);
    let net = network_uplinks(&sub);
    assert_eq!(net.len(), n, "{}", daemon.log());
    assert_eq!(counted(&sub), n as u64);
    let bytes: u64 = rs.iter().map(|r| body(r).bytes).sum();
    assert_eq!(bytes, net.iter().map(|u| u.1.len() as u64).sum::<u64>());
    // Uplink ids are consecutive, so a receipt names a range.
    let mut ids: Vec<u32> = net.iter().map(|u| u.0).collect();
    ids.sort_unstable();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    for (r, verdict) in rs.iter().zip(verify_all(&rs, &net)) {
        assert_eq!(verdict, Ok(Kind::Receipt), "{:?}", body(r));
    }
    let key_path = daemon.dir.join("state").join("identity.pk8");
    let hotspot = KeyFileSigner::load(&key_path).unwrap();
    assert!(rs.iter().all(|r| r.report.key == hotspot.public_key()));

    // A receipt claiming one more uplink than was forwarded, signed with the hotspot's key.
    let last = rs.iter().rev().find(|r| body(r).count > 0).unwrap();
    let t = body(last);
    let extra = t.last_uplink_id.wrapping_add(1);
    let forged = TransferReceipt {
        count: t.count + 1,
        bytes: t.bytes + 17,
        last_uplink_id: extra,
        head: chain_step(&t.head, extra, &data_frame(999)),
        ..t.clone()
    };
    let forged = Report {
        body: Body::Receipt(forged),
        ..last.report.clone()
    }
    .sign(&hotspot)
    .unwrap();
    let mut v = Verifier::new(Policy::default());
    let ft = body(&forged);
    v.add_uplinks(hotspot.public_key(), ft.prev_head, select_uplinks(ft, &net));
    assert_eq!(
        v.verify(forged.bytes(), unix_ms(SystemTime::now())),
        Err(Reason::Receipt(ReceiptError::Chain("uplink count")))
    );

    // `gatewayd poc verify` accepts the receipts as published.
    let file = daemon.dir.join("receipts.txt");
    let text: String = rs.iter().map(|r| r.to_hex() + "\n").collect();
    std::fs::write(&file, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatewayd"))
        .args(["poc", "verify"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}");
    assert_eq!(
        stdout.matches("valid Receipt").count(),
        rs.len(),
        "{stdout}"
    );

    // Status counts what the receipts covered.
    wait_for("receipt counters in status", WAIT, || {
        let s = status_json(&daemon);
        s["receipt_uplinks_total"] == n as u64 && s["receipts_total"].as_u64() >= Some(1)
    });

    // Restart with hour-long periods, forward 3 uplinks, and kill -9 once the chain state
    // holds them in the open period.
    let config = std::fs::read_to_string(&daemon.config).unwrap();
    let hourly = config.replace(
        "receipt_interval_secs = 1\n",
        "receipt_interval_secs = 3600\n",
    );
    assert_ne!(hourly, config);
    std::fs::write(&daemon.config, &hourly).unwrap();
    daemon.kill9();
    daemon.spawn();
    let mut pf = Forwarder::new(daemon.udp_port);
    assert_eq!(pf.push_frames(300..303, 3, WAIT), 3);
    wait_for("25 uplinks on event/up", WAIT, || {
        sub.uplinks().len() >= n + 3
    });
    let state_path = daemon.dir.join("state").join(STATE_FILE_NAME);
    wait_for("3 uplinks in the saved open period", WAIT, || {
        std::fs::read(&state_path)
            .ok()
            .and_then(|b| ReceiptState::decode(&b).ok())
            .is_some_and(|s| s.open.count == 3)
    });
    daemon.kill9();
    // Start again: the open period is closed into a receipt, the chain continues.
    std::fs::write(&daemon.config, &config).unwrap();
    daemon.spawn();
    let mut pf = Forwarder::new(daemon.udp_port);
    assert_eq!(pf.push_frames(200..205, 2, WAIT), 5);
    let total = n + 3 + 5;
    // An uplink published just before a kill -9 may come again (its deletion was not
    // committed yet): same id, and the network counts each id once.
    let distinct = |sub: &Subscriber| {
        let ids: std::collections::HashSet<u32> =
            network_uplinks(sub).into_iter().map(|u| u.0).collect();
        ids.len()
    };
    wait_for("30 distinct uplinks on event/up", WAIT, || {
        distinct(&sub) >= total
    });
    wait_for("receipts covering 30 uplinks", WAIT, || {
        counted(&sub) >= total as u64
    });
    let rs = receipts(&sub);
    let net = network_uplinks(&sub);
    assert_eq!(distinct(&sub), total);
    assert_eq!(counted(&sub), total as u64, "{}", daemon.log());
    assert!(
        rs.iter().any(|r| body(r).count == 3),
        "the period open at the kill is one receipt"
    );
    for (r, verdict) in rs.iter().zip(verify_all(&rs, &net)) {
        assert_eq!(verdict, Ok(Kind::Receipt), "{:?}", body(r));
    }
    for pair in rs.windows(2) {
        assert_eq!(body(&pair[1]).prev_head, body(&pair[0]).head, "linked");
    }
}

fn expired_poc(s: &serde_json::Value) -> Option<u64> {
    s["outbox_expired"]
        .as_array()?
        .iter()
        .find(|c| c["class"] == "poc")?["count"]
        .as_u64()
}

#[test]
fn a_receipt_lost_in_an_outage_is_followed_by_a_new_segment() {
    let mut broker = Mosquitto::start_persistent();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/#");
    let daemon = Daemon::start(
        broker.port(),
        "[poc]\nreceipt_interval_secs = 1\nreport_validity_secs = 2\n",
    );
    let mut pf = Forwarder::new(daemon.udp_port);
    assert_eq!(pf.push_frames(0..4, 4, WAIT), 4);
    wait_for("receipts covering 4 uplinks", WAIT, || counted(&sub) >= 4);

    // Broker down: 3 uplinks are forwarded (into the outbox) and chained; the receipt
    // covering them is signed and stored, then expires unsent.
    broker.stop();
    assert_eq!(pf.push_frames(10..13, 3, WAIT), 3);
    wait_for("7 uplinks chained", WAIT, || {
        status_json(&daemon)["receipt_uplinks_total"] == 7
    });
    let stored = status_json(&daemon)["receipts_total"].as_u64().unwrap_or(0);
    wait_for("the receipt covering them stored", WAIT, || {
        status_json(&daemon)["receipts_total"].as_u64() > Some(stored)
    });
    // Longer than the receipts' validity (2 s after their period end).
    std::thread::sleep(Duration::from_millis(3_500));
    broker.restart();
    assert_eq!(pf.push_frames(20..23, 3, WAIT), 3);
    let distinct = |sub: &Subscriber| {
        network_uplinks(sub)
            .into_iter()
            .map(|u| u.0)
            .collect::<std::collections::HashSet<u32>>()
            .len()
    };
    wait_for("10 distinct uplinks on event/up", WAIT, || {
        distinct(&sub) >= 10
    });
    wait_for("receipts covering 7 uplinks", WAIT, || counted(&sub) >= 7);
    wait_for("the lost receipt counted as expired", WAIT, || {
        expired_poc(&status_json(&daemon)) >= Some(1)
    });
    std::thread::sleep(Duration::from_millis(1_500));

    let rs = receipts(&sub);
    let net = network_uplinks(&sub);
    assert_eq!(
        counted(&sub),
        7,
        "the lost receipt's 3 uplinks are claimed by none"
    );
    // The network got the outage's uplinks (they wait in the outbox), but no receipt on
    // MQTT covers them.
    let lost: Vec<u32> = net
        .iter()
        .filter(|u| frame_number(&u.1).is_some_and(|n| (10..13).contains(&n)))
        .map(|u| u.0)
        .collect();
    assert_eq!(lost.len(), 3, "{}", daemon.log());
    for r in &rs {
        let t = body(r);
        let covered = |id: u32| {
            t.count > 0
                && id.wrapping_sub(t.first_uplink_id)
                    <= t.last_uplink_id.wrapping_sub(t.first_uplink_id)
        };
        assert!(!lost.iter().any(|&id| covered(id)), "{t:?}");
    }
    // Each receipt verified as it arrived (before its deadline), against all the uplinks
    // the network received.
    let mut v = Verifier::new(Policy::default());
    v.add_received(rs[0].report.key, net.clone());
    let verdicts: Vec<_> = rs
        .iter()
        .map(|r| v.verify(r.bytes(), r.report.deadline_ms))
        .collect();
    let segments: Vec<usize> = (0..rs.len())
        .filter(|&i| verdicts[i] == Ok(Kind::ReceiptNewSegment))
        .collect();
    assert_eq!(segments.len(), 1, "{verdicts:?}");
    for (r, verdict) in rs.iter().zip(&verdicts) {
        assert!(
            matches!(verdict, Ok(Kind::Receipt | Kind::ReceiptNewSegment)),
            "{verdict:?} {:?}",
            body(r)
        );
    }
    // The new segment starts after the outage: the receipt covering frames 20..23 is it
    // or follows it, and everything before it linked.
    let after = rs
        .iter()
        .position(|r| {
            let t = body(r);
            t.count > 0
                && net.iter().any(|u| {
                    u.0 == t.first_uplink_id
                        && frame_number(&u.1).is_some_and(|n| (20..23).contains(&n))
                })
        })
        .expect("a receipt covers the uplinks after the outage");
    assert!(segments[0] <= after, "{segments:?} {after}");
    assert!(
        body(&rs[segments[0]]).period_start_ms
            >= rs
                .iter()
                .filter(|r| body(r).count > 0)
                .map(|r| body(r).period_end_ms)
                .next()
                .unwrap_or(0),
        "the new segment lies after the first period"
    );
    // Without the new-segment rule the chain would stay broken: its prev_head is a head
    // the network never saw.
    let seg = body(&rs[segments[0]]);
    assert!(rs[..segments[0]]
        .iter()
        .all(|r| body(r).head != seg.prev_head));
}

#[test]
fn a_damaged_state_file_restarts_the_chain_as_a_new_segment() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/#");
    let mut daemon = Daemon::start(broker.port(), "[poc]\nreceipt_interval_secs = 1\n");
    let mut pf = Forwarder::new(daemon.udp_port);
    assert_eq!(pf.push_frames(0..4, 4, WAIT), 4);
    wait_for("receipts covering 4 uplinks", WAIT, || counted(&sub) >= 4);
    let before = receipts(&sub).len();

    daemon.kill9();
    let state_path = daemon.dir.join("state").join(STATE_FILE_NAME);
    std::fs::write(&state_path, b"damaged by a bad sector").unwrap();
    daemon.spawn();
    let mut pf = Forwarder::new(daemon.udp_port);
    assert_eq!(pf.push_frames(10..13, 3, WAIT), 3);
    wait_for("receipts covering 7 uplinks", WAIT, || counted(&sub) >= 7);
    assert!(state_path.with_extension("state.bad").exists());

    let rs = receipts(&sub);
    let net = network_uplinks(&sub);
    assert_eq!(counted(&sub), 7);
    let verdicts = verify_all(&rs, &net);
    for (r, verdict) in rs.iter().zip(&verdicts) {
        assert!(
            matches!(verdict, Ok(Kind::Receipt | Kind::ReceiptNewSegment)),
            "{verdict:?} {:?}\n{}",
            body(r),
            daemon.log()
        );
    }
    let segments: Vec<usize> = (0..rs.len())
        .filter(|&i| verdicts[i] == Ok(Kind::ReceiptNewSegment))
        .collect();
    assert_eq!(segments.len(), 1, "{verdicts:?}");
    // The new segment restarts from the genesis, after every receipt of the first run.
    let seg = body(&rs[segments[0]]);
    assert_eq!(
        seg.prev_head,
        gatewayd::poc::receipt::genesis(&rs[0].report.key)
    );
    assert!(segments[0] >= before, "{segments:?} {before}");
    // The restarted chain's ids lie above every id used before the damage.
    let max_before = net
        .iter()
        .filter(|u| frame_number(&u.1).is_some_and(|n| n < 4))
        .map(|u| u.0)
        .max()
        .unwrap();
    let after: Vec<u32> = net
        .iter()
        .filter(|u| frame_number(&u.1).is_some_and(|n| (10..13).contains(&n)))
        .map(|u| u.0)
        .collect();
    assert_eq!(after.len(), 3);
    assert!(
        after.iter().all(|&id| id > max_before),
        "{after:?} {max_before}"
    );
}
