//! End to end, a flaky backhaul (issue 12): the real `gatewayd` binary publishes a steady
//! stream of uplinks through a TCP proxy to a real Mosquitto while the test breaks the path:
//! broker SIGKILL and clean stops, connection resets and clean closes, a silently stalled
//! (half-open) connection. Every uplink the daemon PUSH_ACKed must reach the network without a
//! restart; duplicates may only come from messages whose PUBACK was lost, which the daemon
//! counts (`resent_total`), and stay under 1 %.
//!
//! Each test runs a handful of faults. `scripts/chaos` runs the same tests with more:
//! `GATEWAYD_CHAOS_FLAPS` (broker flaps), `GATEWAYD_CHAOS_RESETS` (connection cuts),
//! `GATEWAYD_CHAOS_RATE` (uplinks per second) and `GATEWAYD_CHAOS_DOWN_MS` (how long the
//! broker stays down).

use testkit as support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::daemon::*;
use support::proxy::{Cut, Proxy};

/// Longest wait for any one condition.
const WAIT: Duration = Duration::from_secs(30);
/// Longest wait for the last uplinks after the faults.
const DRAIN: Duration = Duration::from_secs(60);

/// One way to break the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The broker is SIGKILLed and started again.
    Kill9,
    /// The broker stops gracefully and starts again.
    Stop,
    /// The proxy resets the connection (RST).
    Reset,
    /// The proxy closes the connection (FIN).
    Close,
    /// The proxy stops forwarding without closing: only keep-alive can notice.
    Stall,
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Wait (bounded) until `cond` holds; panics naming `what` with the daemon's log tail.
fn wait_until(daemon: &Daemon, what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        if Instant::now() > deadline {
            let log = daemon.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "timed out waiting for {what}; daemon log tail:\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Uplinks sent at a steady rate from their own thread; remembers which were PUSH_ACKed.
struct Stream {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashSet<u32>>>,
    thread: Option<std::thread::JoinHandle<u32>>,
}

impl Stream {
    fn start(udp_port: u16, per_second: u64) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(HashSet::new()));
        let (s, a) = (stop.clone(), acked.clone());
        let period = Duration::from_micros(1_000_000 / per_second.max(1));
        let thread = std::thread::spawn(move || {
            let mut pf = Forwarder::new(udp_port);
            let mut tokens: HashMap<u16, u32> = HashMap::new();
            let mut n = 0u32;
            let mut next = Instant::now();
            let mut buf = [0u8; 64];
            let mut read_acks = |pf: &Forwarder, tokens: &mut HashMap<u16, u32>, until: Instant| loop {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return;
                }
                pf.sock.set_read_timeout(Some(left)).ok();
                if let Ok(4) = pf.sock.recv(&mut buf) {
                    if buf[3] == 1 {
                        let token = u16::from_be_bytes([buf[1], buf[2]]);
                        if let Some(n) = tokens.remove(&token) {
                            a.lock().unwrap().insert(n);
                        }
                    }
                }
            };
            while !s.load(Ordering::SeqCst) {
                let token = pf.push_uplink(&data_frame(n), n);
                tokens.insert(token, n);
                n += 1;
                next += period;
                read_acks(&pf, &mut tokens, next);
            }
            // The last PUSH_ACKs.
            read_acks(&pf, &mut tokens, Instant::now() + Duration::from_secs(2));
            n
        });
        Stream {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    /// Stop sending; returns how many were sent and the PUSH_ACKed ones.
    fn finish(mut self) -> (u32, HashSet<u32>) {
        self.stop.store(true, Ordering::SeqCst);
        let sent = self.thread.take().map_or(0, |t| t.join().expect("stream"));
        let acked = self.acked.lock().unwrap().clone();
        (sent, acked)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Broker, network subscriber, proxy and daemon (whose broker is the proxy).
struct Rig {
    broker: Mosquitto,
    sub: Subscriber,
    proxy: Proxy,
    daemon: Daemon,
}

fn rig() -> Rig {
    // No in-flight limit towards the subscriber: whatever the broker acknowledged to the
    // daemon has been written to the subscriber's socket, so a SIGKILLed broker loses
    // nothing the daemon may consider delivered.
    let broker = Mosquitto::try_start_with(false, "max_inflight_messages 0\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let sub = Subscriber::start(broker.port(), "eu868/gateway/0102030405060708/event/up");
    let proxy = Proxy::start(broker.port());
    let mqtt = format!(
        "server = \"tcp://127.0.0.1:{}\"\nkeep_alive_secs = 5\n",
        proxy.port()
    );
    let daemon = Daemon::start_mqtt(proxy.port(), &mqtt);
    let pf = Forwarder::new(daemon.udp_port);
    assert!(pf.pull_data(WAIT), "PULL_ACK");
    let rig = Rig {
        broker,
        sub,
        proxy,
        daemon,
    };
    wait_until(&rig.daemon, "the first connection", WAIT, || {
        rig.mqtt_u64("connections_total") >= 1
    });
    rig
}

impl Rig {
    /// A figure of the status' `mqtt` section (0 while the status socket is not up yet).
    fn mqtt_u64(&self, key: &str) -> u64 {
        try_status_json(&self.daemon.config).map_or(0, |s| s["mqtt"][key].as_u64().unwrap_or(0))
    }

    /// Wait until `between` more uplinks arrived, break the path as `fault` says while
    /// the stream runs, and wait until the daemon has connected again by itself. Returns how
    /// long the reconnect took.
    fn inject(&mut self, fault: Fault, down: Duration, between: usize) -> Duration {
        let before = self.sub.uplinks().len();
        wait_until(&self.daemon, "uplinks to flow", WAIT, || {
            self.sub.uplinks().len() >= before + between
        });
        let connections = self.mqtt_u64("connections_total");
        let t0 = Instant::now();
        match fault {
            Fault::Kill9 | Fault::Stop => {
                // The daemon may only come back once the subscriber is back: a broker
                // without persistence drops what nobody is subscribed to.
                self.proxy.set_accepting(false);
                let subscriptions = self.sub.subscriptions();
                if fault == Fault::Kill9 {
                    self.broker.kill9();
                } else {
                    self.broker.stop();
                }
                if !down.is_zero() {
                    std::thread::sleep(down); // the outage itself, not a wait for a condition
                }
                self.broker.start_again();
                wait_until(&self.daemon, "the subscriber to resubscribe", WAIT, || {
                    self.sub.subscriptions() > subscriptions
                });
                self.proxy.set_accepting(true);
            }
            Fault::Reset => assert!(self.proxy.cut(Cut::Reset) >= 1, "no connection to reset"),
            Fault::Close => assert!(self.proxy.cut(Cut::Close) >= 1, "no connection to close"),
            Fault::Stall => assert!(self.proxy.cut(Cut::Stall) >= 1, "no connection to stall"),
        }
        // A stall is only noticed by keep-alive (5 s here): up to two periods.
        wait_until(
            &self.daemon,
            &format!("a reconnect after {fault:?}"),
            WAIT,
            || self.mqtt_u64("connections_total") > connections,
        );
        if fault == Fault::Stall {
            self.proxy.release_stalled();
        }
        t0.elapsed()
    }
}

/// Run `faults` under a stream of `rate` uplinks/s; check that every PUSH_ACKed uplink
/// arrived, that duplicates are counted and under 1 %; print the figures.
fn run(name: &str, faults: &[Fault], rate: u64, down: Duration) {
    let started = Instant::now();
    let mut rig = rig();
    let pid = rig.daemon.pid();
    let stream = Stream::start(rig.daemon.udp_port, rate);
    // About 1.5 s of uplinks between faults, so the 1 % bound on duplicates means something.
    let between = (rate as usize * 3 / 2).max(10);
    let mut slowest = Duration::ZERO;
    for &fault in faults {
        slowest = slowest.max(rig.inject(fault, down, between));
    }
    let (sent, acked) = stream.finish();
    assert!(!acked.is_empty(), "no uplink was PUSH_ACKed");
    let arrived = |rig: &Rig| -> HashMap<u32, usize> { rig.sub.frame_counts() };
    let mut counts = HashMap::new();
    let deadline = Instant::now() + DRAIN;
    while Instant::now() < deadline {
        counts = arrived(&rig);
        if acked.iter().all(|n| counts.contains_key(n)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut missing: Vec<u32> = acked
        .iter()
        .filter(|n| !counts.contains_key(n))
        .copied()
        .collect();
    missing.sort_unstable();
    assert!(
        missing.is_empty(),
        "{name}: {} of {} PUSH_ACKed uplinks never arrived (first: {:?}); status: {}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)],
        rig.daemon.status()
    );
    assert_eq!(rig.daemon.pid(), pid, "no restart");
    // Everything delivered is deleted from the outbox (its figures refresh every 2 s).
    wait_until(&rig.daemon, "an empty outbox", WAIT, || {
        rig.daemon.status()["outbox_messages"].as_u64() == Some(0)
    });
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    let resent = rig.mqtt_u64("resent_total");
    let connections = rig.mqtt_u64("connections_total");
    eprintln!(
        "chaos: {name}: faults={} rate={rate}/s sent={sent} acked={} delivered={} missing=0 \
         duplicates={duplicates} resent={resent} connections={connections} \
         slowest_reconnect_ms={} elapsed_s={:.1}",
        faults.len(),
        acked.len(),
        counts.len(),
        slowest.as_millis(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        duplicates as u64 <= resent,
        "{name}: {duplicates} duplicates but only {resent} messages counted as resent"
    );
    assert!(
        duplicates * 100 < acked.len(),
        "{name}: {duplicates} duplicates of {} uplinks is 1 % or more",
        acked.len()
    );
    assert_eq!(
        connections,
        1 + faults.len() as u64,
        "one reconnect per fault"
    );
}

/// `n` faults alternating between the given kinds.
fn plan(kinds: &[Fault], n: u64) -> Vec<Fault> {
    (0..n as usize).map(|i| kinds[i % kinds.len()]).collect()
}

#[test]
fn broker_sigkill_and_clean_stop_flaps_lose_no_acknowledged_uplink() {
    let flaps = env_or("GATEWAYD_CHAOS_FLAPS", 4);
    let rate = env_or("GATEWAYD_CHAOS_RATE", 50);
    let down = Duration::from_millis(env_or("GATEWAYD_CHAOS_DOWN_MS", 0));
    run(
        "broker flaps",
        &plan(&[Fault::Kill9, Fault::Stop], flaps),
        rate,
        down,
    );
}

#[test]
fn connection_resets_and_closes_lose_nothing_and_duplicates_are_counted() {
    let resets = env_or("GATEWAYD_CHAOS_RESETS", 6);
    let rate = env_or("GATEWAYD_CHAOS_RATE", 50);
    run(
        "connection resets",
        &plan(&[Fault::Reset, Fault::Close], resets),
        rate,
        Duration::ZERO,
    );
}

#[test]
fn a_half_open_connection_is_found_by_keepalive_and_nothing_is_lost() {
    let rate = env_or("GATEWAYD_CHAOS_RATE", 50);
    run("half-open", &[Fault::Stall], rate, Duration::ZERO);
}
