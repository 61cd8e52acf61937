//! What the daemon knows about itself, gathered for `gatewayd status`, `/metrics` and the
//! systemd STATUS= line. Read synchronously from counters and watch channels; the outbox's
//! figures are cached by the probe loop (the outbox answers asynchronously).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drivers::gps::ReceiverStatus;
use drivers::radio::{Eui64, RadioHealth};
use tokio::sync::watch;

use crate::mqtt::{LinkCounters, LinkState};
use crate::outbox::OutboxStats;
use crate::pipeline::task::minute_now;
use crate::pipeline::PipelineCounters;
use crate::position::LocationSource;
use crate::position::Whereabouts;
use crate::service::status::{
    render_line, ClassCount, GpsStatus, MqttStatus, RadioStatus, StatusSnapshot,
};

/// The MQTT link as the daemon state sees it: its state, when that last changed, and its
/// counters.
pub type LinkView = (watch::Receiver<LinkState>, Instant, Arc<LinkCounters>);

/// Shared, read-mostly daemon state.
pub struct DaemonState {
    /// When the daemon started.
    pub started: Instant,
    /// Radio backend name.
    pub backend: &'static str,
    /// Broker `host:port`.
    pub broker: String,
    /// The gateway id once known.
    pub gateway: watch::Receiver<Option<Eui64>>,
    /// Pipeline counters.
    pub pipeline: Arc<PipelineCounters>,
    /// The MQTT link's state (set once the link runs), when it last changed, and its
    /// counters.
    pub link: Mutex<Option<LinkView>>,
    /// The outbox's latest figures.
    pub outbox: Mutex<Option<OutboxStats>>,
    /// Location and GPS.
    pub whereabouts: Whereabouts,
    /// Witness reports made (set once the witness task runs).
    pub witness: Mutex<Option<Arc<crate::poc::task::WitnessCounters>>>,
    /// The transmit path's figures (set once the downlink task runs).
    pub downlink: Mutex<Option<crate::downlink::DownlinkStats>>,
    /// Receipt counters (set once the receipt task runs).
    pub receipts: Mutex<Option<Arc<crate::poc::receipt_task::ReceiptCounters>>>,
    /// Beacons sent and skipped (set once the beacon task runs).
    pub beacon: Mutex<Option<Arc<crate::poc::beacon_task::BeaconCounters>>>,
    /// The radio backend's own counters.
    pub radio_counters: drivers::radio::RadioCounters,
    /// Why the duty-cycle ledger was distrusted at start, if it was.
    pub ledger_note: Option<String>,
}

impl DaemonState {
    /// The snapshot served to `gatewayd status` and `/metrics`.
    pub fn snapshot(&self) -> StatusSnapshot {
        let health = self
            .pipeline
            .radio_health
            .lock()
            .ok()
            .and_then(|g| g.clone());
        let radio = Some(RadioStatus {
            backend: self.backend.to_string(),
            running: matches!(health, Some(RadioHealth::Up)),
            detail: match health {
                Some(RadioHealth::Down(why)) => Some(why),
                None => Some("starting".to_string()),
                Some(RadioHealth::Up) => None,
            },
        });
        let mqtt = self.link.lock().ok().and_then(|g| {
            g.as_ref().map(|(rx, since, counters)| {
                let state = rx.borrow().clone();
                let load =
                    |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
                MqttStatus {
                    connections_total: load(&counters.connections),
                    resent_total: load(&counters.resent),
                    commands_total: load(&counters.commands),
                    commands_dropped: counters
                        .dropped_by_reason()
                        .into_iter()
                        .map(|(r, n)| (r.to_string(), n))
                        .collect(),
                    connected: matches!(state, LinkState::Connected),
                    broker: self.broker.clone(),
                    since_seconds: Some(since.elapsed().as_secs()),
                    last_error: match state {
                        LinkState::Disconnected { reason, .. } => Some(reason),
                        _ => None,
                    },
                }
            })
        });
        let outbox = self.outbox.lock().ok().and_then(|g| g.clone());
        let witness = self.witness.lock().ok().and_then(|g| g.clone());
        let (downlinks, guard, duty_cycle) = match self.downlink.lock().ok().and_then(|g| g.clone())
        {
            Some(stats) => {
                let (d, g, dc) = stats.status();
                (Some(d), Some(g), dc)
            }
            None => (None, None, Vec::new()),
        };
        let gps = self.whereabouts.gps_state().map(|g| GpsStatus {
            fix: g.status == ReceiverStatus::Fix,
            state: match g.status {
                ReceiverStatus::NoDevice => "no_device",
                ReceiverStatus::NoFix => "no_fix",
                ReceiverStatus::Fix => "fix",
                ReceiverStatus::Stale => "stale",
            }
            .to_string(),
            satellites: g
                .position
                .as_ref()
                .and_then(|p| p.satellites)
                .map(u32::from),
            position_source: source_name(&self.whereabouts),
        });
        let receipts = self.receipts.lock().ok().and_then(|g| g.clone());
        let per_class = |f: fn(&crate::outbox::ClassStats) -> u64| {
            outbox
                .as_ref()
                .map(|o| {
                    crate::outbox::Class::ALL
                        .iter()
                        .map(|c| ClassCount {
                            class: c.name().to_string(),
                            count: f(o.class(*c)),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        StatusSnapshot {
            receipts_total: receipts.as_ref().map(|r| load(&r.receipts)),
            receipt_uplinks_total: receipts.as_ref().map(|r| load(&r.uplinks)),
            receipt_gaps_total: receipts.as_ref().map(|r| load(&r.gaps)),
            receipt_failures_total: receipts.as_ref().map(|r| load(&r.failures)),
            last_receipt_age_seconds: receipts.as_ref().and_then(|r| {
                let ms = load(&r.last_ms);
                let now = drivers::time::unix_ms(std::time::SystemTime::now());
                (ms > 0).then(|| now.saturating_sub(ms) / 1000)
            }),
            outbox_expired: per_class(|c| c.expired),
            outbox_evicted: per_class(|c| c.evicted),
            version: env!("CARGO_PKG_VERSION").to_string(),
            gateway_id: self.gateway.borrow().map(|g| g.to_string()),
            uptime_seconds: self.started.elapsed().as_secs(),
            radio,
            mqtt,
            outbox_messages: outbox.as_ref().map(OutboxStats::messages),
            outbox_oldest_age_seconds: outbox
                .as_ref()
                .and_then(OutboxStats::oldest_age)
                .map(|d| d.as_secs()),
            uplinks_received_total: Some(
                self.pipeline
                    .forwarded
                    .load(std::sync::atomic::Ordering::Relaxed),
            ),
            uplinks_last_hour: Some(self.pipeline.last_hour.total(minute_now())),
            gps,
            witnesses_total: witness
                .as_ref()
                .map(|w| w.witnesses.load(std::sync::atomic::Ordering::Relaxed)),
            last_witness_age_seconds: witness.as_ref().and_then(|w| {
                let ms = w.last_ms.load(std::sync::atomic::Ordering::Relaxed);
                let now = drivers::time::unix_ms(std::time::SystemTime::now());
                (ms > 0).then(|| now.saturating_sub(ms) / 1000)
            }),
            duty_cycle,
            downlinks,
            guard,
            storage: Some(crate::service::storage::StorageStatus::new(
                outbox.as_ref(),
                self.ledger_note.as_deref(),
            )),
            ..Default::default()
        }
        .with_beacons(self.beacon.lock().ok().and_then(|g| g.clone()))
        .with_radio_counters(&self.radio_counters)
        .with_time(self)
    }

    /// Record the beacon task's counters (`None`: beaconing is off).
    pub fn set_beacon_counters(
        &self,
        counters: Option<Arc<crate::poc::beacon_task::BeaconCounters>>,
    ) {
        if let Ok(mut g) = self.beacon.lock() {
            *g = counters;
        }
    }

    /// Record the witness task's counters.
    pub fn set_witness_counters(&self, counters: Arc<crate::poc::task::WitnessCounters>) {
        if let Ok(mut g) = self.witness.lock() {
            *g = Some(counters);
        }
    }

    /// Record the downlink task's view of the transmit path.
    pub fn set_downlink_stats(&self, stats: crate::downlink::DownlinkStats) {
        if let Ok(mut g) = self.downlink.lock() {
            *g = Some(stats);
        }
    }

    /// Record the receipt task's counters.
    pub fn set_receipt_counters(&self, counters: Arc<crate::poc::receipt_task::ReceiptCounters>) {
        if let Ok(mut g) = self.receipts.lock() {
            *g = Some(counters);
        }
    }

    /// The one-line summary for systemd's STATUS= (see [`render_line`]).
    pub fn status_line(&self) -> String {
        render_line(&self.snapshot())
    }

    /// Record that the link runs.
    pub fn set_link(&self, rx: watch::Receiver<LinkState>, counters: Arc<LinkCounters>) {
        if let Ok(mut g) = self.link.lock() {
            *g = Some((rx, Instant::now(), counters));
        }
    }

    /// Note a link state change (for "since").
    pub fn link_changed(&self) {
        if let Ok(mut g) = self.link.lock() {
            if let Some((_, since, _)) = g.as_mut() {
                *since = Instant::now();
            }
        }
    }
}

impl StatusSnapshot {
    /// The beacon figures, when the beacon task runs.
    fn with_beacons(
        mut self,
        counters: Option<Arc<crate::poc::beacon_task::BeaconCounters>>,
    ) -> StatusSnapshot {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(c) = counters {
            self.beacons_sent_total = Some(c.sent.load(Relaxed));
            let ms = c.last_ms.load(Relaxed);
            let now = drivers::time::unix_ms(std::time::SystemTime::now());
            self.last_beacon_age_seconds = (ms > 0).then(|| now.saturating_sub(ms) / 1000);
            self.beacons_skipped = c
                .skipped_by_reason()
                .into_iter()
                .map(|(r, n)| (r.to_string(), n))
                .collect();
        }
        self
    }
}

impl StatusSnapshot {
    /// The report time source, witnesses skipped and receipts held for want of it.
    fn with_time(mut self, state: &DaemonState) -> StatusSnapshot {
        use std::sync::atomic::Ordering::Relaxed;
        self.time_source = Some(state.whereabouts.clock_status().as_str().to_string());
        if let Some(w) = state.witness.lock().ok().and_then(|g| g.clone()) {
            self.witnesses_skipped.insert(
                "clock_unsynchronized".to_string(),
                w.skipped_unsynchronized.load(Relaxed),
            );
        }
        if let Some(r) = state.receipts.lock().ok().and_then(|g| g.clone()) {
            self.receipts_held_total = Some(r.held.load(Relaxed));
        }
        self
    }

    /// The radio backend's counters as name/value pairs.
    fn with_radio_counters(mut self, counters: &drivers::radio::RadioCounters) -> StatusSnapshot {
        self.radio_counters = counters
            .snapshot()
            .into_iter()
            .map(|c| crate::service::status::BackendCounter {
                family: c.family.to_string(),
                reason: c.reason.map(str::to_string),
                value: c.value,
                help: c.help.to_string(),
            })
            .collect();
        self
    }
}

fn source_name(w: &Whereabouts) -> String {
    match w.location().map(|l| l.source) {
        Some(LocationSource::Gps) => "gps",
        Some(LocationSource::Config) => "config",
        None => "none",
    }
    .to_string()
}

/// How often the probe refreshes the outbox figures and checks in for the outbox.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
