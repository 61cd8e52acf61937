//! The downlink task: owns the [`TxGate`] (the regulatory guard and the radio's transmit
//! handle), takes `command/down` payloads from the MQTT link one at a time, walks their
//! items with the pure [`Attempt`] and stores the `gw.DownlinkTxAck` in the outbox
//! (`Class::Control`), which the link publishes on `{prefix}/gateway/{id}/event/ack`.
//! Its second input, [`TxClient`] jobs, lets beacons share the gate and its ledger. Each
//! downlink and the duty-cycle use are also counted for `event/stats` ([`TxStatsHandle`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chirpstack_api::gw;
use drivers::radio::{Eui64, TxStatus};
use drivers::ratelimit::RateLimiter;
use tokio::sync::{mpsc, watch};

use super::client::{TxClient, TxJob};
use super::decode::{decode_downlink, tx_ack};
use super::scheduler::{Attempt, Step};
use super::stats::{DownlinkCounters, DownlinkStats, DUTY_CYCLE_REFRESH};
use crate::guard::{BandUse, SendError, TxGate};
use crate::interval_stats::{duty_cycle_stats, Emitted, TxStatsHandle};
use crate::mqtt::Command;
use crate::outbox::{Class, NewMessage, OutboxHandle};

/// At most one warning of each kind per this interval.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Settings of the downlink task.
#[derive(Debug, Clone)]
pub struct DownlinkConfig {
    /// This gateway's id (commands for others are rejected; acks carry it).
    pub gateway: Eui64,
    /// MQTT topic prefix, e.g. `eu868`.
    pub topic_prefix: String,
    /// Commands and acks use the protobuf JSON mapping instead of binary protobuf.
    pub json: bool,
}

/// The task's state; run it with [`DownlinkTask::run`].
pub struct DownlinkTask {
    gate: TxGate,
    outbox: OutboxHandle,
    config: DownlinkConfig,
    limiter: RateLimiter,
    counters: Arc<DownlinkCounters>,
    duty_cycle: watch::Sender<Vec<BandUse>>,
    jobs: Option<mpsc::Receiver<TxJob>>,
    client: Option<TxClient>,
    interval: Option<TxStatsHandle>,
}

impl DownlinkTask {
    /// A task transmitting through `gate` and storing acks in `outbox`.
    pub fn new(gate: TxGate, outbox: OutboxHandle, config: DownlinkConfig) -> DownlinkTask {
        DownlinkTask {
            gate,
            outbox,
            config,
            limiter: RateLimiter::new(WARN_INTERVAL),
            counters: Arc::new(DownlinkCounters::default()),
            duty_cycle: watch::Sender::new(Vec::new()),
            jobs: None,
            client: None,
            interval: None,
        }
    }

    /// Also count every downlink and the duty-cycle use into `interval`, which the pipeline
    /// reports in each stats interval.
    pub fn with_interval_stats(mut self, interval: TxStatsHandle) -> DownlinkTask {
        self.interval = Some(interval);
        self
    }

    /// A handle for other transmitters (beacons): their requests go through this task's
    /// gate, one at a time between downlinks. Every call returns a handle to the same queue.
    pub fn tx_client(&mut self) -> TxClient {
        if let Some(c) = &self.client {
            return c.clone();
        }
        let (client, jobs) = TxClient::channel();
        self.jobs = Some(jobs);
        self.client = Some(client.clone());
        client
    }

    /// The counters, shared.
    pub fn counters(&self) -> Arc<DownlinkCounters> {
        self.counters.clone()
    }

    /// A read-only view of the transmit path for status and metrics: this task's counters,
    /// the guard's counters and the duty-cycle use (refreshed by [`DownlinkTask::run`]).
    pub fn stats(&self) -> DownlinkStats {
        DownlinkStats {
            downlinks: self.counters.clone(),
            guard: self.gate.guard().counters(),
            duty_cycle: self.duty_cycle.subscribe(),
        }
    }

    /// Handle commands and [`TxClient`] jobs until both inputs close. `down` commands are
    /// transmitted; other kinds are logged (rate-limited) and ignored. The duty-cycle use is
    /// published at start (the ledger survives restarts), after every transmission and
    /// every [`DUTY_CYCLE_REFRESH`].
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut jobs = self.jobs.take();
        // Only the handles given out keep the job queue open.
        self.client = None;
        let mut tick = tokio::time::interval(DUTY_CYCLE_REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut commands_open = true;
        while commands_open || jobs.is_some() {
            tokio::select! {
                cmd = commands.recv(), if commands_open => match cmd {
                    Some(cmd) if cmd.kind == "down" => {
                        self.handle(&cmd.payload).await;
                        self.refresh_duty_cycle();
                    }
                    Some(cmd) => self.warn(
                        "unsupported",
                        format!("command/{} ignored: not a downlink", cmd.kind),
                    ),
                    None => commands_open = false,
                },
                job = async { jobs.as_mut()?.recv().await }, if jobs.is_some() => match job {
                    Some(job) => {
                        job.run(&mut self.gate).await;
                        self.refresh_duty_cycle();
                    }
                    None => jobs = None,
                },
                _ = tick.tick() => self.refresh_duty_cycle(),
            }
        }
    }

    /// Read the duty-cycle use from the ledger and publish it. On a ledger error the last
    /// figures stay (the guard refuses to transmit meanwhile, and counts it).
    pub fn refresh_duty_cycle(&mut self) {
        match self.gate.guard().duty_cycle_use(SystemTime::now()) {
            Ok(used) => {
                if let Some(interval) = &self.interval {
                    interval.set_duty_cycle(duty_cycle_stats(self.gate.guard().region(), &used));
                }
                self.duty_cycle.send_replace(used);
            }
            Err(e) => self.warn("duty_cycle_read", format!("duty-cycle use: {e}")),
        }
    }

    fn warn(&mut self, kind: &'static str, msg: String) {
        self.limiter.warn(kind, &msg);
    }

    /// Handle one `command/down` payload: returns the ack it stored, or `None` when the
    /// payload was rejected without one (nothing sent, nothing acknowledged). A rejected
    /// frame that is ours and names its downlink (too many items) is acknowledged with
    /// [`reject_ack`](super::reject_ack).
    pub async fn handle(&mut self, payload: &[u8]) -> Option<gw::DownlinkTxAck> {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let frame = match decode_downlink(payload, self.config.json, self.config.gateway) {
            Ok(f) => f,
            Err(e) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                self.warn(e.kind(), format!("command/down rejected: {e}"));
                let ack = super::reject_ack(self.config.gateway, &e)?;
                let statuses: Vec<gw::TxAckStatus> = ack.items.iter().map(|i| i.status()).collect();
                self.counters.count_ack(&statuses);
                if let Some(interval) = &self.interval {
                    interval.count_downlink(&statuses, None);
                }
                self.store_ack(&ack).await;
                return Some(ack);
            }
        };
        let id = frame.downlink_id;
        let guard = self.gate.guard();
        let mut attempt = Attempt::new(&frame, |eirp| guard.conducted_for_eirp(eirp));
        let mut emitted = None;
        let statuses = loop {
            match attempt.step() {
                Step::Send { index, request } => {
                    let asked = Emitted {
                        freq_hz: request.freq_hz,
                        modulation: request.modulation,
                        invert_iq: request.invert_iq,
                    };
                    let result = self.gate.send(SystemTime::now(), request).await;
                    if matches!(result, Ok((TxStatus::Ok, _))) {
                        emitted = Some(asked);
                    }
                    if !matches!(result, Err(SendError::Refused(_))) {
                        self.counters.scheduled.fetch_add(1, Ordering::Relaxed);
                    }
                    let status = match result {
                        Ok((status, verdict)) => {
                            log::debug!(
                                "downlink {id} item {index}: {status:?} (DR{}, {} dBm{}, {:?} airtime)",
                                verdict.dr,
                                verdict.power_dbm,
                                if verdict.clamped { " clamped" } else { "" },
                                verdict.airtime
                            );
                            status
                        }
                        Err(e) => {
                            self.warn("not_sent", format!("downlink {id} item {index}: {e}"));
                            e.tx_status()
                        }
                    };
                    attempt.report(index, status);
                }
                Step::Skipped { index, error } => {
                    self.warn(
                        "bad_item",
                        format!("downlink {id} item {index} rejected: {error}"),
                    );
                }
                Step::Done(statuses) => break statuses,
            }
        };
        let sent = statuses.contains(&gw::TxAckStatus::Ok);
        let counter = if sent {
            &self.counters.sent
        } else {
            &self.counters.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.counters.count_ack(&statuses);
        if let Some(interval) = &self.interval {
            interval.count_downlink(&statuses, emitted.as_ref());
        }
        let ack = tx_ack(self.config.gateway, &frame, &statuses);
        self.store_ack(&ack).await;
        Some(ack)
    }

    /// Store `ack` for the link to publish on `event/ack`.
    async fn store_ack(&mut self, ack: &gw::DownlinkTxAck) {
        let topic = crate::mqtt::topic(&self.config.topic_prefix, self.config.gateway, "event/ack");
        let msg = NewMessage::new(
            Class::Control,
            topic,
            crate::chirpstack::encode(ack, self.config.json),
        );
        if let Err(e) = self.outbox.store(vec![msg]).await {
            let id = ack.downlink_id;
            self.warn(
                "ack_store",
                format!("downlink {id}: cannot store its ack: {e}"),
            );
        }
    }
}
