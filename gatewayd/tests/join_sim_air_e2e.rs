//! End to end, an OTAA join on the simulated air: a simulated LoRaWAN 1.0 device
//! (`sim` fleet of one) and a gatewayd hotspot (`run_with_radio` on the simulated
//! radio backend) share an in-process air; the test plays the network server on a real
//! Mosquitto. The device's join-request arrives on `event/up`; the test checks its MIC with
//! the device's AppKey, answers with a join-accept for RX1 (5 s after the uplink, RX2 at 6 s
//! as the alternative) on `command/down`; the device must decode it in RX1 and join with the
//! DevAddr the test chose; `event/ack` says OK; and the device's first data uplink from that
//! DevAddr, signed with the session keys both sides derived, arrives on `event/up`. When
//! the command comes too late for RX1, the ack says TOO_LATE for it and the device joins in
//! RX2 (6 s).
//!
//! The air runs on the real (tokio) clock, so the test takes about as long as the
//! protocol's windows (≲ 15 s); every wait is bounded and the seed fixes the device's keys,
//! position, first transmission time and the air's randomness.

use testkit as support;

use std::path::Path;
use std::time::Duration;

use chirpstack_api::gw;
use chirpstack_api::pbjson_types;
use chirpstack_api::prost::Message as _;
use drivers::radio::{CodeRate, Eui64, Modulation};
use gatewayd::config::Config;
use gatewayd::daemon::run_with_radio;
use sim::air::{NodeId, SimTime, Transmission};
use sim::crypto::{self, CryptoError};
use sim::fleet::{device_keys, Fleet, FleetActivation, FleetConfig};
use sim::fleet_task::run_fleet;
use sim::hub::{spawn_air, AirEvent};
use sim::model::{AirModel, SimPosition};
use sim::radio::{SimHub, SimRadioConfig};
use support::daemon::GATEWAY_ID;
use support::mosquitto::{Mosquitto, Subscriber};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Longest wait for anything to happen (the device's first join-request comes within its
/// 3 s interval; the join takes 5 s more).
const WAIT: Duration = Duration::from_secs(20);
const SEED: u64 = 7;
/// The DevAddr the network server (the test) assigns.
const DEV_ADDR: u32 = 0x2611_abcd;
const NET_ID: u32 = 0x00_0013;
const JOIN_NONCE: u32 = 0x00_4242;
/// The device's channel (one, so RX1 is predictable) and data rate.
const FREQ_HZ: u64 = 868_100_000;
/// How far from "5 s after the join-request ended" the join-accept may start on the air.
/// The device opens its window ±50 ms around that instant (`window_tolerance_us`); the
/// hotspot must do better than that: ±20 ms. A correctness bound, not a speed benchmark.
const WINDOW_TOLERANCE_US: u64 = 20_000;

fn config_text(dir: &Path, mqtt_port: u16) -> String {
    // The daemon is handed its radio; `[radio.simulated]` is only what the config would
    // say for a hub-attached hotspot and is not used to connect.
    format!(
        "[gateway]\nid = \"{GATEWAY_ID}\"\nregion = \"EU868\"\nstate_dir = {state:?}\n\
         stats_interval_secs = 3600\n\
         [radio]\nkind = \"simulated\"\n\
         [radio.simulated]\nhub = \"127.0.0.1:9\"\nx_m = 0.0\ny_m = 0.0\n\
         [mqtt]\nserver = \"tcp://127.0.0.1:{mqtt_port}\"\ntopic_prefix = \"eu868\"\n\
         reconnect_min_ms = 100\nreconnect_max_ms = 1000\n\
         [service]\nallow_root = true\nstatus_socket = {sock:?}\nmetrics_bind = \"\"\n",
        state = dir.join("state").display().to_string(),
        sock = dir.join("status.sock").display().to_string(),
    )
}

/// What the network server has received so far on `suffix`.
fn on(ns: &Subscriber, suffix: &str) -> Vec<Vec<u8>> {
    let topic = format!("eu868/gateway/{GATEWAY_ID}/{suffix}");
    ns.received()
        .into_iter()
        .filter(|r| r.topic == topic)
        .map(|r| r.payload)
        .collect()
}

fn uplinks(ns: &Subscriber) -> Vec<gw::UplinkFrame> {
    on(ns, "event/up")
        .iter()
        .map(|p| gw::UplinkFrame::decode(p.as_slice()).expect("gw.UplinkFrame"))
        .collect()
}

/// Wait (bounded) until `find` returns something.
async fn wait_for<T>(ns: &Subscriber, what: &str, find: impl Fn(&Subscriber) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(t) = find(ns) {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what} within {WAIT:?}"
        );
        let _ = ns.wait_for(usize::MAX, Duration::from_millis(50)).await;
    }
}

fn item(
    phy: &[u8],
    freq_hz: u32,
    sf: u32,
    eirp_dbm: i32,
    delay_s: i64,
    context: &[u8],
) -> gw::DownlinkFrameItem {
    gw::DownlinkFrameItem {
        phy_payload: phy.to_vec(),
        tx_info: Some(gw::DownlinkTxInfo {
            frequency: freq_hz,
            power: eirp_dbm,
            modulation: Some(gw::Modulation {
                parameters: Some(gw::modulation::Parameters::Lora(gw::LoraModulationInfo {
                    bandwidth: 125_000,
                    spreading_factor: sf,
                    code_rate: gw::CodeRate::Cr45.into(),
                    polarization_inversion: true,
                    no_crc: true,
                    ..Default::default()
                })),
            }),
            timing: Some(gw::Timing {
                parameters: Some(gw::timing::Parameters::Delay(gw::DelayTimingInfo {
                    delay: Some(pbjson_types::Duration {
                        seconds: delay_s,
                        nanos: 0,
                    }),
                })),
            }),
            context: context.to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Frames that went on the air, with their sender and air times, seen so far.
fn transmitted(seen: &[AirEvent]) -> Vec<(NodeId, SimTime, SimTime, Transmission)> {
    seen.iter()
        .filter_map(|e| match e {
            AirEvent::Transmitted {
                node,
                start,
                end,
                frame,
                ..
            } => Some((*node, *start, *end, frame.clone())),
            _ => None,
        })
        .collect()
}

/// Which receive window the join-accept is meant for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum BeaconWindow {
    /// The command arrives in time for RX1 (5 s).
    Rx1,
    /// The command arrives after RX1's instant: RX1 is TOO_LATE, RX2 (6 s) is used.
    Rx2,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_device_joins_in_rx1_through_the_hotspot_and_sends_with_its_new_devaddr() {
    join_through_the_hotspot(BeaconWindow::Rx1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_accept_too_late_for_rx1_goes_out_in_rx2_and_the_device_joins_there() {
    join_through_the_hotspot(BeaconWindow::Rx2).await;
}

async fn join_through_the_hotspot(window: BeaconWindow) {
    let broker = Mosquitto::start();
    let ns = Subscriber::connect(broker.port(), &format!("eu868/gateway/{GATEWAY_ID}/#")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml(
        &config_text(dir.path(), broker.port()),
        &dir.path().join("gatewayd.toml"),
    )
    .unwrap_or_else(|e| panic!("config: {e}"));

    // The air, observed; the hotspot's radio on it; the daemon on that radio.
    let air_stop = CancellationToken::new();
    let air = spawn_air(AirModel::default(), SEED, air_stop.clone());
    let mut events: mpsc::UnboundedReceiver<AirEvent> = air.observe().await.expect("observe");
    let token = CancellationToken::new();
    let gateway: Eui64 = GATEWAY_ID.parse().unwrap();
    let radio = sim::radio::spawn(
        SimRadioConfig {
            hub: SimHub::InProcess(air.clone()),
            position: SimPosition::xy(0.0, 0.0),
            antenna_gain_dbi: 0.0,
            gateway: Some(gateway),
            stats_interval: Duration::from_secs(3600),
        },
        token.clone(),
    )
    .await
    .expect("simulated radio");
    let mut daemon = tokio::spawn(run_with_radio(config, radio, token.clone()));
    wait_for(&ns, "ONLINE", |ns| {
        on(ns, "state/conn")
            .iter()
            .any(|p| {
                gw::ConnState::decode(p.as_slice())
                    .is_ok_and(|c| c.state() == gw::conn_state::State::Online)
            })
            .then_some(())
    })
    .await;

    // One OTAA device 300 m away, SF7 on one channel; it keeps joining until answered.
    let fleet_cfg = FleetConfig {
        devices: 1,
        seed: SEED,
        interval_us: 3_000_000,
        sf_mix: vec![7],
        channels_hz: vec![FREQ_HZ],
        center: SimPosition::xy(300.0, 0.0),
        radius_m: 0.0,
        activation: FleetActivation::Otaa {
            abp_fallback_after: None,
        },
        ..FleetConfig::default()
    };
    let keys = device_keys(SEED, 0);
    let fleet_stop = CancellationToken::new();
    let counters = run_fleet(
        Fleet::new(&fleet_cfg, 0).expect("fleet"),
        air.clone(),
        fleet_stop.clone(),
    )
    .await
    .expect("fleet on the air");

    // The network server receives the join-request and checks it.
    let join_up = wait_for(&ns, "join-request on event/up", |ns| {
        uplinks(ns)
            .into_iter()
            .find(|u| u.phy_payload.first() == Some(&0x00))
    })
    .await;
    let jr = crypto::open_join_request(&join_up.phy_payload, Some(&keys.app_key))
        .unwrap_or_else(|e| panic!("join-request MIC with the device's AppKey: {e}"));
    assert_eq!(jr.dev_eui, keys.dev_eui);
    assert_eq!(jr.join_eui, fleet_cfg.join_eui);
    let mut wrong_key = keys.app_key;
    wrong_key[0] ^= 1;
    assert_eq!(
        crypto::open_join_request(&join_up.phy_payload, Some(&wrong_key)).err(),
        Some(CryptoError::BadMic("join-request")),
        "the MIC check is real"
    );
    let tx_info = join_up.tx_info.as_ref().expect("tx_info");
    assert_eq!(u64::from(tx_info.frequency), FREQ_HZ);
    let sf = match tx_info
        .modulation
        .as_ref()
        .and_then(|m| m.parameters.as_ref())
    {
        Some(gw::modulation::Parameters::Lora(l)) => {
            assert_eq!(l.bandwidth, 125_000);
            l.spreading_factor
        }
        other => panic!("not LoRa: {other:?}"),
    };
    assert_eq!(sf, 7);
    let context = join_up.rx_info.as_ref().expect("rx_info").context.clone();
    if window == BeaconWindow::Rx2 {
        // The join-request ended before it was published: 5.2 s from now is past RX1.
        tokio::time::sleep(Duration::from_millis(5200)).await;
    }

    // The join-accept: RX1 (the uplink's channel and DR, 5 s) then RX2 (869.525 SF12, 6 s),
    // as ChirpStack sends it. EIRP 16 dBm (EU868's 868.1 MHz limit with a 0 dBi antenna).
    let accept = crypto::join_accept(&keys.app_key, JOIN_NONCE, NET_ID, DEV_ADDR, 0x00, 1);
    let down = gw::DownlinkFrame {
        downlink_id: 77,
        gateway_id: GATEWAY_ID.into(),
        items: vec![
            item(&accept, tx_info.frequency, sf, 16, 5, &context),
            item(&accept, 869_525_000, 12, 27, 6, &context),
        ],
        ..Default::default()
    };
    ns.publish(
        &format!("eu868/gateway/{GATEWAY_ID}/command/down"),
        down.encode_to_vec(),
        false,
    )
    .await;
    let ack = wait_for(&ns, "ack of downlink 77 on event/ack", |ns| {
        on(ns, "event/ack")
            .iter()
            .map(|p| gw::DownlinkTxAck::decode(p.as_slice()).expect("gw.DownlinkTxAck"))
            .find(|a| a.downlink_id == 77)
    })
    .await;
    let statuses: Vec<_> = ack.items.iter().map(|i| i.status()).collect();
    let expected = match window {
        BeaconWindow::Rx1 => [gw::TxAckStatus::Ok, gw::TxAckStatus::Ignored],
        BeaconWindow::Rx2 => [gw::TxAckStatus::TooLate, gw::TxAckStatus::Ok],
    };
    assert_eq!(statuses, expected, "{window:?}");

    // The device decodes it in its window: the fleet counts one join, nothing rejected.
    // (The watch's read guard is dropped at once: holding it would block the fleet task.)
    let mut c = counters.clone();
    let joined = matches!(
        tokio::time::timeout(WAIT, c.wait_for(|c| c.joins >= 1)).await,
        Ok(Ok(_))
    );
    assert!(
        joined,
        "the device did not join within {WAIT:?}: {:?}",
        *counters.borrow()
    );
    // The session both sides derive from the join-accept (the device's DevNonce).
    let session = crypto::open_join_accept(&accept, &keys.app_key, jr.dev_nonce)
        .expect("the network server's own join-accept opens");
    assert_eq!(session.session.dev_addr, DEV_ADDR);
    assert_eq!(session.rx_delay, 1);

    // The device's first data uplink comes from the DevAddr the test chose, with a MIC
    // made with the NwkSKey derived from this join (FCnt 0: a fresh session).
    let data_up = wait_for(&ns, "data uplink from the new DevAddr", |ns| {
        uplinks(ns)
            .into_iter()
            .find(|u| crypto::data_dev_addr(&u.phy_payload) == Some(DEV_ADDR))
    })
    .await;
    let frame = crypto::open_data_frame(&data_up.phy_payload, &session.session, 0)
        .unwrap_or_else(|e| panic!("first data uplink with the joined session: {e}"));
    assert!(frame.uplink);
    assert_eq!(frame.fcnt, 0);
    let after = counters.borrow().clone();
    assert_eq!(after.joins, 1, "{after:?}");
    assert_eq!(after.rejected, 0, "{after:?}");
    assert!(after.uplinks >= 1, "{after:?}");

    // The air's record: the join-accept left the hotspot once, exactly as asked, in the
    // window it was meant for.
    fleet_stop.cancel();
    let mut seen = Vec::new();
    while let Ok(ev) = events.try_recv() {
        seen.push(ev);
    }
    let sent = transmitted(&seen);
    let (device, _, jr_end, _) = sent
        .iter()
        .find(|(_, _, _, f)| f.payload == join_up.phy_payload)
        .cloned()
        .expect("the join-request on the air");
    let accepts: Vec<_> = sent.iter().filter(|(n, ..)| *n != device).collect();
    assert_eq!(
        accepts.len(),
        1,
        "one transmission by the hotspot: {accepts:#?}"
    );
    let (_, start, _, frame) = accepts[0];
    // RX1: the uplink's channel and DR, 16 dBm EIRP; RX2: 869.525 MHz SF12, 27 dBm EIRP
    // (band P allows 29.15); a 0 dBi antenna, no cable loss: conducted = EIRP.
    let (freq, sf, power, at) = match window {
        BeaconWindow::Rx1 => (FREQ_HZ, 7, 16.0, jr_end + 5_000_000),
        BeaconWindow::Rx2 => (869_525_000, 12, 27.0, jr_end + 6_000_000),
    };
    assert_eq!(frame.payload, accept);
    assert_eq!(frame.freq_hz, freq);
    assert_eq!(
        frame.modulation,
        Modulation::Lora {
            sf,
            bw_hz: 125_000,
            cr: Some(CodeRate::Cr45)
        }
    );
    assert!(frame.invert_iq && !frame.crc);
    assert_eq!(frame.power_dbm, power, "EIRP through a 0 dBi antenna");
    eprintln!(
        "{window:?}: join-accept started {} µs after the window opened",
        *start as i64 - at as i64
    );
    assert!(
        start.abs_diff(at) <= WINDOW_TOLERANCE_US,
        "{window:?}: join-accept at {start} µs, window at {at} µs (air time)"
    );

    token.cancel();
    let r = tokio::time::timeout(WAIT, &mut daemon)
        .await
        .expect("daemon stops within WAIT")
        .expect("daemon task did not panic");
    assert!(r.is_ok(), "daemon ended with {r:?}");
    air_stop.cancel();
}
