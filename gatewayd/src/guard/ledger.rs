//! The duty-cycle ledger: airtime charged per band, persisted in SQLite so that a restart
//! does not hand the radio a fresh hour of budget.
//!
//! One small database (`dutycycle.sqlite` in the state directory) owned by the guard. Each
//! approved transmission is one row (region, band, start, airtime); rows older than a few
//! hours are pruned as new ones arrive. Times are microseconds on the ledger timeline
//! ([`super::clock`]: the wall clock at first use, then advancing with the monotonic clock),
//! and the one-row `timeline` table says where that timeline stood at the last charge.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection, OptionalExtension};

use super::clock::TimelineMark;

/// How long rows are kept: well beyond any window the guard looks at.
const RETENTION: Duration = Duration::from_secs(3 * 3600);

/// A ledger failure (the guard refuses to transmit while it cannot account for airtime).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database could not be opened or prepared.
    #[error("duty-cycle ledger {path}: cannot open: {source}")]
    Open {
        /// The file (`:memory:` for an in-memory ledger).
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// A query or write failed.
    #[error("duty-cycle ledger: {what}: {source}")]
    Sql {
        /// The operation.
        what: &'static str,
        /// Why.
        source: rusqlite::Error,
    },
}

/// One charged transmission, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// The row id (used to refund the charge).
    pub id: i64,
    /// When the transmission starts.
    pub start: SystemTime,
    /// Its airtime.
    pub airtime: Duration,
}

/// Airtime charged per (region, band), persisted in SQLite.
#[derive(Debug)]
pub struct DutyCycleLedger {
    conn: Connection,
}

fn to_us(t: SystemTime) -> i64 {
    i64::try_from(drivers::time::unix_us(t)).unwrap_or(i64::MAX)
}

fn from_us(us: i64) -> SystemTime {
    drivers::time::from_unix_us(u64::try_from(us).unwrap_or(0))
}

fn dur_us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl DutyCycleLedger {
    /// Open (or create) the ledger file at `path`.
    pub fn open(path: &Path) -> Result<DutyCycleLedger, LedgerError> {
        let open_err = |source| LedgerError::Open {
            path: path.to_path_buf(),
            source,
        };
        // Created 0600 here: SQLite would create it (and its -wal, -shm) world-readable. If
        // this fails, SQLite's own open below says why, naming the file.
        if let Err(e) = crate::private_file::ensure_private(path) {
            log::debug!("duty-cycle ledger: {}: {e}", path.display());
        }
        let conn = Connection::open(path).map_err(open_err)?;
        Self::init(conn, path)
    }

    /// A ledger that lives in memory only (tests, or a daemon without a state directory).
    pub fn in_memory() -> Result<DutyCycleLedger, LedgerError> {
        let conn = Connection::open_in_memory().map_err(|source| LedgerError::Open {
            path: PathBuf::from(":memory:"),
            source,
        })?;
        Self::init(conn, Path::new(":memory:"))
    }

    fn init(conn: Connection, path: &Path) -> Result<DutyCycleLedger, LedgerError> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS duty_cycle (
                 id INTEGER PRIMARY KEY,
                 region TEXT NOT NULL,
                 band TEXT NOT NULL,
                 start_us INTEGER NOT NULL,
                 airtime_us INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS duty_cycle_band_start
                 ON duty_cycle (region, band, start_us);
             CREATE TABLE IF NOT EXISTS timeline (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 boot_id TEXT NOT NULL,
                 since_boot_us INTEGER NOT NULL,
                 ledger_us INTEGER NOT NULL
             );",
        )
        .map_err(|source| LedgerError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(DutyCycleLedger { conn })
    }

    /// Read the whole table once (a damaged file fails here, at open, not at a transmission).
    pub fn check(&self) -> Result<(), LedgerError> {
        self.conn
            .query_row(
                "SELECT count(*), total(airtime_us) FROM duty_cycle",
                [],
                |_| Ok(()),
            )
            .map_err(|source| LedgerError::Sql {
                what: "read the ledger",
                source,
            })
    }

    /// Airtime charged to `band` of `region` for transmissions starting strictly between
    /// `after` and `before`.
    pub fn used(
        &self,
        region: &str,
        band: &str,
        after: SystemTime,
        before: SystemTime,
    ) -> Result<Duration, LedgerError> {
        let us: i64 = self
            .conn
            .query_row(
                "SELECT COALESCE(SUM(airtime_us), 0) FROM duty_cycle
                 WHERE region = ?1 AND band = ?2 AND start_us > ?3 AND start_us < ?4",
                params![region, band, to_us(after), to_us(before)],
                |row| row.get(0),
            )
            .map_err(|source| LedgerError::Sql {
                what: "sum airtime",
                source,
            })?;
        Ok(Duration::from_micros(u64::try_from(us).unwrap_or(0)))
    }

    /// The charges of `band` starting strictly between `after` and `before`, oldest first.
    pub fn charges(
        &self,
        region: &str,
        band: &str,
        after: SystemTime,
        before: SystemTime,
    ) -> Result<Vec<Charge>, LedgerError> {
        let sql_err = |source| LedgerError::Sql {
            what: "list charges",
            source,
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, start_us, airtime_us FROM duty_cycle
                 WHERE region = ?1 AND band = ?2 AND start_us > ?3 AND start_us < ?4
                 ORDER BY start_us, id",
            )
            .map_err(sql_err)?;
        let rows = stmt
            .query_map(params![region, band, to_us(after), to_us(before)], |row| {
                Ok(Charge {
                    id: row.get(0)?,
                    start: from_us(row.get(1)?),
                    airtime: Duration::from_micros(
                        u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                    ),
                })
            })
            .map_err(sql_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql_err)
    }

    /// Where the timeline stood at the last charge made with a mark, if any.
    pub fn timeline_mark(&self) -> Result<Option<TimelineMark>, LedgerError> {
        self.conn
            .query_row(
                "SELECT boot_id, since_boot_us, ledger_us FROM timeline WHERE id = 1",
                [],
                |row| {
                    Ok(TimelineMark {
                        boot_id: row.get(0)?,
                        since_boot: Duration::from_micros(
                            u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                        ),
                        ledger: from_us(row.get(2)?),
                    })
                },
            )
            .optional()
            .map_err(|source| LedgerError::Sql {
                what: "read timeline",
                source,
            })
    }

    /// The start of the latest charge in the ledger, if any.
    pub fn latest_start(&self) -> Result<Option<SystemTime>, LedgerError> {
        let us: Option<i64> = self
            .conn
            .query_row("SELECT MAX(start_us) FROM duty_cycle", [], |row| row.get(0))
            .map_err(|source| LedgerError::Sql {
                what: "latest charge",
                source,
            })?;
        Ok(us.map(from_us))
    }

    /// Charge `airtime` starting at `start` to `band`; prunes rows older than a few hours.
    pub fn charge(
        &mut self,
        region: &str,
        band: &str,
        start: SystemTime,
        airtime: Duration,
    ) -> Result<i64, LedgerError> {
        self.charge_marked(region, band, start, airtime, None)
    }

    /// [`DutyCycleLedger::charge`], recording in the same transaction where the timeline
    /// stands (`mark`).
    pub fn charge_marked(
        &mut self,
        region: &str,
        band: &str,
        start: SystemTime,
        airtime: Duration,
        mark: Option<&TimelineMark>,
    ) -> Result<i64, LedgerError> {
        let sql_err = |what| move |source| LedgerError::Sql { what, source };
        let start_us = to_us(start);
        let tx = self.conn.transaction().map_err(sql_err("begin"))?;
        tx.execute(
            "DELETE FROM duty_cycle WHERE start_us < ?1",
            params![start_us.saturating_sub(dur_us(RETENTION))],
        )
        .map_err(sql_err("prune"))?;
        tx.execute(
            "INSERT INTO duty_cycle (region, band, start_us, airtime_us) VALUES (?1, ?2, ?3, ?4)",
            params![region, band, start_us, dur_us(airtime)],
        )
        .map_err(sql_err("insert charge"))?;
        let id = tx.last_insert_rowid();
        if let Some(m) = mark {
            tx.execute(
                "INSERT OR REPLACE INTO timeline (id, boot_id, since_boot_us, ledger_us)
                 VALUES (1, ?1, ?2, ?3)",
                params![m.boot_id, dur_us(m.since_boot), to_us(m.ledger)],
            )
            .map_err(sql_err("record timeline"))?;
        }
        tx.commit().map_err(sql_err("commit"))?;
        Ok(id)
    }

    /// Take back a charge (the backend did not transmit); `false` if it was not there.
    pub fn refund(&mut self, id: i64) -> Result<bool, LedgerError> {
        let n = self
            .conn
            .execute("DELETE FROM duty_cycle WHERE id = ?1", params![id])
            .map_err(|source| LedgerError::Sql {
                what: "refund charge",
                source,
            })?;
        Ok(n > 0)
    }
}

#[cfg(test)]
impl DutyCycleLedger {
    /// Make every later query fail (tests of the guard's fail-closed path).
    pub(super) fn break_for_test(&self) {
        self.conn.execute_batch("DROP TABLE duty_cycle").unwrap();
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    #[test]
    fn sums_per_band_and_window_and_refunds() {
        let mut l = DutyCycleLedger::in_memory().unwrap();
        let a = l
            .charge("EU868", "M", t(10), Duration::from_millis(100))
            .unwrap();
        l.charge("EU868", "M", t(20), Duration::from_millis(200))
            .unwrap();
        l.charge("EU868", "P", t(20), Duration::from_millis(400))
            .unwrap();
        l.charge("EU433", "M", t(20), Duration::from_millis(800))
            .unwrap();
        assert_eq!(
            l.used("EU868", "M", t(0), t(30)).unwrap(),
            Duration::from_millis(300)
        );
        // Bounds are exclusive.
        assert_eq!(
            l.used("EU868", "M", t(10), t(30)).unwrap(),
            Duration::from_millis(200)
        );
        assert_eq!(l.charges("EU868", "M", t(0), t(30)).unwrap().len(), 2);
        assert!(l.refund(a).unwrap());
        assert!(!l.refund(a).unwrap());
        assert_eq!(
            l.used("EU868", "M", t(0), t(30)).unwrap(),
            Duration::from_millis(200)
        );
    }

    #[test]
    fn old_rows_are_pruned() {
        let mut l = DutyCycleLedger::in_memory().unwrap();
        l.charge("EU868", "M", t(0), Duration::from_secs(1))
            .unwrap();
        l.charge("EU868", "M", t(4 * 3600), Duration::from_secs(1))
            .unwrap();
        assert_eq!(
            l.charges(
                "EU868",
                "M",
                t(0).checked_sub(Duration::from_secs(1)).unwrap(),
                t(5 * 3600)
            )
            .unwrap()
            .len(),
            1
        );
    }

    #[test]
    fn survives_reopen_and_reports_a_bad_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dutycycle.sqlite");
        {
            let mut l = DutyCycleLedger::open(&path).unwrap();
            l.charge("EU868", "M", t(5), Duration::from_secs(3))
                .unwrap();
        }
        let l = DutyCycleLedger::open(&path).unwrap();
        assert_eq!(
            l.used("EU868", "M", t(0), t(10)).unwrap(),
            Duration::from_secs(3)
        );
        assert_eq!(l.timeline_mark().unwrap(), None);
        assert_eq!(l.latest_start().unwrap(), Some(t(5)));
        let err = DutyCycleLedger::open(&dir.path().join("no/such/dir/x.sqlite")).unwrap_err();
        assert!(err.to_string().contains("no/such/dir"), "{err}");
    }

    #[test]
    fn the_timeline_mark_is_kept_with_the_charges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dutycycle.sqlite");
        let mark = |s| TimelineMark {
            boot_id: "b1".into(),
            since_boot: Duration::from_millis(1500 + s),
            ledger: t(s),
        };
        {
            let mut l = DutyCycleLedger::open(&path).unwrap();
            assert_eq!(l.latest_start().unwrap(), None);
            l.charge_marked("EU868", "M", t(5), Duration::from_secs(1), Some(&mark(4)))
                .unwrap();
            l.charge_marked("EU868", "M", t(9), Duration::from_secs(1), Some(&mark(8)))
                .unwrap();
        }
        let l = DutyCycleLedger::open(&path).unwrap();
        assert_eq!(l.timeline_mark().unwrap(), Some(mark(8)));
        assert_eq!(l.latest_start().unwrap(), Some(t(9)));
    }
}
