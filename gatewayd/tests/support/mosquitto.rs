//! A real Mosquitto broker for tests (127.0.0.1, a free port, its own temp dir, killed on
//! Drop) and an MQTT subscriber that collects what it receives.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::sync::{watch, Notify};

/// The broker binary.
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";
/// Longest wait for the broker to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the broker to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A Mosquitto process listening on 127.0.0.1:`port()`.
pub struct Mosquitto {
    dir: tempfile::TempDir,
    port: u16,
    persistent: bool,
    child: Option<Child>,
}

impl Mosquitto {
    /// Start a broker without persistence on a free port.
    pub fn start() -> Mosquitto {
        Mosquitto::start_with(false)
    }

    /// Start a broker whose sessions and queued messages survive [`Mosquitto::restart`]
    /// (persistence in its temp dir, saved on a graceful stop).
    pub fn start_persistent() -> Mosquitto {
        Mosquitto::start_with(true)
    }

    fn start_with(persistent: bool) -> Mosquitto {
        let mut last_error = String::new();
        // Another process may take the free port between probe and bind: try a few.
        for _ in 0..5 {
            let mut m = Mosquitto {
                dir: tempfile::tempdir().expect("temp dir for mosquitto"),
                port: free_port(),
                persistent,
                child: None,
            };
            match m.spawn() {
                Ok(()) => return m,
                Err(e) => last_error = e,
            }
        }
        panic!("mosquitto did not start: {last_error}");
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut conf = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\nuser root\nlog_dest stderr\n\
             log_type error\nlog_type warning\nlog_type notice\nmax_queued_messages 100000\n",
            self.port
        );
        if self.persistent {
            conf.push_str(&format!(
                "persistence true\npersistence_location {}/\nautosave_interval 0\n",
                self.dir.path().display()
            ));
        } else {
            conf.push_str("persistence false\n");
        }
        std::fs::write(self.conf_path(), conf).map_err(|e| format!("write conf: {e}"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("open log: {e}"))?;
        let mut child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(self.conf_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {MOSQUITTO}: {e}"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "mosquitto exited ({status}) on port {}: {}",
                    self.port,
                    self.log()
                ));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "mosquitto did not accept on port {} within {START_TIMEOUT:?}: {}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The broker's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the broker logged (errors, warnings, notices).
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Stop the broker gracefully (SIGTERM; SIGKILL after a bounded wait). Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stop and start again on the same port (the port is re-bound with SO_REUSEADDR).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("mosquitto restart: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// One message a [`Subscriber`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// The retain flag as delivered (set for retained messages sent on subscribe).
    pub retain: bool,
}

/// An MQTT client subscribed to one filter at QoS 1, collecting every message it receives.
/// It reconnects and resubscribes by itself; its task stops on Drop.
pub struct Subscriber {
    client: AsyncClient,
    received: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
    subscribed: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// Connect with a clean session, subscribe to `filter` and wait (bounded) for the SUBACK.
    pub async fn connect(port: u16, filter: &str) -> Subscriber {
        let id = format!("test-sub-{}", free_port());
        Subscriber::connect_with(port, filter, &id, true).await
    }

    /// Connect with a persistent session under `client_id` (messages are queued by the
    /// broker while it is away), subscribe and wait for the SUBACK.
    pub async fn connect_persistent(port: u16, filter: &str, client_id: &str) -> Subscriber {
        Subscriber::connect_with(port, filter, client_id, false).await
    }

    async fn connect_with(port: u16, filter: &str, id: &str, clean: bool) -> Subscriber {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_clean_session(clean)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let received = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let (sub_tx, subscribed) = watch::channel(0u64);
        let task = {
            let client = client.clone();
            let received = received.clone();
            let arrived = arrived.clone();
            let filter = filter.to_string();
            tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                            let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                        }
                        Ok(Event::Incoming(Incoming::SubAck(_))) => {
                            sub_tx.send_modify(|n| *n += 1);
                        }
                        Ok(Event::Incoming(Incoming::Publish(p))) => {
                            received.lock().unwrap().push(Received {
                                topic: p.topic.clone(),
                                payload: p.payload.to_vec(),
                                retain: p.retain,
                            });
                            arrived.notify_waiters();
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            })
        };
        let mut s = Subscriber {
            client,
            received,
            arrived,
            subscribed,
            task,
        };
        s.wait_subscribed(Duration::from_secs(10)).await;
        s
    }

    /// Wait (bounded; panics on timeout) until the broker has acknowledged the subscription
    /// at least once.
    pub async fn wait_subscribed(&mut self, timeout: Duration) {
        let r = tokio::time::timeout(timeout, self.subscribed.wait_for(|n| *n > 0)).await;
        assert!(
            matches!(r, Ok(Ok(_))),
            "subscriber: no SUBACK within {timeout:?}"
        );
    }

    /// How many SUBACKs it has had (one per (re)connection).
    pub fn subscriptions(&self) -> u64 {
        *self.subscribed.borrow()
    }

    /// Wait until at least `n` messages have arrived or `timeout` passed; returns all
    /// messages received so far (check the length).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.arrived.notified();
            {
                let got = self.received.lock().unwrap();
                if got.len() >= n {
                    return got.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.received();
            }
        }
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Publish with this client (QoS 1).
    pub async fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .expect("subscriber publish");
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}
