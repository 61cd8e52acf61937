//! `gatewayd status`: the daemon answers on a Unix socket in its runtime directory with
//! one JSON [`StatusSnapshot`]; the command renders it for humans (or prints the JSON).
//!
//! Protocol: connect, read JSON until EOF. The client sends nothing.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

pub use crate::downlink::{DownlinkStatus, DutyCycleUse, GuardStatus};

/// The socket's file name inside the runtime directory.
pub const SOCKET_NAME: &str = "status.sock";
/// The runtime directory when `$RUNTIME_DIRECTORY` is not set.
pub const DEFAULT_RUNTIME_DIR: &str = "/run/gatewayd";
const MAX_ANSWER: u64 = 1 << 20;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What the daemon knows about itself; `None` for what is not known (yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusSnapshot {
    /// Daemon version.
    pub version: String,
    /// Gateway id (EUI-64, hex).
    pub gateway_id: Option<String>,
    /// Seconds since the daemon started.
    pub uptime_seconds: u64,
    /// The radio backend.
    pub radio: Option<RadioStatus>,
    /// The MQTT link.
    pub mqtt: Option<MqttStatus>,
    /// Messages waiting in the outbox.
    pub outbox_messages: Option<u64>,
    /// Age of the oldest message in the outbox, seconds.
    pub outbox_oldest_age_seconds: Option<u64>,
    /// Uplinks accepted since start.
    pub uplinks_received_total: Option<u64>,
    /// Uplinks accepted in the last hour.
    pub uplinks_last_hour: Option<u64>,
    /// Beacons transmitted since start.
    pub beacons_sent_total: Option<u64>,
    /// Seconds since the last beacon was transmitted.
    pub last_beacon_age_seconds: Option<u64>,
    /// Beacon windows skipped since start, by reason (`no_entropy`, `refused`, …).
    pub beacons_skipped: std::collections::BTreeMap<String, u64>,
    /// Witness reports created since start.
    pub witnesses_total: Option<u64>,
    /// Seconds since the last witness report was created.
    pub last_witness_age_seconds: Option<u64>,
    /// Duty-cycle use per sub-band.
    pub duty_cycle: Vec<DutyCycleUse>,
    /// GPS receiver and position source.
    pub gps: Option<GpsStatus>,
    /// Downlinks (`command/down`) and their acks.
    pub downlinks: Option<DownlinkStatus>,
    /// The regulatory guard's decisions.
    pub guard: Option<GuardStatus>,
    // Data-transfer receipts and outbox drops (docs/proof-of-coverage.md §6.4).
    /// Data-transfer receipts stored for sending since start.
    pub receipts_total: Option<u64>,
    /// Forwarded uplinks covered by receipts (chained) since start.
    pub receipt_uplinks_total: Option<u64>,
    /// Seconds since the last receipt was made.
    pub last_receipt_age_seconds: Option<u64>,
    /// Uplink ids the receipt chain gave up on (their store outcome never came back).
    pub receipt_gaps_total: Option<u64>,
    /// Receipts that could not be signed or stored.
    pub receipt_failures_total: Option<u64>,
    /// Messages dropped unsent because they expired, per outbox class, since start.
    pub outbox_expired: Vec<ClassCount>,
    /// Messages evicted to respect the outbox bound, per class, since start.
    pub outbox_evicted: Vec<ClassCount>,
    /// The radio backend's own counters since start (GWMP: `gwmp_rejected` by reason, …).
    pub radio_counters: Vec<BackendCounter>,
    /// Where the time of signed reports comes from: `gps`, `ntp-synced`, `trusted` (by
    /// configuration) or `unsynchronized` (reports held or skipped).
    pub time_source: Option<String>,
    /// Beacons heard but not witnessed, by reason (`clock_unsynchronized`).
    pub witnesses_skipped: BTreeMap<String, u64>,
    /// Receipt period ends held because there was no trusted time.
    pub receipts_held_total: Option<u64>,
    /// Disk space and state-file health (a full disk, damaged files found at start).
    pub storage: Option<super::storage::StorageStatus>,
}

/// One counter of the radio backend (`/metrics`: `gatewayd_<family>_total{reason="…"}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackendCounter {
    /// The family, snake_case (`gwmp_rejected`, `gwmp_datagrams`, …).
    pub family: String,
    /// The reason, for families split by reason (`bad_json`, `too_short`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The count.
    pub value: u64,
    /// What the family counts (the metrics' HELP line; not part of the JSON).
    #[serde(skip)]
    pub help: String,
}

/// A count for one outbox class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassCount {
    /// `control`, `poc`, `uplink` or `stats`.
    pub class: String,
    /// The count.
    pub count: u64,
}

/// The radio backend's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RadioStatus {
    /// Backend name: `semtech_udp`, `lora_phy`, `sim`.
    pub backend: String,
    /// Whether it is running and delivering frames.
    pub running: bool,
    /// Free text, e.g. the forwarder's address or the last error.
    pub detail: Option<String>,
}

/// The MQTT link's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MqttStatus {
    /// Whether the broker session is up.
    pub connected: bool,
    /// The broker (host:port).
    pub broker: String,
    /// Seconds since the state last changed.
    pub since_seconds: Option<u64>,
    /// The last connection error, if disconnected.
    pub last_error: Option<String>,
    /// Sessions established since start (one more per reconnect).
    pub connections_total: u64,
    /// Messages published again after a lost connection because their PUBACK never came
    /// (the broker may have them twice).
    pub resent_total: u64,
    /// Commands passed on to the daemon since start.
    pub commands_total: u64,
    /// Commands discarded, by reason (`oversized`, `queue_full`, `topic`, `unknown`, `busy`).
    pub commands_dropped: BTreeMap<String, u64>,
}

/// The status report's GPS section (the receiver's [`drivers::gps::ReceiverStatus`] as text).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GpsStatus {
    /// Whether the receiver has a fix.
    pub fix: bool,
    /// Satellites in use.
    pub satellites: Option<u32>,
    /// The receiver's state: `no_device`, `no_fix`, `fix` or `stale` (empty when unknown).
    pub state: String,
    /// Where the position comes from: `gps`, `config` or `none`.
    pub position_source: String,
}

/// Errors of the status socket, server or client side.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Nothing listens on the socket.
    #[error("gatewayd is not running (nothing answers on {0})")]
    NotRunning(PathBuf),
    /// The socket exists but this user may not connect.
    #[error("permission denied on {0}: run as root or as a member of the gatewayd group")]
    PermissionDenied(PathBuf),
    /// Another daemon already answers on the socket.
    #[error("another gatewayd already answers on {0}")]
    AlreadyRunning(PathBuf),
    /// Other I/O error.
    #[error("status socket {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The daemon's answer is not a status snapshot.
    #[error("bad answer on {0}: {1}")]
    BadAnswer(PathBuf, String),
}

/// The socket path for a runtime directory value (`$RUNTIME_DIRECTORY` may list several,
/// separated by `:`; the first is ours).
pub fn socket_path_for(runtime_directory: Option<&str>) -> PathBuf {
    let dir = runtime_directory
        .and_then(|v| v.split(':').find(|s| !s.is_empty()))
        .unwrap_or(DEFAULT_RUNTIME_DIR);
    Path::new(dir).join(SOCKET_NAME)
}

/// The socket path from `$RUNTIME_DIRECTORY` (set by systemd's `RuntimeDirectory=`) or
/// `/run/gatewayd`.
pub fn default_socket_path() -> PathBuf {
    socket_path_for(std::env::var("RUNTIME_DIRECTORY").ok().as_deref())
}

/// Ask the daemon listening on `path` for its status (blocking, 5 s timeouts).
pub fn query(path: &Path) -> Result<StatusSnapshot, StatusError> {
    use std::io::ErrorKind;
    let stream = std::os::unix::net::UnixStream::connect(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
            StatusError::NotRunning(path.to_owned())
        }
        ErrorKind::PermissionDenied => StatusError::PermissionDenied(path.to_owned()),
        _ => StatusError::Io(path.to_owned(), e),
    })?;
    let io = |e| StatusError::Io(path.to_owned(), e);
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    let mut buf = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut buf)
        .map_err(|e| StatusError::Io(path.to_owned(), e))?;
    serde_json::from_slice(&buf).map_err(|e| StatusError::BadAnswer(path.to_owned(), e.to_string()))
}

/// A bound status socket, not yet serving.
#[derive(Debug)]
pub struct StatusServer {
    listener: UnixListener,
    path: PathBuf,
}

impl StatusServer {
    /// Bind `path` (mode 0660). A stale socket left by a crash is replaced; a socket on
    /// which another daemon answers is an error. Must be called inside a tokio runtime.
    pub fn bind(path: &Path) -> Result<StatusServer, StatusError> {
        let io = |e| StatusError::Io(path.to_owned(), e);
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(StatusError::AlreadyRunning(path.to_owned()));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io)?;
        Ok(StatusServer {
            listener,
            path: path.to_owned(),
        })
    }

    /// Answer every connection with `snapshot()` until `shutdown`, then remove the socket.
    pub async fn serve<F>(self, snapshot: F, shutdown: CancellationToken)
    where
        F: Fn() -> StatusSnapshot + Send + Sync + 'static,
    {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((mut stream, _)) => {
                        let body = match serde_json::to_vec(&snapshot()) {
                            Ok(b) => b,
                            Err(e) => {
                                log::warn!(target: "status", "cannot encode status: {e}");
                                continue;
                            }
                        };
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(IO_TIMEOUT, async {
                                stream.write_all(&body).await?;
                                stream.shutdown().await
                            })
                            .await;
                        });
                    }
                    Err(e) => {
                        log::warn!(target: "status", "accept on {}: {e}", self.path.display());
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Bind `path` and serve `snapshot` until `shutdown` (see [`StatusServer`]).
pub async fn serve<F>(
    path: &Path,
    snapshot: F,
    shutdown: CancellationToken,
) -> Result<(), StatusError>
where
    F: Fn() -> StatusSnapshot + Send + Sync + 'static,
{
    StatusServer::bind(path)?.serve(snapshot, shutdown).await;
    Ok(())
}

pub use super::status_render::{human_duration, render, render_json, render_line};

#[cfg(test)]
#[path = "status_tests.rs"]
pub(crate) mod tests;
