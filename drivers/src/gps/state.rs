//! GPS state machine: fed decoded sentences and clock ticks with the current `Instant`,
//! it decides NoDevice / NoFix / Fix / Stale and what position and time may be trusted.
//!
//! Pure: no I/O, no clock reads. The reader task owns one [`GpsTracker`] and publishes its
//! [`GpsState`] snapshots; [`Counters`] are shared atomics the reader updates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::nmea::{RejectReason, Sentence};

/// Default time without any valid sentence after which the receiver is considered stale.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(5);

/// Coarse GPS receiver status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiverStatus {
    /// The serial device is not open (missing, unplugged, no permission).
    NoDevice,
    /// The device is open and talking (or just opened), but reports no fix.
    NoFix,
    /// The receiver reports a fix; position and time are current.
    Fix,
    /// The device is open but no valid sentence arrived for `stale_after`.
    Stale,
}

/// A fix: the position the receiver reports, in signed decimal degrees (WGS 84), with its
/// quality.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpsFix {
    /// Latitude, north positive.
    pub latitude: f64,
    /// Longitude, east positive.
    pub longitude: f64,
    /// Altitude above mean sea level in metres, when a GGA reported it.
    pub altitude: Option<f64>,
    /// Satellites used, when a GGA reported it.
    pub satellites: Option<u8>,
    /// Horizontal dilution of precision, when a GGA reported it.
    pub hdop: Option<f32>,
}

/// UTC time from the receiver, with the local monotonic instant it was observed at, so the
/// consumer can extrapolate: `utc + (Instant::now() - observed)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpsTime {
    /// UTC time the receiver reported.
    pub utc: SystemTime,
    /// When the sentence carrying it was received.
    pub observed: Instant,
}

impl GpsTime {
    /// The receiver's time extrapolated to `now`.
    pub fn at(&self, now: Instant) -> SystemTime {
        self.utc + now.saturating_duration_since(self.observed)
    }
}

/// A snapshot of what the GPS knows. `position` and `time` are `Some` only while
/// `status == Fix`; keep the last values yourself if a last-known position is wanted.
#[derive(Debug, Clone, PartialEq)]
pub struct GpsState {
    /// Receiver status.
    pub status: ReceiverStatus,
    /// Current position (only with a fix).
    pub position: Option<GpsFix>,
    /// Current time (only with a fix).
    pub time: Option<GpsTime>,
    /// When the last valid sentence of any type arrived.
    pub last_sentence: Option<Instant>,
}

impl Default for GpsState {
    fn default() -> Self {
        GpsState {
            status: ReceiverStatus::NoDevice,
            position: None,
            time: None,
            last_sentence: None,
        }
    }
}

/// Line and device counters, shared between the reader task and observers.
#[derive(Debug, Default)]
pub struct Counters {
    lines_ok: AtomicU64,
    rejected_checksum: AtomicU64,
    rejected_syntax: AtomicU64,
    rejected_too_long: AtomicU64,
    reopens: AtomicU64,
}

/// Plain copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CountersSnapshot {
    /// Lines that decoded to a sentence (of any type).
    pub lines_ok: u64,
    /// Lines rejected for a missing, malformed or wrong checksum.
    pub rejected_checksum: u64,
    /// Lines rejected as malformed (bad framing, address or field; partial lines).
    pub rejected_syntax: u64,
    /// Lines rejected for exceeding the length limit.
    pub rejected_too_long: u64,
    /// Successful opens of the device after the first.
    pub reopens: u64,
}

impl Counters {
    /// Counts one decoded line.
    pub fn record_ok(&self) {
        self.lines_ok.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one rejected line.
    pub fn record_rejected(&self, reason: RejectReason) {
        let counter = match reason {
            RejectReason::Checksum => &self.rejected_checksum,
            RejectReason::Syntax => &self.rejected_syntax,
            RejectReason::TooLong => &self.rejected_too_long,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one successful reopen of the device.
    pub fn record_reopen(&self) {
        self.reopens.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads all counters.
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            lines_ok: self.lines_ok.load(Ordering::Relaxed),
            rejected_checksum: self.rejected_checksum.load(Ordering::Relaxed),
            rejected_syntax: self.rejected_syntax.load(Ordering::Relaxed),
            rejected_too_long: self.rejected_too_long.load(Ordering::Relaxed),
            reopens: self.reopens.load(Ordering::Relaxed),
        }
    }
}

/// The state machine. Call [`device_opened`](Self::device_opened) /
/// [`device_lost`](Self::device_lost) on device events, [`on_sentence`](Self::on_sentence)
/// per decoded sentence and [`tick`](Self::tick) periodically; each returns whether the
/// snapshot changed.
///
/// The most recent GGA (quality > 0) or RMC (status `A`, mode not `N`) decides whether there
/// is a fix; a fix older than `stale_after` lapses to NoFix. Time comes from RMC (GGA has no
/// date) and is kept only with a fix.
#[derive(Debug, Clone)]
pub struct GpsTracker {
    stale_after: Duration,
    opened_at: Option<Instant>,
    last_sentence: Option<Instant>,
    /// Latest fix indication from a GGA or RMC, and when it arrived.
    fix: Option<(bool, Instant)>,
    /// Latest GGA with a fix: its extra fields complete positions from RMC.
    gga_extra: Option<(Option<f64>, Option<u8>, Option<f32>)>,
    position: Option<GpsFix>,
    time: Option<GpsTime>,
    state: GpsState,
}

impl GpsTracker {
    /// A tracker with no device open.
    pub fn new(stale_after: Duration) -> Self {
        GpsTracker {
            stale_after,
            opened_at: None,
            last_sentence: None,
            fix: None,
            gga_extra: None,
            position: None,
            time: None,
            state: GpsState::default(),
        }
    }

    /// The current snapshot.
    pub fn state(&self) -> &GpsState {
        &self.state
    }

    /// The device was opened at `now`: NoFix until sentences say otherwise.
    pub fn device_opened(&mut self, now: Instant) -> bool {
        self.forget_fix();
        self.opened_at = Some(now);
        self.update(now)
    }

    /// The device went away (error, EOF, closed): NoDevice.
    pub fn device_lost(&mut self, now: Instant) -> bool {
        self.forget_fix();
        self.opened_at = None;
        self.update(now)
    }

    /// Time passes: detects staleness and expired fixes.
    pub fn tick(&mut self, now: Instant) -> bool {
        self.update(now)
    }

    /// A valid sentence arrived at `now`.
    pub fn on_sentence(&mut self, sentence: &Sentence, now: Instant) -> bool {
        if self.opened_at.is_none() {
            // Sentences without an open device cannot happen in the reader; be safe anyway.
            self.opened_at = Some(now);
        }
        self.last_sentence = Some(now);
        match sentence {
            Sentence::Gga(gga) => {
                let fix = gga.has_fix();
                self.fix = Some((fix, now));
                if fix {
                    self.gga_extra = Some((gga.altitude, gga.satellites, gga.hdop));
                    if let Some(p) = gga.position {
                        self.position = Some(GpsFix {
                            latitude: p.latitude,
                            longitude: p.longitude,
                            altitude: gga.altitude,
                            satellites: gga.satellites,
                            hdop: gga.hdop,
                        });
                    }
                } else {
                    self.forget_fix();
                    self.fix = Some((false, now));
                }
            }
            Sentence::Rmc(rmc) => {
                // RMC status A, or a current GGA fix, makes the RMC's content trustworthy.
                let gga_fix = self
                    .fix
                    .is_some_and(|(f, t)| f && now.saturating_duration_since(t) < self.stale_after);
                let fix = rmc.has_fix() || (rmc.status_valid && gga_fix);
                self.fix = Some((fix, now));
                if fix {
                    if let Some(p) = rmc.position {
                        let (altitude, satellites, hdop) =
                            self.gga_extra.unwrap_or((None, None, None));
                        self.position = Some(GpsFix {
                            latitude: p.latitude,
                            longitude: p.longitude,
                            altitude,
                            satellites,
                            hdop,
                        });
                    }
                    if let Some(utc) = rmc.utc {
                        self.time = Some(GpsTime { utc, observed: now });
                    }
                } else {
                    self.forget_fix();
                    self.fix = Some((false, now));
                }
            }
            Sentence::Other(_) => {}
        }
        self.update(now)
    }

    fn forget_fix(&mut self) {
        self.fix = None;
        self.gga_extra = None;
        self.position = None;
        self.time = None;
    }

    /// Recomputes the snapshot; returns whether it changed.
    fn update(&mut self, now: Instant) -> bool {
        let fresh = |t: Instant| now.saturating_duration_since(t) < self.stale_after;
        let status = match self.opened_at {
            None => ReceiverStatus::NoDevice,
            Some(opened) => {
                let heard = self.last_sentence.map_or(opened, |s| s.max(opened));
                if !fresh(heard) {
                    ReceiverStatus::Stale
                } else if self.fix.is_some_and(|(f, t)| f && fresh(t)) {
                    ReceiverStatus::Fix
                } else {
                    ReceiverStatus::NoFix
                }
            }
        };
        if status != ReceiverStatus::Fix {
            self.forget_fix();
        }
        let new = GpsState {
            status,
            position: if status == ReceiverStatus::Fix {
                self.position
            } else {
                None
            },
            time: if status == ReceiverStatus::Fix {
                self.time
            } else {
                None
            },
            last_sentence: self.last_sentence,
        };
        let changed = new != self.state;
        self.state = new;
        changed
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
