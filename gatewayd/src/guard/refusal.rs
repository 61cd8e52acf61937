//! Why the guard refused a transmission, how that maps onto a transmit status, and the
//! per-reason counters operators read as metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use drivers::radio::{Modulation, TxStatus};

use crate::region::Direction;

/// A transmission the guard will not let through. Each variant names the offending values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The frequency is not a transmit channel of the region in this direction, or the
    /// signal's bandwidth sticks out of the band.
    #[error(
        "{region}: {freq_hz} Hz with {bw_hz} Hz bandwidth is not an allowed {direction:?} channel"
    )]
    FrequencyNotAllowed {
        /// Region name.
        region: &'static str,
        /// Centre frequency asked.
        freq_hz: u64,
        /// Occupied bandwidth.
        bw_hz: u32,
        /// Downlink (inverted IQ) or uplink-like (beacon).
        direction: Direction,
    },
    /// The modulation is no data rate the region allows in this direction.
    #[error("{region}: {modulation:?} is not an allowed {direction:?} data rate{why}")]
    DataRateNotAllowed {
        /// Region name.
        region: &'static str,
        /// The modulation asked.
        modulation: Modulation,
        /// Direction.
        direction: Direction,
        /// Extra detail (empty, or e.g. " (Japan: DR5 at most)").
        why: &'static str,
    },
    /// The PHY payload is longer than the data rate allows.
    #[error("{region}: {len} B PHY payload exceeds DR{dr}'s maximum of {max} B")]
    PayloadTooLong {
        /// Region name.
        region: &'static str,
        /// Length asked.
        len: usize,
        /// Data rate.
        dr: u8,
        /// Largest PHY payload at that DR (M + 5).
        max: usize,
    },
    /// The frame would stay on air longer than the dwell-time limit.
    #[error("airtime {airtime:?} exceeds the {limit:?} dwell-time limit")]
    DwellTimeExceeded {
        /// The frame's airtime.
        airtime: Duration,
        /// The limit.
        limit: Duration,
    },
    /// The band's duty-cycle budget over the sliding hour would be exceeded.
    #[error(
        "band {band}: {airtime:?} more airtime would exceed the duty-cycle budget \
         ({used:?} of {budget:?} used in the last hour){}",
        match retry_after { Some(d) => format!("; retry in {d:?}"), None => "; the frame alone exceeds the budget".into() }
    )]
    DutyCycleExceeded {
        /// Band name.
        band: &'static str,
        /// Airtime already used in the window.
        used: Duration,
        /// The band's budget per hour.
        budget: Duration,
        /// The frame's airtime.
        airtime: Duration,
        /// When enough budget is back (`None` when the frame alone is over budget).
        retry_after: Option<Duration>,
    },
    /// The region requires listen-before-talk and the radio backend cannot do it.
    #[error("{region}: listen-before-talk is required and the radio backend cannot do it")]
    LbtRequiredButUnsupported {
        /// Region name.
        region: &'static str,
    },
    /// The duty-cycle ledger cannot be read or written, so airtime cannot be accounted for.
    #[error("duty-cycle ledger unavailable, not transmitting: {0}")]
    LedgerUnavailable(String),
}

impl Refusal {
    /// The transmit status to report to the network for this refusal.
    pub fn tx_status(&self) -> TxStatus {
        match self {
            Refusal::FrequencyNotAllowed { .. } => TxStatus::TxFreq,
            Refusal::DutyCycleExceeded { .. } => TxStatus::DutyCycleOverflow,
            // ChirpStack has no status for a bad data rate, payload, dwell time or LBT;
            // the message says which.
            Refusal::DataRateNotAllowed { .. }
            | Refusal::PayloadTooLong { .. }
            | Refusal::DwellTimeExceeded { .. }
            | Refusal::LbtRequiredButUnsupported { .. }
            | Refusal::LedgerUnavailable(_) => TxStatus::InternalError,
        }
    }

    /// A short stable label for metrics (`guard_refusals_total{reason=...}`).
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::FrequencyNotAllowed { .. } => "frequency",
            Refusal::DataRateNotAllowed { .. } => "data_rate",
            Refusal::PayloadTooLong { .. } => "payload_too_long",
            Refusal::DwellTimeExceeded { .. } => "dwell_time",
            Refusal::DutyCycleExceeded { .. } => "duty_cycle",
            Refusal::LbtRequiredButUnsupported { .. } => "lbt_unsupported",
            Refusal::LedgerUnavailable(_) => "ledger_unavailable",
        }
    }
}

/// Guard outcomes, shared with the metrics reader (`Arc<Counters>`).
#[derive(Debug, Default)]
pub struct Counters {
    approved: AtomicU64,
    released: AtomicU64,
    power_clamped: AtomicU64,
    frequency: AtomicU64,
    data_rate: AtomicU64,
    payload_too_long: AtomicU64,
    dwell_time: AtomicU64,
    duty_cycle: AtomicU64,
    lbt_unsupported: AtomicU64,
    ledger_unavailable: AtomicU64,
}

/// A point-in-time copy of [`Counters`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Transmissions approved.
    pub approved: u64,
    /// Approved transmissions released again (the backend did not send them).
    pub released: u64,
    /// Approved transmissions whose power the guard lowered.
    pub power_clamped: u64,
    /// Refused: frequency.
    pub frequency: u64,
    /// Refused: data rate.
    pub data_rate: u64,
    /// Refused: payload too long.
    pub payload_too_long: u64,
    /// Refused: dwell time.
    pub dwell_time: u64,
    /// Refused: duty cycle.
    pub duty_cycle: u64,
    /// Refused: LBT required but unsupported.
    pub lbt_unsupported: u64,
    /// Refused: ledger unavailable.
    pub ledger_unavailable: u64,
}

impl CountersSnapshot {
    /// All refusals.
    pub fn refused(&self) -> u64 {
        self.frequency
            + self.data_rate
            + self.payload_too_long
            + self.dwell_time
            + self.duty_cycle
            + self.lbt_unsupported
            + self.ledger_unavailable
    }

    /// `(reason label, count)` pairs, labels as [`Refusal::reason`].
    pub fn refusals_by_reason(&self) -> [(&'static str, u64); 7] {
        [
            ("frequency", self.frequency),
            ("data_rate", self.data_rate),
            ("payload_too_long", self.payload_too_long),
            ("dwell_time", self.dwell_time),
            ("duty_cycle", self.duty_cycle),
            ("lbt_unsupported", self.lbt_unsupported),
            ("ledger_unavailable", self.ledger_unavailable),
        ]
    }
}

impl Counters {
    pub(super) fn count_refusal(&self, r: &Refusal) {
        let c = match r {
            Refusal::FrequencyNotAllowed { .. } => &self.frequency,
            Refusal::DataRateNotAllowed { .. } => &self.data_rate,
            Refusal::PayloadTooLong { .. } => &self.payload_too_long,
            Refusal::DwellTimeExceeded { .. } => &self.dwell_time,
            Refusal::DutyCycleExceeded { .. } => &self.duty_cycle,
            Refusal::LbtRequiredButUnsupported { .. } => &self.lbt_unsupported,
            Refusal::LedgerUnavailable(_) => &self.ledger_unavailable,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_approved(&self, clamped: bool) {
        self.approved.fetch_add(1, Ordering::Relaxed);
        if clamped {
            self.power_clamped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn count_released(&self) {
        self.released.fetch_add(1, Ordering::Relaxed);
    }

    /// Read all counters.
    pub fn snapshot(&self) -> CountersSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CountersSnapshot {
            approved: g(&self.approved),
            released: g(&self.released),
            power_clamped: g(&self.power_clamped),
            frequency: g(&self.frequency),
            data_rate: g(&self.data_rate),
            payload_too_long: g(&self.payload_too_long),
            dwell_time: g(&self.dwell_time),
            duty_cycle: g(&self.duty_cycle),
            lbt_unsupported: g(&self.lbt_unsupported),
            ledger_unavailable: g(&self.ledger_unavailable),
        }
    }
}
