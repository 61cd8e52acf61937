//! Wires the tasks together — radio backend → pipeline → outbox → MQTT link — plus the service
//! layer (systemd notify and watchdog, status socket, metrics, privileges, reload), and shuts
//! them down in order on one signal: the radio stops first, the pipeline stores what it already
//! has, the link flushes in-flight messages and says OFFLINE, the outbox closes last.

pub mod commands;
mod poc;
pub mod reload;
pub mod state;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drivers::radio::{Eui64, Radio};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, RadioConfig};
use crate::outbox::{OutboxError, OutboxHandle};
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::position::Whereabouts;
use crate::service::notify::{self, Notifier};
use crate::service::privileges::{self, Decision};
use crate::service::watchdog::{spawn_watchdog, Heartbeat};
use crate::service::{metrics, status};
use state::{DaemonState, PROBE_EVERY};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The state directory could not be created.
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The outbox could not be opened.
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
    /// The radio backend could not start.
    #[error("radio: {0}")]
    Radio(String),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The hotspot's key file is unsafe or unreadable.
    #[error("identity: {0}")]
    Identity(String),
    /// Running as root is not allowed by the config, or dropping privileges failed.
    #[error("{0}")]
    Privileges(String),
    /// The regulatory guard (region, settings, duty-cycle ledger) could not be set up.
    #[error("regulatory guard: {0}")]
    Guard(String),
}

/// Run until SIGTERM or SIGINT, reloading the config on SIGHUP.
pub async fn run_until_signal(config: Config) -> Result<(), DaemonError> {
    use tokio::signal::unix::{signal, SignalKind};
    let shutdown = CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let token = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { log::info!("SIGTERM: shutting down"); break; }
                _ = int.recv() => { log::info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => { let _ = reload_tx.try_send(()); }
            }
        }
        token.cancel();
    });
    run_with(config, shutdown, Some(reload_rx), None).await
}

/// Run the daemon until `shutdown` is cancelled (no reload).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DaemonError> {
    run_with(config, shutdown, None, None).await
}

/// Run the daemon on a radio the caller already started (an emulated chip or an in-process
/// simulated air in tests); everything after the radio is the same code path. The caller's
/// backend should stop when `shutdown` is cancelled.
pub async fn run_with_radio(
    config: Config,
    radio: Radio,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    run_with(config, shutdown, None, Some(radio)).await
}

async fn spawn_radio(config: &Config, token: CancellationToken) -> Result<Radio, DaemonError> {
    match &config.radio {
        RadioConfig::SemtechUdp(udp) => {
            let cfg = drivers::semtech_udp::SemtechUdpConfig {
                bind: udp.bind,
                ..Default::default()
            };
            let (radio, _handle) = drivers::semtech_udp::spawn(cfg, token)
                .await
                .map_err(|e| DaemonError::Radio(e.to_string()))?;
            Ok(radio)
        }
        RadioConfig::LoraPhy(settings) => {
            let settings = (**settings).clone();
            let hardware = drivers::lora_phy::linux::LinuxHardware::new(&settings);
            drivers::lora_phy::spawn(settings, hardware, token)
                .await
                .map_err(|e| DaemonError::Radio(e.to_string()))
        }
        RadioConfig::Simulated(sim) => drivers::sim::radio::spawn((**sim).clone(), token)
            .await
            .map_err(|e| DaemonError::Radio(e.to_string())),
    }
}

fn backend_name(config: &Config) -> &'static str {
    match config.radio {
        RadioConfig::SemtechUdp(_) => "semtech_udp",
        RadioConfig::LoraPhy(_) => "lora_phy",
        RadioConfig::Simulated(_) => "simulated",
    }
}

/// The transmit path: the guard of `config.gateway.region` with its duty-cycle ledger in the
/// state directory, owning the radio's `control` (nothing else may hold it).
fn tx_gate(
    config: &Config,
    control: drivers::radio::RadioControl,
    backend_can_lbt: bool,
) -> Result<crate::guard::TxGate, DaemonError> {
    use crate::guard::{DutyCycleLedger, Guard, TxGate};
    let region = crate::region::Region::by_name(&config.gateway.region)
        .ok_or_else(|| DaemonError::Guard(format!("unknown region {}", config.gateway.region)))?;
    let ledger = DutyCycleLedger::open(&config.gateway.state_dir.join("dutycycle.sqlite"))
        .map_err(|e| DaemonError::Guard(e.to_string()))?;
    let settings = crate::guard::GuardConfig {
        backend_can_lbt,
        ..config.gateway.guard.clone()
    };
    let guard =
        Guard::new(region, settings, ledger).map_err(|e| DaemonError::Guard(e.to_string()))?;
    // Longer than any backend's own wait (the GWMP TX_ACK timeout is 2 s).
    Ok(TxGate::new(guard, control, Duration::from_secs(5)))
}

/// Give the state directory to `user` before dropping to it, so the outbox stays writable.
fn hand_over_state(dir: &std::path::Path, user: &str) -> Result<(), String> {
    let u = nix::unistd::User::from_name(user)
        .map_err(|e| format!("cannot look up user {user}: {e}"))?
        .ok_or_else(|| format!("no user {user:?} (create it, or change service.user)"))?;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let paths =
        std::iter::once(dir.to_path_buf()).chain(entries.filter_map(|e| e.ok()).map(|e| e.path()));
    for p in paths {
        std::os::unix::fs::chown(&p, Some(u.uid.as_raw()), Some(u.gid.as_raw()))
            .map_err(|e| format!("chown {}: {e}", p.display()))?;
    }
    Ok(())
}

async fn run_with(
    mut config: Config,
    shutdown: CancellationToken,
    mut reload: Option<tokio::sync::mpsc::Receiver<()>>,
    given_radio: Option<Radio>,
) -> Result<(), DaemonError> {
    let decision = privileges::decide(
        nix::unistd::geteuid().as_raw(),
        config.service.user.as_deref(),
        config.service.allow_root,
    );
    if let Decision::Refuse(why) = &decision {
        return Err(DaemonError::Privileges(why.clone()));
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
    let identity = crate::poc::identity::KeyFileSigner::load_or_create(&key_path)
        .map_err(|e| DaemonError::Identity(e.to_string()))?;
    {
        use crate::poc::identity::Signer as _;
        log::info!("hotspot identity {}", identity.public_key().address());
    }
    let outbox = OutboxHandle::open(&config.outbox)?;
    log::info!("outbox: {}", config.outbox.path.display());

    let radio_token = CancellationToken::new();
    let radio = match given_radio {
        Some(r) => r,
        None => match spawn_radio(&config, radio_token.clone()).await {
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
    let gate = match tx_gate(&config, radio.control, radio.capabilities.lbt) {
        Ok(g) => g,
        Err(e) => {
            radio_token.cancel();
            let _ = outbox.close().await;
            return Err(e);
        }
    };
    let whereabouts = Whereabouts::new(
        config.gateway.location,
        gps.as_ref().map(|g| g.state.clone()),
    );

    // Service endpoints are bound while we may still be root; then privileges go.
    let service_token = CancellationToken::new();
    let status_server = bind_status(&config);
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
        hand_over_state(&config.gateway.state_dir, user).map_err(DaemonError::Privileges)?;
        let d = privileges::drop_to(user).map_err(|e| DaemonError::Privileges(e.to_string()))?;
        log::info!("running as {user} (uid {}, gid {})", d.uid, d.gid);
    }

    let (heartbeat, watchdog_task) = spawn_watchdog(
        notifier.clone(),
        notify::watchdog_timeout_from_env().map(notify::ping_interval),
        service_token.clone(),
    );
    let (gateway_tx, mut gateway_rx) = watch::channel::<Option<Eui64>>(None);
    // Proprietary frames (other hotspots' beacons) go to the witness task.
    let (proprietary_tx, proprietary_rx) = tokio::sync::mpsc::channel(64);
    let (live_tx, live_rx) = watch::channel(config.uplink.clone());
    // Data-transfer receipts: the pipeline numbers forwarded uplinks from where the chain
    // state left off and reports each store outcome (docs/proof-of-coverage.md §6.4).
    let identity: Arc<dyn crate::poc::Signer + Send + Sync> = Arc::new(identity);
    let receipt_state_path = config
        .gateway
        .state_dir
        .join(crate::poc::receipt_state::STATE_FILE_NAME);
    let receipt_start = crate::poc::receipt_task::prepare(
        &receipt_state_path,
        identity.public_key(),
        crate::poc::witness::unix_ms(std::time::SystemTime::now()),
    );
    let (outcome_tx, outcome_rx) = tokio::sync::mpsc::channel(1024);
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
    .with_receipts(crate::pipeline::task::ReceiptFeed {
        next_id: receipt_start.first_id(),
        outcomes: outcome_tx,
    });
    let state = Arc::new(DaemonState {
        started: Instant::now(),
        backend: backend_name(&config),
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

    // The MQTT link needs the gateway id for its topics, client id and last will. Without
    // one in the config it comes from the packet forwarder, which may start later: the
    // daemon is ready (it stores whatever arrives) and says what it waits for, rather than
    // letting systemd's start timeout kill it.
    let link_token = CancellationToken::new();
    let mut ready_sent = false;
    if config.gateway.id.is_none() && gateway_rx.borrow().is_none() {
        let _ = notifier.ready();
        let _ = notifier.status("waiting for the packet forwarder to announce the gateway id");
        log::info!("gatewayd running; waiting for the packet forwarder to announce the gateway id");
        ready_sent = true;
    }
    let gateway = tokio::select! {
        id = gateway_rx.wait_for(Option::is_some) => id.ok().and_then(|id| *id),
        _ = shutdown.cancelled() => None,
    };
    let witness_counters = Arc::new(crate::poc::task::WitnessCounters::default());
    // The beacon task tells the witness task the bodies of our own beacons.
    let (own_tx, own_rx) = tokio::sync::mpsc::channel(8);
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
            identity.clone(),
            outbox.clone(),
            crate::mqtt::topic(&config.mqtt.topic_prefix, gateway, "event/witness"),
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
            identity.clone(),
            outbox.clone(),
            crate::poc::receipt_task::ReceiptSettings {
                interval: config.poc.receipt_interval,
                validity: config.poc.report_validity,
                topic: crate::mqtt::topic(&config.mqtt.topic_prefix, gateway, "event/receipt"),
                state_path: receipt_state_path.clone(),
            },
            receipt_counters.clone(),
        ))
    });
    state.set_receipt_counters(receipt_counters);
    let link = gateway.map(|gateway| {
        crate::logging::set_gateway_id(&gateway.to_string());
        log::info!(
            "gateway {gateway}: connecting to mqtt {}:{}",
            config.mqtt.host,
            config.mqtt.port
        );
        let (task, commands, link_state) = crate::mqtt::spawn(
            config.mqtt.clone(),
            gateway,
            outbox.clone(),
            link_token.clone(),
        );
        state.set_link(link_state.clone());
        let st = state.clone();
        let mut changes = link_state;
        let watch_task = tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                st.link_changed();
            }
        });
        let mut downlink = crate::downlink::DownlinkTask::new(
            gate,
            outbox.clone(),
            crate::downlink::DownlinkConfig {
                gateway,
                topic_prefix: config.mqtt.topic_prefix.clone(),
                json: config.mqtt.json,
            },
        );
        state.set_downlink_stats(downlink.stats());
        // Beacons transmit through the downlink task's gate (one guard, one ledger).
        let (entropy_tx, beacon_counters) = poc::spawn_beacon(
            &config,
            gateway,
            identity.clone(),
            outbox.clone(),
            state.whereabouts.clone(),
            downlink.tx_client(),
            own_tx,
            radio_max_dbm,
            radio_token.clone(),
        );
        state.set_beacon_counters(beacon_counters);
        let (down_tx, down_rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(commands::run_router(commands, down_tx, entropy_tx));
        let command_task = tokio::spawn(downlink.run(down_rx));
        (task, command_task, watch_task)
    });
    if !shutdown.is_cancelled() && !ready_sent {
        let _ = notifier.ready();
        let _ = notifier.status(&state.status_line());
        log::info!("gatewayd running");
    }

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(()) = async { reload.as_mut().expect("guarded").recv().await }, if reload.is_some() => {
                let _ = notifier.reloading();
                apply_reload(&mut config, &live_tx);
                let _ = notifier.ready();
            }
        }
    }

    let _ = notifier.stopping();
    radio_token.cancel();
    if tokio::time::timeout(Duration::from_secs(5), pipeline_task)
        .await
        .is_err()
    {
        log::warn!("pipeline did not finish within 5 s");
    }
    // The pipeline has stopped: its outcome sender is gone, the receipt task saves the chain.
    if let Some(task) = receipt_task {
        if tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
        {
            log::warn!("receipt task did not finish within 5 s");
        }
    }
    link_token.cancel();
    if let Some((task, command_task, watch_task)) = link {
        if tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
        {
            log::warn!("mqtt link did not finish within 5 s");
        }
        command_task.abort();
        watch_task.abort();
    }
    service_token.cancel();
    let _ = probe_task.await;
    let _ = watchdog_task.await;
    outbox.close().await?;
    log::info!("gatewayd stopped");
    Ok(())
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

fn apply_reload(config: &mut Config, live: &watch::Sender<crate::config::UplinkConfig>) {
    let new = match Config::load(&config.source) {
        Ok(c) => c,
        Err(e) => {
            log::error!("SIGHUP: the new config is rejected, the running one stays in force: {e}");
            return;
        }
    };
    let outcome = reload::diff(config, &new);
    if outcome.applied.is_empty() && outcome.needs_restart.is_empty() {
        log::info!("SIGHUP: {} unchanged", config.source.display());
        return;
    }
    if new.log_level != config.log_level {
        crate::logging::set_level(new.log_level);
    }
    if outcome.applied.contains(&"uplink") {
        live.send_replace(new.uplink.clone());
    }
    if !outcome.applied.is_empty() {
        log::info!("SIGHUP: applied {}", outcome.applied.join(", "));
    }
    if !outcome.needs_restart.is_empty() {
        log::warn!(
            "SIGHUP: [{}] changed; that takes effect after a restart (systemctl restart gatewayd)",
            outcome.needs_restart.join("], [")
        );
    }
    // Live sections take the new values; the others keep describing what actually runs.
    config.log_level = new.log_level;
    config.uplink = new.uplink;
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
