//! The pipeline task: moves frames from the radio through the filter into the outbox, releases
//! the radio's acknowledgement once stored, and emits gateway stats every interval.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use drivers::radio::{CrcStatus, Eui64, RadioEvent, RadioHealth, RxFrame, StoreAck};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::filter::{DropReason, UplinkFilter, UplinkVerdict};
use super::outcome::{Outcome, UplinkOutcome};
use crate::chirpstack;
use crate::config::UplinkConfig;
use crate::interval_stats::{self, RxInterval, TxStatsHandle};
use crate::mqtt::topic;
use crate::outbox::{Class, NewMessage, OutboxHandle};
use crate::position::Whereabouts;
use drivers::ratelimit::RateLimiter;
use drivers::time::since_gps_epoch;

/// Cumulative counters, read by status and metrics.
#[derive(Debug, Default)]
pub struct PipelineCounters {
    /// Frames received from the radio.
    pub received: AtomicU64,
    /// Frames with a good CRC.
    pub crc_ok: AtomicU64,
    /// Frames stored for forwarding.
    pub forwarded: AtomicU64,
    /// Proprietary frames handed to proof of coverage.
    pub proprietary: AtomicU64,
    /// Frames dropped, by [`DropReason`] (index in [`DropReason::ALL`]).
    pub dropped: [AtomicU64; 7],
    /// Batches the outbox failed to store (their acknowledgement was withheld).
    pub store_failures: AtomicU64,
    /// Stats messages stored.
    pub stats_sent: AtomicU64,
    /// Uplinks stored per minute over the last hour.
    pub last_hour: HourWindow,
    /// The radio backend's latest health report.
    pub radio_health: std::sync::Mutex<Option<RadioHealth>>,
}

/// Counts per minute over a sliding hour (for "uplinks in the last hour").
#[derive(Debug)]
pub struct HourWindow(std::sync::Mutex<(u64, [u64; 60])>);

impl Default for HourWindow {
    fn default() -> Self {
        HourWindow(std::sync::Mutex::new((0, [0; 60])))
    }
}

impl HourWindow {
    /// Add `n` at `minute` (minutes since any fixed origin, non-decreasing).
    pub fn add(&self, minute: u64, n: u64) {
        if let Ok(mut g) = self.0.lock() {
            let (last, buckets) = &mut *g;
            Self::advance(last, buckets, minute);
            buckets[(minute % 60) as usize] += n;
        }
    }

    /// The total of the 60 minutes up to `minute`.
    pub fn total(&self, minute: u64) -> u64 {
        self.0
            .lock()
            .map(|mut g| {
                let (last, buckets) = &mut *g;
                Self::advance(last, buckets, minute);
                buckets.iter().sum()
            })
            .unwrap_or(0)
    }

    fn advance(last: &mut u64, buckets: &mut [u64; 60], minute: u64) {
        if minute <= *last {
            return;
        }
        for m in (*last + 1)..=minute.min(*last + 60) {
            buckets[(m % 60) as usize] = 0;
        }
        *last = minute;
    }
}

/// Minutes since the Unix epoch, for [`HourWindow`].
pub fn minute_now() -> u64 {
    drivers::time::unix_ms(SystemTime::now()) / 60_000
}

impl PipelineCounters {
    /// Dropped count for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        let i = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.dropped[i].load(Ordering::Relaxed)
    }
}

/// Settings of the pipeline task.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// CRC policy, filters, de-duplication.
    pub uplink: UplinkConfig,
    /// Configured gateway id (else the one the radio announces).
    pub gateway: Option<Eui64>,
    /// MQTT topic prefix.
    pub topic_prefix: String,
    /// Encode as JSON instead of protobuf.
    pub json: bool,
    /// Uplinks not sent within this time are dropped.
    pub uplink_expiry: Option<Duration>,
    /// Stats not sent within this time are dropped.
    pub stats_expiry: Option<Duration>,
    /// Stats interval.
    pub stats_interval: Duration,
}

/// The pipeline task's state.
pub struct Pipeline {
    config: PipelineConfig,
    filter: UplinkFilter,
    outbox: OutboxHandle,
    gateway_tx: watch::Sender<Option<Eui64>>,
    whereabouts: Whereabouts,
    counters: Arc<PipelineCounters>,
    interval: RxInterval,
    tx_stats: Option<TxStatsHandle>,
    proprietary: Option<mpsc::Sender<RxFrame>>,
    stores: JoinSet<()>,
    warn_limit: RateLimiter,
    live: Option<watch::Receiver<UplinkConfig>>,
    heartbeat: Option<crate::service::watchdog::Heartbeat>,
    receipts: Option<ReceiptFeed>,
}

/// Where forwarded uplinks go for data-transfer receipts (docs/proof-of-coverage.md §6.4):
/// with a feed, uplink ids are consecutive from `next_id` (in the order frames are accepted)
/// and every id's store outcome is sent to the receipt task; without one they are random.
#[derive(Debug)]
pub struct ReceiptFeed {
    /// The next uplink id to assign.
    pub next_id: u32,
    /// The receipt task's input.
    pub outcomes: mpsc::Sender<UplinkOutcome>,
}

/// Name of the pipeline loop for the watchdog.
pub const HEARTBEAT_NAME: &str = "pipeline";
/// How often the pipeline loop checks in with the watchdog.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

impl Pipeline {
    /// A pipeline; `gateway_tx` publishes the gateway id once known (config or announced).
    pub fn new(
        config: PipelineConfig,
        outbox: OutboxHandle,
        gateway_tx: watch::Sender<Option<Eui64>>,
        whereabouts: Whereabouts,
        proprietary: Option<mpsc::Sender<RxFrame>>,
    ) -> Pipeline {
        if let Some(id) = config.gateway {
            gateway_tx.send_replace(Some(id));
        }
        Pipeline {
            filter: UplinkFilter::new(config.uplink.clone()),
            config,
            outbox,
            gateway_tx,
            whereabouts,
            counters: Arc::new(PipelineCounters::default()),
            interval: RxInterval::default(),
            tx_stats: None,
            proprietary,
            stores: JoinSet::new(),
            warn_limit: RateLimiter::new(Duration::from_secs(10)),
            live: None,
            heartbeat: None,
            receipts: None,
        }
    }

    /// Number forwarded uplinks consecutively and report their store outcomes to `feed`.
    pub fn with_receipts(mut self, feed: ReceiptFeed) -> Pipeline {
        self.receipts = Some(feed);
        self
    }

    /// Report what the downlink task counts in `tx_stats` (downlinks, duty cycle) in each
    /// interval's stats.
    pub fn with_tx_stats(mut self, tx_stats: TxStatsHandle) -> Pipeline {
        self.tx_stats = Some(tx_stats);
        self
    }

    /// Take CRC policy, filters and de-duplication from `live` whenever it changes (reload).
    pub fn with_live_config(mut self, live: watch::Receiver<UplinkConfig>) -> Pipeline {
        self.live = Some(live);
        self
    }

    /// Check in with the watchdog every [`HEARTBEAT_EVERY`] while the loop runs.
    pub fn with_heartbeat(mut self, heartbeat: crate::service::watchdog::Heartbeat) -> Pipeline {
        self.heartbeat = Some(heartbeat);
        self
    }

    /// The cumulative counters.
    pub fn counters(&self) -> Arc<PipelineCounters> {
        self.counters.clone()
    }

    /// Run until the radio's event stream ends, then wait for pending stores.
    pub async fn run(mut self, mut events: mpsc::Receiver<RadioEvent>) {
        let mut tick = tokio::time::interval(self.config.stats_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut alive = tokio::time::interval(HEARTBEAT_EVERY);
        alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut live = self.live.take();
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.on_event(event),
                    None => break,
                },
                _ = tick.tick() => self.emit_stats(),
                _ = alive.tick() => {
                    if let Some(h) = &self.heartbeat {
                        h.beat(HEARTBEAT_NAME);
                    }
                }
                Ok(()) = async { live.as_mut().expect("guarded").changed().await }, if live.is_some() => {
                    if let Some(rx) = &live {
                        let config = rx.borrow().clone();
                        log::info!("uplink filters reloaded");
                        self.filter = UplinkFilter::new(config.clone());
                        self.config.uplink = config;
                    }
                }
                Some(_) = self.stores.join_next(), if !self.stores.is_empty() => {}
            }
        }
        while self.stores.join_next().await.is_some() {}
    }

    fn gateway(&mut self, announced: Option<Eui64>) -> Option<Eui64> {
        if let Some(id) = self.config.gateway {
            return Some(id);
        }
        if let Some(id) = announced {
            if *self.gateway_tx.borrow() != Some(id) {
                log::info!("gateway id {id} announced by the radio");
                self.gateway_tx.send_replace(Some(id));
            }
            return Some(id);
        }
        *self.gateway_tx.borrow()
    }

    fn on_event(&mut self, event: RadioEvent) {
        match event {
            RadioEvent::Uplinks {
                gateway,
                frames,
                ack,
            } => self.on_uplinks(gateway, frames, ack),
            RadioEvent::Announce(id) => {
                self.gateway(Some(id));
            }
            RadioEvent::Stats { gateway, .. } => {
                // The daemon emits its own stats every interval; the radio's only name it.
                self.gateway(gateway);
            }
            RadioEvent::Health(h) => {
                match &h {
                    RadioHealth::Up => log::info!("radio is up"),
                    RadioHealth::Down(why) => log::warn!("radio is down: {why}"),
                }
                if let Ok(mut g) = self.counters.radio_health.lock() {
                    *g = Some(h);
                }
            }
        }
    }

    fn on_uplinks(&mut self, announced: Option<Eui64>, frames: Vec<RxFrame>, ack: StoreAck) {
        let Some(gateway) = self.gateway(announced) else {
            if self
                .warn_limit
                .check("no_gateway_id", Instant::now())
                .is_some()
            {
                log::warn!("uplinks received before the gateway id is known: set gateway.id");
            }
            ack.rejected();
            return;
        };
        let now = Instant::now();
        let wall = SystemTime::now();
        let location = self.whereabouts.location();
        let gps_now = self.whereabouts.gps_time(now);
        let up_topic = topic(&self.config.topic_prefix, gateway, "event/up");
        let mut msgs = Vec::with_capacity(frames.len());
        let mut chained = Vec::new();
        for mut frame in frames {
            // A radio without its own clock (SPI, simulated) gets the hotspot's GPS time.
            if frame.meta.time.is_none() {
                if let Some(t) = gps_now {
                    frame.meta.time = Some(t);
                    frame.meta.gps_time = since_gps_epoch(t);
                }
            }
            self.counters.received.fetch_add(1, Ordering::Relaxed);
            if frame.meta.crc == CrcStatus::Ok {
                self.counters.crc_ok.fetch_add(1, Ordering::Relaxed);
            }
            self.interval.count(&frame.meta);
            match self.filter.classify(now, &frame) {
                UplinkVerdict::Forward(_) => {
                    let uplink_id: u32 = match &mut self.receipts {
                        Some(feed) => {
                            let id = feed.next_id;
                            feed.next_id = id.wrapping_add(1);
                            chained.push((id, frame.payload.clone()));
                            id
                        }
                        None => rand::random(),
                    };
                    let up =
                        chirpstack::uplink_frame(gateway, &frame, uplink_id, location.as_ref());
                    msgs.push(NewMessage {
                        class: Class::Uplink,
                        topic: up_topic.clone(),
                        payload: chirpstack::encode(&up, self.config.json),
                        expires_at: self.config.uplink_expiry.map(|d| wall + d),
                    });
                }
                UplinkVerdict::Proprietary => {
                    self.counters.proprietary.fetch_add(1, Ordering::Relaxed);
                    if let Some(tx) = &self.proprietary {
                        let _ = tx.try_send(frame);
                    }
                }
                UplinkVerdict::Drop(reason) => {
                    let i = DropReason::ALL
                        .iter()
                        .position(|r| *r == reason)
                        .unwrap_or(0);
                    self.counters.dropped[i].fetch_add(1, Ordering::Relaxed);
                    log::debug!("uplink dropped: {}", reason.label());
                }
            }
        }
        if msgs.is_empty() {
            ack.stored();
            return;
        }
        let n = msgs.len() as u64;
        let outbox = self.outbox.clone();
        let counters = self.counters.clone();
        let feed = self.receipts.as_ref().map(|f| f.outcomes.clone());
        self.stores.spawn(async move {
            let stored = match outbox.store(msgs).await {
                Ok(()) => {
                    counters.forwarded.fetch_add(n, Ordering::Relaxed);
                    counters.last_hour.add(minute_now(), n);
                    ack.stored();
                    true
                }
                Err(e) => {
                    counters.store_failures.fetch_add(1, Ordering::Relaxed);
                    if matches!(e, crate::outbox::OutboxError::Full { .. }) {
                        // A state the outbox logs once, not a failure per batch.
                        log::debug!("could not store {n} uplinks: {e}");
                    } else {
                        log::error!("could not store {n} uplinks: {e}");
                    }
                    ack.rejected();
                    false
                }
            };
            if let Some(feed) = feed {
                for (id, phy) in chained {
                    let outcome = if stored {
                        Outcome::Stored(phy)
                    } else {
                        Outcome::Failed
                    };
                    if feed.send((id, outcome)).await.is_err() {
                        break;
                    }
                }
            }
        });
    }

    fn emit_stats(&mut self) {
        let Some(gateway) = *self.gateway_tx.borrow() else {
            return;
        };
        // This interval ends: its counters go into the message, the next starts at zero.
        let rx = std::mem::take(&mut self.interval);
        let (tx, duty_cycle) = self
            .tx_stats
            .as_ref()
            .map(TxStatsHandle::take)
            .unwrap_or_default();
        let location = self.whereabouts.location();
        let wall = SystemTime::now();
        let stats = interval_stats::gateway_stats(
            gateway,
            wall,
            &rx,
            &tx,
            duty_cycle,
            location.as_ref(),
            HashMap::new(),
        );
        let msg = NewMessage {
            class: Class::Stats,
            topic: topic(&self.config.topic_prefix, gateway, "event/stats"),
            payload: chirpstack::encode(&stats, self.config.json),
            expires_at: self.config.stats_expiry.map(|d| wall + d),
        };
        let outbox = self.outbox.clone();
        let sent = self.counters.clone();
        self.stores.spawn(async move {
            match outbox.store(vec![msg]).await {
                Ok(()) => {
                    sent.stats_sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e @ crate::outbox::OutboxError::Full { .. }) => {
                    log::debug!("could not store gateway stats: {e}")
                }
                Err(e) => log::warn!("could not store gateway stats: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_window_slides() {
        let w = HourWindow::default();
        w.add(1000, 5);
        w.add(1001, 2);
        assert_eq!(w.total(1001), 7);
        assert_eq!(w.total(1059), 7);
        assert_eq!(w.total(1060), 2, "minute 1000 left the window");
        assert_eq!(w.total(1061), 0);
        w.add(5000, 1);
        assert_eq!(w.total(5000), 1);
    }
}
