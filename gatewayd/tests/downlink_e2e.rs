//! End to end, downlinks: the test plays the network server on a real Mosquitto and the
//! packet forwarder on a real UDP socket; the real `gatewayd` binary sits between. A
//! `gw.DownlinkFrame` on `command/down` must come out as a GWMP PULL_RESP with the right
//! txpk, and the forwarder's TX_ACK must come back as a `gw.DownlinkTxAck` on `event/ack`.

mod support;

use std::time::{Duration, Instant};

use chirpstack_api::gw;
use chirpstack_api::pbjson_types;
use chirpstack_api::prost::Message as _;
use serde_json::Value;
use support::daemon::*;

const WAIT: Duration = Duration::from_secs(20);
const DOWN: &str = "eu868/gateway/0102030405060708/command/down";

/// A running setup: broker, daemon, a forwarder whose PULL_DATA set the downlink route, the
/// network server's subscriber (all of the gateway's topics) and publisher.
struct Setup {
    daemon: Daemon,
    pf: Forwarder,
    sub: Subscriber,
    ns: Publisher,
    json: bool,
    _broker: Mosquitto,
}

fn setup() -> Setup {
    setup_with(false)
}

/// `json`: the daemon runs with `[mqtt] json = true`.
fn setup_with(json: bool) -> Setup {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/0102030405060708/#");
    let daemon = if json {
        let mqtt = format!(
            "server = \"tcp://127.0.0.1:{}\"\njson = true\n",
            broker.port()
        );
        Daemon::start_mqtt(broker.port(), &mqtt)
    } else {
        Daemon::start(broker.port(), "")
    };
    let pf = Forwarder::new(daemon.udp_port);
    assert!(pf.pull_data(WAIT), "PULL_ACK");
    // The link subscribes to commands before it says ONLINE.
    let deadline = Instant::now() + WAIT;
    while !sub.all().iter().any(|r| r.topic.ends_with("/state/conn")) {
        assert!(Instant::now() < deadline, "no ONLINE:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let ns = Publisher::connect(broker.port());
    Setup {
        daemon,
        pf,
        sub,
        ns,
        json,
        _broker: broker,
    }
}

impl Setup {
    /// Send an uplink with counter `tmst`; returns the context the network server received.
    fn uplink(&mut self, n: u32, tmst: u32) -> Vec<u8> {
        if self.json {
            // The subscriber decodes protobuf uplinks only: wait for the PUSH_ACK instead
            // and use the context the daemon would have published.
            self.pf.push_uplink(&data_frame(n), tmst);
            assert_eq!(self.pf.acks(1, WAIT).len(), 1, "PUSH_ACK");
            return tmst.to_be_bytes().to_vec();
        }
        self.pf.push_uplink(&data_frame(n), tmst);
        let ups = self.sub.wait_uplinks(WAIT, |u| {
            u.iter().any(|u| frame_number(&u.phy_payload) == Some(n))
        });
        let up = ups
            .iter()
            .find(|u| frame_number(&u.phy_payload) == Some(n))
            .unwrap_or_else(|| panic!("uplink {n} not forwarded:\n{}", self.daemon.log()));
        up.rx_info.as_ref().expect("rx_info").context.clone()
    }

    /// The next PULL_RESP within `wait`: its raw token bytes and txpk.
    fn pull_resp(&self, wait: Duration) -> Option<([u8; 2], Value)> {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            self.pf
                .sock
                .set_read_timeout(Some(Duration::from_millis(50)))
                .ok();
            if let Ok(n) = self.pf.sock.recv(&mut buf) {
                if n > 4 && buf[3] == 3 {
                    let v: Value = serde_json::from_slice(&buf[4..n]).expect("txpk JSON");
                    return Some(([buf[1], buf[2]], v["txpk"].clone()));
                }
            }
        }
        None
    }

    /// Answer a PULL_RESP with a v2 TX_ACK; `error` None = success (empty body).
    fn tx_ack(&self, token: [u8; 2], error: Option<&str>) {
        let mut d = vec![2, token[0], token[1], 5];
        d.extend_from_slice(&GATEWAY);
        if let Some(e) = error {
            d.extend_from_slice(format!("{{\"txpk_ack\":{{\"error\":\"{e}\"}}}}").as_bytes());
        }
        self.pf.send_raw(&d);
    }

    /// The acks of downlink `id` published so far.
    fn acks(&self, id: u32) -> Vec<Vec<gw::TxAckStatus>> {
        self.sub
            .all()
            .iter()
            .filter(|r| r.topic == "eu868/gateway/0102030405060708/event/ack")
            .filter_map(|r| {
                if self.json {
                    serde_json::from_slice::<gw::DownlinkTxAck>(&r.payload).ok()
                } else {
                    gw::DownlinkTxAck::decode(r.payload.as_slice()).ok()
                }
            })
            .filter(|a| a.downlink_id == id)
            .map(|a| a.items.iter().map(|i| i.status()).collect())
            .collect()
    }

    /// Wait (bounded) for the ack of downlink `id`.
    fn wait_ack(&self, id: u32) -> Vec<gw::TxAckStatus> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(a) = self.acks(id).into_iter().next() {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "no ack for downlink {id}:\n{}",
                self.daemon.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn lora(sf: u32) -> Option<gw::Modulation> {
    Some(gw::Modulation {
        parameters: Some(gw::modulation::Parameters::Lora(gw::LoraModulationInfo {
            bandwidth: 125_000,
            spreading_factor: sf,
            code_rate: gw::CodeRate::Cr45.into(),
            polarization_inversion: true,
            ..Default::default()
        })),
    })
}

fn item(
    freq: u32,
    sf: u32,
    power: i32,
    timing: gw::timing::Parameters,
    ctx: &[u8],
) -> gw::DownlinkFrameItem {
    gw::DownlinkFrameItem {
        phy_payload: vec![
            0x60, 0x34, 0x12, 0x01, 0x26, 0x80, 0x01, 0x00, 0x11, 0x22, 0x33, 0x44,
        ],
        tx_info: Some(gw::DownlinkTxInfo {
            frequency: freq,
            power,
            modulation: lora(sf),
            timing: Some(gw::Timing {
                parameters: Some(timing),
            }),
            context: ctx.to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn delay(secs: i64) -> gw::timing::Parameters {
    gw::timing::Parameters::Delay(gw::DelayTimingInfo {
        delay: Some(pbjson_types::Duration {
            seconds: secs,
            nanos: 0,
        }),
    })
}

/// RX1 (1 s, 868.1 MHz SF7, 20 dBm EIRP asked) and RX2 (2 s, 869.525 MHz SF12, 27 dBm).
fn class_a(id: u32, ctx: &[u8]) -> Vec<u8> {
    gw::DownlinkFrame {
        downlink_id: id,
        gateway_id: GATEWAY_ID.into(),
        items: vec![
            item(868_100_000, 7, 20, delay(1), ctx),
            item(869_525_000, 12, 27, delay(2), ctx),
        ],
        ..Default::default()
    }
    .encode_to_vec()
}

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
