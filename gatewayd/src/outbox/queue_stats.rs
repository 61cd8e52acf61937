//! The queue's figures: the stats snapshot and the rate-limited eviction / expiry warnings.

use std::time::{Instant, SystemTime};

use rusqlite::{params, OptionalExtension};

use super::super::db::from_ms;
use super::super::{Class, ClassStats, OutboxStats};
use super::{ClassQueue, Queue};

impl Queue {
    /// Counters and the oldest message's age per class.
    pub(crate) fn stats(&mut self, now: SystemTime) -> OutboxStats {
        let mut oldest: [Option<SystemTime>; 4] = [None; 4];
        for m in self.inflight.values() {
            let o = &mut oldest[m.class.index()];
            *o = Some(o.map_or(m.stored_at, |t| t.min(m.stored_at)));
        }
        for class in Class::ALL {
            let ci = class.index();
            let q = &self.classes[ci];
            let head = match (q.mem.front(), q.disk_from) {
                (Some(m), _) => Some(m.stored_at),
                (None, Some(from)) => self
                    .conn
                    .prepare_cached(
                        "SELECT stored_at FROM messages WHERE class = ?1 AND id >= ?2
                         ORDER BY id LIMIT 1",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![ci as i64, from], |r| r.get::<_, i64>(0))
                            .optional()
                    })
                    .ok()
                    .flatten()
                    .map(from_ms),
                (None, None) => None,
            };
            if let Some(h) = head {
                let o = &mut oldest[ci];
                *o = Some(o.map_or(h, |t| t.min(h)));
            }
        }
        let mut out = OutboxStats {
            max_bytes: self.max_bytes,
            commits: self.commits,
            disk: self.disk_stats(Instant::now()),
            recovery: self.recovery.clone(),
            ..Default::default()
        };
        for (ci, q) in self.classes.iter().enumerate() {
            out.classes[ci] = ClassStats {
                oldest_age: oldest[ci].map(|t| now.duration_since(t).unwrap_or_default()),
                ..q.stats.clone()
            };
        }
        out
    }

    /// Log the rate-limited eviction / expiry warnings if anything happened.
    pub(crate) fn report(&mut self, now: Instant) {
        let evicted: u64 = self.classes.iter().map(|q| q.evicted_unreported).sum();
        if evicted > 0 && self.evict_warn.check("evict", now).is_some() {
            let what = self.summary(|q| &mut q.evicted_unreported);
            log::warn!(
                "outbox full ({} bytes max): evicted the oldest messages or refused new ones: {what}",
                self.max_bytes
            );
        }
        let expired: u64 = self.classes.iter().map(|q| q.expired_unreported).sum();
        if expired > 0 && self.expire_warn.check("expire", now).is_some() {
            let what = self.summary(|q| &mut q.expired_unreported);
            log::warn!("outbox: dropped expired unsent messages: {what}");
        }
    }

    fn summary(&mut self, field: impl Fn(&mut ClassQueue) -> &mut u64) -> String {
        let mut parts = Vec::new();
        for class in Class::ALL {
            let n = std::mem::take(field(&mut self.classes[class.index()]));
            if n > 0 {
                parts.push(format!("{n} {}", class.name()));
            }
        }
        parts.join(", ")
    }
}
