//! The witness task: proprietary frames the pipeline kept aside are checked for other
//! hotspots' beacons; each new one becomes a signed witness report stored in the outbox
//! (class PoC, above uplinks) with its deadline as expiry, published on `poc/witness`.
//! The beacon task tells it the bodies of our own beacons, which are never witnessed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drivers::radio::RxFrame;
use tokio::sync::mpsc;

use super::beacon::BODY_LEN;
use super::identity::Signer;
use super::report::{Body, Report};
use super::witness::WitnessDetector;
use crate::outbox::{Class, NewMessage, OutboxHandle};
use crate::position::Whereabouts;
use drivers::time::unix_ms;

/// How long a witness report stays valid (and in the outbox) after it is made, by default
/// (`[poc] report_validity_secs`).
pub const WITNESS_VALIDITY: Duration = Duration::from_secs(3600);

/// Counters of the witness task, for status and metrics.
#[derive(Debug, Default)]
pub struct WitnessCounters {
    /// Witness reports stored.
    pub witnesses: AtomicU64,
    /// Unix ms of the last one (0: none yet).
    pub last_ms: AtomicU64,
    /// Beacons heard but not witnessed: no trustworthy time (no GPS time from the radio or
    /// the GPS, and the local clock not synchronized).
    pub skipped_unsynchronized: AtomicU64,
}

/// Run until the frame channel closes; reports are valid for `validity` after they are made.
/// `own` carries the bodies of our own beacons.
#[allow(clippy::too_many_arguments)]
pub async fn run_witness(
    mut frames: mpsc::Receiver<RxFrame>,
    mut own: mpsc::Receiver<[u8; BODY_LEN]>,
    mut detector: WitnessDetector,
    signer: Arc<dyn Signer + Send + Sync>,
    outbox: OutboxHandle,
    topic: String,
    whereabouts: Whereabouts,
    counters: Arc<WitnessCounters>,
    validity: Duration,
) {
    let mut own_open = true;
    loop {
        let frame = tokio::select! {
            biased;
            body = own.recv(), if own_open => {
                match body {
                    Some(b) => detector.own_body(b),
                    None => own_open = false,
                }
                continue;
            }
            frame = frames.recv() => match frame {
                Some(f) => f,
                None => return,
            },
        };
        // The report's time: the hotspot's trusted time, else the radio's GPS stamp.
        let radio_gps = frame.meta.time.filter(|_| frame.meta.gps_time.is_some());
        let now = match (whereabouts.report_time(), radio_gps) {
            (Some((t, _)), _) | (None, Some(t)) => t,
            (None, None) => {
                if WitnessDetector::is_beacon(&frame) {
                    counters
                        .skipped_unsynchronized
                        .fetch_add(1, Ordering::Relaxed);
                    log::debug!(
                        "poc: beacon heard but not witnessed: the clock is not synchronized"
                    );
                }
                continue;
            }
        };
        let Some(witness) = detector.observe(&frame, now, whereabouts.location()) else {
            log::debug!("poc: proprietary frame is not a new beacon");
            continue;
        };
        let created_ms = unix_ms(now);
        let report = Report {
            key: signer.public_key(),
            created_ms,
            deadline_ms: created_ms + validity.as_millis() as u64,
            body: Body::Witness(witness),
        };
        let signed = match report.sign(signer.as_ref()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("poc: cannot sign a witness report: {e}");
                continue;
            }
        };
        let msg = NewMessage {
            class: Class::Poc,
            topic: topic.clone(),
            payload: signed.bytes().to_vec(),
            expires_at: Some(now + validity),
        };
        match outbox.store(vec![msg]).await {
            Ok(()) => {
                counters.witnesses.fetch_add(1, Ordering::Relaxed);
                counters.last_ms.store(created_ms, Ordering::Relaxed);
                log::info!("poc: witnessed a beacon on {} Hz", frame.meta.freq_hz);
            }
            Err(e) => log::error!("poc: cannot store a witness report: {e}"),
        }
    }
}
