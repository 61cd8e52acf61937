//! Link phase: waits for the gateway id (saying READY first when it has to wait), then starts
//! what needs it for topics and client id: the witness and receipt tasks, the MQTT link and
//! its state watcher, the downlink task, the beacon task and the command router.

use std::sync::Arc;

use drivers::radio::Eui64;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::start::{Core, ForLink};
use super::{commands, poc};
use crate::config::poc_topic::PocKind;
use crate::config::Config;
use crate::guard::TxGate;
use crate::poc::beacon::BODY_LEN;

/// The tasks started once the gateway id is known that shutdown stops, and whether READY was
/// already sent while waiting for the id.
pub(super) struct Linked {
    /// Stops the MQTT link (after the pipeline and the receipt task have finished).
    pub link_token: CancellationToken,
    /// READY=1 went out while waiting for the packet forwarder.
    pub ready_sent: bool,
    /// The receipt task; it saves the chain once the pipeline's outcome sender is gone.
    pub receipt_task: Option<JoinHandle<()>>,
    /// The MQTT link and the tasks around it; `None` when shutdown came before the id.
    pub link: Option<LinkTasks>,
}

/// The MQTT link's tasks.
pub(super) struct LinkTasks {
    /// The link itself: it flushes in-flight messages and says OFFLINE when stopped.
    pub mqtt: JoinHandle<()>,
    /// The downlink task (owns the transmit gate); aborted after the link stops.
    pub downlink: JoinHandle<()>,
    /// Forwards link state changes to the daemon state; aborted after the link stops.
    pub watch: JoinHandle<()>,
}

/// Wait for the gateway id (or `shutdown`), then start the witness, receipt, MQTT link,
/// downlink, beacon and command-router tasks with it. Takes over the gate, the proprietary
/// frames and the receipt feed from `parts`; registers the new tasks' counters in `core.state`.
pub(super) async fn connect(
    config: &Config,
    core: &Core,
    parts: ForLink,
    shutdown: &CancellationToken,
) -> Linked {
    let ForLink {
        mut gateway_rx,
        gate,
        radio_max_dbm,
        proprietary_rx,
        receipt_start,
        receipt_state_path,
        outcome_rx,
    } = parts;
    let link_token = CancellationToken::new();
    let (gateway, ready_sent) = await_gateway(config, core, &mut gateway_rx, shutdown).await;

    let state = &core.state;
    let witness_counters = Arc::new(crate::poc::task::WitnessCounters::default());
    // The beacon task tells the witness task the bodies of our own beacons.
    let (own_tx, own_rx) = mpsc::channel(8);
    if let (Some(gateway), Some(region)) = (
        gateway,
        crate::region::Region::by_name(&config.gateway.region),
    ) {
        let detector = crate::poc::witness::WitnessDetector::new(
            region,
            config.gateway.guard.antenna_gain_dbi,
        );
        tokio::spawn(crate::poc::task::run_witness(
            proprietary_rx,
            own_rx,
            detector,
            core.identity.clone(),
            core.outbox.clone(),
            config.mqtt.poc_report_topic(gateway, PocKind::Witness),
            state.whereabouts.clone(),
            witness_counters.clone(),
            config.poc.report_validity,
        ));
    }
    state.set_witness_counters(witness_counters);
    let receipt_counters = Arc::new(crate::poc::receipt_task::ReceiptCounters::default());
    let receipt_task = gateway.map(|gateway| {
        tokio::spawn(crate::poc::receipt_task::run_receipts(
            receipt_start,
            outcome_rx,
            core.identity.clone(),
            core.outbox.clone(),
            crate::poc::receipt_task::ReceiptSettings {
                interval: config.poc.receipt_interval,
                validity: config.poc.report_validity,
                topic: config.mqtt.poc_report_topic(gateway, PocKind::Receipt),
                state_path: receipt_state_path.clone(),
                clock: state.whereabouts.clone(),
            },
            receipt_counters.clone(),
        ))
    });
    state.set_receipt_counters(receipt_counters);
    let link = gateway.map(|gateway| {
        spawn_link(
            config,
            core,
            gateway,
            gate,
            own_tx,
            radio_max_dbm,
            link_token.clone(),
        )
    });
    Linked {
        link_token,
        ready_sent,
        receipt_task,
        link,
    }
}

/// The gateway id from the config or the packet forwarder; `None` if `shutdown` comes first.
///
/// The MQTT link needs the gateway id for its topics, client id and last will. Without one in
/// the config it comes from the packet forwarder, which may start later: the daemon is ready
/// (it stores whatever arrives) and says what it waits for, rather than letting systemd's
/// start timeout kill it. Returns whether READY was sent here.
async fn await_gateway(
    config: &Config,
    core: &Core,
    gateway_rx: &mut watch::Receiver<Option<Eui64>>,
    shutdown: &CancellationToken,
) -> (Option<Eui64>, bool) {
    let mut ready_sent = false;
    if config.gateway.id.is_none() && gateway_rx.borrow().is_none() {
        let _ = core.notifier.ready();
        let _ = core
            .notifier
            .status("waiting for the packet forwarder to announce the gateway id");
        log::info!("gatewayd running; waiting for the packet forwarder to announce the gateway id");
        ready_sent = true;
    }
    let gateway = tokio::select! {
        id = gateway_rx.wait_for(Option::is_some) => id.ok().and_then(|id| *id),
        _ = shutdown.cancelled() => None,
    };
    (gateway, ready_sent)
}

/// Start the MQTT link for `gateway` (stopped by `link_token`), the watcher that reports its
/// state, the downlink task owning `gate`, the beacon task transmitting through it, and the
/// router that hands the link's commands to both.
fn spawn_link(
    config: &Config,
    core: &Core,
    gateway: Eui64,
    gate: TxGate,
    own_tx: mpsc::Sender<[u8; BODY_LEN]>,
    radio_max_dbm: Option<i8>,
    link_token: CancellationToken,
) -> LinkTasks {
    let state = &core.state;
    crate::logging::set_gateway_id(&gateway.to_string());
    log::info!(
        "gateway {gateway}: connecting to mqtt {}:{}",
        config.mqtt.host,
        config.mqtt.port
    );
    let crate::mqtt::Spawned {
        task,
        commands,
        state: link_state,
        counters: link_counters,
    } = crate::mqtt::spawn(
        config.mqtt.clone(),
        gateway,
        core.outbox.clone(),
        link_token,
    );
    state.set_link(link_state.clone(), link_counters.clone());
    let st = state.clone();
    let mut changes = link_state;
    let watch_task = tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            st.link_changed();
        }
    });
    let mut downlink = crate::downlink::DownlinkTask::new(
        gate,
        core.outbox.clone(),
        crate::downlink::DownlinkConfig {
            gateway,
            topic_prefix: config.mqtt.topic_prefix.clone(),
            json: config.mqtt.json,
        },
    )
    .with_interval_stats(core.tx_stats.clone());
    state.set_downlink_stats(downlink.stats());
    // Beacons transmit through the downlink task's gate (one guard, one ledger).
    let (entropy_tx, beacon_counters) = poc::spawn_beacon(
        config,
        gateway,
        core.identity.clone(),
        core.outbox.clone(),
        state.whereabouts.clone(),
        downlink.tx_client(),
        own_tx,
        radio_max_dbm,
        core.radio_token.clone(),
    );
    state.set_beacon_counters(beacon_counters);
    let (down_tx, down_rx) = mpsc::channel(16);
    tokio::spawn(commands::run_router(
        commands,
        down_tx,
        entropy_tx,
        link_counters,
    ));
    let downlink_task = tokio::spawn(downlink.run(down_rx));
    LinkTasks {
        mqtt: task,
        downlink: downlink_task,
        watch: watch_task,
    }
}
