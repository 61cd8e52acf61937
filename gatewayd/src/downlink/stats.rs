//! What the transmit path did, for `gatewayd status` and `/metrics`: the downlink task's
//! counters (lock-free atomics), the guard's counters, and the duty-cycle use the task
//! publishes from the ledger it owns (a `watch` channel: readers never touch the ledger).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chirpstack_api::gw;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::guard::{BandUse, Counters as GuardCounters};

/// What the downlink path did since start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DownlinkStatus {
    /// `command/down` payloads received.
    pub received: u64,
    /// Payloads rejected (malformed, another gateway's id).
    pub rejected: u64,
    /// Items the guard approved and handed to the radio backend.
    pub scheduled: u64,
    /// Downlinks one of whose items was sent (acked `OK`).
    pub sent: u64,
    /// Downlinks none of whose items could be sent.
    pub failed: u64,
    /// Items of the acks by their `gw.TxAckStatus` name (`OK`, `TOO_LATE`, …).
    pub acks: BTreeMap<String, u64>,
}

/// What the regulatory guard decided since start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuardStatus {
    /// Transmissions approved.
    pub approved: u64,
    /// Approved transmissions the backend did not send (airtime refunded).
    pub released: u64,
    /// Approved transmissions whose power was lowered to the limit.
    pub power_clamped: u64,
    /// Refusals by reason (`frequency`, `duty_cycle`, …).
    pub refusals: BTreeMap<String, u64>,
}

impl GuardStatus {
    /// All refusals.
    pub fn refused(&self) -> u64 {
        self.refusals.values().sum()
    }
}

/// Duty-cycle use of one sub-band.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DutyCycleUse {
    /// Sub-band name as the region names it (EU868: `K`, `L`, `M`, `N`, `P`, `R`).
    pub band: String,
    /// Fraction of the band's allowance used in the current window, 0.0..=1.0.
    pub used_ratio: f64,
    /// Airtime used in the sliding hour, seconds.
    pub used_seconds: f64,
    /// The band's airtime budget per sliding hour, seconds.
    pub budget_seconds: f64,
}

/// How often the task re-reads the duty-cycle use (it also does after every downlink), so
/// that airtime leaving the sliding hour shows without new transmissions.
pub const DUTY_CYCLE_REFRESH: Duration = Duration::from_secs(5);

/// Every `gw.TxAckStatus`, in the order of their protobuf numbers.
pub const ACK_STATUSES: [gw::TxAckStatus; 12] = [
    gw::TxAckStatus::Ignored,
    gw::TxAckStatus::Ok,
    gw::TxAckStatus::TooLate,
    gw::TxAckStatus::TooEarly,
    gw::TxAckStatus::CollisionPacket,
    gw::TxAckStatus::CollisionBeacon,
    gw::TxAckStatus::TxFreq,
    gw::TxAckStatus::TxPower,
    gw::TxAckStatus::GpsUnlocked,
    gw::TxAckStatus::QueueFull,
    gw::TxAckStatus::InternalError,
    gw::TxAckStatus::DutyCycleOverflow,
];

/// Cumulative downlink counters (for status and metrics).
#[derive(Debug, Default)]
pub struct DownlinkCounters {
    /// `command/down` payloads received.
    pub received: AtomicU64,
    /// Payloads rejected (malformed, other gateway, bad item count).
    pub rejected: AtomicU64,
    /// Items the guard approved and handed to the radio backend.
    pub scheduled: AtomicU64,
    /// Downlinks one of whose items was sent.
    pub sent: AtomicU64,
    /// Downlinks none of whose items could be sent.
    pub failed: AtomicU64,
    /// Item statuses of the acks stored, indexed like [`ACK_STATUSES`].
    acks: [AtomicU64; 12],
}

impl DownlinkCounters {
    /// Count the item statuses of one ack.
    pub fn count_ack(&self, statuses: &[gw::TxAckStatus]) {
        for s in statuses {
            if let Some(i) = ACK_STATUSES.iter().position(|a| a == s) {
                self.acks[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Items acknowledged with `status` so far.
    pub fn acks(&self, status: gw::TxAckStatus) -> u64 {
        ACK_STATUSES
            .iter()
            .position(|a| *a == status)
            .map_or(0, |i| self.acks[i].load(Ordering::Relaxed))
    }
}

/// A cloneable read-only view of the transmit path, handed out by
/// [`DownlinkTask::stats`](super::DownlinkTask::stats).
#[derive(Debug, Clone)]
pub struct DownlinkStats {
    /// The downlink task's counters.
    pub downlinks: Arc<DownlinkCounters>,
    /// The guard's counters (approvals, clamps, refusals by reason).
    pub guard: Arc<GuardCounters>,
    /// Duty-cycle use per limited band, as last read from the ledger.
    pub duty_cycle: watch::Receiver<Vec<BandUse>>,
}

impl DownlinkStats {
    /// The figures in the shape `gatewayd status` and `/metrics` serve.
    pub fn status(&self) -> (DownlinkStatus, GuardStatus, Vec<DutyCycleUse>) {
        let d = &self.downlinks;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let downlinks = DownlinkStatus {
            received: g(&d.received),
            rejected: g(&d.rejected),
            scheduled: g(&d.scheduled),
            sent: g(&d.sent),
            failed: g(&d.failed),
            acks: ACK_STATUSES
                .iter()
                .map(|s| (s.as_str_name().to_string(), d.acks(*s)))
                .collect::<BTreeMap<_, _>>(),
        };
        let c = self.guard.snapshot();
        let guard = GuardStatus {
            approved: c.approved,
            released: c.released,
            power_clamped: c.power_clamped,
            refusals: c
                .refusals_by_reason()
                .iter()
                .map(|(reason, n)| (reason.to_string(), *n))
                .collect(),
        };
        let duty = self
            .duty_cycle
            .borrow()
            .iter()
            .map(|u| DutyCycleUse {
                band: u.band.to_string(),
                used_ratio: if u.budget.is_zero() {
                    0.0
                } else {
                    u.used.as_secs_f64() / u.budget.as_secs_f64()
                },
                used_seconds: u.used.as_secs_f64(),
                budget_seconds: u.budget.as_secs_f64(),
            })
            .collect();
        (downlinks, guard, duty)
    }
}
