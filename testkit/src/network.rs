//! The network-server side of the downlink tests: a broker, the real `gatewayd` binary, a GWMP
//! packet forwarder whose PULL_DATA set the downlink route, the network server's subscriber
//! (all of the gateway's topics) and publisher, and the `gw.DownlinkFrame`s it sends.

use std::time::{Duration, Instant};

use chirpstack_api::gw;
use chirpstack_api::pbjson_types;
use chirpstack_api::prost::Message as _;
use serde_json::Value;

use crate::daemon::*;

/// How long a test waits for anything.
pub const WAIT: Duration = Duration::from_secs(20);
/// The topic downlinks are published on.
pub const DOWN: &str = "eu868/gateway/0102030405060708/command/down";

/// A running setup: broker, daemon, a forwarder whose PULL_DATA set the downlink route, the
/// network server's subscriber (all of the gateway's topics) and publisher.
pub struct Setup {
    pub daemon: Daemon,
    pub pf: Forwarder,
    pub sub: Subscriber,
    pub ns: Publisher,
    pub json: bool,
    _broker: Mosquitto,
}

/// A setup publishing protobuf, stats every hour.
pub fn setup() -> Setup {
    setup_with(false)
}

/// `json`: the daemon runs with `[mqtt] json = true`.
pub fn setup_with(json: bool) -> Setup {
    setup_gateway(json, "")
}

/// `json` as in [`setup_with`]; `gateway`: extra `[gateway]` keys.
pub fn setup_gateway(json: bool, gateway: &str) -> Setup {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/0102030405060708/#");
    let daemon = if json {
        let mqtt = format!(
            "server = \"tcp://127.0.0.1:{}\"\njson = true\n",
            broker.port()
        );
        Daemon::start_env(broker.port(), gateway, &format!("#MQTT#{mqtt}"), &[])
    } else {
        Daemon::start_with(broker.port(), gateway, "")
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
    pub fn uplink(&mut self, n: u32, tmst: u32) -> Vec<u8> {
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
    pub fn pull_resp(&self, wait: Duration) -> Option<([u8; 2], Value)> {
        self.pf.pull_resp(wait)
    }

    /// Answer a PULL_RESP with a v2 TX_ACK; `error` None = success (empty body).
    pub fn tx_ack(&self, token: [u8; 2], error: Option<&str>) {
        let mut d = vec![2, token[0], token[1], 5];
        d.extend_from_slice(&GATEWAY);
        if let Some(e) = error {
            d.extend_from_slice(format!("{{\"txpk_ack\":{{\"error\":\"{e}\"}}}}").as_bytes());
        }
        self.pf.send_raw(&d);
    }

    /// The acks of downlink `id` published so far.
    pub fn acks(&self, id: u32) -> Vec<Vec<gw::TxAckStatus>> {
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
    pub fn wait_ack(&self, id: u32) -> Vec<gw::TxAckStatus> {
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

/// LoRa BW 125 kHz, coding rate 4/5, inverted IQ (a downlink).
pub fn lora(sf: u32) -> Option<gw::Modulation> {
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

/// One downlink item: a 12-byte payload at `freq` with [`lora`]`(sf)`, `power` dBm EIRP.
pub fn item(
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

/// Class A timing: `secs` after the uplink.
pub fn delay(secs: i64) -> gw::timing::Parameters {
    gw::timing::Parameters::Delay(gw::DelayTimingInfo {
        delay: Some(pbjson_types::Duration {
            seconds: secs,
            nanos: 0,
        }),
    })
}

/// RX1 (1 s, 868.1 MHz SF7, 20 dBm EIRP asked) and RX2 (2 s, 869.525 MHz SF12, 27 dBm).
pub fn class_a(id: u32, ctx: &[u8]) -> Vec<u8> {
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
