//! The daemon side of the end-to-end harness: the real `gatewayd` binary with a config in a temp
//! dir, a real Mosquitto on a free loopback port, a GWMP packet-forwarder client on a real UDP
//! socket, and an MQTT subscriber that decodes what the daemon publishes. Everything started
//! here is stopped on drop; every wait is bounded.
use std::collections::HashMap;
use std::io::Read;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chirpstack_api::gw;
use chirpstack_api::prost::Message as _;

#[allow(unused_imports)]
pub use crate::broker::{free_port, Mosquitto};
pub use crate::mosquitto::Received;
#[allow(unused_imports)]
pub use crate::publisher::Publisher;

/// The gateway EUI the tests' packet forwarder announces.
pub const GATEWAY: [u8; 8] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];
/// Its display form.
pub const GATEWAY_ID: &str = "0102030405060708";

/// A running `gatewayd` process.
pub struct Daemon {
    child: Option<Child>,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub udp_port: u16,
    log: PathBuf,
    env: Vec<(String, String)>,
}

/// A config for the tests: state in `dir`, GWMP on `udp_port`, MQTT at `mqtt_port`; `gateway`
/// adds keys to `[gateway]` (its `stats_interval_secs` replaces the default 3600), `extra`
/// appends tables.
pub fn config_text(
    dir: &Path,
    udp_port: u16,
    mqtt_port: u16,
    gateway: &str,
    extra: &str,
) -> String {
    // "#MQTT#..." in `extra` replaces the plain server line (TLS tests).
    let (server, extra) = match extra.strip_prefix("#MQTT#") {
        Some(mqtt) => (mqtt.to_string(), ""),
        None => (format!("server = \"tcp://127.0.0.1:{mqtt_port}\"\n"), extra),
    };
    // Keys for [service] given as "[service]\nkey = value..." in `extra` join the table.
    let (service, extra) = match extra.strip_prefix("[service]\n") {
        Some(rest) => match rest.find("\n[") {
            Some(i) => (&rest[..=i], &rest[i + 1..]),
            None => (rest, ""),
        },
        None => ("", extra),
    };
    let extra = trusted_clock(extra);
    let stats = if gateway.contains("stats_interval_secs") {
        ""
    } else {
        "stats_interval_secs = 3600\n"
    };
    format!(
        "[gateway]\n{gateway}\nregion = \"EU868\"\nstate_dir = {state:?}\n{stats}\
         [radio]\nkind = \"semtech_udp\"\n[radio.semtech_udp]\nbind = \"127.0.0.1:{udp_port}\"\n\
         [mqtt]\n{server}topic_prefix = \"eu868\"\n\
         reconnect_min_ms = 100\nreconnect_max_ms = 1000\n\
         [service]\n{service}status_socket = {sock:?}\nmetrics_bind = \"127.0.0.1:0\"\n{extra}",
        state = dir.join("state").display().to_string(),
        sock = dir.join("status.sock").display().to_string(),
        // Tests run as root in CI: allowed unless the test sets its own [service] keys.
        service = if service.is_empty() {
            "allow_root = true\n"
        } else {
            service
        },
        extra = extra,
    )
}

/// `extra` with `[poc] clock = "trusted"` (added to its `[poc]` table, or as one), unless it
/// sets `clock` itself: test machines' kernels often report the clock unsynchronized, which
/// would hold every PoC report; the tests of that path say `clock = "kernel"`.
pub fn trusted_clock(extra: &str) -> String {
    if extra.contains("\nclock =") || extra.starts_with("clock =") {
        extra.to_string()
    } else if extra.contains("[poc]\n") {
        extra.replacen("[poc]\n", "[poc]\nclock = \"trusted\"\n", 1)
    } else {
        format!("{extra}\n[poc]\nclock = \"trusted\"\n")
    }
}

impl Daemon {
    /// Start the daemon with [`config_text`] in a new temp dir.
    pub fn start(mqtt_port: u16, extra: &str) -> Daemon {
        Daemon::start_with(mqtt_port, "", extra)
    }

    /// Start the daemon with `mqtt` replacing the `[mqtt] server` line (e.g. TLS settings).
    pub fn start_mqtt(mqtt_port: u16, mqtt: &str) -> Daemon {
        Daemon::start_env(mqtt_port, "", &format!("#MQTT#{mqtt}"), &[])
    }

    /// Start the daemon with extra `[gateway]` keys and extra tables.
    pub fn start_with(mqtt_port: u16, gateway: &str, extra: &str) -> Daemon {
        Daemon::start_env(mqtt_port, gateway, extra, &[])
    }

    /// Start the daemon with extra `[gateway]` keys, extra tables and environment variables.
    pub fn start_env(mqtt_port: u16, gateway: &str, extra: &str, env: &[(&str, &str)]) -> Daemon {
        let mut d = Daemon::create(mqtt_port, gateway, extra, env);
        d.spawn();
        d
    }

    /// Write the config in a new temp dir without starting the process (the test prepares
    /// the state directory `dir/state` first, then calls [`Daemon::spawn`]).
    pub fn create(mqtt_port: u16, gateway: &str, extra: &str, env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let udp_port = free_port();
        let config = dir.join("gatewayd.toml");
        std::fs::write(
            &config,
            config_text(&dir, udp_port, mqtt_port, gateway, extra),
        )
        .expect("write config");
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Daemon {
            child: None,
            log: dir.join("gatewayd.log"),
            dir,
            config,
            udp_port,
            env,
        }
    }

    /// The state directory (`state_dir` of the config).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// `gatewayd status --json` against this daemon's config.
    pub fn status_json(&self) -> serde_json::Value {
        let out = Command::new(crate::gatewayd_bin())
            .arg("--config")
            .arg(&self.config)
            .args(["status", "--json"])
            .output()
            .expect("gatewayd status");
        assert!(
            out.status.success(),
            "gatewayd status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// (Re)start the process with the same config and state.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = Command::new(crate::gatewayd_bin())
            .arg("--config")
            .arg(&self.config)
            .arg("--log-level")
            .arg("debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .spawn()
            .expect("start gatewayd");
        self.child = Some(child);
        // Ready when the GWMP socket answers a PULL_DATA.
        let pf = Forwarder::new(self.udp_port);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if pf.pull_data(Duration::from_millis(200)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gatewayd did not answer PULL_DATA within 20 s:\n{}",
                self.log()
            );
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("gatewayd exited at start ({status}):\n{}", self.log());
            }
        }
    }

    /// SIGKILL, as a crash or power cut would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded) for the exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        terminate_child(self.child.take()?, within)
    }

    /// The pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `gatewayd status --json` of this daemon.
    pub fn status(&self) -> serde_json::Value {
        status_json(&self.config)
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A packet forwarder talking GWMP to the daemon.
pub struct Forwarder {
    pub sock: UdpSocket,
    token: u16,
}

impl Forwarder {
    /// A socket connected to the daemon's GWMP port.
    pub fn new(port: u16) -> Forwarder {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.connect(("127.0.0.1", port)).expect("connect");
        Forwarder { sock, token: 0 }
    }

    /// Send PULL_DATA, again every 250 ms as a packet forwarder retries, until a PULL_ACK
    /// comes back; false when none did within `wait` (a daemon still starting, e.g. after a
    /// `kill -9`, is not bound yet: the first datagrams are refused).
    pub fn pull_data(&self, wait: Duration) -> bool {
        let mut d = vec![2, 0xab, 0xcd, 2];
        d.extend_from_slice(&GATEWAY);
        let deadline = std::time::Instant::now() + wait;
        let mut buf = [0u8; 64];
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            let _ = self.sock.send(&d);
            let until = std::time::Instant::now() + left.min(Duration::from_millis(250));
            while let Some(t) = until.checked_duration_since(std::time::Instant::now()) {
                self.sock
                    .set_read_timeout(Some(t.max(Duration::from_millis(1))))
                    .ok();
                match self.sock.recv(&mut buf) {
                    Ok(4) if buf[3] == 4 && buf[1..3] == [0xab, 0xcd] => return true,
                    // Another datagram (a PUSH_ACK, a PULL_RESP): keep listening.
                    Ok(_) => continue,
                    // Timed out, or refused while the daemon is not bound: send again.
                    Err(_) => break,
                }
            }
            if std::time::Instant::now() < until {
                std::thread::sleep(until - std::time::Instant::now());
            }
        }
        false
    }

    /// The next PULL_RESP within `wait`: its raw token bytes and txpk.
    pub fn pull_resp(&self, wait: Duration) -> Option<([u8; 2], serde_json::Value)> {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            self.sock
                .set_read_timeout(Some(Duration::from_millis(50)))
                .ok();
            if let Ok(n) = self.sock.recv(&mut buf) {
                if n > 4 && buf[3] == 3 {
                    let v: serde_json::Value =
                        serde_json::from_slice(&buf[4..n]).expect("txpk JSON");
                    return Some(([buf[1], buf[2]], v["txpk"].clone()));
                }
            }
        }
        None
    }

    /// Send raw bytes.
    pub fn send_raw(&self, bytes: &[u8]) {
        self.sock.send(bytes).expect("send");
    }

    /// Send a PUSH_DATA with `json`; returns its token.
    pub fn push_json(&mut self, json: &str) -> u16 {
        self.token = self.token.wrapping_add(1);
        let mut d = vec![2];
        d.extend_from_slice(&self.token.to_be_bytes());
        d.push(0);
        d.extend_from_slice(&GATEWAY);
        d.extend_from_slice(json.as_bytes());
        self.send_raw(&d);
        self.token
    }

    /// Send one uplink with the given PHY payload; returns its token.
    pub fn push_uplink(&mut self, phy: &[u8], tmst: u32) -> u16 {
        self.push_json(&format!("{{\"rxpk\":[{}]}}", rxpk(phy, tmst)))
    }

    /// Send [`data_frame`]s `range` one per datagram, at most `window` unacknowledged at a time
    /// (a packet forwarder waits for its PUSH_ACK); returns how many were acknowledged.
    pub fn push_frames(
        &mut self,
        range: std::ops::Range<u32>,
        window: usize,
        wait: Duration,
    ) -> usize {
        let mut outstanding = 0usize;
        let mut acked = 0usize;
        for n in range {
            if outstanding >= window {
                let got = self.acks(1, wait).len();
                if got == 0 {
                    return acked;
                }
                acked += got;
                outstanding -= got;
            }
            self.push_uplink(&data_frame(n), n);
            outstanding += 1;
        }
        acked + self.acks(outstanding, wait).len()
    }

    /// PUSH_ACK tokens received within `wait` (stops early once `n` arrived).
    pub fn acks(&self, n: usize, wait: Duration) -> Vec<u16> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        while out.len() < n && Instant::now() < deadline {
            self.sock
                .set_read_timeout(Some(Duration::from_millis(50)))
                .ok();
            if let Ok(4) = self.sock.recv(&mut buf) {
                if buf[3] == 1 {
                    out.push(u16::from_be_bytes([buf[1], buf[2]]));
                }
            }
        }
        out
    }
}

/// An rxpk JSON object for `phy` as an SX1302 forwarder reports it.
pub fn rxpk(phy: &[u8], tmst: u32) -> String {
    format!(
        "{{\"time\":\"2013-03-31T16:21:17.528002Z\",\"tmms\":1048782095528,\"tmst\":{tmst},\"chan\":2,\"rfch\":0,\
         \"freq\":866.349812,\"stat\":1,\"modu\":\"LORA\",\"datr\":\"SF7BW125\",\"codr\":\"4/6\",\"rssi\":-35,\
         \"lsnr\":5.1,\"size\":{},\"data\":\"{}\"}}",
        phy.len(),
        base64::engine::general_purpose::STANDARD.encode(phy)
    )
}

/// A unique data uplink carrying `n` (DevAddr 0x26011234, FCnt n, FPort 1, payload n).
pub fn data_frame(n: u32) -> Vec<u8> {
    let mut p = vec![0x40];
    p.extend_from_slice(&0x2601_1234u32.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&(n as u16).to_le_bytes());
    p.push(1);
    p.extend_from_slice(&n.to_le_bytes());
    p.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
    p
}

/// The `n` of a [`data_frame`].
pub fn frame_number(phy: &[u8]) -> Option<u32> {
    (phy.len() == 17 && phy[0] == 0x40)
        .then(|| u32::from_le_bytes([phy[9], phy[10], phy[11], phy[12]]))
}

/// Hex to bytes (fixtures).
pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// `gatewayd --config <config> status --json` (panics if the command fails).
pub fn status_json(config: &Path) -> serde_json::Value {
    try_status_json(config).unwrap_or_else(|e| panic!("gatewayd status: {e}"))
}

/// `gatewayd --config <config> status --json`, or why it failed (say, the daemon is still
/// starting and its status socket is not there yet).
pub fn try_status_json(config: &Path) -> Result<serde_json::Value, String> {
    let out = Command::new(crate::gatewayd_bin())
        .arg("--config")
        .arg(config)
        .args(["status", "--json"])
        .output()
        .map_err(|e| format!("cannot run gatewayd status: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("status JSON: {e}"))
}

/// An MQTT subscriber that keeps every publish it receives. It subscribes again on every
/// (re)connection, so it follows a broker that restarts without persistence.
pub struct Subscriber {
    received: Arc<Mutex<Vec<Received>>>,
    subacks: Arc<std::sync::atomic::AtomicU64>,
    _thread: std::thread::JoinHandle<()>,
}

impl Subscriber {
    /// Subscribe to `filter` at QoS 1 on the broker at `port`; waits for the SUBACK.
    pub fn start(port: u16, filter: &str) -> Subscriber {
        let received = Arc::new(Mutex::new(Vec::new()));
        let subacks = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut opts = rumqttc::MqttOptions::new(
            format!("test-sub-{}", rand::random::<u32>()),
            "127.0.0.1",
            port,
        );
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_clean_session(false);
        // It sees the commands too, hostile 1 MB ones included.
        opts.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut conn) = rumqttc::Client::new(opts, 64);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let r = received.clone();
        let acks = subacks.clone();
        let filter = filter.to_string();
        let thread = std::thread::spawn(move || {
            for event in conn.iter() {
                match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe(filter.clone(), rumqttc::QoS::AtLeastOnce);
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        acks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let _ = ready_tx.send(());
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if let Ok(mut v) = r.lock() {
                            v.push(Received {
                                topic: p.topic.clone(),
                                payload: p.payload.to_vec(),
                                retain: p.retain,
                            });
                        }
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("SUBACK within 10 s");
        Subscriber {
            received,
            subacks,
            _thread: thread,
        }
    }

    /// SUBACKs so far: one more after each reconnection.
    pub fn subscriptions(&self) -> u64 {
        self.subacks.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Everything received so far.
    pub fn all(&self) -> Vec<Received> {
        self.received.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Decoded uplinks so far.
    pub fn uplinks(&self) -> Vec<gw::UplinkFrame> {
        self.all()
            .into_iter()
            .filter(|r| r.topic.ends_with("/event/up"))
            .filter_map(|r| gw::UplinkFrame::decode(r.payload.as_slice()).ok())
            .collect()
    }

    /// Wait until `pred` holds for the uplinks (bounded).
    pub fn wait_uplinks(
        &self,
        wait: Duration,
        pred: impl Fn(&[gw::UplinkFrame]) -> bool,
    ) -> Vec<gw::UplinkFrame> {
        let deadline = Instant::now() + wait;
        loop {
            let ups = self.uplinks();
            if pred(&ups) || Instant::now() > deadline {
                return ups;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait (bounded) until every data frame numbered in `frames` has arrived; the numbers
    /// still missing then (empty when all arrived).
    pub fn missing_frames(&self, frames: std::ops::Range<u32>, wait: Duration) -> Vec<u32> {
        let all = |u: &[gw::UplinkFrame]| {
            let seen: std::collections::HashSet<u32> = u
                .iter()
                .filter_map(|f| frame_number(&f.phy_payload))
                .collect();
            frames.clone().all(|n| seen.contains(&n))
        };
        self.wait_uplinks(wait, all);
        let seen = self.frame_counts();
        frames.filter(|n| !seen.contains_key(n)).collect()
    }

    /// Count of each data-frame number among the uplinks.
    pub fn frame_counts(&self) -> HashMap<u32, usize> {
        let mut m = HashMap::new();
        for up in self.uplinks() {
            if let Some(n) = frame_number(&up.phy_payload) {
                *m.entry(n).or_default() += 1;
            }
        }
        m
    }
}

/// SIGTERM `c` and wait (bounded) for its exit status; SIGKILL and `None` after `within`.
pub fn terminate_child(mut c: Child, within: Duration) -> Option<std::process::ExitStatus> {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(c.id().to_string())
        .status();
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(s)) = c.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
