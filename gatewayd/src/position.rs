//! Where and when the hotspot is: the GPS fix when there is one, else the configured location;
//! GPS time only while the GPS has a fix. Read by the pipeline (uplink metadata), stats and
//! proof of coverage; cheap to clone.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use drivers::gps::{GpsState, ReceiverStatus};
use tokio::sync::watch;

use crate::config::Location;
use crate::poc::wire::TimeSource;
use crate::timesync::{ClockStatus, SyncCheck, TrustLocalClock};

/// Where a location came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationSource {
    /// A GPS fix.
    Gps,
    /// The `[gateway.location]` in the config.
    Config,
}

/// A location with its source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourcedLocation {
    /// The position.
    pub location: Location,
    /// Where it came from.
    pub source: LocationSource,
}

/// The hotspot's location and time sources.
#[derive(Debug, Clone)]
pub struct Whereabouts {
    fixed: Option<Location>,
    gps: Option<watch::Receiver<GpsState>>,
    sync: Arc<dyn SyncCheck>,
}

impl Whereabouts {
    /// From the configured location and, when a GPS is configured, its state. The local
    /// clock is trusted until [`Whereabouts::with_clock_sync`] says how to check it.
    pub fn new(fixed: Option<Location>, gps: Option<watch::Receiver<GpsState>>) -> Whereabouts {
        Whereabouts {
            fixed,
            gps,
            sync: Arc::new(TrustLocalClock),
        }
    }

    /// Check the local clock's synchronization with `sync` (the daemon: the kernel's).
    pub fn with_clock_sync(mut self, sync: Arc<dyn SyncCheck>) -> Whereabouts {
        self.sync = sync;
        self
    }

    /// Where report times come from now: GPS while it has a fix, else the local clock's
    /// synchronization status.
    pub fn clock_status(&self) -> ClockStatus {
        match self.gps_time(Instant::now()) {
            Some(_) => ClockStatus::Gps,
            None => self.sync.local_clock(),
        }
    }

    /// The time to put in a signed report, and its source; `None` while there is no
    /// trustworthy time (no GPS fix and an unsynchronized local clock).
    pub fn report_time(&self) -> Option<(SystemTime, TimeSource)> {
        if let Some(t) = self.gps_time(Instant::now()) {
            return Some((t, TimeSource::Gps));
        }
        self.sync
            .local_clock()
            .trusted()
            .then(|| (SystemTime::now(), TimeSource::Local))
    }

    /// The GPS state, when a GPS is configured.
    pub fn gps_state(&self) -> Option<GpsState> {
        self.gps.as_ref().map(|rx| rx.borrow().clone())
    }

    /// The best location: the GPS fix, else the configured one.
    pub fn location(&self) -> Option<SourcedLocation> {
        if let Some(state) = &self.gps {
            let s = state.borrow();
            if let (ReceiverStatus::Fix, Some(p)) = (s.status, &s.position) {
                return Some(SourcedLocation {
                    location: Location {
                        latitude: p.latitude,
                        longitude: p.longitude,
                        altitude: p.altitude.unwrap_or(0.0),
                    },
                    source: LocationSource::Gps,
                });
            }
        }
        self.fixed.map(|location| SourcedLocation {
            location,
            source: LocationSource::Config,
        })
    }

    /// UTC from the GPS at `now`, only while it has a fix.
    pub fn gps_time(&self, now: Instant) -> Option<SystemTime> {
        let state = self.gps.as_ref()?;
        let s = state.borrow();
        if s.status != ReceiverStatus::Fix {
            return None;
        }
        s.time.as_ref().map(|t| t.at(now))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use drivers::gps::{GpsFix, GpsTime};

    use super::*;

    fn fixed() -> Location {
        Location {
            latitude: 1.0,
            longitude: 2.0,
            altitude: 3.0,
        }
    }

    #[test]
    fn config_location_without_gps() {
        let w = Whereabouts::new(Some(fixed()), None);
        let l = w.location().unwrap();
        assert_eq!(l.source, LocationSource::Config);
        assert_eq!(l.location, fixed());
        assert_eq!(w.gps_time(Instant::now()), None);
        assert!(Whereabouts::new(None, None).location().is_none());
    }

    #[test]
    fn gps_fix_wins_and_gives_time_only_with_a_fix() {
        let now = Instant::now();
        let utc = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let fix = GpsState {
            status: ReceiverStatus::Fix,
            position: Some(GpsFix {
                latitude: 52.0,
                longitude: 4.0,
                altitude: Some(10.0),
                satellites: Some(9),
                hdop: Some(0.9),
            }),
            time: Some(GpsTime { utc, observed: now }),
            last_sentence: Some(now),
        };
        let (tx, rx) = watch::channel(fix.clone());
        let w = Whereabouts::new(Some(fixed()), Some(rx));
        let l = w.location().unwrap();
        assert_eq!(l.source, LocationSource::Gps);
        assert_eq!(l.location.latitude, 52.0);
        assert_eq!(
            w.gps_time(now + Duration::from_secs(2)),
            Some(utc + Duration::from_secs(2))
        );
        tx.send_replace(GpsState {
            status: ReceiverStatus::Stale,
            ..fix
        });
        assert_eq!(w.location().unwrap().source, LocationSource::Config);
        assert_eq!(w.gps_time(now), None);
    }
}
