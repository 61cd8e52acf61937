//! The state files' health in `gatewayd status` and `/metrics`: whether the outbox has room
//! (a full disk is a state), and what was found damaged or lost at start (outbox moved aside
//! and salvaged, a lost WAL, a distrusted duty-cycle ledger).

use serde::{Deserialize, Serialize};

use crate::outbox::OutboxStats;

/// Disk space and state-file health.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageStatus {
    /// `ok`, or `full` while new messages are refused for lack of disk space.
    pub outbox_state: String,
    /// Seconds the outbox has been full.
    pub full_seconds: Option<u64>,
    /// Free space the outbox can still write into, bytes.
    pub free_bytes: Option<u64>,
    /// Messages refused for lack of disk space since start.
    pub refused_total: u64,
    /// Times the outbox became full since start.
    pub full_episodes_total: u64,
    /// Outbox files found damaged at start and moved aside (0 or 1).
    pub outbox_corrupt_total: u64,
    /// Messages salvaged from a damaged outbox.
    pub outbox_salvaged_total: u64,
    /// Messages known lost at start (damaged rows, a lost WAL); unknown amounts count 0.
    pub outbox_lost_total: u64,
    /// The duty-cycle ledger was distrusted at start (bands count as fully used for a window).
    pub ledger_reset: bool,
    /// One sentence per problem found at start, for people.
    pub problems: Vec<String>,
}

impl StorageStatus {
    /// From the outbox's figures and the ledger's note.
    pub fn new(outbox: Option<&OutboxStats>, ledger_note: Option<&str>) -> StorageStatus {
        let mut s = StorageStatus {
            outbox_state: "ok".into(),
            ledger_reset: ledger_note.is_some(),
            ..Default::default()
        };
        if let Some(o) = outbox {
            let d = &o.disk;
            if d.full {
                s.outbox_state = "full".into();
            }
            s.full_seconds = d.full_for.map(|t| t.as_secs());
            s.free_bytes = d.free_bytes;
            s.refused_total = d.refused;
            s.full_episodes_total = d.episodes;
            if let Some(r) = &o.recovery {
                s.outbox_corrupt_total = u64::from(r.moved_to.is_some());
                s.outbox_salvaged_total = r.salvaged;
                s.outbox_lost_total = r.lost.unwrap_or(0);
                s.problems.push(r.summary.clone());
            }
        }
        s.problems.extend(ledger_note.map(str::to_string));
        s
    }

    /// Rows for the human `gatewayd status`.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let mut rows = Vec::new();
        if self.outbox_state == "full" {
            rows.push((
                "disk",
                format!(
                    "FULL for {} s: new uplinks are refused (no PUSH_ACK), {} so far; \
                     free space for the outbox: {} KiB; stored messages are still delivered",
                    self.full_seconds.unwrap_or(0),
                    self.refused_total,
                    self.free_bytes.unwrap_or(0) / 1024
                ),
            ));
        } else if self.full_episodes_total > 0 {
            rows.push((
                "disk",
                format!(
                    "ok; was full {} times since start ({} messages refused)",
                    self.full_episodes_total, self.refused_total
                ),
            ));
        }
        for p in &self.problems {
            rows.push(("STATE FILES", p.clone()));
        }
        rows
    }

    /// Metric samples: (name, type, help, value).
    pub fn metrics(&self) -> Vec<(&'static str, &'static str, &'static str, f64)> {
        vec![
            (
                "gatewayd_outbox_disk_full",
                "gauge",
                "Whether the outbox refuses new messages for lack of disk space (1) or not (0).",
                f64::from(u8::from(self.outbox_state == "full")),
            ),
            (
                "gatewayd_outbox_free_bytes",
                "gauge",
                "Free space the outbox can still write into (file system + free database pages).",
                self.free_bytes.unwrap_or(0) as f64,
            ),
            (
                "gatewayd_outbox_refused_total",
                "counter",
                "Messages refused for lack of disk space.",
                self.refused_total as f64,
            ),
            (
                "gatewayd_outbox_full_episodes_total",
                "counter",
                "Times the outbox became full.",
                self.full_episodes_total as f64,
            ),
            (
                "gatewayd_outbox_corrupt_total",
                "counter",
                "Outbox files found damaged at start and moved aside.",
                self.outbox_corrupt_total as f64,
            ),
            (
                "gatewayd_outbox_salvaged_total",
                "counter",
                "Messages salvaged from a damaged outbox at start.",
                self.outbox_salvaged_total as f64,
            ),
            (
                "gatewayd_outbox_lost_total",
                "counter",
                "Messages known lost at start (damaged rows, a lost WAL).",
                self.outbox_lost_total as f64,
            ),
            (
                "gatewayd_dutycycle_ledger_reset",
                "gauge",
                "Whether the duty-cycle ledger was distrusted at start (bands counted as fully used for a window).",
                f64::from(u8::from(self.ledger_reset)),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{recover::Recovery, DiskStats};

    #[test]
    fn a_full_disk_and_a_salvage_show_in_rows_and_metrics() {
        let stats = OutboxStats {
            disk: DiskStats {
                full: true,
                full_for: Some(std::time::Duration::from_secs(42)),
                free_bytes: Some(512 * 1024),
                refused: 7,
                episodes: 1,
                reserve_held: true,
            },
            recovery: Some(Recovery {
                moved_to: Some("/x/outbox.sqlite.corrupt-1".into()),
                salvaged: 5,
                lost: Some(2),
                summary: "outbox: moved".into(),
            }),
            ..Default::default()
        };
        let s = StorageStatus::new(Some(&stats), Some("ledger distrusted"));
        assert_eq!(s.outbox_state, "full");
        let rows = s.rows();
        assert!(rows[0].1.starts_with("FULL for 42 s"), "{rows:?}");
        assert_eq!(rows.len(), 3);
        let m = s.metrics();
        let get = |n: &str| m.iter().find(|x| x.0 == n).unwrap().3;
        assert_eq!(get("gatewayd_outbox_disk_full"), 1.0);
        assert_eq!(get("gatewayd_outbox_refused_total"), 7.0);
        assert_eq!(get("gatewayd_outbox_salvaged_total"), 5.0);
        assert_eq!(get("gatewayd_outbox_lost_total"), 2.0);
        assert_eq!(get("gatewayd_dutycycle_ledger_reset"), 1.0);
        let ok = StorageStatus::new(Some(&OutboxStats::default()), None);
        assert_eq!(ok.outbox_state, "ok");
        assert!(ok.rows().is_empty());
    }
}
