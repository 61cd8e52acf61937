//! The durable outbox: every outgoing message is committed to SQLite before the daemon
//! acknowledges it upstream, and deleted only when the broker has confirmed it (PUBACK).
//!
//! One dedicated OS thread owns the SQLite connection (SQLite is blocking); the rest of the
//! daemon reaches it through the cloneable [`OutboxHandle`].
//!
//! # Durability
//! WAL journal with `synchronous = FULL`: [`OutboxHandle::store`] resolves only after the COMMIT
//! that contains the messages has reached the disk, so a crash, `kill -9` or power cut loses
//! nothing that was acknowledged. Deletions (acks) are batched and committed with the next
//! write or within [`ACK_FLUSH`]; losing an unflushed deletion only means a duplicate later.
//!
//! # Group commit
//! The thread drains every queued request, waits at most `commit_delay` for more stores, and
//! writes all of them (plus pending deletions) in ONE transaction, then resolves every store.
//!
//! # Order and priority
//! [`OutboxHandle::next`] hands out the highest [`Class`] first (Control > Poc > Uplink >
//! Stats), oldest first within a class. Handed-out messages are *in flight* until
//! [`OutboxHandle::ack`] deletes them or [`OutboxHandle::requeue`] puts them back at the front
//! of their class. The head of each class (up to [`HEAD_CAP`] messages) is kept in memory so
//! the hot path never reads back what it just wrote; a larger backlog is read from the file in
//! id order through the `(class, id)` index, [`HEAD_CAP`] rows at a time.
//!
//! # Bound and eviction policy
//! The sum of topic + payload bytes of all stored messages is bounded by `max_bytes`
//! (tracked in memory, recomputed at open). When a new message would exceed it, the oldest
//! messages *not in flight* are evicted, lowest class first: Stats, then Uplink, then Poc, and
//! Control only when nothing else is left. A new message only displaces messages of its own
//! class or lower ones: if that is not enough (say the file is full of Uplinks and a Stats
//! message arrives), the new message itself is dropped. Every eviction is counted per class
//! ([`OutboxStats`]) and reported by a rate-limited warning naming the classes and counts.
//!
//! # Expiry
//! A message whose `expires_at` has passed is dropped when met (handing out, or a periodic
//! sweep every [`SWEEP_INTERVAL`]), counted per class and logged at debug level plus a
//! rate-limited warning. `uplink_expiry` / `stats_expiry` from the config are defaults the
//! caller applies with [`default_expiry`] or [`NewMessage::with_default_expiry`].
//! A step of the wall clock is not age: the outbox thread notices steps and moves the stored
//! times by the step (`clock.rs`), so a clock set years ahead by NTP expires nothing; a
//! message may outlive its expiry by the time the machine was off with a stale clock.
//!
//! # Schema
//! Versioned with `PRAGMA user_version` and an ordered list of migrations (`db.rs`).

mod clock;
mod db;
mod queue;
pub mod recover;
pub mod space;
mod worker;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use crate::config::OutboxConfig;
use worker::Request;

/// Messages of each class kept in memory ahead of the file.
pub const HEAD_CAP: usize = 1024;
/// Longest time an acknowledged message's deletion waits to be committed.
pub const ACK_FLUSH: Duration = Duration::from_millis(200);
/// How often expired messages are swept when nobody asks for messages.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Message class; also the hand-out priority (Control highest, Stats lowest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Connection/control messages (e.g. downlink TX acks).
    Control,
    /// Proof-of-coverage reports.
    Poc,
    /// Device uplinks.
    Uplink,
    /// Gateway statistics.
    Stats,
}

impl Class {
    /// All classes, highest priority first.
    pub const ALL: [Class; 4] = [Class::Control, Class::Poc, Class::Uplink, Class::Stats];

    /// Position in [`Class::ALL`] (0 = highest priority); also the value stored in the file.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The class stored as `value` in the file.
    pub fn from_index(value: i64) -> Option<Class> {
        usize::try_from(value)
            .ok()
            .and_then(|i| Class::ALL.get(i).copied())
    }

    /// Lower-case name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Class::Control => "control",
            Class::Poc => "poc",
            Class::Uplink => "uplink",
            Class::Stats => "stats",
        }
    }
}

/// A message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Class (priority and eviction order).
    pub class: Class,
    /// Full MQTT topic.
    pub topic: String,
    /// Encoded payload.
    pub payload: Vec<u8>,
    /// Dropped unsent after this time (`None`: never).
    pub expires_at: Option<SystemTime>,
}

impl NewMessage {
    /// A message that never expires.
    pub fn new(class: Class, topic: String, payload: Vec<u8>) -> NewMessage {
        NewMessage {
            class,
            topic,
            payload,
            expires_at: None,
        }
    }

    /// A message with the config's default expiry for its class, counted from `now`.
    pub fn with_default_expiry(
        class: Class,
        topic: String,
        payload: Vec<u8>,
        config: &OutboxConfig,
        now: SystemTime,
    ) -> NewMessage {
        NewMessage {
            expires_at: default_expiry(config, class, now),
            ..NewMessage::new(class, topic, payload)
        }
    }

    /// Bytes counted against `max_bytes` (topic + payload).
    pub fn size(&self) -> u64 {
        (self.topic.len() + self.payload.len()) as u64
    }
}

/// The default expiry time of a message of `class` stored at `now`: `uplink_expiry` for
/// uplinks, `stats_expiry` for stats, none for the other classes.
pub fn default_expiry(config: &OutboxConfig, class: Class, now: SystemTime) -> Option<SystemTime> {
    let ttl = match class {
        Class::Uplink => config.uplink_expiry,
        Class::Stats => config.stats_expiry,
        Class::Control | Class::Poc => None,
    }?;
    now.checked_add(ttl)
}

/// A stored message handed out for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Outbox id (pass it to [`OutboxHandle::ack`] / [`OutboxHandle::requeue`]).
    pub id: i64,
    /// Class.
    pub class: Class,
    /// Full MQTT topic.
    pub topic: String,
    /// Encoded payload.
    pub payload: Vec<u8>,
    /// Expiry time, if any.
    pub expires_at: Option<SystemTime>,
    /// When it was stored.
    pub stored_at: SystemTime,
}

impl Message {
    /// Bytes counted against `max_bytes` (topic + payload).
    pub fn size(&self) -> u64 {
        (self.topic.len() + self.payload.len()) as u64
    }
}

/// Counters of one class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Messages stored (waiting or in flight).
    pub messages: u64,
    /// Their topic + payload bytes.
    pub bytes: u64,
    /// Of which handed out and not yet acked.
    pub in_flight: u64,
    /// Age of the oldest stored message.
    pub oldest_age: Option<Duration>,
    /// Messages stored since open.
    pub stored: u64,
    /// Messages acked (deleted after the broker confirmed them) since open.
    pub acked: u64,
    /// Messages evicted (or refused) to respect `max_bytes` since open.
    pub evicted: u64,
    /// Messages dropped because they expired since open.
    pub expired: u64,
}

/// A snapshot of the outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Per class, in [`Class::ALL`] order (use [`OutboxStats::class`]).
    pub classes: [ClassStats; 4],
    /// The configured bound on bytes.
    pub max_bytes: u64,
    /// Write transactions committed since open (group commit: far fewer than stores).
    pub commits: u64,
    /// Disk space as the outbox sees it.
    pub disk: DiskStats,
    /// What was found wrong with the file at open (corruption, a lost WAL), if anything.
    pub recovery: Option<recover::Recovery>,
}

/// Disk space as a state of the outbox (see [`space`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// New messages are refused for lack of space.
    pub full: bool,
    /// For how long, while full.
    pub full_for: Option<Duration>,
    /// Free space last measured (file system + free pages of the database − released reserve).
    pub free_bytes: Option<u64>,
    /// Messages refused for lack of space since open.
    pub refused: u64,
    /// Times the outbox became full since open.
    pub episodes: u64,
    /// Whether the reserve file is in place.
    pub reserve_held: bool,
}

impl OutboxStats {
    /// The counters of `class`.
    pub fn class(&self, class: Class) -> &ClassStats {
        &self.classes[class.index()]
    }
    /// Messages stored, all classes.
    pub fn messages(&self) -> u64 {
        self.classes.iter().map(|c| c.messages).sum()
    }
    /// Bytes stored, all classes.
    pub fn bytes(&self) -> u64 {
        self.classes.iter().map(|c| c.bytes).sum()
    }
    /// Messages in flight, all classes.
    pub fn in_flight(&self) -> u64 {
        self.classes.iter().map(|c| c.in_flight).sum()
    }
    /// Age of the oldest stored message, all classes.
    pub fn oldest_age(&self) -> Option<Duration> {
        self.classes.iter().filter_map(|c| c.oldest_age).max()
    }
    /// Stored since open, all classes.
    pub fn stored(&self) -> u64 {
        self.classes.iter().map(|c| c.stored).sum()
    }
    /// Acked since open, all classes.
    pub fn acked(&self) -> u64 {
        self.classes.iter().map(|c| c.acked).sum()
    }
    /// Evicted since open, all classes.
    pub fn evicted(&self) -> u64 {
        self.classes.iter().map(|c| c.evicted).sum()
    }
    /// Expired since open, all classes.
    pub fn expired(&self) -> u64 {
        self.classes.iter().map(|c| c.expired).sum()
    }
}

/// Outbox errors; each names the database file where one is involved.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The directory of the database could not be created.
    #[error("{}: cannot create the outbox directory: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database file could not be opened or read.
    #[error("{}: cannot open the outbox database: {source}{hint}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What to do about it.
        hint: &'static str,
        /// Why.
        source: rusqlite::Error,
    },
    /// The file's schema is newer than this program knows.
    #[error(
        "{}: outbox schema version {found} is newer than this gatewayd supports ({supported})",
        path.display()
    )]
    SchemaTooNew {
        /// The file.
        path: PathBuf,
        /// `user_version` in the file.
        found: i64,
        /// Newest version known here.
        supported: i64,
    },
    /// A schema migration failed (the file is left at the previous version).
    #[error("{}: outbox migration to schema version {version} failed: {source}", path.display())]
    Migrate {
        /// The file.
        path: PathBuf,
        /// The version it tried to reach.
        version: i64,
        /// Why.
        source: rusqlite::Error,
    },
    /// Reading or writing the database failed at run time.
    #[error("{}: outbox database error: {message}", path.display())]
    Db {
        /// The file.
        path: PathBuf,
        /// The SQLite error.
        message: String,
    },
    /// A message is larger than the whole outbox bound.
    #[error("outbox message of {size} bytes on {topic} exceeds outbox.max_bytes ({max})")]
    TooLarge {
        /// Its topic.
        topic: String,
        /// Its size (topic + payload).
        size: u64,
        /// The bound.
        max: u64,
    },
    /// The disk is full: the message was not stored (a state that ends by itself when
    /// space returns; logged once by the outbox, not by each caller).
    #[error("{}: the outbox is full (no space left on the disk)", path.display())]
    Full {
        /// The file.
        path: PathBuf,
    },
    /// The outbox thread has stopped (after [`OutboxHandle::close`]).
    #[error("the outbox is closed")]
    Closed,
}

impl OutboxError {
    /// A copy for another waiter of the same failed commit (`rusqlite::Error` is not `Clone`).
    pub(crate) fn copy(&self) -> OutboxError {
        match self {
            OutboxError::Db { path, message } => OutboxError::Db {
                path: path.clone(),
                message: message.clone(),
            },
            OutboxError::Closed => OutboxError::Closed,
            OutboxError::Full { path } => OutboxError::Full { path: path.clone() },
            other => OutboxError::Db {
                path: PathBuf::new(),
                message: other.to_string(),
            },
        }
    }
}

/// The reply of a [`OutboxHandle::next`] call not yet received. Dropped unreceived, it
/// closes the channel (the thread then requeues what it still sends) and puts back what was
/// already in it.
struct PendingNext {
    rx: Option<oneshot::Receiver<Result<Vec<Message>, OutboxError>>>,
    tx: std_mpsc::Sender<Request>,
}

impl Drop for PendingNext {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        rx.close();
        if let Ok(Ok(msgs)) = rx.try_recv() {
            let ids: Vec<i64> = msgs.iter().map(|m| m.id).collect();
            if !ids.is_empty() {
                let _ = self.tx.send(Request::Requeue(ids));
            }
        }
    }
}

/// The cloneable handle to the outbox thread.
#[derive(Clone)]
pub struct OutboxHandle {
    tx: std_mpsc::Sender<Request>,
    max_bytes: u64,
}

impl std::fmt::Debug for OutboxHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxHandle")
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl OutboxHandle {
    /// Open (creating directories and file as needed) and migrate the database, load its
    /// counters and start the outbox thread.
    pub fn open(config: &OutboxConfig) -> Result<OutboxHandle, OutboxError> {
        let (conn, recovery) = recover::open_or_recover(&config.path)?;
        let tx = worker::spawn(conn, config.clone(), recovery)?;
        Ok(OutboxHandle {
            tx,
            max_bytes: config.max_bytes,
        })
    }

    /// Store messages durably; resolves after the COMMIT that contains them.
    pub async fn store(&self, msgs: Vec<NewMessage>) -> Result<(), OutboxError> {
        if msgs.is_empty() {
            return Ok(());
        }
        if let Some(m) = msgs.iter().find(|m| m.size() > self.max_bytes) {
            return Err(OutboxError::TooLarge {
                topic: m.topic.clone(),
                size: m.size(),
                max: self.max_bytes,
            });
        }
        let (reply, rx) = oneshot::channel();
        self.send(Request::Store(msgs, reply))?;
        rx.await.map_err(|_| OutboxError::Closed)?
    }

    /// Up to `max` sendable messages, highest class first, then oldest; waits until there is
    /// at least one. They are in flight until acked or requeued. Cancel-safe: messages taken
    /// for a dropped call are put back.
    ///
    /// The reply can be in the channel when the call is dropped (the outbox thread answered,
    /// the caller never polled again): [`PendingNext`] then hands those messages back, so
    /// they are not left "in flight" with nobody sending them.
    pub async fn next(&self, max: usize) -> Result<Vec<Message>, OutboxError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.send(Request::Next(max, reply))?;
        let mut pending = PendingNext {
            rx: Some(rx),
            tx: self.tx.clone(),
        };
        let rx = pending.rx.as_mut().expect("set above");
        let result = rx.await;
        pending.rx = None;
        result.map_err(|_| OutboxError::Closed)?
    }

    /// The broker confirmed these messages: delete them (batched).
    pub fn ack(&self, ids: Vec<i64>) {
        if !ids.is_empty() {
            let _ = self.send(Request::Ack(ids));
        }
    }

    /// These messages were not confirmed (connection lost): hand them out again, at the
    /// front of their class.
    pub fn requeue(&self, ids: Vec<i64>) {
        if !ids.is_empty() {
            let _ = self.send(Request::Requeue(ids));
        }
    }

    /// Depth per class, bytes, oldest age and totals.
    pub async fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Stats(reply))?;
        rx.await.map_err(|_| OutboxError::Closed)
    }

    /// Flush pending writes and deletions and stop the thread; later calls fail with
    /// [`OutboxError::Closed`].
    pub async fn close(&self) -> Result<(), OutboxError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Close(reply))?;
        rx.await.map_err(|_| OutboxError::Closed)?
    }

    fn send(&self, req: Request) -> Result<(), OutboxError> {
        self.tx.send(req).map_err(|_| OutboxError::Closed)
    }
}
