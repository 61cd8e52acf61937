//! End to end: a packet forwarder on a real UDP socket → the real `gatewayd` binary → a real
//! Mosquitto → a subscriber decoding `gw.UplinkFrame`s. Broker outage, `kill -9`, malformed
//! datagrams.

use testkit as support;

use std::collections::HashSet;
use std::time::Duration;

use chirpstack_api::gw;
use support::daemon::*;

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn reference_vectors_arrive_once_with_their_metadata() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/+/event/up");
    let daemon = Daemon::start(
        broker.port(),
        "[gateway.location]\nlatitude = 52.5\nlongitude = 4.5\n",
    );
    let mut pf = Forwarder::new(daemon.udp_port);
    let vectors = [
        hex("40 04030201 80 0100 01 a694642615 d6c3b582"),
        hex("40 04030201 03 0000 020305 d7fa0c6c"),
        hex("00 0403020104030201 0504030205040302 2d10 6a990e12"),
    ];
    for (i, v) in vectors.iter().enumerate() {
        pf.push_uplink(v, 3_512_348_611u32.wrapping_add(i as u32));
    }
    assert_eq!(
        pf.acks(3, WAIT).len(),
        3,
        "every datagram is PUSH_ACKed once stored"
    );
    let ups = sub.wait_uplinks(WAIT, |u| u.len() >= 3);
    std::thread::sleep(Duration::from_millis(300));
    let ups_after = sub.uplinks();
    assert_eq!(ups_after.len(), 3, "each uplink exactly once: {ups:?}");
    let payloads: HashSet<Vec<u8>> = ups_after.iter().map(|u| u.phy_payload.clone()).collect();
    assert_eq!(payloads, vectors.iter().cloned().collect());
    let mut ids = HashSet::new();
    for up in &ups_after {
        let tx = up.tx_info.as_ref().unwrap();
        assert_eq!(tx.frequency, 866_349_812);
        match tx.modulation.as_ref().unwrap().parameters.as_ref().unwrap() {
            gw::modulation::Parameters::Lora(l) => {
                assert_eq!((l.spreading_factor, l.bandwidth), (7, 125_000));
                assert_eq!(l.code_rate(), gw::CodeRate::Cr46);
            }
            other => panic!("{other:?}"),
        }
        let rx = up.rx_info.as_ref().unwrap();
        assert_eq!(rx.gateway_id, GATEWAY_ID);
        assert_eq!(rx.rssi, -35);
        assert!((rx.snr - 5.1).abs() < 1e-4);
        assert_eq!(rx.channel, 2);
        assert_eq!(rx.crc_status(), gw::CrcStatus::CrcOk);
        let ctx = u32::from_be_bytes(rx.context[..4].try_into().unwrap());
        assert!(
            (3_512_348_611..3_512_348_614).contains(&ctx),
            "context carries tmst: {ctx}"
        );
        assert_eq!(rx.gw_time.as_ref().unwrap().seconds, 1_364_746_877);
        assert_eq!(rx.gw_time.as_ref().unwrap().nanos, 528_002_000);
        assert_eq!(
            rx.time_since_gps_epoch.as_ref().unwrap().seconds,
            1_048_782_095
        );
        let loc = rx.location.as_ref().expect("configured location");
        assert_eq!((loc.latitude, loc.longitude), (52.5, 4.5));
        ids.insert(rx.uplink_id);
    }
    assert_eq!(ids.len(), 3, "uplink ids are unique");
}

#[test]
fn broker_outage_loses_nothing_and_push_acks_keep_coming() {
    // The broker keeps sessions across its restart, so the subscriber's persistent session
    // (and its subscription) survives: what the daemon publishes after the outage is queued
    // for it even before it has reconnected, and the count below cannot race the daemon.
    let mut broker = Mosquitto::start_persistent();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/+/event/up");
    let daemon = Daemon::start(broker.port(), "");
    let mut pf = Forwarder::new(daemon.udp_port);
    assert_eq!(pf.push_frames(0..100, 16, WAIT), 100);
    sub.wait_uplinks(WAIT, |u| u.len() >= 100);

    broker.stop();
    let acks = pf.push_frames(100..300, 16, WAIT);
    assert_eq!(
        acks,
        200,
        "PUSH_ACKs keep coming while the broker is away\n{}",
        daemon.log()
    );
    broker.restart();

    let missing = sub.missing_frames(0..300, Duration::from_secs(60));
    assert!(
        missing.is_empty(),
        "lost across the outage: {missing:?}\n{}\nbroker:\n{}",
        daemon.log(),
        broker.log()
    );
}

#[test]
fn kill_9_with_the_broker_down_then_restart_delivers_everything() {
    let mut broker = Mosquitto::start();
    let port = broker.port();
    broker.stop();
    let mut daemon = Daemon::start(port, "");
    let mut pf = Forwarder::new(daemon.udp_port);
    assert_eq!(
        pf.push_frames(0..150, 16, WAIT),
        150,
        "acknowledged = stored"
    );
    daemon.kill9();

    broker.restart();
    let sub = Subscriber::start(port, "eu868/gateway/+/event/up");
    daemon.spawn();
    sub.wait_uplinks(WAIT, |u| u.len() >= 150);
    let counts = sub.frame_counts();
    let missing: Vec<u32> = (0..150).filter(|n| !counts.contains_key(n)).collect();
    assert!(
        missing.is_empty(),
        "lost across kill -9: {missing:?}\n{}",
        daemon.log()
    );
}

#[test]
fn malformed_datagrams_do_not_disturb_valid_traffic() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/+/event/up");
    let daemon = Daemon::start(broker.port(), "");
    let mut pf = Forwarder::new(daemon.udp_port);
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![9, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
        vec![2, 0, 1],
        [&[2u8, 0, 1, 0][..], &GATEWAY, b"{not json"].concat(),
        [
            &[2u8, 0, 1, 0][..],
            &GATEWAY,
            br#"{"rxpk":[{"data":"!!!","size":3}]}"#,
        ]
        .concat(),
        [
            &[2u8, 0, 1, 0][..],
            &GATEWAY,
            br#"{"rxpk":[{"freq":99999.0,"datr":"SF7BW125","data":"QAQDAgE=","size":5}]}"#,
        ]
        .concat(),
        vec![0u8; 65_000],
    ];
    for n in 0..50u32 {
        pf.push_uplink(&data_frame(n), n);
        pf.send_raw(&garbage[n as usize % garbage.len()]);
    }
    // One datagram with a bad rxpk next to a good one: the good one still flows.
    pf.push_json(&format!(
        "{{\"rxpk\":[{{\"data\":\"%%%\",\"size\":1}},{}]}}",
        rxpk(&data_frame(50), 50)
    ));
    sub.wait_uplinks(WAIT, |u| u.len() >= 51);
    let counts = sub.frame_counts();
    let missing: Vec<u32> = (0..=50).filter(|n| !counts.contains_key(n)).collect();
    assert!(
        missing.is_empty(),
        "valid uplinks lost: {missing:?}\n{}",
        daemon.log()
    );
    assert!(counts.values().all(|c| *c == 1), "duplicates: {counts:?}");
    assert!(
        daemon.log().contains("WARN"),
        "malformed input is reported:\n{}",
        daemon.log()
    );
}

#[test]
fn sigterm_publishes_offline_and_exits_zero() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/+/state/conn");
    let mut daemon = Daemon::start_with(broker.port(), "id = \"0102030405060708\"", "");
    let online = |s: &Subscriber, want: gw::conn_state::State| {
        s.all().iter().any(|r| {
            chirpstack_api::prost::Message::decode(r.payload.as_slice())
                .map(|c: gw::ConnState| c.state() == want)
                .unwrap_or(false)
        })
    };
    let deadline = std::time::Instant::now() + WAIT;
    while !online(&sub, gw::conn_state::State::Online) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        online(&sub, gw::conn_state::State::Online),
        "ONLINE published\n{}",
        daemon.log()
    );
    let status = daemon
        .terminate(Duration::from_secs(10))
        .expect("exits within 10 s");
    assert!(status.success(), "exit status {status}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !online(&sub, gw::conn_state::State::Offline) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        online(&sub, gw::conn_state::State::Offline),
        "OFFLINE published on stop"
    );
}

#[test]
fn json_mode_publishes_the_protobuf_json_mapping() {
    use base64::Engine as _;
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/+/event/up");
    let daemon = Daemon::start_mqtt(
        broker.port(),
        &format!(
            "server = \"tcp://127.0.0.1:{}\"\njson = true\n",
            broker.port()
        ),
    );
    let mut pf = Forwarder::new(daemon.udp_port);
    assert_eq!(pf.push_frames(0..3, 4, WAIT), 3);
    let deadline = std::time::Instant::now() + WAIT;
    while sub.all().len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let all = sub.all();
    assert_eq!(all.len(), 3, "{}", daemon.log());
    for r in all {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("JSON payload");
        assert_eq!(v["rxInfo"]["gatewayId"], GATEWAY_ID);
        assert_eq!(v["txInfo"]["frequency"], 866_349_812);
        assert_eq!(v["rxInfo"]["crcStatus"], "CRC_OK");
        let phy = base64::engine::general_purpose::STANDARD
            .decode(v["phyPayload"].as_str().unwrap())
            .unwrap();
        assert!(frame_number(&phy).is_some(), "{v}");
    }
}

/// The forwarder-dialect fixtures of the GWMP codec (`[name]`, `#` citations, one body line).
fn dialect_bodies() -> Vec<String> {
    include_str!("../../drivers/src/semtech_udp/fixtures/forwarder_dialects.txt")
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_forwarder_dialect_arrives_on_event_up_in_canonical_form() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/+/event/up");
    let daemon = Daemon::start(broker.port(), "");
    let mut pf = Forwarder::new(daemon.udp_port);
    let bodies = dialect_bodies();
    assert!(bodies.len() >= 10);
    for body in &bodies {
        pf.push_json(body);
    }
    // Every fixture but the CRC-failed false sync (102) is a good frame that must arrive.
    let expected: Vec<u32> = (101..=110).filter(|n| *n != 102).collect();
    let ups = sub.wait_uplinks(WAIT, |u| {
        let got: HashSet<u32> = u
            .iter()
            .filter_map(|f| frame_number(&f.phy_payload))
            .collect();
        expected.iter().all(|n| got.contains(n))
    });
    use gw::modulation::Parameters;
    let params = |n: u32| {
        let up = ups
            .iter()
            .find(|u| frame_number(&u.phy_payload) == Some(n))
            .unwrap_or_else(|| panic!("frame {n} missing:\n{}", daemon.log()));
        let tx = up.tx_info.as_ref().unwrap();
        tx.modulation.as_ref().unwrap().parameters.clone().unwrap()
    };
    match params(101) {
        Parameters::Lora(l) => {
            assert_eq!((l.spreading_factor, l.bandwidth), (7, 125_000));
            assert_eq!(l.code_rate(), gw::CodeRate::Cr45);
        }
        other => panic!("{other:?}"),
    }
    match params(103) {
        Parameters::Lora(l) => assert_eq!(l.code_rate(), gw::CodeRate::CrUndefined),
        other => panic!("{other:?}"),
    }
    match params(104) {
        Parameters::Fsk(f) => assert_eq!(f.datarate, 50_000),
        other => panic!("{other:?}"),
    }
    // LR-FHSS "4/6", "2/6", "4/8", "2/3", "1/3" → ChirpStack's CR_4_6 (2/3), CR_2_6 (1/3),
    // CR_4_8 (1/2).
    for (n, cr) in [
        (106, gw::CodeRate::Cr46),
        (107, gw::CodeRate::Cr26),
        (108, gw::CodeRate::Cr48),
        (109, gw::CodeRate::Cr46),
        (110, gw::CodeRate::Cr26),
    ] {
        match params(n) {
            Parameters::LrFhss(l) => {
                assert_eq!(l.operating_channel_width, 137_000, "frame {n}");
                assert_eq!(l.code_rate(), cr, "frame {n}");
                assert_eq!(l.grid_steps, 52, "frame {n}");
            }
            other => panic!("frame {n}: {other:?}"),
        }
    }
    assert!(
        !daemon.log().contains("codr"),
        "no fixture's codr is refused:\n{}",
        daemon.log()
    );
}
