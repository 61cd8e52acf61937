//! Disk space as a state of the outbox, not a failure: a pure state machine ([`Room`]) that
//! decides from the free space it is shown when to refuse new messages and when to accept
//! them again, and the file-system side ([`Reserve`], [`fs_free`]) that measures the space
//! and keeps a reserve file to release when the disk is filled under the outbox's feet.
//!
//! *Free space* here is what the outbox can still write into: the file system's available
//! bytes plus the free pages inside the database file (a delivered message's pages go to
//! SQLite's freelist; the file does not shrink, but new messages reuse them). While the reserve
//! file is released its bytes are not counted, so releasing it never looks like a recovery.
//!
//! Stores are refused below [`LOW_WATER`] (plus twice the batch about to be written: once in
//! the WAL, once again when the checkpoint copies it into the database). They are accepted
//! again at [`HIGH_WATER`] or more with the reserve in place; the gap keeps the state from
//! flapping. Deliveries and deletions go on in both states: a deletion only rewrites pages
//! that exist, and the margin (or the released reserve) holds the WAL frames it needs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Below this much free space (plus the batch) new messages are refused.
pub const LOW_WATER: u64 = 1024 * 1024;
/// New messages are accepted again once this much is free (and the reserve is back), or
/// once the backlog has drained with at least [`LOW_WATER`] free: waiting longer cannot free
/// more then.
pub const HIGH_WATER: u64 = LOW_WATER + 256 * 1024;
/// Size of the reserve file kept next to the database, released when a write fails for lack
/// of space so that deliveries can still be deleted.
pub const RESERVE_BYTES: u64 = 1024 * 1024;
/// The reserve file's name suffix (`outbox.sqlite.reserve`).
pub const RESERVE_SUFFIX: &str = "reserve";
/// One reminder while full at most this often.
pub const REMINDER_EVERY: Duration = Duration::from_secs(300);
/// How often free space is measured while full (the outbox thread wakes up for it).
pub const RECHECK_FULL: Duration = Duration::from_millis(500);
/// The longest time between two measurements while there is room.
pub const RECHECK_OK: Duration = Duration::from_secs(1);

/// What the outbox should log or do after an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Room ran out: refuse stores from now on (log once).
    BecameFull {
        /// Free bytes seen.
        free: u64,
    },
    /// Still full (a rate-limited reminder).
    StillFull {
        /// Messages refused so far in this episode.
        refused: u64,
        /// How long it has lasted.
        since: Duration,
    },
    /// Room is back: accept stores again (log once).
    Recovered {
        /// Messages refused during the episode.
        refused: u64,
        /// How long it lasted.
        lasted: Duration,
    },
}

/// Whether the outbox has room for new messages.
#[derive(Debug, Clone, Default)]
pub struct Room {
    full: Option<Episode>,
    episodes: u64,
    refused_total: u64,
    last_free: Option<u64>,
}

#[derive(Debug, Clone)]
struct Episode {
    since: Instant,
    refused: u64,
    reminded: Instant,
}

impl Room {
    /// Whether stores are refused now.
    pub fn is_full(&self) -> bool {
        self.full.is_some()
    }

    /// When the current episode started.
    pub fn full_since(&self) -> Option<Instant> {
        self.full.as_ref().map(|e| e.since)
    }

    /// Episodes since open.
    pub fn episodes(&self) -> u64 {
        self.episodes
    }

    /// Messages refused for lack of space since open.
    pub fn refused_total(&self) -> u64 {
        self.refused_total
    }

    /// The free space last measured.
    pub fn last_free(&self) -> Option<u64> {
        self.last_free
    }

    /// Count `n` messages refused.
    pub fn refuse(&mut self, n: u64) {
        self.refused_total += n;
        if let Some(e) = self.full.as_mut() {
            e.refused += n;
        }
    }

    /// Look at `free` bytes (see the module doc) before writing `batch` bytes at `now`;
    /// `reserve_held` says whether the reserve file is in place, `drained` whether the
    /// outbox holds no message any more.
    pub fn observe(
        &mut self,
        free: u64,
        batch: u64,
        reserve_held: bool,
        drained: bool,
        now: Instant,
    ) -> Option<Event> {
        self.last_free = Some(free);
        let need = LOW_WATER.saturating_add(batch.saturating_mul(2));
        match &mut self.full {
            None if free < need => Some(self.enter(free, now)),
            None => None,
            Some(_) if reserve_held && (free >= HIGH_WATER || (drained && free >= need)) => {
                self.leave(now)
            }
            Some(e) if now.saturating_duration_since(e.reminded) >= REMINDER_EVERY => {
                e.reminded = now;
                Some(Event::StillFull {
                    refused: e.refused,
                    since: now.saturating_duration_since(e.since),
                })
            }
            Some(_) => None,
        }
    }

    /// A write failed for lack of space (someone else filled the disk): full now, whatever
    /// the last measurement said.
    pub fn write_failed(&mut self, now: Instant) -> Option<Event> {
        if self.full.is_some() {
            return None;
        }
        Some(self.enter(self.last_free.unwrap_or(0), now))
    }

    fn enter(&mut self, free: u64, now: Instant) -> Event {
        self.episodes += 1;
        self.full = Some(Episode {
            since: now,
            refused: 0,
            reminded: now,
        });
        Event::BecameFull { free }
    }

    fn leave(&mut self, now: Instant) -> Option<Event> {
        let e = self.full.take()?;
        Some(Event::Recovered {
            refused: e.refused,
            lasted: now.saturating_duration_since(e.since),
        })
    }
}

/// Bytes available to an unprivileged writer on the file system holding `dir`.
pub fn fs_free(dir: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// The reserve file: [`RESERVE_BYTES`] of zeros written (and synced) while there is room,
/// removed when a write fails for lack of space.
#[derive(Debug)]
pub struct Reserve {
    path: PathBuf,
    held: bool,
}

impl Reserve {
    /// The reserve of the database at `db` (`<db>.reserve`); takes it if there is room.
    pub fn new(db: &Path) -> Reserve {
        let mut name = db.as_os_str().to_owned();
        name.push(".");
        name.push(RESERVE_SUFFIX);
        let mut r = Reserve {
            path: PathBuf::from(name),
            held: false,
        };
        r.take();
        r
    }

    /// Whether the reserve file is in place.
    pub fn held(&self) -> bool {
        self.held
    }

    /// Bytes to subtract from measured free space: the reserve's size while it is released.
    pub fn not_counted(&self) -> u64 {
        if self.held {
            0
        } else {
            RESERVE_BYTES
        }
    }

    /// (Re)create the file; `true` once it is in place.
    pub fn take(&mut self) -> bool {
        if self.held {
            return true;
        }
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= RESERVE_BYTES) {
            self.held = true;
            return true;
        }
        let write = || -> std::io::Result<()> {
            crate::private_file::ensure_private(&self.path)?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&self.path)?;
            let zeros = vec![0u8; 64 * 1024];
            let mut left = RESERVE_BYTES;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            f.sync_all()
        };
        match write() {
            Ok(()) => self.held = true,
            Err(e) => {
                log::debug!(
                    "outbox: cannot take the reserve {}: {e}",
                    self.path.display()
                );
                let _ = std::fs::remove_file(&self.path);
            }
        }
        self.held
    }

    /// Remove the file so its space can hold the WAL frames of deletions; `true` if it was
    /// in place.
    pub fn release(&mut self) -> bool {
        let was = self.held;
        self.held = false;
        let _ = std::fs::remove_file(&self.path);
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn full_below_low_water_and_back_at_high_water_with_the_reserve() {
        let t0 = Instant::now();
        let mut r = Room::default();
        assert_eq!(r.observe(10 * MIB, 1000, true, false, t0), None);
        assert_eq!(
            r.observe(LOW_WATER - 1, 0, true, false, t0),
            Some(Event::BecameFull {
                free: LOW_WATER - 1
            })
        );
        assert!(r.is_full());
        r.refuse(3);
        // Between the marks it stays full (no flapping), and without the reserve too.
        assert_eq!(r.observe(HIGH_WATER - 1, 0, true, false, t0), None);
        assert_eq!(r.observe(HIGH_WATER, 0, false, true, t0), None);
        let later = t0 + Duration::from_secs(7);
        assert_eq!(
            r.observe(HIGH_WATER, 0, true, false, later),
            Some(Event::Recovered {
                refused: 3,
                lasted: Duration::from_secs(7)
            })
        );
        assert!(!r.is_full());
        assert_eq!((r.episodes(), r.refused_total()), (1, 3));
    }

    #[test]
    fn a_large_batch_needs_twice_its_size_above_low_water() {
        let t0 = Instant::now();
        let mut r = Room::default();
        assert!(r
            .observe(LOW_WATER + 2 * MIB - 1, MIB, true, false, t0)
            .is_some());
        let mut r = Room::default();
        assert!(r
            .observe(LOW_WATER + 2 * MIB, MIB, true, false, t0)
            .is_none());
    }

    #[test]
    fn a_drained_outbox_recovers_at_low_water() {
        let t0 = Instant::now();
        let mut r = Room::default();
        r.observe(LOW_WATER - 1, 0, true, false, t0);
        assert_eq!(
            r.observe(LOW_WATER, 0, true, false, t0),
            None,
            "backlog left"
        );
        assert!(matches!(
            r.observe(LOW_WATER, 0, true, true, t0),
            Some(Event::Recovered { .. })
        ));
    }

    #[test]
    fn reminders_are_rate_limited() {
        let t0 = Instant::now();
        let mut r = Room::default();
        r.observe(0, 0, true, false, t0);
        let mut reminders = 0;
        for s in 1..=3 * REMINDER_EVERY.as_secs() {
            if let Some(Event::StillFull { .. }) =
                r.observe(0, 0, true, false, t0 + Duration::from_secs(s))
            {
                reminders += 1;
            }
        }
        assert_eq!(reminders, 3);
    }

    #[test]
    fn a_failed_write_makes_it_full_once() {
        let t0 = Instant::now();
        let mut r = Room::default();
        r.observe(100 * MIB, 0, true, false, t0);
        assert!(matches!(r.write_failed(t0), Some(Event::BecameFull { .. })));
        assert_eq!(r.write_failed(t0), None);
        assert_eq!(r.episodes(), 1);
    }

    #[test]
    fn the_reserve_file_is_taken_released_and_retaken() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("outbox.sqlite");
        let mut r = Reserve::new(&db);
        let file = dir.path().join("outbox.sqlite.reserve");
        assert!(r.held());
        assert_eq!(std::fs::metadata(&file).unwrap().len(), RESERVE_BYTES);
        assert_eq!(r.not_counted(), 0);
        assert!(r.release());
        assert!(!file.exists());
        assert_eq!(r.not_counted(), RESERVE_BYTES);
        assert!(r.take());
        assert!(file.exists());
        assert!(fs_free(dir.path()).unwrap() > 0);
    }
}
