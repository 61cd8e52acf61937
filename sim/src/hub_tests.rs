//! The air task and the UDP hub: in-process delivery, cross-socket delivery, bad datagrams.

use std::time::Duration;

use super::*;
use crate::air::Listen;
use crate::model::SimPosition;
use drivers::radio::Modulation;

fn uplink(payload: Vec<u8>) -> Transmission {
    Transmission {
        freq_hz: 868_100_000,
        modulation: Modulation::Lora {
            sf: 7,
            bw_hz: 125_000,
            cr: None,
        },
        power_dbm: 14.0,
        invert_iq: false,
        preamble: 8,
        crc: true,
        payload,
    }
}

fn node(x: f64, listen: Listen) -> NodeConfig {
    NodeConfig {
        position: SimPosition::xy(x, 0.0),
        antenna_gain_dbi: 0.0,
        listen,
    }
}

async fn recv(rx: &mut mpsc::Receiver<Delivery>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a delivery within 5 s")
        .expect("channel open")
}

#[tokio::test]
async fn in_process_air_delivers_at_frame_end() {
    let stop = CancellationToken::new();
    let air = spawn_air(AirModel::default(), 1, stop.clone());
    let (htx, mut hrx) = mpsc::channel(8);
    let (dtx, mut drx) = mpsc::channel(8);
    let hs = air.attach(node(0.0, Listen::hotspot()), htx).await.unwrap();
    let dev = air
        .attach(node(200.0, Listen::device()), dtx)
        .await
        .unwrap();
    let t = Instant::now();
    air.transmit(dev, uplink(vec![1, 2, 3])).await.unwrap();
    let d = recv(&mut hrx).await;
    assert!(t.elapsed() >= Duration::from_micros(uplink(vec![1, 2, 3]).airtime_us()));
    assert_eq!((d.node, d.frame.payload.clone()), (hs, vec![1, 2, 3]));
    assert!(d.rssi_dbm < 0.0 && d.snr_db > 0.0);
    assert!(drx.try_recv().is_err(), "a device does not hear uplinks");
    let s = air.stats().await.unwrap();
    assert_eq!((s.transmissions, s.delivered), (1, 1));
    assert!(matches!(
        air.transmit(NodeId(77), uplink(vec![])).await,
        Err(SimError::Air(_))
    ));
    stop.cancel();
}

#[tokio::test]
async fn hub_shares_the_air_between_sockets_and_rejects_bad_datagrams() {
    let stop = CancellationToken::new();
    let air = spawn_air(AirModel::default(), 1, stop.clone());
    let addr = serve_hub("127.0.0.1:0".parse().unwrap(), air.clone(), stop.clone())
        .await
        .unwrap();
    let a = connect_hub(addr, stop.clone()).await.unwrap();
    let b = connect_hub(addr, stop.clone()).await.unwrap();
    let (htx, mut hrx) = mpsc::channel(8);
    let (dtx, _drx) = mpsc::channel(8);
    let hs = a.attach(node(0.0, Listen::hotspot()), htx).await.unwrap();
    let dev = b.attach(node(300.0, Listen::device()), dtx).await.unwrap();
    assert_ne!(hs, dev);

    // A raw socket sends garbage and a transmit for a node it does not own.
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 512];
    for bad in [&b"hello"[..], &b"GWSA\x01\x03\x00"[..]] {
        raw.send_to(bad, addr).await.unwrap();
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), raw.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let Ok(Message::Error { message, .. }) = wire::decode(&buf[..n]) else {
            panic!("expected an error answer");
        };
        assert!(!message.is_empty());
    }
    let steal = wire::encode(&Message::Transmit {
        node: dev,
        frame: uplink(vec![9]),
    });
    raw.send_to(&steal, addr).await.unwrap();
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), raw.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(wire::decode(&buf[..n]), Ok(Message::Error { .. })));

    // Traffic still flows: b's device reaches a's hotspot through the hub.
    b.transmit(dev, uplink(vec![0x40, 7])).await.unwrap();
    let d = recv(&mut hrx).await;
    assert_eq!((d.node, d.frame.payload), (hs, vec![0x40, 7]));
    let s = air.stats().await.unwrap();
    assert_eq!(
        s.transmissions, 1,
        "the stolen transmit never reached the air"
    );
    assert!(matches!(b.stats().await, Err(SimError::Unsupported(_))));
    stop.cancel();
}

#[tokio::test]
async fn observer_sees_attaches_transmissions_and_every_outcome() {
    let stop = CancellationToken::new();
    let air = spawn_air(
        AirModel {
            shadowing_sigma_db: 0.0,
            ..AirModel::default()
        },
        1,
        stop.clone(),
    );
    let mut events = air.observe().await.unwrap();
    let (htx, mut hrx) = mpsc::channel(8);
    let (dtx, _drx) = mpsc::channel(8);
    let (ftx, _frx) = mpsc::channel(8);
    let hs = air.attach(node(0.0, Listen::hotspot()), htx).await.unwrap();
    let near = air
        .attach(node(100.0, Listen::device()), dtx)
        .await
        .unwrap();
    // 100 km away: below SF7 sensitivity at the hotspot.
    let far = air
        .attach(node(100_000.0, Listen::device()), ftx)
        .await
        .unwrap();
    air.transmit(near, uplink(vec![1])).await.unwrap();
    air.transmit(far, uplink(vec![2])).await.unwrap();
    recv(&mut hrx).await;
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an event within 5 s")
            .expect("observer open");
        seen.push(ev);
    }
    let attached: Vec<NodeId> = seen
        .iter()
        .filter_map(|e| match e {
            AirEvent::Attached { node, .. } => Some(*node),
            _ => None,
        })
        .collect();
    assert_eq!(attached, vec![hs, near, far]);
    let sent: Vec<(NodeId, Vec<u8>)> = seen
        .iter()
        .filter_map(|e| match e {
            AirEvent::Transmitted {
                node,
                start,
                end,
                frame,
                ..
            } => {
                assert_eq!(end - start, frame.airtime_us());
                Some((*node, frame.payload.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(sent, vec![(near, vec![1]), (far, vec![2])]);
    let received: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            AirEvent::Received(r) => Some((r.to, r.from, r.frame.payload.clone(), r.outcome)),
            _ => None,
        })
        .collect();
    assert_eq!(
        received,
        vec![(hs, near, vec![1], Outcome::Delivered)],
        "the far frame is below sensitivity: no reception"
    );
    assert_eq!(air.stats().await.unwrap().below_sensitivity, 1);
    stop.cancel();
}

#[tokio::test]
async fn observing_is_refused_over_a_hub_connection() {
    let stop = CancellationToken::new();
    let air = spawn_air(AirModel::default(), 1, stop.clone());
    let addr = serve_hub("127.0.0.1:0".parse().unwrap(), air, stop.clone())
        .await
        .unwrap();
    let remote = connect_hub(addr, stop.clone()).await.unwrap();
    assert!(matches!(
        remote.observe().await,
        Err(SimError::Unsupported(_))
    ));
    stop.cancel();
}
