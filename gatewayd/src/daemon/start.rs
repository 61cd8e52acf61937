//! Start-up phase: opens the state directory, identity, outbox and radio, builds the transmit
//! gate, binds the service endpoints, drops privileges, and starts the tasks that run without a
//! gateway id (pipeline, outbox probe, watchdog, status socket, metrics).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drivers::radio::{Eui64, Radio, RxFrame};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::state::{DaemonState, PROBE_EVERY};
use super::DaemonError;
use crate::config::{Config, RadioConfig, UplinkConfig};
use crate::guard::TxGate;
use crate::interval_stats::TxStatsHandle;
use crate::outbox::OutboxHandle;
use crate::pipeline::outcome::UplinkOutcome;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::poc::receipt_task::ReceiptStart;
use crate::poc::Signer;
use crate::position::Whereabouts;
use crate::service::notify::{self, Notifier};
use crate::service::privileges::{self, Decision};
use crate::service::watchdog::{spawn_watchdog, Heartbeat};
use crate::service::{metrics, status};

/// What runs from start-up to shutdown, whether or not a gateway id ever arrives: the shared
/// handles, the tokens that stop each group of tasks, and the tasks shutdown awaits.
pub(super) struct Core {
    /// systemd notifications (READY, STATUS, RELOADING, STOPPING; the watchdog pings too).
    pub notifier: Arc<Notifier>,
    /// The outbox; closed last.
    pub outbox: OutboxHandle,
    /// What `gatewayd status`, metrics and the STATUS= line report.
    pub state: Arc<DaemonState>,
    /// The hotspot's key, for witness reports, receipts and beacons.
    pub identity: Arc<dyn Signer + Send + Sync>,
    /// The downlink task counts transmissions and the duty-cycle use into this; the pipeline
    /// reports them in each stats interval.
    pub tx_stats: TxStatsHandle,
    /// The pipeline's live `[uplink]` settings; SIGHUP sends new ones.
    pub live_tx: watch::Sender<UplinkConfig>,
    /// Stops the radio backend, the GPS reader and the beacon task (first at shutdown).
    pub radio_token: CancellationToken,
    /// Stops the outbox probe, the watchdog and the status and metrics endpoints.
    pub service_token: CancellationToken,
    /// The pipeline; it ends once the radio's events end and its stores are done.
    pub pipeline_task: JoinHandle<()>,
    /// The outbox probe (STATUS= line, outbox heartbeat).
    pub probe_task: JoinHandle<()>,
    /// The watchdog gate.
    pub watchdog_task: JoinHandle<()>,
    /// Held until shutdown: the watchdog task also ends when every heartbeat is gone.
    _heartbeat: Heartbeat,
    /// Held until shutdown: the GPS reader (stopped by `radio_token`).
    _gps: Option<drivers::gps::GpsHandle>,
}

/// What the link phase takes over once the gateway id is known.
pub(super) struct ForLink {
    /// The gateway id: from the config, or announced by the packet forwarder.
    pub gateway_rx: watch::Receiver<Option<Eui64>>,
    /// The transmit path (guard + the radio's control); the downlink task owns it.
    pub gate: TxGate,
    /// The backend's maximum transmit power, for the beacon's power.
    pub radio_max_dbm: Option<i8>,
    /// Proprietary frames from the pipeline, for the witness task.
    pub proprietary_rx: mpsc::Receiver<RxFrame>,
    /// Where the receipt chain resumes.
    pub receipt_start: ReceiptStart,
    /// Where the receipt task saves the chain.
    pub receipt_state_path: PathBuf,
    /// The pipeline's store outcomes of numbered uplinks, for the receipt task.
    pub outcome_rx: mpsc::Receiver<UplinkOutcome>,
}

/// Open everything the daemon owns and start the tasks that need no gateway id, in order:
/// privilege check, state directory, identity, outbox, radio (unless `given_radio`), GPS,
/// transmit gate, service endpoints (bound before privileges drop), watchdog, pipeline,
/// outbox probe, status socket and metrics. Returns the [`Core`] that lives until shutdown and
/// the pieces the link phase takes over. On error whatever was opened is dropped; the outbox
/// is closed when the radio or the gate cannot start.
pub(super) async fn start(
    config: &Config,
    given_radio: Option<Radio>,
) -> Result<(Core, ForLink), DaemonError> {
    let decision = privileges::decide(
        nix::unistd::geteuid().as_raw(),
        config.service.user.as_deref(),
        config.service.allow_root,
    );
    if let Decision::Refuse(why) = &decision {
        return Err(DaemonError::RootRefused(why.clone()));
    }
    if decision == Decision::StayRoot {
        log::warn!("running as root (service.allow_root = true)");
    }
    let notifier = Arc::new(Notifier::from_env().unwrap_or_else(|e| {
        log::warn!("systemd notification disabled: {e}");
        Notifier::disabled()
    }));

    std::fs::create_dir_all(&config.gateway.state_dir).map_err(|source| DaemonError::StateDir {
        path: config.gateway.state_dir.clone(),
        source,
    })?;
    // The hotspot's identity: created on first start (mode 0600); a key file others can read,
    // or a malformed one, stops the daemon with the reason.
    let key_path = config
        .gateway
        .state_dir
        .join(crate::poc::identity::KEY_FILE_NAME);
    // A state directory with a key in it was used before: a ledger missing from it is
    // distrusted (guard::ledger_check), not taken for a first start.
    let used_before = key_path.exists();
    let identity = crate::poc::identity::KeyFileSigner::load_or_create(&key_path)
        .map_err(DaemonError::Identity)?;
    log::info!("hotspot identity {}", identity.public_key().address());
    let outbox = OutboxHandle::open(&config.outbox)?;
    log::info!("outbox: {}", config.outbox.path.display());

    let radio_token = CancellationToken::new();
    let radio = match given_radio {
        Some(r) => r,
        None => match spawn_radio(config, radio_token.clone()).await {
            Ok(r) => r,
            Err(e) => {
                let _ = outbox.close().await;
                return Err(e);
            }
        },
    };
    let gps = config.gps.device.as_ref().map(|device| {
        log::info!(
            "gps: reading {} at {} baud",
            device.display(),
            config.gps.baud
        );
        let cfg = drivers::gps::GpsConfig {
            device: device.clone(),
            baud: config.gps.baud,
            stale_after: config.gps.stale_after,
        };
        drivers::gps::spawn(cfg, radio_token.clone())
    });
    let radio_max_dbm = radio.capabilities.max_tx_power_dbm;
    let ledger_note;
    let gate = match tx_gate(config, radio.control, radio.capabilities.lbt, used_before) {
        Ok((g, note)) => {
            ledger_note = note;
            g
        }
        Err(e) => {
            radio_token.cancel();
            let _ = outbox.close().await;
            return Err(e);
        }
    };
    // Reports are signed with GPS time, else with the local clock only while it is trusted.
    let clock_sync: Arc<dyn crate::timesync::SyncCheck> = if config.poc.trust_local_clock {
        Arc::new(crate::timesync::TrustLocalClock)
    } else {
        Arc::new(crate::timesync::KernelSync)
    };
    let whereabouts = Whereabouts::new(
        config.gateway.location,
        gps.as_ref().map(|g| g.state.clone()),
    )
    .with_clock_sync(clock_sync);

    // Service endpoints are bound while we may still be root; then privileges go.
    let service_token = CancellationToken::new();
    let status_server = bind_status(config);
    let metrics_server = match config.service.metrics_bind {
        Some(addr) => match metrics::MetricsServer::bind(addr).await {
            Ok(s) => Some(s),
            Err(e) => {
                log::warn!("metrics disabled: {e}");
                None
            }
        },
        None => None,
    };
    if let Decision::DropTo(user) = &decision {
        privileges::hand_over(&config.gateway.state_dir, user)?;
        let d = privileges::drop_to(user)?;
        log::info!("running as {user} (uid {}, gid {})", d.uid, d.gid);
    }

    let (heartbeat, watchdog_task) = spawn_watchdog(
        notifier.clone(),
        notify::watchdog_timeout_from_env().map(notify::ping_interval),
        service_token.clone(),
    );
    let (gateway_tx, gateway_rx) = watch::channel::<Option<Eui64>>(None);
    // Proprietary frames (other hotspots' beacons) go to the witness task.
    let (proprietary_tx, proprietary_rx) = mpsc::channel(64);
    let (live_tx, live_rx) = watch::channel(config.uplink.clone());
    // Data-transfer receipts: the pipeline numbers forwarded uplinks from where the chain
    // state left off and reports each store outcome (docs/proof-of-coverage.md §6.4).
    let identity: Arc<dyn Signer + Send + Sync> = Arc::new(identity);
    let receipt_state_path = config
        .gateway
        .state_dir
        .join(crate::poc::receipt_state::STATE_FILE_NAME);
    let receipt_start = crate::poc::receipt_task::prepare(
        &receipt_state_path,
        identity.public_key(),
        drivers::time::unix_ms(std::time::SystemTime::now()),
    );
    let (outcome_tx, outcome_rx) = mpsc::channel(1024);
    let tx_stats = TxStatsHandle::default();
    let pipeline = Pipeline::new(
        PipelineConfig {
            uplink: config.uplink.clone(),
            gateway: config.gateway.id,
            topic_prefix: config.mqtt.topic_prefix.clone(),
            json: config.mqtt.json,
            uplink_expiry: config.outbox.uplink_expiry,
            stats_expiry: config.outbox.stats_expiry,
            stats_interval: config.gateway.stats_interval,
        },
        outbox.clone(),
        gateway_tx,
        whereabouts.clone(),
        Some(proprietary_tx),
    )
    .with_live_config(live_rx)
    .with_heartbeat(heartbeat.clone())
    .with_tx_stats(tx_stats.clone())
    .with_receipts(crate::pipeline::task::ReceiptFeed {
        next_id: receipt_start.first_id(),
        outcomes: outcome_tx,
    });
    let state = Arc::new(DaemonState {
        started: Instant::now(),
        backend: backend_name(config),
        broker: format!("{}:{}", config.mqtt.host, config.mqtt.port),
        gateway: gateway_rx.clone(),
        pipeline: pipeline.counters(),
        link: Mutex::new(None),
        outbox: Mutex::new(None),
        whereabouts,
        witness: Mutex::new(None),
        downlink: Mutex::new(None),
        receipts: Mutex::new(None),
        beacon: Mutex::new(None),
        radio_counters: radio.counters.clone(),
        ledger_note,
    });
    heartbeat
        .register(
            crate::pipeline::task::HEARTBEAT_NAME,
            Duration::from_secs(10),
        )
        .await;
    let pipeline_task = tokio::spawn(pipeline.run(radio.events));
    let probe_task = tokio::spawn(probe(
        outbox.clone(),
        state.clone(),
        heartbeat.clone(),
        notifier.clone(),
        service_token.clone(),
    ));
    heartbeat.register("outbox", Duration::from_secs(15)).await;
    if let Some(server) = status_server {
        let st = state.clone();
        tokio::spawn(server.serve(move || st.snapshot(), service_token.clone()));
    }
    if let Some(server) = metrics_server {
        if let Ok(addr) = server.local_addr() {
            log::info!("metrics on http://{addr}/metrics");
        }
        let st = state.clone();
        tokio::spawn(server.serve(move || st.snapshot(), service_token.clone()));
    }

    let core = Core {
        notifier,
        outbox,
        state,
        identity,
        tx_stats,
        live_tx,
        radio_token,
        service_token,
        pipeline_task,
        probe_task,
        watchdog_task,
        _heartbeat: heartbeat,
        _gps: gps,
    };
    let for_link = ForLink {
        gateway_rx,
        gate,
        radio_max_dbm,
        proprietary_rx,
        receipt_start,
        receipt_state_path,
        outcome_rx,
    };
    Ok((core, for_link))
}

async fn spawn_radio(config: &Config, token: CancellationToken) -> Result<Radio, DaemonError> {
    match &config.radio {
        RadioConfig::SemtechUdp(udp) => {
            let (radio, _handle) = drivers::semtech_udp::spawn(udp.clone(), token)
                .await
                .map_err(DaemonError::SemtechUdp)?;
            Ok(radio)
        }
        RadioConfig::LoraPhy(settings) => {
            let settings = (**settings).clone();
            let hardware = drivers::lora_phy::linux::LinuxHardware::new(&settings);
            drivers::lora_phy::spawn(settings, hardware, token)
                .await
                .map_err(DaemonError::LoraPhy)
        }
        #[cfg(feature = "simulated")]
        RadioConfig::Simulated(s) => sim::radio::spawn((**s).clone(), token)
            .await
            .map_err(DaemonError::Simulated),
    }
}

fn backend_name(config: &Config) -> &'static str {
    match config.radio {
        RadioConfig::SemtechUdp(_) => "semtech_udp",
        RadioConfig::LoraPhy(_) => "lora_phy",
        #[cfg(feature = "simulated")]
        RadioConfig::Simulated(_) => "simulated",
    }
}

/// The transmit path: the guard of `config.gateway.region` with its duty-cycle ledger in the
/// state directory, owning the radio's `control` (nothing else may hold it).
/// A ledger that cannot be trusted (corrupt, missing from a used state directory, WAL lost)
/// makes every duty-cycled band count as fully used for one window; the line saying so is
/// returned for status.
fn tx_gate(
    config: &Config,
    control: drivers::radio::RadioControl,
    backend_can_lbt: bool,
    used_before: bool,
) -> Result<(TxGate, Option<String>), DaemonError> {
    use crate::guard::{ledger_check, Guard};
    let region = crate::region::Region::by_name(&config.gateway.region)
        .ok_or_else(|| DaemonError::UnknownRegion(config.gateway.region.clone()))?;
    let path = config.gateway.state_dir.join("dutycycle.sqlite");
    let now = std::time::SystemTime::now();
    let (ledger, distrust) =
        ledger_check::open_checked(&path, used_before, now).map_err(DaemonError::Ledger)?;
    let settings = crate::guard::GuardConfig {
        backend_can_lbt,
        ..config.gateway.guard.clone()
    };
    let guard = Guard::new(region, settings, ledger).map_err(DaemonError::Guard)?;
    // Airtime is charged on the ledger's own timeline, which wall-clock steps do not move.
    let (mut guard, resumed) = guard
        .with_ledger_clock(
            std::sync::Arc::new(crate::guard::KernelClock),
            std::time::SystemTime::now(),
        )
        .map_err(DaemonError::Ledger)?;
    if resumed == crate::guard::Resumed::AfterReboot {
        log::info!(
            "duty cycle: the machine rebooted since the last transmission; the airtime of the \
             hour before counts as if no time had passed (the wall clock cannot tell)"
        );
    }
    let note = match distrust {
        None => None,
        Some(why) => {
            let until = guard.assume_fully_used(now).map_err(DaemonError::Ledger)?;
            let line = format!(
                "duty-cycle ledger {}: {why}; every duty-cycled band counts as fully used \
                 until {} (one window), no transmissions before",
                path.display(),
                ledger_check::utc(until)
            );
            log::error!("{line}");
            Some(line)
        }
    };
    // Longer than any backend's own wait (the GWMP TX_ACK timeout is 2 s).
    Ok((TxGate::new(guard, control, Duration::from_secs(5)), note))
}

fn bind_status(config: &Config) -> Option<status::StatusServer> {
    let path = config.service.status_socket_path();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match status::StatusServer::bind(&path) {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!("gatewayd status will not answer: {e}");
            None
        }
    }
}

/// Refresh the outbox figures, check in for the outbox with the watchdog (a stuck outbox
/// thread stops the pings), and keep systemd's STATUS= line current.
async fn probe(
    outbox: OutboxHandle,
    state: Arc<DaemonState>,
    heartbeat: Heartbeat,
    notifier: Arc<Notifier>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    let mut last_status = String::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match tokio::time::timeout(Duration::from_secs(5), outbox.stats()).await {
            Ok(Ok(stats)) => {
                if let Ok(mut g) = state.outbox.lock() {
                    *g = Some(stats);
                }
                heartbeat.beat("outbox");
            }
            Ok(Err(e)) => log::warn!("outbox does not answer: {e}"),
            Err(_) => log::warn!("outbox did not answer within 5 s"),
        }
        let line = state.status_line();
        if line != last_status {
            let _ = notifier.status(&line);
            last_status = line;
        }
    }
}
