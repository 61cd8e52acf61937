//! Backend tests over real UDP sockets on 127.0.0.1: an emulated packet forwarder talks to
//! the backend, the test plays the daemon.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::radio::{
    CodeRate, CrcStatus, Eui64, Modulation, Radio, RadioEvent, RadioHealth, RxFrame, StoreAck,
    TxRequest, TxStatus, TxTiming,
};

const EUI: Eui64 = Eui64([0xaa, 0x55, 0x5a, 0, 0, 0, 0, 1]);
const WAIT: Duration = Duration::from_secs(5);

struct Fixture {
    radio: Radio,
    handle: SemtechUdpHandle,
    shutdown: CancellationToken,
    /// The emulated forwarder's socket (used for both up and down, as a NAT would).
    fwd: UdpSocket,
}

async fn start(tx_ack_timeout: Duration) -> Fixture {
    let shutdown = CancellationToken::new();
    let config = SemtechUdpConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        event_queue: 16,
        tx_ack_timeout,
    };
    let (mut radio, handle) = spawn(config, shutdown.clone()).await.unwrap();
    assert_eq!(handle.local_addr().ip().to_string(), "127.0.0.1");
    assert_ne!(handle.local_addr().port(), 0);
    assert!(matches!(
        radio.events.recv().await,
        Some(RadioEvent::Health(RadioHealth::Up))
    ));
    assert!(radio.capabilities.gps_timed_tx && !radio.capabilities.lbt);
    assert_eq!(radio.capabilities.rx_channels, 8);
    assert_eq!(radio.capabilities.max_tx_power_dbm, None);
    let fwd = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    fwd.connect(handle.local_addr()).await.unwrap();
    Fixture {
        radio,
        handle,
        shutdown,
        fwd,
    }
}

fn push_data(version: u8, token: u16, json: &str) -> Vec<u8> {
    let mut b = vec![version, (token >> 8) as u8, token as u8, 0x00];
    b.extend_from_slice(&EUI.0);
    b.extend_from_slice(json.as_bytes());
    b
}

fn pull_data(version: u8, token: u16) -> Vec<u8> {
    let mut b = vec![version, (token >> 8) as u8, token as u8, 0x02];
    b.extend_from_slice(&EUI.0);
    b
}

fn rxpk(tmst: u32, data: &str) -> String {
    format!(r#"{{"rxpk":[{}]}}"#, rxpk_entry(tmst, data))
}

fn rxpk_entry(tmst: u32, data: &str) -> String {
    format!(
        r#"{{"time":"2013-03-31T16:21:17.528002Z","tmst":{tmst},"chan":2,"rfch":0,"freq":866.349812,"stat":1,"modu":"LORA","datr":"SF7BW125","codr":"4/6","rssi":-35,"lsnr":5.1,"data":"{data}"}}"#
    )
}

impl Fixture {
    async fn recv_fwd(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 2048];
        let n = timeout(WAIT, self.fwd.recv(&mut buf))
            .await
            .expect("no datagram for the forwarder")
            .unwrap();
        buf.truncate(n);
        buf
    }

    async fn nothing_for_fwd(&self, within: Duration) {
        let mut buf = vec![0u8; 2048];
        if let Ok(r) = timeout(within, self.fwd.recv(&mut buf)).await {
            panic!("unexpected datagram {:?}", &buf[..r.unwrap()]);
        }
    }

    async fn event(&mut self) -> RadioEvent {
        timeout(WAIT, self.radio.events.recv())
            .await
            .expect("no event")
            .expect("event channel closed")
    }

    /// The next Uplinks event, skipping announcements.
    async fn uplinks(&mut self) -> (Option<Eui64>, Vec<RxFrame>, StoreAck) {
        loop {
            match self.event().await {
                RadioEvent::Uplinks {
                    gateway,
                    frames,
                    ack,
                } => return (gateway, frames, ack),
                RadioEvent::Announce(_) => continue,
                other => panic!("unexpected event {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn push_data_v1_and_v2_become_frames_and_acks() {
    let mut f = start(Duration::from_secs(1)).await;
    for (version, token) in [(1u8, 0x0102u16), (2, 0xfffe)] {
        f.fwd
            .send(&push_data(version, token, &rxpk(3_512_348_611, "AQID")))
            .await
            .unwrap();
        if version == 1 {
            assert!(matches!(f.event().await, RadioEvent::Announce(e) if e == EUI));
        }
        let (gateway, frames, ack) = f.uplinks().await;
        assert_eq!(gateway, Some(EUI));
        assert_eq!(frames.len(), 1);
        let m = &frames[0].meta;
        assert_eq!(frames[0].payload, vec![1, 2, 3]);
        assert_eq!(m.freq_hz, 866_349_812);
        assert_eq!(m.tmst, 3_512_348_611);
        assert_eq!((m.channel, m.rssi, m.snr), (2, -35, Some(5.1)));
        assert_eq!(m.crc, CrcStatus::Ok);
        assert_eq!(
            m.modulation,
            Modulation::Lora {
                sf: 7,
                bw_hz: 125_000,
                cr: Some(CodeRate::Cr46)
            }
        );
        ack.stored();
        assert_eq!(
            f.recv_fwd().await,
            vec![version, (token >> 8) as u8, token as u8, 0x01]
        );
    }
    let c = f.handle.counters().snapshot();
    assert_eq!(
        (c.push_data, c.rxpk_received, c.frames, c.push_ack_sent),
        (2, 2, 2, 2)
    );
}

#[tokio::test]
async fn push_ack_waits_for_storage_and_is_withheld_on_rejection() {
    let mut f = start(Duration::from_secs(1)).await;
    f.fwd
        .send(&push_data(2, 7, &rxpk(1, "AA==")))
        .await
        .unwrap();
    let (_, _, ack) = f.uplinks().await;
    f.nothing_for_fwd(Duration::from_millis(100)).await;
    ack.stored();
    assert_eq!(f.recv_fwd().await, vec![2, 0, 7, 1]);

    f.fwd
        .send(&push_data(2, 8, &rxpk(2, "AA==")))
        .await
        .unwrap();
    let (_, _, ack) = f.uplinks().await;
    ack.rejected();
    f.nothing_for_fwd(Duration::from_millis(200)).await;
    // A dropped ack is a rejection too.
    f.fwd
        .send(&push_data(2, 9, &rxpk(3, "AA==")))
        .await
        .unwrap();
    drop(f.uplinks().await);
    f.nothing_for_fwd(Duration::from_millis(200)).await;
    let c = f.handle.counters().snapshot();
    assert_eq!((c.push_ack_sent, c.push_ack_withheld), (1, 2));
}

#[tokio::test]
async fn unresolved_acks_do_not_block_reception() {
    let mut f = start(Duration::from_secs(1)).await;
    let mut acks = Vec::new();
    for token in 1..=3u16 {
        f.fwd
            .send(&push_data(2, token, &rxpk(u32::from(token), "AA==")))
            .await
            .unwrap();
        let (_, frames, ack) = f.uplinks().await;
        assert_eq!(frames[0].meta.tmst, u32::from(token));
        acks.push(ack);
    }
    // PULL_DATA is still answered while three acks are outstanding.
    f.fwd.send(&pull_data(2, 0x0909)).await.unwrap();
    assert_eq!(f.recv_fwd().await, vec![2, 9, 9, 4]);
    // Acks resolve in any order; each PUSH_ACK follows its own resolution.
    while let Some(ack) = acks.pop() {
        let token = acks.len() as u8 + 1;
        ack.stored();
        assert_eq!(f.recv_fwd().await, vec![2, 0, token, 1]);
    }
}

#[tokio::test]
async fn stat_only_push_data_is_acked_at_once() {
    let mut f = start(Duration::from_secs(1)).await;
    let json = r#"{"stat":{"time":"2014-01-12 08:59:28 GMT","rxnb":5,"rxok":4,"rxfw":4,"ackr":100.0,"dwnb":1,"txnb":1,"temp":30.5}}"#;
    f.fwd.send(&push_data(2, 0x1234, json)).await.unwrap();
    assert_eq!(f.recv_fwd().await, vec![2, 0x12, 0x34, 1]);
    assert!(matches!(f.event().await, RadioEvent::Announce(e) if e == EUI));
    match f.event().await {
        RadioEvent::Stats { gateway, stats } => {
            assert_eq!(gateway, Some(EUI));
            assert_eq!(
                (stats.rx_received, stats.rx_ok, stats.tx_emitted),
                (5, 4, 1)
            );
            assert_eq!(stats.temperature, Some(30.5));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn pull_data_is_acked_and_announced() {
    let mut f = start(Duration::from_secs(1)).await;
    f.fwd.send(&pull_data(2, 0xabcd)).await.unwrap();
    assert_eq!(f.recv_fwd().await, vec![2, 0xab, 0xcd, 0x04]);
    assert!(matches!(f.event().await, RadioEvent::Announce(e) if e == EUI));
    // The same EUI again is not announced again.
    f.fwd.send(&pull_data(2, 0xabce)).await.unwrap();
    assert_eq!(f.recv_fwd().await, vec![2, 0xab, 0xce, 0x04]);
    assert!(timeout(Duration::from_millis(100), f.radio.events.recv())
        .await
        .is_err());
    assert_eq!(f.handle.counters().snapshot().pull_ack_sent, 2);
}

fn request() -> TxRequest {
    TxRequest {
        freq_hz: 869_525_000,
        power_dbm: 27,
        modulation: Modulation::Lora {
            sf: 9,
            bw_hz: 125_000,
            cr: Some(CodeRate::Cr45),
        },
        invert_iq: true,
        preamble: None,
        crc: false,
        timing: TxTiming::AtCounter(1_000_000),
        rf_chain: 0,
        board: 0,
        antenna: 0,
        payload: vec![0x60, 1, 2, 3],
    }
}

#[tokio::test]
async fn transmit_v2_waits_for_tx_ack() {
    let f = start(Duration::from_millis(300)).await;
    // No route yet.
    let status = f.radio.control.transmit(request(), WAIT).await;
    assert_eq!(status, Ok(TxStatus::InternalError));
    assert_eq!(f.handle.counters().snapshot().tx_no_route, 1);

    f.fwd.send(&pull_data(2, 1)).await.unwrap();
    assert_eq!(f.recv_fwd().await, vec![2, 0, 1, 4]);
    for (reply, expect) in [
        (
            Some(&br#"{"txpk_ack":{"error":"TOO_LATE"}}"#[..]),
            TxStatus::TooLate,
        ),
        (Some(&b""[..]), TxStatus::Ok),
        (
            Some(&br#"{"txpk_ack":{"warn":"TX_POWER","value":14}}"#[..]),
            TxStatus::Ok,
        ),
        (
            Some(&br#"{"txpk_ack":{"error":"COLLISION_BEACON"}}"#[..]),
            TxStatus::CollisionBeacon,
        ),
        (None, TxStatus::InternalError),
    ] {
        let control = f.radio.control.clone();
        let pending = tokio::spawn(async move { control.transmit(request(), WAIT).await });
        let resp = f.recv_fwd().await;
        assert_eq!((resp[0], resp[3]), (2, 0x03));
        let txpk: serde_json::Value = serde_json::from_slice(&resp[4..]).unwrap();
        let t = &txpk["txpk"];
        assert_eq!(t["tmst"], 1_000_000);
        assert_eq!(t["freq"].as_f64(), Some(869.525));
        assert_eq!(t["powe"], 27);
        assert_eq!(t["datr"], "SF9BW125");
        assert_eq!(t["codr"], "4/5");
        assert_eq!(t["ipol"], true);
        assert_eq!(t["ncrc"], true);
        assert_eq!(t["size"], 4);
        assert_eq!(t["data"], "YAECAw==");
        if let Some(body) = reply {
            // A TX_ACK with a wrong token is ignored; the right one resolves.
            let wrong = [2, resp[1] ^ 0xff, resp[2], 0x05];
            f.fwd.send(&wrong).await.unwrap();
            let mut ack = vec![2, resp[1], resp[2], 0x05];
            ack.extend_from_slice(&EUI.0);
            ack.extend_from_slice(body);
            f.fwd.send(&ack).await.unwrap();
        }
        let status = timeout(WAIT, pending).await.unwrap().unwrap();
        assert_eq!(status, Ok(expect), "{reply:?}");
    }
    let c = f.handle.counters().snapshot();
    assert_eq!(
        (c.pull_resp_sent, c.tx_ack_timeouts, c.tx_ack_unmatched),
        (5, 1, 4)
    );
}

#[tokio::test]
async fn transmit_v1_goes_to_latest_pull_data_address() {
    let f = start(Duration::from_secs(1)).await;
    // The gateway's downstream socket is a different one from its upstream socket.
    let down = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    down.send_to(&pull_data(1, 5), f.handle.local_addr())
        .await
        .unwrap();
    let mut buf = [0u8; 2048];
    let n = timeout(WAIT, down.recv(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], &[1, 0, 5, 4]);
    let mut req = request();
    req.timing = TxTiming::Immediate;
    let status = f.radio.control.transmit(req, WAIT).await;
    assert_eq!(status, Ok(TxStatus::Ok));
    let n = timeout(WAIT, down.recv(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..4], &[1, 0, 0, 3]);
    let txpk: serde_json::Value = serde_json::from_slice(&buf[4..n]).unwrap();
    assert_eq!(txpk["txpk"]["imme"], true);
    f.nothing_for_fwd(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn malformed_datagrams_do_not_disturb_valid_traffic() {
    let mut f = start(Duration::from_secs(1)).await;
    let bad: Vec<Vec<u8>> = vec![
        vec![9, 0, 0, 0],                // version
        vec![2, 0],                      // too short
        vec![2, 0, 0, 0x42],             // identifier
        push_data(2, 1, "{\"rxpk\":[{"), // JSON
        vec![2, 0, 0, 0x01, 0xff],       // PUSH_ACK with a body
        vec![2, 0, 0, 0x04],             // PULL_ACK from a gateway
    ];
    let mut received = 0usize;
    for i in 0..100u16 {
        let junk = &bad[i as usize % bad.len()];
        f.fwd.send(junk).await.unwrap();
        // Every fifth valid datagram also carries a bad rxpk entry.
        let json = if i % 5 == 0 {
            format!(
                r#"{{"rxpk":[{{"tmst":1,"freq":5000.0,"stat":1,"datr":"SF7BW125","rssi":0,"data":""}},{}]}}"#,
                rxpk_entry(u32::from(i), "AQ==")
            )
        } else {
            rxpk(u32::from(i), "AQ==")
        };
        f.fwd.send(&push_data(2, i, &json)).await.unwrap();
        let (_, frames, ack) = f.uplinks().await;
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].meta.tmst, u32::from(i));
        received += frames.len();
        ack.stored();
        let token = i.to_be_bytes();
        assert_eq!(f.recv_fwd().await, vec![2, token[0], token[1], 1]);
    }
    assert_eq!(received, 100);
    let c = f.handle.counters().snapshot();
    assert_eq!(c.datagrams, 200);
    assert_eq!(c.frames, 100);
    assert_eq!(c.rxpk_received, 100);
    assert_eq!(c.rxpk_rejected, 20);
    assert_eq!(c.malformed_version, 17);
    assert_eq!(c.malformed_short, 17);
    assert_eq!(c.malformed_identifier, 17);
    assert_eq!(c.malformed_json, 17);
    assert_eq!(c.malformed_other, 16);
    assert_eq!(c.unexpected_packets, 16);
    assert_eq!(c.push_ack_sent, 100);
}

#[tokio::test]
async fn shutdown_sends_pending_push_acks_then_ends() {
    let mut f = start(Duration::from_secs(1)).await;
    f.fwd
        .send(&push_data(2, 0x0a0b, &rxpk(1, "AA==")))
        .await
        .unwrap();
    let (_, _, ack) = f.uplinks().await;
    f.shutdown.cancel();
    ack.stored();
    assert_eq!(f.recv_fwd().await, vec![2, 0x0a, 0x0b, 1]);
    timeout(WAIT, f.handle.join()).await.unwrap();
    // The task is gone: events end and transmissions report a stopped backend.
    assert!(timeout(WAIT, f.radio.events.recv())
        .await
        .unwrap()
        .is_none());
    assert!(f.radio.control.transmit(request(), WAIT).await.is_err());
}

#[tokio::test]
async fn bind_failure_names_the_address() {
    let taken = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let config = SemtechUdpConfig {
        bind: addr,
        ..SemtechUdpConfig::default()
    };
    match spawn(config, CancellationToken::new()).await {
        Err(e @ GwmpError::Bind { .. }) => assert!(e.to_string().contains(&addr.to_string())),
        other => panic!("{:?}", other.map(|_| ())),
    }
}
