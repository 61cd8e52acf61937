//! Opening the duty-cycle ledger conservatively. A ledger that cannot be trusted — a file
//! SQLite cannot read (moved aside as `dutycycle.sqlite.corrupt-<time>`), a file missing
//! from a state directory that was used before, or a WAL that a crash left incomplete —
//! may have forgotten airtime the radio really used. The guard then counts every
//! duty-cycled band as fully used for one whole window ([`Guard::assume_fully_used`]):
//! nothing transmits until the window has passed, so never more airtime than is legal.
//!
//! The "fully used" charge is an ordinary row of the new ledger, so a restart within the
//! window keeps refusing, status and metrics show the bands at 100 %, and a refusal names
//! when the band frees up.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{DutyCycleLedger, Guard, LedgerError, DUTY_CYCLE_WINDOW, SCHEDULE_SLACK};
use crate::outbox::recover::{is_corruption, lost_wal_frames, move_aside};

/// Why the ledger is not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Distrust {
    /// The file was unreadable and was moved aside.
    Corrupt {
        /// Where it went.
        moved_to: PathBuf,
        /// SQLite's complaint.
        error: String,
    },
    /// The file is missing although the state directory was used before.
    Missing,
    /// The WAL lost committed frames (see [`lost_wal_frames`]).
    WalLost(String),
}

impl std::fmt::Display for Distrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Distrust::Corrupt { moved_to, error } => write!(
                f,
                "the file was unreadable ({error}) and was moved to {}",
                moved_to.display()
            ),
            Distrust::Missing => write!(f, "the file is missing from a state directory in use"),
            Distrust::WalLost(what) => write!(f, "{what}"),
        }
    }
}

/// Open the ledger at `path`; `used_before` says whether the state directory held state
/// before this start (then a missing ledger is distrusted, not a first start).
pub fn open_checked(
    path: &Path,
    used_before: bool,
    now: SystemTime,
) -> Result<(DutyCycleLedger, Option<Distrust>), LedgerError> {
    let existed = path.exists();
    let wal_lost = lost_wal_frames(path).map(|(_, what)| what);
    let opened = DutyCycleLedger::open(path).and_then(|l| l.check().map(|()| l));
    match opened {
        Ok(l) => {
            let why = match (wal_lost, existed) {
                (Some(what), _) => Some(Distrust::WalLost(what)),
                (None, false) if used_before => Some(Distrust::Missing),
                (None, _) => None,
            };
            Ok((l, why))
        }
        Err(LedgerError::Open { source, .. } | LedgerError::Sql { source, .. })
            if is_corruption(&source) =>
        {
            let moved_to = move_aside(path, now).map_err(|e| LedgerError::Open {
                path: path.to_path_buf(),
                source: rusqlite::Error::InvalidPath(PathBuf::from(format!(
                    "{}: cannot move the damaged ledger aside: {e}",
                    path.display()
                ))),
            })?;
            let l = DutyCycleLedger::open(path)?;
            Ok((
                l,
                Some(Distrust::Corrupt {
                    moved_to,
                    error: source.to_string(),
                }),
            ))
        }
        Err(e) => Err(e),
    }
}

impl Guard {
    /// Charge every duty-cycled band its whole budget at `now`, so that nothing transmits in
    /// them until one window has passed; returns when that is.
    /// The charge goes on the ledger's timeline (see [`super::clock`]) like any other.
    pub fn assume_fully_used(&mut self, now: SystemTime) -> Result<SystemTime, LedgerError> {
        let start = self.on_timeline(now, now);
        let mark = self.clock.as_ref().map(super::LedgerClock::mark);
        for band in self.region.bands {
            if let Some(budget) = band.budget_per_hour() {
                self.ledger.charge_marked(
                    self.region.name,
                    band.name,
                    start,
                    budget,
                    mark.as_ref(),
                )?;
            }
        }
        Ok(now + DUTY_CYCLE_WINDOW + SCHEDULE_SLACK)
    }
}

/// `t` as `YYYY-MM-DD HH:MM:SS UTC` for the log and status.
pub fn utc(t: SystemTime) -> String {
    drivers::time::UtcDateTime::from_system_time(t)
        .readable()
        .to_string()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::super::{GuardConfig, Refusal};
    use super::*;
    use crate::region::Region;
    use drivers::radio::TxRequest;

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_780_000_000)
    }

    fn short(freq_hz: u64) -> TxRequest {
        super::super::tests::req(freq_hz, 14, super::super::tests::lora(7, 125_000), 12)
    }

    fn guard(ledger: DutyCycleLedger) -> Guard {
        Guard::new(
            Region::by_name("EU868").unwrap(),
            GuardConfig::default(),
            ledger,
        )
        .unwrap()
    }

    #[test]
    fn a_corrupt_ledger_is_moved_aside_and_every_band_refuses_for_one_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dutycycle.sqlite");
        std::fs::write(&path, vec![0x33; 10_000]).unwrap();
        let (ledger, why) = open_checked(&path, true, t0()).unwrap();
        let Some(Distrust::Corrupt { moved_to, .. }) = why else {
            panic!("{why:?}")
        };
        assert_eq!(std::fs::read(&moved_to).unwrap(), vec![0x33; 10_000]);
        let mut g = guard(ledger);
        let until = g.assume_fully_used(t0()).unwrap();
        assert_eq!(until, t0() + DUTY_CYCLE_WINDOW + SCHEDULE_SLACK);
        // Every duty-cycled band: refused through the window, M (1 %) and P (10 %) alike.
        for freq in [868_100_000, 869_525_000] {
            for after in [0, 1, 1800, 3600, 3609] {
                let at = t0() + Duration::from_secs(after);
                assert!(
                    matches!(
                        g.approve(at, short(freq)),
                        Err(Refusal::DutyCycleExceeded { .. })
                    ),
                    "{freq} Hz refused {after} s after the reset"
                );
            }
            let after_window = until + Duration::from_secs(1);
            assert!(g.approve(after_window, short(freq)).is_ok(), "{freq} Hz");
        }
        // Status shows the bands as fully used.
        let used = g.duty_cycle_use(t0()).unwrap();
        assert!(!used.is_empty());
        assert!(used.iter().all(|b| b.used >= b.budget), "{used:?}");
    }

    #[test]
    fn the_fully_used_charge_survives_a_restart_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dutycycle.sqlite");
        {
            let (ledger, why) = open_checked(&path, true, t0()).unwrap();
            assert_eq!(why, Some(Distrust::Missing));
            guard(ledger).assume_fully_used(t0()).unwrap();
        }
        let (ledger, why) = open_checked(&path, true, t0()).unwrap();
        assert_eq!(why, None, "the file is there now");
        let mut g = guard(ledger);
        assert!(g
            .approve(t0() + Duration::from_secs(600), short(869_525_000))
            .is_err());
    }

    #[test]
    fn a_first_start_is_trusted_and_a_ledger_in_use_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dutycycle.sqlite");
        let (l, why) = open_checked(&path, false, t0()).unwrap();
        assert_eq!(why, None);
        let mut g = guard(l);
        assert!(g.approve(t0(), short(869_525_000)).is_ok());
        drop(g);
        let (_, why) = open_checked(&path, true, t0()).unwrap();
        assert_eq!(why, None);
    }

    #[test]
    fn utc_formats_the_civil_time() {
        assert_eq!(utc(t0()), "2026-05-28 20:26:40 UTC");
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
    }
}
