//! The queue's side of disk space (see `space.rs`): measuring the room before stores, what
//! to do when a write fails for lack of space, and the WAL checkpoint while full.

use std::time::Instant;

use rusqlite::ErrorCode;

use super::super::recover::write_hwm;
use super::super::space::{fs_free, Event, LOW_WATER, RECHECK_FULL, RECHECK_OK};
use super::super::DiskStats;
use super::Queue;

/// The high-water mark of committed ids goes to its side file at most this often.
const HWM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Queue {
    /// Whether `batch` bytes may be stored now. Measures the free space when it is due:
    /// every [`RECHECK_FULL`] while full; otherwise every [`RECHECK_OK`], or sooner once the
    /// bytes stored since the last measurement could have used up half of the margin.
    pub(crate) fn has_room(&mut self, batch: u64, now: Instant) -> bool {
        let margin = self
            .room
            .last_free()
            .map_or(0, |f| f.saturating_sub(LOW_WATER));
        let used = self
            .stored_since_check
            .saturating_add(batch)
            .saturating_mul(4);
        if now >= self.next_check || used.saturating_mul(2) >= margin {
            self.measure(batch, now);
        }
        !self.room.is_full()
    }

    /// While full, measure again when due (the outbox thread calls this when it wakes up);
    /// the deadline of the next measurement, if full.
    pub(crate) fn recheck_if_full(&mut self, now: Instant) -> Option<Instant> {
        if !self.room.is_full() {
            return None;
        }
        if now >= self.next_check {
            self.measure(0, now);
        }
        self.room.is_full().then_some(self.next_check)
    }

    /// The error a refused store gets.
    pub(crate) fn full_error(&self) -> super::super::OutboxError {
        super::super::OutboxError::Full {
            path: self.path.clone(),
        }
    }

    /// Keep what was found at open for the stats.
    pub(crate) fn set_recovery(&mut self, recovery: Option<super::super::recover::Recovery>) {
        self.recovery = recovery;
    }

    /// Record the last committed id in the side file now (at close).
    pub(crate) fn flush_hwm(&mut self) {
        let id = super::super::recover::db_sequence(&self.conn);
        if id > self.hwm.0 {
            write_hwm(&self.path, id);
            self.hwm = (id, Some(Instant::now()));
        }
    }

    /// Count messages refused because the outbox is full.
    pub(crate) fn refuse(&mut self, n: u64) {
        self.room.refuse(n);
    }

    /// The disk-space figures for [`super::super::OutboxStats`].
    pub(crate) fn disk_stats(&self, now: Instant) -> DiskStats {
        DiskStats {
            full: self.room.is_full(),
            full_for: self
                .room
                .full_since()
                .map(|t| now.saturating_duration_since(t)),
            free_bytes: self.room.last_free(),
            refused: self.room.refused_total(),
            episodes: self.room.episodes(),
            reserve_held: self.reserve.held(),
        }
    }

    fn measure(&mut self, batch: u64, now: Instant) {
        let free = self.free_bytes();
        if self.room.is_full() && !self.reserve.held() && free >= super::super::space::HIGH_WATER {
            self.reserve.take();
        }
        let drained = self.total_bytes == 0;
        let event = self
            .room
            .observe(free, batch, self.reserve.held(), drained, now);
        self.stored_since_check = 0;
        self.next_check = now
            + if self.room.is_full() {
                RECHECK_FULL
            } else {
                RECHECK_OK
            };
        if let Some(e) = event {
            self.log_event(e);
        }
    }

    /// What the outbox can still write into: available bytes of the file system, plus the
    /// database's free pages, minus the reserve while it is released.
    fn free_bytes(&self) -> u64 {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let fs = match fs_free(dir) {
            Ok(b) => b,
            Err(e) => {
                log::debug!(
                    "outbox: cannot measure free space in {}: {e}",
                    dir.display()
                );
                return u64::MAX;
            }
        };
        let pages = |pragma: &str| -> u64 {
            self.conn
                .query_row(pragma, [], |r| r.get::<_, i64>(0))
                .map_or(0, |n| n.max(0) as u64)
        };
        let inside = pages("PRAGMA freelist_count").saturating_mul(pages("PRAGMA page_size"));
        fs.saturating_add(inside)
            .saturating_sub(self.reserve.not_counted())
    }

    /// Whether a failed statement failed for lack of space.
    pub(crate) fn is_space_error(&self, e: &rusqlite::Error) -> bool {
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => true,
            // An I/O error while the file system is (nearly) full is the same thing.
            Some(ErrorCode::SystemIoFailure) => self.free_bytes() < LOW_WATER,
            _ => false,
        }
    }

    /// A write failed for lack of space: full now; release the reserve so the deletions of
    /// delivered messages can still commit, and retry them alone once.
    pub(crate) fn out_of_space(&mut self, had_stores: bool) {
        let now = Instant::now();
        if let Some(e) = self.room.write_failed(now) {
            self.log_event(e);
        }
        self.next_check = now + RECHECK_FULL;
        let released = self.reserve.release();
        if released {
            log::warn!(
                "outbox: {}: released the {} KiB reserve file so that delivered messages can still be deleted",
                self.path.display(),
                super::super::space::RESERVE_BYTES / 1024
            );
        }
        if (released || had_stores) && !self.pending_deletes.is_empty() {
            let _ = self.write(&[], std::time::SystemTime::now());
        }
    }

    /// While full, fold the WAL back into the database and truncate it after each commit,
    /// so the space it held returns to the file system and deleted pages become free pages.
    /// Also records the highest committed id in the side file, at most once a second.
    pub(crate) fn after_commit(&mut self) {
        let now = Instant::now();
        if self.hwm.1.is_none_or(|t| now >= t + HWM_EVERY) {
            self.flush_hwm();
        }
        if self.room.is_full() {
            if let Err(e) = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            {
                log::debug!("outbox: checkpoint while full: {e}");
            }
        }
    }

    fn log_event(&mut self, event: Event) {
        let path = self.path.display();
        // A disk at the edge may go full and back often: one line per kind a minute, the
        // others at debug (status and metrics always tell the current state).
        let kind = match event {
            Event::BecameFull { .. } => "full",
            Event::StillFull { .. } => "still",
            Event::Recovered { .. } => "back",
        };
        if self.transition_warn.check(kind, Instant::now()).is_none() {
            log::debug!("outbox: {path}: {event:?}");
            return;
        }
        match event {
            Event::BecameFull { free } => log::warn!(
                "outbox: {path}: disk full ({} KiB left for the outbox, {} KiB kept free): \
                 refusing new messages (uplinks get no PUSH_ACK) until space returns; \
                 stored messages are still delivered",
                free / 1024,
                LOW_WATER / 1024
            ),
            Event::StillFull { refused, since } => log::warn!(
                "outbox: {path}: still full after {} s; {refused} messages refused so far",
                since.as_secs()
            ),
            Event::Recovered { refused, lasted } => log::info!(
                "outbox: {path}: space is back after {} s; accepting new messages again \
                 ({refused} were refused while full)",
                lasted.as_secs()
            ),
        }
    }
}
