//! The beacon task: owns the [`EntropyBook`] (fed by `command/poc_entropy`) and the pure
//! [`Scheduler`]; at each beacon instant it plans the beacon, asks the transmit task (the
//! only owner of the regulatory guard, through a [`TxClient`]) for the conducted limit and
//! sends through the guard; a sent beacon becomes a signed beacon report in the outbox
//! (class PoC, its deadline as expiry), published on `poc/beacon` (`[mqtt] poc_topic`).
//! Skipped windows are counted by reason.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use drivers::radio::{TxStatus, TxTiming};
use drivers::ratelimit::RateLimiter;
use ring::rand::SystemRandom;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::beacon::{self, BeaconWindow, BODY_LEN};
use super::entropy::{EntropyBook, EntropyCommand};
use super::identity::Signer;
use super::report::{Body, Report};
use super::scheduler::{Scheduler, SkipReason, Step};
use super::witness::{beacon_report, stamp};
use crate::downlink::{TxClient, TxClientError};
use crate::guard::{GuardConfig, SendError};
use crate::outbox::{Class, NewMessage, OutboxHandle};
use crate::position::Whereabouts;
use crate::region::Region;
use drivers::time::unix_ms;

/// Longest single sleep: the wall clock is looked at again at least this often.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);
/// At most one warning of each kind per this interval.
pub const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// Counters of the beacon task, for status and metrics.
#[derive(Debug, Default)]
pub struct BeaconCounters {
    /// Beacons transmitted.
    pub sent: AtomicU64,
    /// Unix ms of the last one (0: none yet).
    pub last_ms: AtomicU64,
    /// Windows skipped, per [`SkipReason::index`].
    pub skipped: [AtomicU64; SkipReason::ALL.len()],
    /// `command/poc_entropy` payloads accepted.
    pub entropy_accepted: AtomicU64,
    /// `command/poc_entropy` payloads rejected (malformed).
    pub entropy_rejected: AtomicU64,
}

impl BeaconCounters {
    /// Windows skipped for `reason`.
    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.skipped[reason.index()].load(Ordering::Relaxed)
    }

    /// Every reason with its count (all reasons, zeros included).
    pub fn skipped_by_reason(&self) -> Vec<(&'static str, u64)> {
        SkipReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.skipped(*r)))
            .collect()
    }
}

/// What the beacon task needs to know besides its handles.
#[derive(Debug, Clone)]
pub struct BeaconSettings {
    /// Window length in seconds (valid: [`BeaconWindow::valid_len`]).
    pub window_len_s: u32,
    /// The radio's maximum conducted power, dBm.
    pub radio_max_dbm: i8,
    /// How long a beacon report stays valid (and in the outbox) after the beacon.
    pub validity: Duration,
    /// The region.
    pub region: &'static Region,
    /// The installation (antenna gain, cable loss, sub-band) as the guard knows it.
    pub guard: GuardConfig,
    /// `{prefix}/gateway/{id}/poc/beacon` by default (`[mqtt] poc_topic`).
    pub topic: String,
}

/// The beacon task; run it with [`BeaconTask::run`].
pub struct BeaconTask {
    settings: BeaconSettings,
    scheduler: Scheduler,
    book: EntropyBook,
    signer: Arc<dyn Signer + Send + Sync>,
    outbox: OutboxHandle,
    tx: TxClient,
    whereabouts: Whereabouts,
    own_beacons: Option<mpsc::Sender<[u8; BODY_LEN]>>,
    counters: Arc<BeaconCounters>,
    rng: SystemRandom,
    limiter: RateLimiter,
}

impl BeaconTask {
    /// A task sending through `tx`; `own_beacons` tells the witness task which bodies are
    /// ours. Fails when the region (and sub-band) has no beacon channel or data rate.
    pub fn new(
        settings: BeaconSettings,
        signer: Arc<dyn Signer + Send + Sync>,
        outbox: OutboxHandle,
        tx: TxClient,
        whereabouts: Whereabouts,
        own_beacons: Option<mpsc::Sender<[u8; BODY_LEN]>>,
    ) -> Result<BeaconTask, beacon::BeaconError> {
        // Plannable at all? (Same inputs every window but the entropies and the key.)
        let probe = beacon::plan(
            settings.region,
            settings.guard.sub_band,
            &[0; 32],
            &BeaconWindow {
                len_s: settings.window_len_s,
                id: 0,
            },
            &[0; 32],
            &signer.public_key(),
        )?;
        Ok(BeaconTask {
            scheduler: Scheduler::new(settings.window_len_s, probe.airtime),
            settings,
            book: EntropyBook::default(),
            signer,
            outbox,
            tx,
            whereabouts,
            own_beacons,
            counters: Arc::new(BeaconCounters::default()),
            rng: SystemRandom::new(),
            limiter: RateLimiter::new(WARN_INTERVAL),
        })
    }

    /// The counters, shared.
    pub fn counters(&self) -> Arc<BeaconCounters> {
        self.counters.clone()
    }

    /// Run until `shutdown`: entropy payloads from `entropy`, beacons at their instants.
    pub async fn run(mut self, entropy: mpsc::Receiver<Vec<u8>>, shutdown: CancellationToken) {
        let mut entropy = Some(entropy);
        log::info!(
            "poc: beaconing in windows of {} s (radio max {} dBm)",
            self.settings.window_len_s,
            self.settings.radio_max_dbm
        );
        loop {
            // Windows are picked on the same clock the report states (GPS while there is a
            // fix), so a local clock that drifted cannot put the report outside its window.
            let now = stamp(self.whereabouts.gps_time(Instant::now()), SystemTime::now()).0;
            let location = self.whereabouts.location();
            let step = self
                .scheduler
                .poll(now, &self.book, location.is_some(), &self.rng);
            match step {
                Step::Sleep { until } => {
                    let nap = until.duration_since(now).unwrap_or_default().min(MAX_SLEEP);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        payload = async { entropy.as_mut()?.recv().await }, if entropy.is_some() => {
                            match payload {
                                Some(p) => self.entropy(&p),
                                None => entropy = None,
                            }
                        }
                        _ = tokio::time::sleep(nap) => {}
                    }
                }
                Step::Beacon { window, entropy } => {
                    if let Err(reason) = self.beacon(window, entropy, location).await {
                        self.skip(window, reason);
                    }
                }
                Step::Skip { window, reason } => self.skip(window, reason),
            }
        }
    }

    /// A `command/poc_entropy` payload: decoded into the book, or rejected with the reason.
    pub fn entropy(&mut self, payload: &[u8]) {
        match EntropyCommand::decode(payload) {
            Ok(c) => {
                self.counters
                    .entropy_accepted
                    .fetch_add(1, Ordering::Relaxed);
                log::debug!(
                    "poc: entropy for window {} of {} s",
                    c.window.id,
                    c.window.len_s
                );
                if c.window.len_s != self.settings.window_len_s {
                    self.warn(
                        "entropy_len",
                        format!(
                            "command/poc_entropy is for windows of {} s, this hotspot uses {} s ([poc] window_secs): it is kept but never used",
                            c.window.len_s, self.settings.window_len_s
                        ),
                    );
                }
                self.book.insert(c);
            }
            Err(e) => {
                self.counters
                    .entropy_rejected
                    .fetch_add(1, Ordering::Relaxed);
                self.warn("entropy_bad", format!("command/poc_entropy rejected: {e}"));
            }
        }
    }

    fn warn(&mut self, kind: &'static str, msg: String) {
        self.limiter.warn(kind, &msg);
    }

    fn skip(&mut self, window: BeaconWindow, reason: SkipReason) {
        self.counters.skipped[reason.index()].fetch_add(1, Ordering::Relaxed);
        let msg = format!(
            "poc: no beacon in window {}: {}",
            window.id,
            reason.as_str()
        );
        match reason {
            // Expected while the network sends no entropy or the GPS has no fix.
            SkipReason::NoEntropy | SkipReason::NoPosition => log::debug!("{msg}"),
            _ => self.warn(reason.as_str(), msg),
        }
    }

    /// Plan, send through the guard, report. `Err` says why the window went without one.
    async fn beacon(
        &mut self,
        window: BeaconWindow,
        network_entropy: [u8; 32],
        location: Option<crate::position::SourcedLocation>,
    ) -> Result<(), SkipReason> {
        // Never transmit a beacon whose report could not be signed with a trusted time.
        if self.whereabouts.report_time().is_none() {
            return Err(SkipReason::ClockUnsynchronized);
        }
        let s = &self.settings;
        let local = beacon::local_entropy(&self.rng).map_err(|_| SkipReason::RandomFailed)?;
        let key = self.signer.public_key();
        let plan = beacon::plan(
            s.region,
            s.guard.sub_band,
            &network_entropy,
            &window,
            &local,
            &key,
        )
        .map_err(|e| {
            log::error!("poc: cannot plan the beacon: {e}");
            SkipReason::NotSent
        })?;
        let limit = self
            .tx
            .conducted_limit_dbm(plan.freq_hz)
            .await
            .map_err(|_| SkipReason::NotSent)?;
        let power = beacon::power_from_limit(limit, s.radio_max_dbm).ok_or(SkipReason::Refused)?;
        let tx_time = SystemTime::now();
        // The report's send time: GPS time while the hotspot has a fix, else the local clock
        // while it is synchronized.
        let (report_time, time_source) = self
            .whereabouts
            .report_time()
            .ok_or(SkipReason::ClockUnsynchronized)?;
        let verdict = match self
            .tx
            .send(tx_time, plan.tx_request(power, TxTiming::Immediate))
            .await
        {
            Ok((TxStatus::Ok, verdict)) => verdict,
            Ok((status, _)) => {
                self.warn(
                    "tx_status",
                    format!("poc: beacon not sent: radio {status:?}"),
                );
                return Err(SkipReason::NotSent);
            }
            Err(TxClientError::Gate(SendError::Refused(r))) => {
                self.warn("refused", format!("poc: beacon refused: {r}"));
                return Err(SkipReason::Refused);
            }
            Err(e) => {
                self.warn("tx_error", format!("poc: beacon not sent: {e}"));
                return Err(SkipReason::NotSent);
            }
        };
        let tx_ms = unix_ms(report_time);
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        self.counters.last_ms.store(tx_ms, Ordering::Relaxed);
        if let Some(own) = &self.own_beacons {
            let _ = own.try_send(plan.body);
        }
        log::info!(
            "poc: beacon sent in window {} on {} Hz DR{} at {} dBm",
            window.id,
            plan.freq_hz,
            plan.dr,
            verdict.power_dbm
        );
        let s = &self.settings;
        let body = beacon_report(
            &plan,
            s.region,
            &s.guard,
            network_entropy,
            local,
            report_time,
            time_source,
            verdict.power_dbm,
            location,
        );
        let report = Report {
            key,
            created_ms: unix_ms(SystemTime::now()).max(tx_ms),
            deadline_ms: tx_ms + s.validity.as_millis() as u64,
            body: Body::Beacon(body),
        };
        let signed = match report.sign(self.signer.as_ref()) {
            Ok(r) => r,
            Err(e) => {
                log::error!("poc: cannot sign the beacon report: {e}");
                return Ok(());
            }
        };
        let msg = NewMessage {
            class: Class::Poc,
            topic: s.topic.clone(),
            payload: signed.bytes().to_vec(),
            expires_at: Some(tx_time + s.validity),
        };
        if let Err(e) = self.outbox.store(vec![msg]).await {
            log::error!("poc: cannot store the beacon report: {e}");
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "beacon_task_tests.rs"]
mod tests;
