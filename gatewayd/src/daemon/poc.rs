//! Proof-of-coverage wiring: the beacon task, started once the gateway id (for its topic)
//! and the transmit task's [`TxClient`] exist, when `[poc] enabled`.

use std::sync::Arc;

use drivers::radio::Eui64;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::commands::ENTROPY_QUEUE;
use crate::config::poc_topic::PocKind;
use crate::config::Config;
use crate::downlink::TxClient;
use crate::outbox::OutboxHandle;
use crate::poc::beacon::BODY_LEN;
use crate::poc::beacon_task::{BeaconCounters, BeaconSettings, BeaconTask};
use crate::poc::identity::Signer;
use crate::position::Whereabouts;

/// Where `command/poc_entropy` payloads go, and the task's counters; `None`s when PoC is
/// disabled or cannot run in this region.
pub(super) type BeaconWiring = (Option<mpsc::Sender<Vec<u8>>>, Option<Arc<BeaconCounters>>);

/// Start the beacon task (it stops on `shutdown`).
#[allow(clippy::too_many_arguments)]
pub(super) fn spawn_beacon(
    config: &Config,
    gateway: Eui64,
    signer: Arc<dyn Signer + Send + Sync>,
    outbox: OutboxHandle,
    whereabouts: Whereabouts,
    tx: TxClient,
    own_beacons: mpsc::Sender<[u8; BODY_LEN]>,
    backend_max_dbm: Option<i8>,
    shutdown: CancellationToken,
) -> BeaconWiring {
    if !config.poc.enabled {
        log::info!("poc: beaconing disabled ([poc] enabled = false)");
        return (None, None);
    }
    let Some(region) = crate::region::Region::by_name(&config.gateway.region) else {
        return (None, None);
    };
    let settings = BeaconSettings {
        window_len_s: config.poc.window_secs,
        radio_max_dbm: config.poc.beacon_max_power_dbm(backend_max_dbm),
        validity: config.poc.report_validity,
        region,
        guard: config.gateway.guard.clone(),
        topic: config.mqtt.poc_report_topic(gateway, PocKind::Beacon),
    };
    let task = match BeaconTask::new(settings, signer, outbox, tx, whereabouts, Some(own_beacons)) {
        Ok(t) => t,
        Err(e) => {
            log::error!("poc: beaconing not possible: {e}");
            return (None, None);
        }
    };
    let counters = task.counters();
    let (entropy_tx, entropy_rx) = mpsc::channel(ENTROPY_QUEUE);
    tokio::spawn(task.run(entropy_rx, shutdown));
    (Some(entropy_tx), Some(counters))
}
