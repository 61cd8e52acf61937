//! The outbox state owned by the outbox thread: the SQLite connection, the in-memory head of
//! each class, the in-flight set, pending deletions and the counters.
//!
//! Invariant per class: `mem` holds waiting (not in flight) messages in id order, and every
//! waiting message with an id at or above `disk_from` is only in the file. Rows of the file
//! that are in flight or awaiting deletion are skipped when read back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use rusqlite::{params, Connection, OptionalExtension};

use super::db::{from_ms, to_ms};
use super::space::{Reserve, Room};
use super::{Class, ClassStats, Message, NewMessage, OutboxError, ACK_FLUSH, HEAD_CAP};
use drivers::ratelimit::RateLimiter;

#[path = "queue_space.rs"]
mod queue_space;
#[path = "queue_stats.rs"]
mod queue_stats;

/// Pending deletions that force a commit even without stores.
const DELETE_BATCH: usize = 4096;
/// One eviction / expiry warning per this interval.
const WARN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Default)]
struct ClassQueue {
    mem: VecDeque<Message>,
    disk_from: Option<i64>,
    stats: ClassStats,
    evicted_unreported: u64,
    expired_unreported: u64,
}

/// The outbox state (see the module doc for the invariant).
pub(crate) struct Queue {
    conn: Connection,
    path: PathBuf,
    max_bytes: u64,
    total_bytes: u64,
    classes: [ClassQueue; 4],
    inflight: HashMap<i64, Message>,
    pending_deletes: HashSet<i64>,
    deletes_since: Option<Instant>,
    evict_warn: RateLimiter,
    expire_warn: RateLimiter,
    commits: u64,
    /// Whether there is room for new messages (disk space as a state).
    room: Room,
    /// The reserve file released when a write fails for lack of space.
    reserve: Reserve,
    /// When free space is measured next (see `queue_space.rs`).
    next_check: Instant,
    /// Bytes stored since the last measurement.
    stored_since_check: u64,
    /// What was wrong with the file at open.
    recovery: Option<super::recover::Recovery>,
    /// Rate limit of the full / space-is-back lines.
    transition_warn: RateLimiter,
    /// The highest id written to the side file, and when (see `recover.rs`).
    hwm: (i64, Option<Instant>),
}

impl Queue {
    /// Take over `conn` and load the counters from the file.
    pub(crate) fn load(
        conn: Connection,
        path: PathBuf,
        max_bytes: u64,
    ) -> Result<Queue, OutboxError> {
        let mut q = Queue {
            conn,
            path: path.clone(),
            max_bytes,
            total_bytes: 0,
            classes: Default::default(),
            inflight: HashMap::new(),
            pending_deletes: HashSet::new(),
            deletes_since: None,
            evict_warn: RateLimiter::new(WARN_INTERVAL),
            expire_warn: RateLimiter::new(WARN_INTERVAL),
            commits: 0,
            room: Room::default(),
            reserve: Reserve::new(&path),
            next_check: Instant::now(),
            stored_since_check: 0,
            recovery: None,
            transition_warn: RateLimiter::new(std::time::Duration::from_secs(60)),
            hwm: (0, None),
        };
        q.reload().map_err(|e| q.db_err(e))?;
        Ok(q)
    }

    /// An [`OutboxError::Db`] naming the file.
    pub(crate) fn db_err(&self, e: rusqlite::Error) -> OutboxError {
        OutboxError::Db {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Forget the in-memory state and recount from the file (at open, and after a failed
    /// transaction). Messages in flight stay in flight (their rows were committed before, so
    /// a rollback keeps them), and rows whose deletion is pending are not counted again.
    fn reload(&mut self) -> rusqlite::Result<()> {
        self.total_bytes = 0;
        for q in &mut self.classes {
            q.mem.clear();
            q.disk_from = None;
            q.stats.messages = 0;
            q.stats.bytes = 0;
            q.stats.in_flight = 0;
        }
        let mut stmt = self
            .conn
            .prepare("SELECT class, count(*), total(size) FROM messages GROUP BY class")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, f64>(2)?,
            ))
        })?;
        for row in rows {
            let (class, count, bytes) = row?;
            let Some(class) = Class::from_index(class) else {
                log::warn!(
                    "outbox: {}: {count} rows of unknown class {class} are ignored",
                    self.path.display()
                );
                continue;
            };
            let q = &mut self.classes[class.index()];
            q.stats.messages = count as u64;
            q.stats.bytes = bytes as u64;
            q.disk_from = (count > 0).then_some(0);
            self.total_bytes += bytes as u64;
        }
        drop(stmt);
        for m in self.inflight.values() {
            self.classes[m.class.index()].stats.in_flight += 1;
        }
        let mut row = self
            .conn
            .prepare_cached("SELECT class, size FROM messages WHERE id = ?1")?;
        for id in &self.pending_deletes {
            let found: Option<(i64, i64)> = row
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((class, size)) = found {
                if let Some(class) = Class::from_index(class) {
                    let size = size.max(0) as u64;
                    let q = &mut self.classes[class.index()];
                    q.stats.messages = q.stats.messages.saturating_sub(1);
                    q.stats.bytes = q.stats.bytes.saturating_sub(size);
                    self.total_bytes = self.total_bytes.saturating_sub(size);
                }
            }
        }
        Ok(())
    }

    /// Store `batches` and flush pending deletions in one transaction. On failure everything
    /// is rolled back and the in-memory state reloaded.
    pub(crate) fn write(
        &mut self,
        batches: &[Vec<NewMessage>],
        now: SystemTime,
    ) -> Result<(), OutboxError> {
        if batches.is_empty() && self.pending_deletes.is_empty() {
            return Ok(());
        }
        let before: Vec<u64> = self.classes.iter().map(|q| q.stats.stored).collect();
        // BEGIN and COMMIT as cached statements: `execute_batch` parsed and compiled both for
        // every transaction. Same statements, same durability: the commit is still the sync.
        let result = exec_cached(&self.conn, "BEGIN IMMEDIATE")
            .and_then(|()| self.write_in_tx(batches, now))
            .and_then(|()| exec_cached(&self.conn, "COMMIT"));
        match result {
            Ok(()) => {
                self.commits += 1;
                self.stored_since_check += batches.iter().flatten().map(|m| m.size()).sum::<u64>();
                self.pending_deletes.clear();
                self.deletes_since = None;
                self.after_commit();
                Ok(())
            }
            Err(e) => {
                let no_space = self.is_space_error(&e);
                let err = if no_space {
                    OutboxError::Full {
                        path: self.path.clone(),
                    }
                } else {
                    self.db_err(e)
                };
                if !no_space {
                    log::error!("{err}; rolling back");
                }
                let _ = self.conn.execute_batch("ROLLBACK");
                for (q, b) in self.classes.iter_mut().zip(before) {
                    q.stats.stored = b;
                }
                if let Err(e) = self.reload() {
                    log::error!("{}", self.db_err(e));
                }
                if no_space {
                    self.out_of_space(!batches.is_empty());
                }
                Err(err)
            }
        }
    }

    fn write_in_tx(
        &mut self,
        batches: &[Vec<NewMessage>],
        now: SystemTime,
    ) -> rusqlite::Result<()> {
        let stored_at = to_ms(now);
        for msg in batches.iter().flatten() {
            self.insert(msg, stored_at)?;
        }
        let mut del = self
            .conn
            .prepare_cached("DELETE FROM messages WHERE id = ?1")?;
        for id in &self.pending_deletes {
            del.execute([id])?;
        }
        Ok(())
    }

    fn insert(&mut self, msg: &NewMessage, stored_at: i64) -> rusqlite::Result<()> {
        let size = msg.size();
        let ci = msg.class.index();
        if !self.make_room(size, msg.class)? {
            let q = &mut self.classes[ci];
            q.stats.evicted += 1;
            q.evicted_unreported += 1;
            log::debug!("outbox full: dropped a new {} message", msg.class.name());
            return Ok(());
        }
        let expires_at = msg.expires_at.map(to_ms);
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO messages (class, topic, payload, expires_at, stored_at, size)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        stmt.execute(params![
            ci as i64,
            msg.topic,
            msg.payload,
            expires_at,
            stored_at,
            size as i64
        ])?;
        let id = self.conn.last_insert_rowid();
        self.total_bytes += size;
        let q = &mut self.classes[ci];
        q.stats.messages += 1;
        q.stats.bytes += size;
        q.stats.stored += 1;
        if q.disk_from.is_none() && q.mem.len() < HEAD_CAP {
            q.mem.push_back(Message {
                id,
                class: msg.class,
                topic: msg.topic.clone(),
                payload: msg.payload.clone(),
                expires_at: expires_at.map(from_ms),
                stored_at: from_ms(stored_at),
            });
        } else if q.disk_from.is_none() {
            q.disk_from = Some(id);
        }
        Ok(())
    }

    /// Evict until `size` more bytes fit, lowest class first, never above `class` (Control
    /// may evict everything). `false` if it cannot fit.
    fn make_room(&mut self, size: u64, class: Class) -> rusqlite::Result<bool> {
        while self.total_bytes + size > self.max_bytes {
            let mut evicted = false;
            for c in Class::ALL
                .iter()
                .rev()
                .filter(|c| c.index() >= class.index())
            {
                if self.evict_oldest(*c)? {
                    evicted = true;
                    break;
                }
            }
            if !evicted {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Delete the oldest waiting message of `class`; `false` if there is none.
    fn evict_oldest(&mut self, class: Class) -> rusqlite::Result<bool> {
        let ci = class.index();
        let victim = if let Some(m) = self.classes[ci].mem.pop_front() {
            Some((m.id, m.size()))
        } else {
            let mut found = None;
            while let Some(from) = self.classes[ci].disk_from {
                let row: Option<(i64, i64)> = self
                    .conn
                    .prepare_cached(
                        "SELECT id, size FROM messages WHERE class = ?1 AND id >= ?2
                         ORDER BY id LIMIT 1",
                    )?
                    .query_row(params![ci as i64, from], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                match row {
                    None => self.classes[ci].disk_from = None,
                    Some((id, size)) => {
                        self.classes[ci].disk_from = Some(id + 1);
                        if !self.inflight.contains_key(&id) && !self.pending_deletes.contains(&id) {
                            found = Some((id, size.max(0) as u64));
                            break;
                        }
                    }
                }
            }
            found
        };
        let Some((id, size)) = victim else {
            return Ok(false);
        };
        self.conn
            .prepare_cached("DELETE FROM messages WHERE id = ?1")?
            .execute([id])?;
        self.total_bytes = self.total_bytes.saturating_sub(size);
        let q = &mut self.classes[ci];
        q.stats.messages = q.stats.messages.saturating_sub(1);
        q.stats.bytes = q.stats.bytes.saturating_sub(size);
        q.stats.evicted += 1;
        q.evicted_unreported += 1;
        Ok(true)
    }

    /// Read the next [`HEAD_CAP`] waiting rows of `class` from the file into memory.
    fn refill(&mut self, class: Class) -> Result<(), OutboxError> {
        let ci = class.index();
        let Some(from) = self.classes[ci].disk_from else {
            return Ok(());
        };
        let mut rows = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT id, topic, payload, expires_at, stored_at FROM messages
                     WHERE class = ?1 AND id >= ?2 ORDER BY id LIMIT ?3",
                )
                .map_err(|e| self.db_err(e))?;
            let iter = stmt
                .query_map(params![ci as i64, from, HEAD_CAP as i64], |r| {
                    Ok(Message {
                        id: r.get(0)?,
                        class,
                        topic: r.get(1)?,
                        payload: r.get(2)?,
                        expires_at: r.get::<_, Option<i64>>(3)?.map(from_ms),
                        stored_at: from_ms(r.get(4)?),
                    })
                })
                .map_err(|e| self.db_err(e))?;
            for row in iter {
                rows.push(row.map_err(|e| self.db_err(e))?);
            }
        }
        let q = &mut self.classes[ci];
        q.disk_from = match rows.last() {
            Some(last) if rows.len() >= HEAD_CAP => Some(last.id + 1),
            _ => None,
        };
        for m in rows {
            if !self.inflight.contains_key(&m.id) && !self.pending_deletes.contains(&m.id) {
                q.mem.push_back(m);
            }
        }
        Ok(())
    }

    /// Hand out up to `max` messages, highest class first, then oldest; expired ones met on
    /// the way are dropped.
    pub(crate) fn take(
        &mut self,
        max: usize,
        now: SystemTime,
    ) -> Result<Vec<Message>, OutboxError> {
        let mut out = Vec::new();
        for class in Class::ALL {
            let ci = class.index();
            while out.len() < max {
                let Some(m) = self.classes[ci].mem.pop_front() else {
                    if self.classes[ci].disk_from.is_none() {
                        break;
                    }
                    self.refill(class)?;
                    continue;
                };
                if m.expires_at.is_some_and(|t| t <= now) {
                    self.expire(m);
                    continue;
                }
                self.classes[ci].stats.in_flight += 1;
                self.inflight.insert(m.id, m.clone());
                out.push(m);
            }
        }
        Ok(out)
    }

    fn expire(&mut self, m: Message) {
        self.expire_row(m.id, m.class, m.size(), &m.topic);
    }

    fn expire_row(&mut self, id: i64, class: Class, size: u64, topic: &str) {
        log::debug!(
            "outbox: message {id} ({}, {topic}) expired unsent",
            class.name()
        );
        self.total_bytes = self.total_bytes.saturating_sub(size);
        let q = &mut self.classes[class.index()];
        q.stats.messages = q.stats.messages.saturating_sub(1);
        q.stats.bytes = q.stats.bytes.saturating_sub(size);
        q.stats.expired += 1;
        q.expired_unreported += 1;
        self.delete_later(id);
    }

    fn delete_later(&mut self, id: i64) {
        self.pending_deletes.insert(id);
        self.deletes_since.get_or_insert_with(Instant::now);
    }

    /// The broker confirmed these: forget them and delete them with the next commit.
    pub(crate) fn ack(&mut self, ids: &[i64]) {
        for &id in ids {
            let m = match self.inflight.remove(&id) {
                Some(m) => {
                    let q = &mut self.classes[m.class.index()];
                    q.stats.in_flight = q.stats.in_flight.saturating_sub(1);
                    m
                }
                // Acked after a requeue: it waits in memory again.
                None => match self.remove_waiting(id) {
                    Some(m) => m,
                    None => continue,
                },
            };
            let size = m.size();
            self.total_bytes = self.total_bytes.saturating_sub(size);
            let q = &mut self.classes[m.class.index()];
            q.stats.messages = q.stats.messages.saturating_sub(1);
            q.stats.bytes = q.stats.bytes.saturating_sub(size);
            q.stats.acked += 1;
            self.delete_later(id);
        }
    }

    fn remove_waiting(&mut self, id: i64) -> Option<Message> {
        self.classes.iter_mut().find_map(|q| {
            let pos = q.mem.iter().position(|m| m.id == id)?;
            q.mem.remove(pos)
        })
    }

    /// Put in-flight messages back at the front of their class.
    pub(crate) fn requeue(&mut self, ids: &[i64]) {
        for &id in ids {
            let Some(m) = self.inflight.remove(&id) else {
                continue;
            };
            let q = &mut self.classes[m.class.index()];
            q.stats.in_flight = q.stats.in_flight.saturating_sub(1);
            if q.disk_from.is_some_and(|d| m.id >= d) {
                // Still in the file beyond the memory head: it is read back in order.
                continue;
            }
            let pos = q.mem.partition_point(|x| x.id < m.id);
            q.mem.insert(pos, m);
            while q.mem.len() > HEAD_CAP {
                if let Some(last) = q.mem.pop_back() {
                    q.disk_from = Some(last.id);
                }
            }
        }
    }

    /// Whether pending deletions should be committed now, and when they will be due.
    pub(crate) fn deletes_due(&self) -> Option<Instant> {
        if self.pending_deletes.len() >= DELETE_BATCH {
            return Some(Instant::now());
        }
        self.deletes_since.map(|t| t + ACK_FLUSH)
    }

    /// Drop expired messages: those waiting in memory and those in the file beyond it.
    /// The wall clock stepped by `step_ms` (positive: forward): move every stored time with
    /// it, in the file and in memory, so that ages and uplink/stats expiries are unchanged
    /// (PoC deadlines are network times and stay). Logged once per step.
    pub(crate) fn rebase(&mut self, step_ms: i64) {
        let relative = [Class::Uplink.index() as i64, Class::Stats.index() as i64];
        let result = self.conn.execute(
            "UPDATE messages SET stored_at = stored_at + ?1,
                 expires_at = CASE WHEN class IN (?2, ?3) THEN expires_at + ?1
                                   ELSE expires_at END",
            params![step_ms, relative[0], relative[1]],
        );
        let shift = |t: SystemTime| {
            let d = std::time::Duration::from_millis(step_ms.unsigned_abs());
            if step_ms >= 0 {
                t.checked_add(d).unwrap_or(t)
            } else {
                t.checked_sub(d).unwrap_or(t)
            }
        };
        let waiting = self.classes.iter_mut().flat_map(|q| q.mem.iter_mut());
        for m in waiting.chain(self.inflight.values_mut()) {
            m.stored_at = shift(m.stored_at);
            if matches!(m.class, Class::Uplink | Class::Stats) {
                m.expires_at = m.expires_at.map(shift);
            }
        }
        match result {
            Ok(n) => log::info!(
                "outbox: the wall clock stepped {step_ms:+} ms; {n} stored messages keep their age"
            ),
            Err(e) => log::warn!(
                "outbox: the wall clock stepped {step_ms:+} ms but stored times could not follow \
                 ({}); stored uplinks may expire early",
                self.db_err(e)
            ),
        }
    }

    pub(crate) fn sweep(&mut self, now: SystemTime) -> Result<(), OutboxError> {
        for class in Class::ALL {
            let ci = class.index();
            let mem = std::mem::take(&mut self.classes[ci].mem);
            let (expired, kept): (Vec<_>, Vec<_>) = mem
                .into_iter()
                .partition(|m| m.expires_at.is_some_and(|t| t <= now));
            self.classes[ci].mem = kept.into();
            for m in expired {
                self.expire(m);
            }
            let Some(from) = self.classes[ci].disk_from else {
                continue;
            };
            let rows: Vec<(i64, i64, String)> = {
                let mut stmt = self
                    .conn
                    .prepare_cached(
                        "SELECT id, size, topic FROM messages WHERE class = ?1 AND id >= ?2
                         AND expires_at IS NOT NULL AND expires_at <= ?3",
                    )
                    .map_err(|e| self.db_err(e))?;
                let iter = stmt
                    .query_map(params![ci as i64, from, to_ms(now)], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .map_err(|e| self.db_err(e))?;
                iter.collect::<Result<_, _>>().map_err(|e| self.db_err(e))?
            };
            for (id, size, topic) in rows {
                if self.inflight.contains_key(&id) || self.pending_deletes.contains(&id) {
                    continue;
                }
                self.expire_row(id, class, size.max(0) as u64, &topic);
            }
        }
        Ok(())
    }
}

/// Run a statement without parameters or rows from the connection's statement cache.
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}
