//! A simulated packet forwarder: speaks Semtech UDP to gatewayd like a concentrator would
//! (PULL_DATA keep-alives, PUSH_DATA with one rxpk per uplink) for a set of virtual devices
//! sending unconfirmed data uplinks on the EU868 default channels.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

const CHANNELS: [&str; 8] = [
    "868.100000",
    "868.300000",
    "868.500000",
    "867.100000",
    "867.300000",
    "867.500000",
    "867.700000",
    "867.900000",
];

/// Run until `shutdown`; returns the number of uplinks sent.
pub async fn run(
    target: SocketAddr,
    gateway: [u8; 8],
    devices: u32,
    rate: f64,
    shutdown: CancellationToken,
) -> u64 {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0").await else {
        return 0;
    };
    if sock.connect(target).await.is_err() {
        return 0;
    }
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let devs: Vec<(u32, u16)> = (0..devices.max(1))
        .map(|i| (0x2601_1000 + i, 0u16))
        .collect();
    let mut devs = devs;
    let period = Duration::from_secs_f64(1.0 / rate.clamp(0.01, 10_000.0));
    let mut keepalive = tokio::time::interval(Duration::from_secs(5));
    let mut tick = tokio::time::interval(period);
    let mut sent = 0u64;
    let mut token = 0u16;
    let started = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return sent,
            _ = keepalive.tick() => {
                let mut d = vec![2, 0, 0, 2];
                d.extend_from_slice(&gateway);
                let _ = sock.send(&d).await;
            }
            _ = tick.tick() => {
                let i = rng.random_range(0..devs.len());
                let (addr, fcnt) = devs[i];
                devs[i].1 = fcnt.wrapping_add(1);
                let mut phy = vec![0x40];
                phy.extend_from_slice(&addr.to_le_bytes());
                phy.push(0x80);
                phy.extend_from_slice(&fcnt.to_le_bytes());
                phy.push(1);
                let len = rng.random_range(4..20);
                phy.extend((0..len).map(|_| rng.random::<u8>()));
                phy.extend_from_slice(&rng.random::<[u8; 4]>());
                let sf = [7, 7, 7, 8, 9, 10, 11, 12][rng.random_range(0..8)];
                let ch = rng.random_range(0..8usize);
                let rssi = rng.random_range(-120..-40);
                let snr = rng.random_range(-150..100) as f64 / 10.0;
                let tmst = started.elapsed().as_micros() as u32;
                let json = format!(
                    "{{\"rxpk\":[{{\"tmst\":{tmst},\"chan\":{ch},\"rfch\":0,\"freq\":{},\"stat\":1,\"modu\":\"LORA\",\
                     \"datr\":\"SF{sf}BW125\",\"codr\":\"4/5\",\"rssi\":{rssi},\"lsnr\":{snr:.1},\"size\":{},\"data\":\"{}\"}}]}}",
                    CHANNELS[ch],
                    phy.len(),
                    base64::engine::general_purpose::STANDARD.encode(&phy)
                );
                token = token.wrapping_add(1);
                let mut d = vec![2];
                d.extend_from_slice(&token.to_be_bytes());
                d.push(0);
                d.extend_from_slice(&gateway);
                d.extend_from_slice(json.as_bytes());
                if sock.send(&d).await.is_ok() {
                    sent += 1;
                }
            }
        }
    }
}
