//! End to end on the SPI path: the emulated SX1262 → lora-phy (the real driver and backend
//! task) → `gatewayd::daemon::run_with_radio` in-process (pipeline, SQLite outbox, MQTT link,
//! status socket) → a real Mosquitto → a subscriber decoding what the daemon publishes.
//! Only the chip is emulated. Faults (BUSY stuck, SPI errors) are injected on the chip while
//! the daemon runs: the radio goes down and comes back, the rest of the daemon never notices.

use testkit as support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chirpstack_api::gw;
use chirpstack_api::prost::Message as _;
use drivers::radio::{CrcStatus, Radio, RadioEvent, RadioHealth, RxFrame};
use gatewayd::config::{Config, RadioConfig};
use gatewayd::daemon::{run_with_radio, DaemonError};
use gatewayd::service::status::{self, StatusSnapshot};
use sim::emulated::{AirFrame, EmulatedAir, EmulatedHardware, Faults, Mode};
use support::daemon::{data_frame, frame_number, GATEWAY_ID};
use support::mosquitto::{Mosquitto, Received, Subscriber};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest wait for anything to happen.
const WAIT: Duration = Duration::from_secs(20);
/// The receive channel the config sets.
const FREQ_HZ: u32 = 868_100_000;

/// What the radio told the daemon, in order (seen by a tap between the backend and the
/// daemon; the daemon receives every event unchanged).
#[derive(Clone, Default)]
struct TapLog {
    health: Arc<Mutex<Vec<RadioHealth>>>,
    frames: Arc<Mutex<Vec<RxFrame>>>,
}

impl TapLog {
    fn all(&self) -> Vec<RadioHealth> {
        self.health.lock().unwrap().clone()
    }

    fn frames(&self) -> Vec<RxFrame> {
        self.frames.lock().unwrap().clone()
    }

    /// Wait (bounded) until a health report after the first `from` matches `pred`; returns
    /// its index.
    async fn wait(&self, from: usize, pred: impl Fn(&RadioHealth) -> bool) -> usize {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(i) = self.all().iter().skip(from).position(&pred) {
                return from + i;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no matching health report within {WAIT:?}; seen {:?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Wait (bounded) until the radio has delivered `n` frames.
    async fn wait_frames(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.frames().len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the radio delivered {} frames within {WAIT:?}, not {n}",
                self.frames().len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The daemon on the emulated chip, a broker, a subscriber on the gateway's topics.
struct Rig {
    air: EmulatedAir,
    token: CancellationToken,
    daemon: JoinHandle<Result<(), DaemonError>>,
    tap: JoinHandle<()>,
    health: TapLog,
    sub: Subscriber,
    status_socket: PathBuf,
    _dir: tempfile::TempDir,
    _broker: Mosquitto,
}

fn config_text(dir: &Path, mqtt_port: u16, stats_interval_secs: u64) -> String {
    format!(
        "[gateway]\nid = \"{GATEWAY_ID}\"\nregion = \"EU868\"\nstate_dir = {state:?}\n\
         stats_interval_secs = {stats_interval_secs}\n\
         [radio]\nkind = \"sx126x\"\n\
         [radio.sx126x]\nboard = \"waveshare-sx1262-hat\"\nfrequency_hz = {FREQ_HZ}\nsf = 7\n\
         bw_hz = 125000\n\
         [mqtt]\nserver = \"tcp://127.0.0.1:{mqtt_port}\"\ntopic_prefix = \"eu868\"\n\
         reconnect_min_ms = 100\nreconnect_max_ms = 1000\n\
         [service]\nallow_root = true\nstatus_socket = {sock:?}\nmetrics_bind = \"127.0.0.1:0\"\n",
        state = dir.join("state").display().to_string(),
        sock = dir.join("status.sock").display().to_string(),
    )
}

/// Forward the backend's events to the daemon, recording health reports on the way. Ends
/// when the backend's event stream ends (the backend stopped).
fn tap(mut radio: Radio) -> (Radio, TapLog, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(256);
    let log = TapLog::default();
    let seen = log.clone();
    let task = tokio::spawn(async move {
        while let Some(event) = radio.events.recv().await {
            match &event {
                RadioEvent::Health(h) => seen.health.lock().unwrap().push(h.clone()),
                RadioEvent::Uplinks { frames, .. } => {
                    seen.frames.lock().unwrap().extend(frames.iter().cloned())
                }
                _ => {}
            }
            if tx.send(event).await.is_err() {
                break;
            }
        }
    });
    let radio = Radio {
        events: rx,
        control: radio.control,
        capabilities: radio.capabilities,
        counters: radio.counters,
    };
    (radio, log, task)
}

impl Rig {
    async fn start(stats_interval_secs: u64) -> Rig {
        let broker = Mosquitto::start();
        let sub =
            Subscriber::connect(broker.port(), &format!("eu868/gateway/{GATEWAY_ID}/#")).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gatewayd.toml");
        let text = config_text(dir.path(), broker.port(), stats_interval_secs);
        let config = Config::from_toml(&text, &path).unwrap();
        let settings = match &config.radio {
            RadioConfig::LoraPhy(s) => (**s).clone(),
            other => panic!("[radio] kind sx126x built {other:?}"),
        };
        assert_eq!(settings.channel.freq_hz, FREQ_HZ);
        let air = EmulatedAir::new();
        let token = CancellationToken::new();
        let radio = drivers::lora_phy::spawn(settings, EmulatedHardware::new(&air), token.clone())
            .await
            .unwrap();
        let (radio, health, tap) = tap(radio);
        let daemon = tokio::spawn(run_with_radio(config, radio, token.clone()));
        let status_socket = dir.path().join("status.sock");
        let rig = Rig {
            air,
            token,
            daemon,
            tap,
            health,
            sub,
            status_socket,
            _dir: dir,
            _broker: broker,
        };
        assert_eq!(rig.health.wait(0, |_| true).await, 0);
        assert_eq!(rig.health.all()[0], RadioHealth::Up, "first report is Up");
        assert!(rig.air.wait_mode(Mode::Rx, WAIT).await, "chip not in RX");
        rig.wait_online().await;
        rig
    }

    /// Messages on `suffix` (e.g. `event/up`) received so far.
    fn on(&self, suffix: &str) -> Vec<Received> {
        self.sub
            .received()
            .into_iter()
            .filter(|r| r.topic == format!("eu868/gateway/{GATEWAY_ID}/{suffix}"))
            .collect()
    }

    fn uplinks(&self) -> Vec<gw::UplinkFrame> {
        self.on("event/up")
            .iter()
            .map(|r| gw::UplinkFrame::decode(r.payload.as_slice()).expect("UplinkFrame"))
            .collect()
    }

    fn stats(&self) -> Vec<gw::GatewayStats> {
        self.on("event/stats")
            .iter()
            .map(|r| gw::GatewayStats::decode(r.payload.as_slice()).expect("GatewayStats"))
            .collect()
    }

    fn conn_states(&self) -> Vec<gw::conn_state::State> {
        self.on("state/conn")
            .iter()
            .map(|r| {
                gw::ConnState::decode(r.payload.as_slice())
                    .expect("ConnState")
                    .state()
            })
            .collect()
    }

    async fn wait_online(&self) {
        let ok = self
            .wait(|r| r.conn_states().contains(&gw::conn_state::State::Online))
            .await;
        assert!(ok, "no ONLINE connection state within {WAIT:?}");
    }

    /// Wait (bounded) until `pred` holds; false on timeout.
    async fn wait(&self, pred: impl Fn(&Rig) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if pred(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            let _ = self
                .sub
                .wait_for(usize::MAX, Duration::from_millis(50))
                .await;
        }
    }

    /// The uplink carrying data frame `n`, once published (bounded wait).
    async fn uplink(&self, n: u32) -> gw::UplinkFrame {
        let find = |r: &Rig| {
            r.uplinks()
                .into_iter()
                .find(|u| frame_number(&u.phy_payload) == Some(n))
        };
        assert!(
            self.wait(|r| find(r).is_some()).await,
            "frame {n} not published within {WAIT:?}; got {:?}",
            self.uplinks()
        );
        find(self).unwrap()
    }

    /// `gatewayd status` over the daemon's socket.
    async fn status(&self) -> StatusSnapshot {
        let path = self.status_socket.clone();
        tokio::task::spawn_blocking(move || status::query(&path))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("status socket: {e}"))
    }

    /// Put data frame `n` on the air; the chip must hear it.
    fn inject(&self, n: u32, rssi: i16, snr: f32) {
        self.air
            .inject(&AirFrame::uplink(FREQ_HZ, 7, &data_frame(n), rssi, snr))
            .unwrap_or_else(|e| panic!("the chip did not receive frame {n}: {e}"));
    }

    /// Stop everything (bounded) and check the daemon ended cleanly.
    async fn stop(mut self) {
        self.air.assert_no_faults();
        self.token.cancel();
        let r = tokio::time::timeout(WAIT, &mut self.daemon)
            .await
            .expect("daemon stops within WAIT")
            .expect("daemon task did not panic");
        assert!(r.is_ok(), "daemon ended with {r:?}");
        tokio::time::timeout(WAIT, &mut self.tap)
            .await
            .expect("the backend's event stream ends: its thread stopped")
            .expect("tap task");
        let offline = self
            .wait(|r| r.conn_states().last() == Some(&gw::conn_state::State::Offline))
            .await;
        assert!(
            offline,
            "no OFFLINE on a clean stop: {:?}",
            self.conn_states()
        );
    }
}

fn lora_of(up: &gw::UplinkFrame) -> (u32, u32, u32) {
    let tx = up.tx_info.as_ref().expect("tx_info");
    match tx.modulation.as_ref().and_then(|m| m.parameters.as_ref()) {
        Some(gw::modulation::Parameters::Lora(l)) => {
            (tx.frequency, l.spreading_factor, l.bandwidth)
        }
        other => panic!("not LoRa: {other:?}"),
    }
}

/// Check the published uplink of frame `n` carries exactly the chip's metadata.
async fn assert_uplink(rig: &Rig, n: u32, rssi: i32, snr: f32) {
    let up = rig.uplink(n).await;
    assert_eq!(up.phy_payload, data_frame(n));
    assert_eq!(lora_of(&up), (FREQ_HZ, 7, 125_000), "frame {n}");
    let rx = up.rx_info.as_ref().expect("rx_info");
    assert_eq!((rx.rssi, rx.snr), (rssi, snr), "frame {n}");
    assert_eq!(rx.gateway_id, GATEWAY_ID);
    assert_eq!(rx.crc_status(), gw::CrcStatus::CrcOk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_on_the_air_are_published_with_their_metadata_bad_crc_is_not() {
    let rig = Rig::start(1).await;
    // A bad-CRC frame first: if it were forwarded it would be published before the others.
    let mut bad = AirFrame::uplink(FREQ_HZ, 7, &data_frame(99), -118, -15.0);
    bad.crc_ok = false;
    rig.air.inject(&bad).unwrap();
    // The chip buffers one frame: let the driver read it before the next one arrives.
    rig.health.wait_frames(1).await;
    let heard = &rig.health.frames()[0];
    assert_eq!(
        (heard.meta.crc, heard.meta.rssi, heard.meta.snr),
        (CrcStatus::Bad, -118, Some(-15.0)),
        "the radio delivers the bad-CRC frame; the daemon must drop it"
    );
    let frames = [(1, -87, 7.25), (2, -101, -3.5), (3, -64, 11.0)];
    for (n, rssi, snr) in frames {
        rig.inject(n, rssi, snr);
        // One at a time: the chip holds one frame in its buffer, like the real one.
        rig.uplink(n).await;
    }
    for (n, rssi, snr) in frames {
        assert_uplink(&rig, n, i32::from(rssi), snr).await;
    }

    // The pipeline saw 4 frames, 3 with a good CRC (stats), and forwarded only those.
    let counted = rig
        .wait(|r| {
            let s = r.stats();
            s.iter().map(|s| s.rx_packets_received).sum::<u32>() >= 4
                && s.iter().map(|s| s.rx_packets_received_ok).sum::<u32>() >= 3
        })
        .await;
    let stats = rig.stats();
    assert!(counted, "stats never counted the 4 frames: {stats:?}");
    let received: u32 = stats.iter().map(|s| s.rx_packets_received).sum();
    let ok: u32 = stats.iter().map(|s| s.rx_packets_received_ok).sum();
    assert_eq!((received, ok), (4, 3), "{stats:?}");
    let per_freq: u32 = stats
        .iter()
        .filter_map(|s| s.rx_packets_per_frequency.get(&FREQ_HZ))
        .sum();
    assert_eq!(per_freq, 4);

    let ups = rig.uplinks();
    assert_eq!(
        ups.len(),
        3,
        "each good frame once, the bad one never: {ups:?}"
    );
    assert!(ups.iter().all(|u| frame_number(&u.phy_payload) != Some(99)));

    // What `gatewayd status` shows.
    let s = rig.status().await;
    assert_eq!(s.gateway_id.as_deref(), Some(GATEWAY_ID));
    let radio = s.radio.as_ref().expect("radio status");
    assert_eq!(radio.backend, "lora_phy");
    assert!(radio.running, "{radio:?}");
    assert!(s.mqtt.as_ref().is_some_and(|m| m.connected), "{:?}", s.mqtt);
    assert_eq!(s.uplinks_received_total, Some(3));
    assert_eq!(s.uplinks_last_hour, Some(3));
    rig.stop().await;
}

/// Inject `faults`, trigger them with a frame, and check the daemon rides it out.
async fn fault_while_running(rig: &Rig, faults: Faults, expect: &str, before: u32, after: u32) {
    rig.inject(before, -80, 5.0);
    assert_uplink(rig, before, -80, 5.0).await;
    let reports = rig.health.all().len();
    rig.air.set_faults(faults);
    // The RxDone of this frame makes the driver talk to the faulty chip.
    rig.inject(1000 + before, -80, 5.0);
    let down = rig
        .health
        .wait(reports, |h| matches!(h, RadioHealth::Down(_)))
        .await;
    match &rig.health.all()[down] {
        RadioHealth::Down(why) => {
            assert!(why.contains("SX1262 on emulated spidev"), "{why}");
            assert!(why.contains(expect), "{why:?} lacks {expect:?}");
        }
        h => panic!("{h:?}"),
    }
    // The rest of the daemon carries on while the radio is down: stats are still published
    // and MQTT stays connected.
    let stats_before = rig.stats().len();
    let more_stats = rig.wait(|r| r.stats().len() >= stats_before + 2).await;
    assert!(more_stats, "stats stopped while the radio was down");
    if faults.busy_stuck {
        // Still stuck: the radio is still down, and status says why.
        let s = rig.status().await;
        let radio = s.radio.as_ref().expect("radio status");
        assert!(!radio.running, "{radio:?}");
        assert!(
            radio.detail.as_deref().is_some_and(|d| d.contains(expect)),
            "{radio:?}"
        );
        assert!(s.mqtt.as_ref().is_some_and(|m| m.connected), "{:?}", s.mqtt);
        rig.air.set_faults(Faults::default());
    }
    // Recovery: reset, re-initialisation, RX again.
    rig.health.wait(down, |h| *h == RadioHealth::Up).await;
    assert!(rig.air.wait_mode(Mode::Rx, WAIT).await, "RX did not resume");
    rig.inject(after, -95, -1.25);
    assert_uplink(rig, after, -95, -1.25).await;
    let s = rig.status().await;
    assert!(s.radio.as_ref().is_some_and(|r| r.running), "{:?}", s.radio);
    assert!(s.mqtt.as_ref().is_some_and(|m| m.connected), "{:?}", s.mqtt);
    let states = rig.conn_states();
    assert!(
        !states.contains(&gw::conn_state::State::Offline),
        "the link went OFFLINE during a radio fault: {states:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radio_faults_are_isolated_from_the_rest_of_the_daemon() {
    let rig = Rig::start(1).await;
    fault_while_running(
        &rig,
        Faults {
            busy_stuck: true,
            ..Faults::default()
        },
        "BUSY (emulated line) stayed high",
        1,
        2,
    )
    .await;
    fault_while_running(
        &rig,
        Faults {
            spi_errors: 3,
            ..Faults::default()
        },
        "SPI transfer on emulated spidev",
        3,
        4,
    )
    .await;
    // Every frame heard on a working chip was published exactly once.
    let ups = rig.uplinks();
    let mut numbers: Vec<_> = ups
        .iter()
        .filter_map(|u| frame_number(&u.phy_payload))
        .filter(|n| *n < 1000)
        .collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2, 3, 4]);
    // Up, then for each fault one or more Downs (failed re-initialisations) and an Up.
    let health = rig.health.all();
    let transitions: Vec<bool> =
        health
            .iter()
            .map(|h| *h == RadioHealth::Up)
            .fold(Vec::new(), |mut v, up| {
                if v.last() != Some(&up) {
                    v.push(up);
                }
                v
            });
    assert_eq!(transitions, [true, false, true, false, true], "{health:?}");
    assert!(ups
        .iter()
        .all(|u| u.rx_info.as_ref().map(|r| r.crc_status()) == Some(gw::CrcStatus::CrcOk)));
    rig.stop().await;
}
