//! Wires the tasks together — radio backend → pipeline → outbox → MQTT link — and shuts them
//! down in order on one signal: the radio stops first, the pipeline stores what it already
//! has, the link flushes in-flight messages and says OFFLINE, the outbox closes last.

use std::time::Duration;

use drivers::radio::{Eui64, Radio};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, RadioConfig};
use crate::outbox::{OutboxError, OutboxHandle};
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::position::Whereabouts;

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
}

/// Run until SIGTERM or SIGINT, then shut down gracefully.
pub async fn run_until_signal(config: Config) -> Result<(), DaemonError> {
    use tokio::signal::unix::{signal, SignalKind};
    let shutdown = CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let token = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => log::info!("SIGTERM: shutting down"),
            _ = int.recv() => log::info!("SIGINT: shutting down"),
        }
        token.cancel();
    });
    run(config, shutdown).await
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
            log::info!("semtech_udp: listening on {}", udp.bind);
            Ok(radio)
        }
        RadioConfig::LoraPhy(settings) => {
            let settings = (**settings).clone();
            let hardware = drivers::lora_phy::linux::LinuxHardware::new(&settings);
            drivers::lora_phy::spawn(settings, hardware, token)
                .await
                .map_err(|e| DaemonError::Radio(e.to_string()))
        }
    }
}

/// Run the daemon until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DaemonError> {
    std::fs::create_dir_all(&config.gateway.state_dir).map_err(|source| DaemonError::StateDir {
        path: config.gateway.state_dir.clone(),
        source,
    })?;
    let outbox = OutboxHandle::open(&config.outbox)?;
    log::info!("outbox: {}", config.outbox.path.display());

    let radio_token = CancellationToken::new();
    let radio = match spawn_radio(&config, radio_token.clone()).await {
        Ok(r) => r,
        Err(e) => {
            let _ = outbox.close().await;
            return Err(e);
        }
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
    let whereabouts = Whereabouts::new(
        config.gateway.location,
        gps.as_ref().map(|g| g.state.clone()),
    );
    let (gateway_tx, mut gateway_rx) = watch::channel::<Option<Eui64>>(None);
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
        whereabouts,
        None,
    );
    let pipeline_task = tokio::spawn(pipeline.run(radio.events));
    let _radio_control = radio.control;

    // The MQTT link needs the gateway id for its topics, client id and last will.
    let link_token = CancellationToken::new();
    let gateway = tokio::select! {
        id = gateway_rx.wait_for(Option::is_some) => id.ok().and_then(|id| *id),
        _ = shutdown.cancelled() => None,
    };
    let link = gateway.map(|gateway| {
        log::info!(
            "gateway {gateway}: connecting to mqtt {}:{}",
            config.mqtt.host,
            config.mqtt.port
        );
        let (task, mut commands, _state) = crate::mqtt::spawn(
            config.mqtt.clone(),
            gateway,
            outbox.clone(),
            link_token.clone(),
        );
        let command_task = tokio::spawn(async move {
            while let Some(cmd) = commands.recv().await {
                log::warn!("command/{} ignored: not supported yet", cmd.kind);
            }
        });
        (task, command_task)
    });
    log::info!("gatewayd running");

    shutdown.cancelled().await;
    radio_token.cancel();
    if tokio::time::timeout(Duration::from_secs(5), pipeline_task)
        .await
        .is_err()
    {
        log::warn!("pipeline did not finish within 5 s");
    }
    link_token.cancel();
    if let Some((task, command_task)) = link {
        if tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
        {
            log::warn!("mqtt link did not finish within 5 s");
        }
        command_task.abort();
    }
    outbox.close().await?;
    log::info!("gatewayd stopped");
    Ok(())
}
