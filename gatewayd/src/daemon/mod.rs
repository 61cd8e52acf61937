//! Wires the tasks together — radio backend → pipeline → outbox → MQTT link — plus the service
//! layer (systemd notify and watchdog, status socket, metrics, privileges, reload), and shuts
//! them down in order on one signal: the radio stops first, the pipeline stores what it already
//! has, the link flushes in-flight messages and says OFFLINE, the outbox closes last.

pub mod commands;
mod link;
mod poc;
pub mod reload;
mod start;
pub mod state;

use std::time::Duration;

use drivers::radio::Radio;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::outbox::OutboxError;
use link::Linked;
use start::Core;

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
    /// The Semtech UDP radio backend could not start.
    #[error("radio: {0}")]
    SemtechUdp(#[source] drivers::semtech_udp::GwmpError),
    /// The lora-phy radio backend could not start.
    #[error("radio: {0}")]
    LoraPhy(#[source] drivers::lora_phy::LoraPhyError),
    /// The simulated radio backend could not start.
    #[cfg(feature = "simulated")]
    #[error("radio: {0}")]
    Simulated(#[source] sim::SimError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// The hotspot's key file is unsafe or unreadable.
    #[error("identity: {0}")]
    Identity(#[source] crate::poc::identity::IdentityError),
    /// Started as root with no `service.user` and `allow_root` not set (the message says
    /// which settings to change).
    #[error("{0}")]
    RootRefused(String),
    /// Handing the state directory to the service user, or dropping privileges, failed.
    #[error("{0}")]
    Privileges(#[from] crate::service::privileges::PrivilegeError),
    /// `gateway.region` names no region the guard knows.
    #[error("regulatory guard: unknown region {0}")]
    UnknownRegion(String),
    /// The guard's settings are invalid.
    #[error("regulatory guard: {0}")]
    Guard(#[source] crate::guard::GuardError),
    /// The duty-cycle ledger could not be opened or used.
    #[error("regulatory guard: {0}")]
    Ledger(#[source] crate::guard::LedgerError),
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

/// The daemon's phases: [`start::start`] opens the resources and starts the core tasks,
/// [`link::connect`] waits for the gateway id and starts what needs it, then READY, the reload
/// loop until `shutdown`, and [`stop`].
async fn run_with(
    mut config: Config,
    shutdown: CancellationToken,
    mut reload: Option<tokio::sync::mpsc::Receiver<()>>,
    given_radio: Option<Radio>,
) -> Result<(), DaemonError> {
    let (core, for_link) = start::start(&config, given_radio).await?;
    let linked = link::connect(&config, &core, for_link, &shutdown).await;
    if !shutdown.is_cancelled() && !linked.ready_sent {
        let _ = core.notifier.ready();
        let _ = core.notifier.status(&core.state.status_line());
        log::info!("gatewayd running");
    }

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(()) = async { reload.as_mut().expect("guarded").recv().await }, if reload.is_some() => {
                let _ = core.notifier.reloading();
                apply_reload(&mut config, &core.live_tx);
                let _ = core.notifier.ready();
            }
        }
    }

    stop(core, linked).await
}

/// Stop everything in order: the radio first; the pipeline stores what it already has; the
/// receipt task saves the chain; the MQTT link flushes in-flight messages and says OFFLINE;
/// the service tasks end; the outbox closes last.
async fn stop(core: Core, linked: Linked) -> Result<(), DaemonError> {
    let _ = core.notifier.stopping();
    core.radio_token.cancel();
    if tokio::time::timeout(Duration::from_secs(5), core.pipeline_task)
        .await
        .is_err()
    {
        log::warn!("pipeline did not finish within 5 s");
    }
    // The pipeline has stopped: its outcome sender is gone, the receipt task saves the chain.
    if let Some(task) = linked.receipt_task {
        if tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
        {
            log::warn!("receipt task did not finish within 5 s");
        }
    }
    linked.link_token.cancel();
    if let Some(link) = linked.link {
        if tokio::time::timeout(Duration::from_secs(5), link.mqtt)
            .await
            .is_err()
        {
            log::warn!("mqtt link did not finish within 5 s");
        }
        link.downlink.abort();
        link.watch.abort();
    }
    core.service_token.cancel();
    let _ = core.probe_task.await;
    let _ = core.watchdog_task.await;
    core.outbox.close().await?;
    log::info!("gatewayd stopped");
    Ok(())
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
