//! The watchdog health gate: systemd gets `WATCHDOG=1` only while every core loop checks in.
//!
//! [`Watchdog`] is pure (time is an argument). [`spawn_watchdog`] runs it as one task that
//! owns the gate and the [`Notifier`]; loops reach it through a cloneable [`Heartbeat`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::notify::Notifier;

/// Per-loop check-in deadlines. A loop that misses its period stops the pings, so systemd
/// restarts the service after `WatchdogSec=`.
#[derive(Debug, Default)]
pub struct Watchdog {
    loops: BTreeMap<String, LoopState>,
}

#[derive(Debug)]
struct LoopState {
    period: Duration,
    last: Instant,
}

impl Watchdog {
    /// A gate with no loops (which always allows pings).
    pub fn new() -> Watchdog {
        Watchdog::default()
    }

    /// Register (or re-register) `name`, which must check in at least every `period`.
    /// Registration counts as a check-in at `now`.
    pub fn register(&mut self, name: &str, period: Duration, now: Instant) {
        self.loops
            .insert(name.to_owned(), LoopState { period, last: now });
    }

    /// Forget `name` (a loop that ended on purpose, e.g. during shutdown).
    pub fn unregister(&mut self, name: &str) {
        self.loops.remove(name);
    }

    /// Record that `name` ran at `now`. Returns false (and changes nothing) for a loop
    /// that was never registered.
    pub fn heartbeat(&mut self, name: &str, now: Instant) -> bool {
        match self.loops.get_mut(name) {
            Some(l) => {
                l.last = l.last.max(now);
                true
            }
            None => false,
        }
    }

    /// Loops that have not checked in within their period at `now`, by name.
    pub fn late(&self, now: Instant) -> Vec<&str> {
        self.loops
            .iter()
            .filter(|(_, l)| now.saturating_duration_since(l.last) > l.period)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// True only while every registered loop checked in within its period.
    pub fn should_ping(&self, now: Instant) -> bool {
        self.late(now).is_empty()
    }
}

#[derive(Debug)]
enum Beat {
    Register(String, Duration),
    Unregister(String),
    Alive(String),
}

/// A cloneable handle through which loops register and check in with the watchdog task.
/// Sending never blocks: if the task is gone or its queue is full the beat is dropped
/// (a dropped beat can only make the gate stricter).
#[derive(Clone, Debug)]
pub struct Heartbeat {
    tx: mpsc::Sender<Beat>,
}

impl Heartbeat {
    /// Register loop `name` with its allowed period between check-ins.
    pub async fn register(&self, name: &str, period: Duration) {
        // Registration must not be lost to a full queue: wait for room.
        let _ = self.tx.send(Beat::Register(name.to_owned(), period)).await;
    }

    /// Remove loop `name` (it ended on purpose).
    pub async fn unregister(&self, name: &str) {
        let _ = self.tx.send(Beat::Unregister(name.to_owned())).await;
    }

    /// Check in for loop `name` now.
    pub fn beat(&self, name: &str) {
        let _ = self.tx.try_send(Beat::Alive(name.to_owned()));
    }
}

/// Start the watchdog task. It pings `notifier` every `ping_every` (when `Some`, normally
/// [`super::notify::ping_interval`] of [`super::notify::watchdog_timeout_from_env`]) while
/// the gate allows, and logs (at most once per minute) which loops are late. It ends when
/// `shutdown` is cancelled.
pub fn spawn_watchdog(
    notifier: Arc<Notifier>,
    ping_every: Option<Duration>,
    shutdown: CancellationToken,
) -> (Heartbeat, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Beat>(256);
    let task = tokio::spawn(async move {
        let mut gate = Watchdog::new();
        let period = ping_every.unwrap_or(Duration::from_secs(3600));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_warning: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                beat = rx.recv() => {
                    let now = Instant::now();
                    match beat {
                        Some(Beat::Register(n, p)) => gate.register(&n, p, now),
                        Some(Beat::Unregister(n)) => gate.unregister(&n),
                        Some(Beat::Alive(n)) => {
                            if !gate.heartbeat(&n, now) {
                                log::debug!("watchdog: heartbeat from unregistered loop {n}");
                            }
                        }
                        None => break,
                    }
                }
                _ = tick.tick(), if ping_every.is_some() => {
                    let now = Instant::now();
                    if gate.should_ping(now) {
                        if let Err(e) = notifier.watchdog() {
                            log::warn!("watchdog: {e}");
                        }
                    } else if last_warning.is_none_or(|t| now - t >= Duration::from_secs(60)) {
                        last_warning = Some(now);
                        log::error!(
                            "watchdog: loops not responding: {}; withholding the systemd watchdog ping",
                            gate.late(now).join(", ")
                        );
                    }
                }
            }
        }
    });
    (Heartbeat { tx }, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn empty_gate_pings() {
        assert!(Watchdog::new().should_ping(Instant::now()));
    }

    #[test]
    fn a_stuck_loop_stops_the_pings_and_recovers_when_it_checks_in() {
        let t0 = Instant::now();
        let mut w = Watchdog::new();
        w.register("radio", 10 * S, t0);
        w.register("mqtt", 30 * S, t0);
        assert!(w.should_ping(t0 + 10 * S));
        assert!(w.heartbeat("mqtt", t0 + 9 * S));
        assert!(!w.should_ping(t0 + 11 * S), "radio is late");
        assert_eq!(w.late(t0 + 11 * S), vec!["radio"]);
        assert!(w.heartbeat("radio", t0 + 12 * S));
        assert!(w.should_ping(t0 + 12 * S));
        assert!(!w.should_ping(t0 + 40 * S));
        assert_eq!(w.late(t0 + 40 * S), vec!["mqtt", "radio"]);
    }

    #[test]
    fn unknown_heartbeats_change_nothing_and_unregister_releases_the_gate() {
        let t0 = Instant::now();
        let mut w = Watchdog::new();
        w.register("outbox", 5 * S, t0);
        assert!(!w.heartbeat("ghost", t0 + 6 * S));
        assert!(!w.should_ping(t0 + 6 * S));
        w.unregister("outbox");
        assert!(w.should_ping(t0 + 6 * S));
    }

    #[test]
    fn a_heartbeat_from_the_past_does_not_rewind() {
        let t0 = Instant::now();
        let mut w = Watchdog::new();
        w.register("gps", 5 * S, t0 + 4 * S);
        w.heartbeat("gps", t0);
        assert!(w.should_ping(t0 + 9 * S));
    }

    fn count_pings(sock: &UnixDatagram) -> usize {
        sock.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        let mut n = 0;
        while let Ok(len) = sock.recv(&mut buf) {
            assert_eq!(&buf[..len], b"WATCHDOG=1");
            n += 1;
        }
        n
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_pings_only_while_loops_check_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let notifier = Arc::new(Notifier::new(&path).unwrap());
        let shutdown = CancellationToken::new();
        let (hb, task) = spawn_watchdog(notifier, Some(S), shutdown.clone());
        hb.register("radio", 3 * S).await;
        for _ in 0..5 {
            hb.beat("radio");
            tokio::time::sleep(S).await;
        }
        assert!(count_pings(&server) >= 4, "pings while the loop is alive");
        // The loop stops checking in: after its period no more pings.
        tokio::time::sleep(4 * S).await;
        count_pings(&server);
        tokio::time::sleep(5 * S).await;
        assert_eq!(count_pings(&server), 0, "no ping while the loop is stuck");
        hb.beat("radio");
        tokio::time::sleep(2 * S).await;
        assert!(count_pings(&server) >= 1, "pings resume");
        shutdown.cancel();
        tokio::time::timeout(5 * S, task).await.unwrap().unwrap();
    }
}
