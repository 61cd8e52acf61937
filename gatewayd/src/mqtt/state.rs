//! The pure protocol logic of the MQTT link: the in-flight window mapping outbox ids to
//! packet ids, and reconnect backoff. No I/O; the async side feeds it events.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// The publish window of one connection.
///
/// Publishes are handed to rumqttc in order; rumqttc reports each one as written
/// (`Outgoing::Publish(pkid)`) in the same order, so a FIFO maps them to packet ids. A QoS 1
/// publish then waits for its PUBACK; a QoS 0 one (packet id 0) is done once written.
/// Entries without an outbox id are the link's own messages (connection state).
#[derive(Debug)]
pub struct InflightWindow {
    size: usize,
    issued: VecDeque<Option<i64>>,
    awaiting_ack: HashMap<u16, Option<i64>>,
}

impl InflightWindow {
    /// A window of at most `size` publishes not yet confirmed.
    pub fn new(size: usize) -> InflightWindow {
        InflightWindow {
            size: size.max(1),
            issued: VecDeque::new(),
            awaiting_ack: HashMap::new(),
        }
    }

    /// How many more publishes may be issued now.
    pub fn room(&self) -> usize {
        self.size.saturating_sub(self.in_flight())
    }

    /// Publishes issued and not yet confirmed.
    pub fn in_flight(&self) -> usize {
        self.issued.len() + self.awaiting_ack.len()
    }

    /// Whether nothing is waiting for rumqttc or the broker.
    pub fn is_idle(&self) -> bool {
        self.in_flight() == 0
    }

    /// A publish (outbox id, or `None` for the link's own) was handed to rumqttc.
    pub fn issued(&mut self, id: Option<i64>) {
        self.issued.push_back(id);
    }

    /// rumqttc wrote the next publish with packet id `pkid`. Returns the outbox id that is
    /// done now (QoS 0), if any.
    pub fn written(&mut self, pkid: u16) -> Option<i64> {
        let Some(id) = self.issued.pop_front() else {
            log::debug!("mqtt: rumqttc wrote a publish (pkid {pkid}) the link did not issue");
            return None;
        };
        if pkid == 0 {
            return id;
        }
        if let Some(Some(old)) = self.awaiting_ack.insert(pkid, id) {
            // Cannot happen while the window is no larger than rumqttc's; be safe anyway.
            log::warn!(
                "mqtt: packet id {pkid} reused before its PUBACK; outbox id {old} will be resent"
            );
        }
        None
    }

    /// The broker acknowledged `pkid`. Returns the outbox id that is done, if any.
    pub fn puback(&mut self, pkid: u16) -> Option<i64> {
        self.awaiting_ack.remove(&pkid).flatten()
    }

    /// The connection is gone: every unconfirmed outbox id, oldest first, to hand out again,
    /// and how many of them were written to the broker (their PUBACK was lost, so the broker
    /// may already have them: resending them can make duplicates).
    pub fn disconnected(&mut self) -> Unconfirmed {
        let mut ids: Vec<i64> = self.awaiting_ack.drain().filter_map(|(_, id)| id).collect();
        let written = ids.len();
        ids.extend(self.issued.drain(..).flatten());
        ids.sort_unstable();
        Unconfirmed { ids, written }
    }
}

/// What a lost connection leaves unconfirmed (see [`InflightWindow::disconnected`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unconfirmed {
    /// Outbox ids to hand out again, oldest first.
    pub ids: Vec<i64>,
    /// How many of them were written and not acknowledged (possible duplicates).
    pub written: usize,
}

/// Exponential backoff with full jitter: the n-th consecutive failure waits a uniformly random
/// time in `[0, min(max, min_delay * 2^n)]` (so a broker restart is not met by every gateway
/// at once), but never less than 10 ms.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

/// Shortest wait between attempts, whatever the jitter.
const FLOOR: Duration = Duration::from_millis(10);

impl Backoff {
    /// Backoff growing from `min` to `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            failures: 0,
        }
    }

    /// The upper bound of the next wait.
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(31));
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The wait after another failure, given `random` uniform in `[0, 1)`.
    pub fn next_delay(&mut self, random: f64) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        ceiling.mul_f64(random.clamp(0.0, 1.0)).max(FLOOR)
    }

    /// A connection succeeded: start again from `min`.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos1_ids_are_done_on_their_puback_only() {
        let mut w = InflightWindow::new(3);
        assert_eq!(w.room(), 3);
        w.issued(None); // ONLINE
        w.issued(Some(10));
        w.issued(Some(11));
        assert_eq!(w.room(), 0);
        assert_eq!(w.written(1), None);
        assert_eq!(w.written(2), None);
        assert_eq!(w.written(3), None);
        assert_eq!(w.room(), 0);
        assert_eq!(w.puback(1), None); // the link's own
        assert_eq!(w.room(), 1);
        // Out of order acks map to the right ids.
        assert_eq!(w.puback(3), Some(11));
        assert_eq!(w.puback(2), Some(10));
        assert_eq!(w.puback(2), None);
        assert!(w.is_idle());
    }

    #[test]
    fn qos0_ids_are_done_when_written() {
        let mut w = InflightWindow::new(4);
        w.issued(Some(5));
        w.issued(Some(6));
        assert_eq!(w.written(0), Some(5));
        assert_eq!(w.written(0), Some(6));
        assert!(w.is_idle());
        // A surprise write changes nothing.
        assert_eq!(w.written(0), None);
        assert_eq!(w.room(), 4);
    }

    #[test]
    fn disconnect_returns_every_unconfirmed_id_in_order() {
        let mut w = InflightWindow::new(10);
        for id in [7, 8, 9, 10] {
            w.issued(Some(id));
        }
        w.issued(None);
        w.written(1);
        w.written(2);
        assert_eq!(w.puback(1), Some(7));
        // 8 was written (its PUBACK may be lost), 9 and 10 never left.
        assert_eq!(
            w.disconnected(),
            Unconfirmed {
                ids: vec![8, 9, 10],
                written: 1
            }
        );
        assert!(w.is_idle());
        assert_eq!(w.room(), 10);
        assert_eq!(w.puback(2), None);
    }

    #[test]
    fn backoff_grows_to_max_with_full_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        assert_eq!(b.next_delay(0.999), Duration::from_micros(499_500));
        assert_eq!(b.ceiling(), Duration::from_secs(1));
        assert_eq!(b.next_delay(0.5), Duration::from_millis(500));
        assert_eq!(b.next_delay(0.25), Duration::from_millis(500));
        for _ in 0..100 {
            b.next_delay(0.5);
        }
        assert_eq!(b.ceiling(), Duration::from_secs(60));
        assert_eq!(b.next_delay(0.5), Duration::from_secs(30));
        assert_eq!(b.next_delay(0.0), FLOOR);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(500));
    }

    #[test]
    fn backoff_delay_stays_within_bounds_for_any_random_value() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for i in 0..200 {
            let r = (i as f64 * 0.618_033_988_7) % 1.0;
            let ceiling = b.ceiling();
            let d = b.next_delay(r);
            assert!(
                d <= ceiling.max(FLOOR) && d >= FLOOR,
                "{d:?} vs {ceiling:?}"
            );
        }
        // Out-of-range randomness is clamped.
        assert!(b.next_delay(7.0) <= Duration::from_secs(5));
    }
}
