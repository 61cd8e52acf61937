//! End to end, downlinks: the test plays the network server on a real Mosquitto and the
//! packet forwarder on a real UDP socket; the real `gatewayd` binary sits between. A
//! `gw.DownlinkFrame` on `command/down` must come out as a GWMP PULL_RESP with the right
//! txpk, and the forwarder's TX_ACK must come back as a `gw.DownlinkTxAck` on `event/ack`.

use testkit as support;

use std::time::Duration;

use chirpstack_api::gw;
use chirpstack_api::prost::Message as _;
use serde_json::Value;
use support::daemon::*;
use support::network::*;
fn assert_rx1(txpk: &Value, tmst: u32) {
    assert_eq!(
        txpk["tmst"],
        u64::from(tmst.wrapping_add(1_000_000)),
        "{txpk}"
    );
    assert_eq!(txpk["freq"].as_f64(), Some(868.1), "{txpk}");
    assert_eq!(txpk["datr"], "SF7BW125");
    assert_eq!(txpk["codr"], "4/5");
    assert_eq!(txpk["ipol"], true);
    assert_eq!(
        txpk["powe"], 16,
        "20 dBm EIRP asked; EU868 band M allows 16.15 dBm EIRP"
    );
    assert_eq!(txpk["size"], 12);
}

#[test]
fn class_a_rx1_then_rx2_fallback_and_counter_wrap() {
    let mut s = setup();
    let t = 3_512_348_611u32;
    let ctx = s.uplink(1, t);
    assert_eq!(ctx, t.to_be_bytes(), "context carries tmst");

    // RX1 accepted: [OK, IGNORED], and nothing more is sent.
    s.ns.publish(DOWN, class_a(101, &ctx));
    let (token, txpk) = s.pull_resp(WAIT).expect("PULL_RESP for RX1");
    assert_rx1(&txpk, t);
    s.tx_ack(token, None);
    assert_eq!(
        s.wait_ack(101),
        [gw::TxAckStatus::Ok, gw::TxAckStatus::Ignored]
    );
    assert!(s.pull_resp(Duration::from_millis(500)).is_none(), "no RX2");

    // RX1 too late: RX2 goes out, [TOO_LATE, OK].
    s.ns.publish(DOWN, class_a(102, &ctx));
    let (token, txpk) = s.pull_resp(WAIT).expect("PULL_RESP for RX1");
    assert_rx1(&txpk, t);
    s.tx_ack(token, Some("TOO_LATE"));
    let (token2, rx2) = s.pull_resp(WAIT).expect("PULL_RESP for RX2");
    assert_eq!(rx2["tmst"], u64::from(t + 2_000_000));
    assert_eq!(rx2["freq"].as_f64(), Some(869.525));
    assert_eq!(rx2["datr"], "SF12BW125");
    assert_eq!(rx2["powe"], 27);
    assert_eq!(rx2["ipol"], true);
    s.tx_ack(token2, None);
    assert_eq!(
        s.wait_ack(102),
        [gw::TxAckStatus::TooLate, gw::TxAckStatus::Ok]
    );

    // The counter wraps at 2^32.
    let t = 0xFFFF_FF00u32;
    let ctx = s.uplink(2, t);
    s.ns.publish(DOWN, class_a(103, &ctx));
    let (token, txpk) = s.pull_resp(WAIT).expect("PULL_RESP after wrap");
    assert_eq!(txpk["tmst"], 999_744, "(0xFFFFFF00 + 1_000_000) mod 2^32");
    s.tx_ack(token, None);
    assert_eq!(s.wait_ack(103)[0], gw::TxAckStatus::Ok);
}

#[test]
fn class_c_immediately_and_an_illegal_frequency() {
    let mut s = setup();
    let frame = gw::DownlinkFrame {
        downlink_id: 201,
        gateway_id: GATEWAY_ID.into(),
        items: vec![item(
            869_525_000,
            9,
            14,
            gw::timing::Parameters::Immediately(gw::ImmediatelyTimingInfo {}),
            &[],
        )],
        ..Default::default()
    };
    s.ns.publish(DOWN, frame.encode_to_vec());
    let (token, txpk) = s.pull_resp(WAIT).expect("PULL_RESP for Class C");
    assert_eq!(txpk["imme"], true, "{txpk}");
    assert!(txpk.get("tmst").is_none());
    assert_eq!(txpk["datr"], "SF9BW125");
    s.tx_ack(token, None);
    assert_eq!(s.wait_ack(201), [gw::TxAckStatus::Ok]);

    // 915 MHz is no EU868 channel: the guard refuses, the forwarder hears nothing.
    let ctx = s.uplink(3, 1_000);
    let frame = gw::DownlinkFrame {
        downlink_id: 202,
        gateway_id: GATEWAY_ID.into(),
        items: vec![item(915_000_000, 7, 14, delay(1), &ctx)],
        ..Default::default()
    };
    s.ns.publish(DOWN, frame.encode_to_vec());
    assert_eq!(s.wait_ack(202), [gw::TxAckStatus::TxFreq]);
    assert!(
        s.pull_resp(Duration::from_millis(500)).is_none(),
        "nothing transmitted"
    );
}

#[test]
fn malformed_and_foreign_commands_change_nothing() {
    let mut s = setup();
    let ctx = s.uplink(4, 5_000);
    s.ns.publish(DOWN, b"\xff\xff\xff not a DownlinkFrame".to_vec());
    let mut foreign = gw::DownlinkFrame::decode(class_a(301, &ctx).as_slice()).unwrap();
    foreign.gateway_id = "aabbccddeeff0011".into();
    s.ns.publish(DOWN, foreign.encode_to_vec());
    assert!(
        s.pull_resp(Duration::from_secs(2)).is_none(),
        "nothing transmitted"
    );
    assert!(
        s.acks(301).is_empty(),
        "no ack for a command to another gateway"
    );
    // The daemon keeps forwarding uplinks, and a good command afterwards works.
    s.uplink(5, 6_000);
    s.ns.publish(DOWN, class_a(302, &ctx));
    let (token, _) = s.pull_resp(WAIT).expect("PULL_RESP");
    s.tx_ack(token, None);
    assert_eq!(s.wait_ack(302)[0], gw::TxAckStatus::Ok);
    let log = s.daemon.log();
    assert!(log.contains("command/down rejected"), "{log}");
    assert!(log.contains("aabbccddeeff0011"), "{log}");
    let ack_topics = s
        .sub
        .all()
        .iter()
        .filter(|r| r.topic.ends_with("/event/ack"))
        .count();
    assert_eq!(ack_topics, 1, "only the good command was acknowledged");
}

#[test]
fn json_commands_and_acks_when_mqtt_json() {
    let mut s = setup_with(true);
    let ctx = s.uplink(6, 42_000);
    let frame = gw::DownlinkFrame::decode(class_a(401, &ctx).as_slice()).unwrap();
    let json = serde_json::to_vec(&frame).unwrap();
    s.ns.publish(DOWN, json);
    let (token, txpk) = s.pull_resp(WAIT).expect("PULL_RESP");
    assert_rx1(&txpk, 42_000);
    s.tx_ack(token, Some("COLLISION_PACKET"));
    let (token, _) = s.pull_resp(WAIT).expect("RX2 PULL_RESP");
    s.tx_ack(token, None);
    assert_eq!(
        s.wait_ack(401),
        [gw::TxAckStatus::CollisionPacket, gw::TxAckStatus::Ok]
    );
    let raw = s
        .sub
        .all()
        .into_iter()
        .find(|r| r.topic.ends_with("/event/ack"))
        .expect("ack");
    let text = String::from_utf8(raw.payload).expect("JSON ack");
    assert!(text.contains("\"COLLISION_PACKET\""), "{text}");
    // A protobuf payload is malformed under json = true.
    s.ns.publish(DOWN, class_a(402, &ctx));
    assert!(s.pull_resp(Duration::from_secs(1)).is_none());
    assert!(s.acks(402).is_empty());
}

/// Hostile commands (issue 12): a 1 MB `command/down`, a 10,000-item frame, a 1 MB
/// `command/poc_entropy` and an unknown command. The MQTT session stays up (no new
/// connection), each is counted, the 10,000-item frame is answered with an error ack, and the
/// next legal downlink is sent and acknowledged.
#[test]
fn hostile_commands_leave_the_link_up_and_the_next_downlink_goes_out() {
    let s = setup();
    let mqtt = |s: &Setup| s.daemon.status()["mqtt"].clone();
    assert_eq!(mqtt(&s)["connections_total"], 1);

    s.ns.publish(DOWN, vec![0x0a; 1_000_000]);
    let many = gw::DownlinkFrame {
        downlink_id: 401,
        gateway_id: GATEWAY_ID.into(),
        items: vec![gw::DownlinkFrameItem::default(); 10_000],
        ..Default::default()
    };
    s.ns.publish(DOWN, many.encode_to_vec());
    s.ns.publish(
        "eu868/gateway/0102030405060708/command/poc_entropy",
        vec![1; 1_000_000],
    );
    s.ns.publish(
        "eu868/gateway/0102030405060708/command/reboot",
        b"now".to_vec(),
    );
    let legal = gw::DownlinkFrame {
        downlink_id: 402,
        gateway_id: GATEWAY_ID.into(),
        items: vec![item(
            869_525_000,
            9,
            14,
            gw::timing::Parameters::Immediately(gw::ImmediatelyTimingInfo {}),
            &[],
        )],
        ..Default::default()
    };
    s.ns.publish(DOWN, legal.encode_to_vec());

    let (token, txpk) = s.pull_resp(WAIT).expect("the legal downlink goes out");
    assert_eq!(txpk["imme"], true, "{txpk}");
    s.tx_ack(token, None);
    assert_eq!(s.wait_ack(402), [gw::TxAckStatus::Ok]);
    assert_eq!(s.wait_ack(401), [gw::TxAckStatus::InternalError]);

    // Commands are handled in order: by now every hostile one has been counted.
    let m = mqtt(&s);
    assert_eq!(m["connections_total"], 1, "the session stayed up: {m}");
    assert_eq!(m["connected"], true);
    assert_eq!(m["commands_dropped"]["oversized"], 2, "{m}");
    assert_eq!(m["commands_dropped"]["unknown"], 1, "{m}");
    assert_eq!(s.daemon.status()["downlinks"]["rejected"], 1);
    let log = s.daemon.log();
    assert!(
        log.contains("discarded a 1000000-byte message"),
        "warned about the oversized commands:\n{log}"
    );
    assert!(log.contains("10000 items"), "{log}");
    assert!(
        !log.contains("connection to 127.0.0.1"),
        "the link never lost its connection:\n{log}"
    );
}
