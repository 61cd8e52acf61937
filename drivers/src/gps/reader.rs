//! The GPS reader task: owns the serial device, moves its bytes through the bounded
//! [`LineBuffer`] and the NMEA codec into the [`GpsTracker`], and publishes [`GpsState`]
//! snapshots on a `watch` channel.
//!
//! A device that is missing, unreadable or disappears (USB unplugged: read error or EOF)
//! puts the state to NoDevice; the task reopens it with exponential backoff (250 ms doubling
//! to 30 s) and logs why, naming the device (and the owning group on permission denied).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_serial::{SerialPortBuilderExt, SerialStream};
use tokio_util::sync::CancellationToken;

use super::line::{LineBuffer, LineEvent};
use super::nmea::{self, RejectReason};
use super::state::{Counters, GpsState, GpsTracker, ReceiverStatus, DEFAULT_STALE_AFTER};

/// First delay before reopening a missing or lost device.
pub const REOPEN_BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest delay between reopen attempts.
pub const REOPEN_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Minimum interval between repeated warnings about the same problem.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// Where the receiver is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpsConfig {
    /// Serial device, e.g. `/dev/serial0`, `/dev/ttyAMA0`, `/dev/ttyACM0` (symlinks followed).
    pub device: PathBuf,
    /// Baud rate (u-blox modules default to 9600).
    pub baud: u32,
    /// Time without a valid sentence after which the state becomes Stale.
    pub stale_after: Duration,
}

impl Default for GpsConfig {
    fn default() -> Self {
        GpsConfig {
            device: PathBuf::from("/dev/serial0"),
            baud: 9600,
            stale_after: DEFAULT_STALE_AFTER,
        }
    }
}

/// The running reader: its state snapshots, its counters and its task.
#[derive(Debug)]
pub struct GpsHandle {
    /// Latest state; `changed()` wakes on every update.
    pub state: watch::Receiver<GpsState>,
    /// Line and reopen counters.
    pub counters: Arc<Counters>,
    /// The task; it ends after `shutdown` is cancelled.
    pub task: JoinHandle<()>,
}

/// Why the device could not be opened, worded for an operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The path does not exist.
    #[error(
        "GPS device {device}: not found (receiver unplugged, or wrong `device` in the config)"
    )]
    NotFound {
        /// The configured path.
        device: String,
    },
    /// The service user may not open the device.
    #[error(
        "GPS device {device}: permission denied; add the service user to group `{group}` \
         (the group that owns the device)"
    )]
    PermissionDenied {
        /// The configured path.
        device: String,
        /// The group owning the device (usually `dialout`).
        group: String,
    },
    /// Another program holds the device exclusively.
    #[error("GPS device {device}: busy (another program, e.g. gpsd, has it open)")]
    Busy {
        /// The configured path.
        device: String,
    },
    /// Anything else.
    #[error("GPS device {device}: cannot open: {message}")]
    Other {
        /// The configured path.
        device: String,
        /// The system's description.
        message: String,
    },
}

/// Starts the reader task on the current Tokio runtime. It runs until `shutdown` is
/// cancelled, then reports NoDevice and ends.
pub fn spawn(config: GpsConfig, shutdown: CancellationToken) -> GpsHandle {
    let (tx, state) = watch::channel(GpsState::default());
    let counters = Arc::new(Counters::default());
    let task = tokio::spawn(run(config, shutdown, tx, counters.clone()));
    GpsHandle {
        state,
        counters,
        task,
    }
}

/// How a session with an open device ended.
enum SessionEnd {
    Shutdown,
    Lost { reason: String, got_sentences: bool },
}

async fn run(
    config: GpsConfig,
    shutdown: CancellationToken,
    tx: watch::Sender<GpsState>,
    counters: Arc<Counters>,
) {
    let device = config.device.display().to_string();
    let mut tracker = GpsTracker::new(config.stale_after);
    let mut backoff = REOPEN_BACKOFF_MIN;
    let mut opened_before = false;
    let mut open_warn = RateLimited::default();
    while !shutdown.is_cancelled() {
        match open(&config) {
            Ok(port) => {
                if opened_before {
                    counters.record_reopen();
                    info!("GPS device {device}: reopened at {} baud", config.baud);
                } else {
                    info!("GPS device {device}: opened at {} baud", config.baud);
                }
                opened_before = true;
                open_warn = RateLimited::default();
                let changed = tracker.device_opened(Instant::now());
                publish(&tx, &tracker, changed);
                let end = session(
                    port,
                    &device,
                    &config,
                    &shutdown,
                    &tx,
                    &mut tracker,
                    &counters,
                )
                .await;
                let changed = tracker.device_lost(Instant::now());
                publish(&tx, &tracker, changed);
                match end {
                    SessionEnd::Shutdown => break,
                    SessionEnd::Lost {
                        reason,
                        got_sentences,
                    } => {
                        warn!("GPS device {device}: lost ({reason}); reopening");
                        if got_sentences {
                            backoff = REOPEN_BACKOFF_MIN;
                        }
                    }
                }
            }
            Err(e) => {
                let message = e.to_string();
                if open_warn.should_warn(&message, Instant::now()) {
                    warn!(
                        "{message}; retrying every {}s at most",
                        REOPEN_BACKOFF_MAX.as_secs()
                    );
                } else {
                    debug!("{message}");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(REOPEN_BACKOFF_MAX);
    }
    let changed = tracker.device_lost(Instant::now());
    publish(&tx, &tracker, changed);
    debug!("GPS device {device}: reader stopped");
}

/// Publishes the tracker's snapshot if it changed, logging status transitions (rare:
/// fix acquired or lost, receiver silent) for the operator.
fn publish(tx: &watch::Sender<GpsState>, tracker: &GpsTracker, changed: bool) {
    if !changed {
        return;
    }
    let new = tracker.state().clone();
    let old = tx.send_replace(new.clone());
    if let Some(message) = transition_message(old.status, &new) {
        info!("{message}");
    }
}

/// What to tell the operator when the status changes (device open/loss is logged elsewhere).
fn transition_message(old: ReceiverStatus, new: &GpsState) -> Option<String> {
    match (old, new.status) {
        (a, b) if a == b => None,
        (_, ReceiverStatus::Fix) => Some(match new.position {
            Some(p) => format!(
                "GPS: fix acquired at {:.5}, {:.5} ({} satellites)",
                p.latitude,
                p.longitude,
                p.satellites.map_or("?".to_string(), |n| n.to_string())
            ),
            None => "GPS: fix acquired".to_string(),
        }),
        (ReceiverStatus::Fix, ReceiverStatus::NoFix) => Some("GPS: fix lost".to_string()),
        (_, ReceiverStatus::Stale) => Some(
            "GPS: no valid NMEA sentence received recently (check the wiring and the baud rate)"
                .to_string(),
        ),
        _ => None,
    }
}

fn open(config: &GpsConfig) -> Result<SerialStream, OpenError> {
    let path = config.device.to_string_lossy();
    tokio_serial::new(path.clone(), config.baud)
        .open_native_async()
        .map_err(|e| {
            let kind = match e.kind {
                tokio_serial::ErrorKind::Io(kind) => Some(kind),
                tokio_serial::ErrorKind::NoDevice => Some(io::ErrorKind::ResourceBusy),
                _ => None,
            };
            describe_open_error(&config.device, kind, &e.description)
        })
}

/// Turns an open failure into an operator-facing error naming the device.
pub fn describe_open_error(
    device: &Path,
    kind: Option<io::ErrorKind>,
    description: &str,
) -> OpenError {
    let name = device.display().to_string();
    match kind {
        Some(io::ErrorKind::NotFound) => OpenError::NotFound { device: name },
        Some(io::ErrorKind::PermissionDenied) => {
            let group = std::fs::metadata(device)
                .ok()
                .and_then(|m| group_name(m.gid()))
                .unwrap_or_else(|| "dialout".to_string());
            OpenError::PermissionDenied {
                device: name,
                group,
            }
        }
        Some(io::ErrorKind::ResourceBusy) => OpenError::Busy { device: name },
        _ => OpenError::Other {
            device: name,
            message: description.to_string(),
        },
    }
}

/// Looks a group id up in `/etc/group`.
fn group_name(gid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    group_name_in(&text, gid)
}

fn group_name_in(etc_group: &str, gid: u32) -> Option<String> {
    etc_group.lines().find_map(|line| {
        let mut parts = line.split(':');
        let name = parts.next()?;
        let id = parts.nth(1)?.parse::<u32>().ok()?;
        (id == gid && !name.is_empty()).then(|| name.to_string())
    })
}

async fn session(
    mut port: SerialStream,
    device: &str,
    config: &GpsConfig,
    shutdown: &CancellationToken,
    tx: &watch::Sender<GpsState>,
    tracker: &mut GpsTracker,
    counters: &Counters,
) -> SessionEnd {
    let mut lines = LineBuffer::new();
    let mut buf = [0u8; 256];
    let mut got_sentences = false;
    let mut reject_warn = RateLimited::default();
    let period = (config.stale_after / 5).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let read = tokio::select! {
            _ = shutdown.cancelled() => return SessionEnd::Shutdown,
            _ = ticker.tick() => {
                let changed = tracker.tick(Instant::now());
                publish(tx, tracker, changed);
                continue;
            }
            read = port.read(&mut buf) => read,
        };
        let n = match read {
            Ok(0) => {
                return SessionEnd::Lost {
                    reason: "end of file".into(),
                    got_sentences,
                }
            }
            Ok(n) => n,
            Err(e) => {
                return SessionEnd::Lost {
                    reason: format!("read error: {e}"),
                    got_sentences,
                }
            }
        };
        let now = Instant::now();
        let mut changed = false;
        lines.feed(&buf[..n], |event| {
            let result = match event {
                LineEvent::Line(line) => nmea::parse(line).map_err(|e| (e.reason(), e.to_string())),
                LineEvent::TooLong => Err((
                    RejectReason::TooLong,
                    format!("line longer than {} bytes, skipped to the next '$'", nmea::MAX_LINE),
                )),
                LineEvent::Truncated => Err((RejectReason::Syntax, "line cut short by the next '$'".into())),
            };
            match result {
                Ok(sentence) => {
                    counters.record_ok();
                    got_sentences = true;
                    changed |= tracker.on_sentence(&sentence, now);
                }
                Err((reason, message)) => {
                    counters.record_rejected(reason);
                    if reject_warn.should_warn("rejected", now) {
                        warn!("GPS device {device}: rejected line: {message} (further rejections logged at debug, counted in metrics)");
                    } else {
                        debug!("GPS device {device}: rejected line: {message}");
                    }
                }
            }
        });
        publish(tx, tracker, changed);
    }
}

/// Lets a warning through the first time, when its text changes, or once per
/// [`WARN_INTERVAL`].
#[derive(Debug, Default)]
struct RateLimited {
    last: Option<(String, Instant)>,
}

impl RateLimited {
    fn should_warn(&mut self, key: &str, now: Instant) -> bool {
        let due = match &self.last {
            None => true,
            Some((k, at)) => k != key || now.saturating_duration_since(*at) >= WARN_INTERVAL,
        };
        if due {
            self.last = Some((key.to_string(), now));
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_errors_name_device_and_group() {
        let dev = Path::new("/nonexistent/ttyGPS");
        let e = describe_open_error(dev, Some(io::ErrorKind::NotFound), "No such file");
        assert_eq!(
            e,
            OpenError::NotFound {
                device: "/nonexistent/ttyGPS".into()
            }
        );
        assert!(
            e.to_string().contains("/nonexistent/ttyGPS: not found"),
            "{e}"
        );

        let e = describe_open_error(
            dev,
            Some(io::ErrorKind::PermissionDenied),
            "Permission denied",
        );
        assert_eq!(
            e,
            OpenError::PermissionDenied {
                device: "/nonexistent/ttyGPS".into(),
                group: "dialout".into()
            }
        );
        assert!(e.to_string().contains("group `dialout`"), "{e}");

        let e = describe_open_error(dev, Some(io::ErrorKind::ResourceBusy), "busy");
        assert!(matches!(e, OpenError::Busy { .. }));
        let e = describe_open_error(dev, None, "Not a typewriter");
        assert_eq!(
            e.to_string(),
            "GPS device /nonexistent/ttyGPS: cannot open: Not a typewriter"
        );
    }

    #[test]
    fn permission_error_names_the_owning_group_of_a_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tty");
        std::fs::write(&path, b"").unwrap();
        let gid = std::fs::metadata(&path).unwrap().gid();
        let e = describe_open_error(&path, Some(io::ErrorKind::PermissionDenied), "");
        let OpenError::PermissionDenied { group, .. } = e else {
            panic!("{e:?}")
        };
        assert_eq!(Some(group), group_name(gid).or(Some("dialout".into())));
    }

    #[test]
    fn etc_group_parsing() {
        let text = "root:x:0:\ndialout:x:20:pi,gatewayd\nbroken\nuucp:x:10:\n";
        assert_eq!(group_name_in(text, 20).as_deref(), Some("dialout"));
        assert_eq!(group_name_in(text, 10).as_deref(), Some("uucp"));
        assert_eq!(group_name_in(text, 99), None);
    }

    #[test]
    fn rate_limited_warnings() {
        let t0 = Instant::now();
        let mut r = RateLimited::default();
        assert!(r.should_warn("a", t0));
        assert!(!r.should_warn("a", t0 + Duration::from_secs(59)));
        assert!(
            r.should_warn("b", t0 + Duration::from_secs(59)),
            "new message"
        );
        assert!(!r.should_warn("b", t0 + Duration::from_secs(60)));
        assert!(r.should_warn("b", t0 + Duration::from_secs(119)));
    }

    #[test]
    fn status_transitions_are_worded_for_operators() {
        let mut st = GpsState {
            status: ReceiverStatus::Fix,
            ..GpsState::default()
        };
        assert_eq!(
            transition_message(ReceiverStatus::NoFix, &st).as_deref(),
            Some("GPS: fix acquired")
        );
        st.position = Some(crate::gps::GpsFix {
            latitude: 48.1173,
            longitude: 11.516_666,
            altitude: None,
            satellites: Some(8),
            hdop: None,
        });
        assert_eq!(
            transition_message(ReceiverStatus::Stale, &st).as_deref(),
            Some("GPS: fix acquired at 48.11730, 11.51667 (8 satellites)")
        );
        assert_eq!(transition_message(ReceiverStatus::Fix, &st), None);
        st.status = ReceiverStatus::NoFix;
        assert_eq!(
            transition_message(ReceiverStatus::Fix, &st).as_deref(),
            Some("GPS: fix lost")
        );
        assert_eq!(
            transition_message(ReceiverStatus::NoDevice, &st),
            None,
            "open is logged by the reader"
        );
        st.status = ReceiverStatus::Stale;
        assert!(transition_message(ReceiverStatus::NoFix, &st)
            .unwrap()
            .contains("baud rate"));
    }

    #[test]
    fn default_config() {
        let c = GpsConfig::default();
        assert_eq!(
            (c.device.as_path(), c.baud, c.stale_after),
            (Path::new("/dev/serial0"), 9600, Duration::from_secs(5))
        );
    }
}
