//! Why a report is invalid (docs/proof-of-coverage.md §7): [`Reason`], with the stable
//! name of each verdict that `gatewayd poc verify` prints and `--json` carries.

use super::identity::PublicKey;
use super::receipt::ReceiptError;
use super::report::Kind;
use super::wire::CodecError;

/// Why a report is invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Reason {
    /// Not a well-formed report.
    #[error("malformed: {0}")]
    Malformed(CodecError),
    /// The signature is not the report key's.
    #[error("bad signature: not signed by the key {0} it names")]
    BadSignature(PublicKey),
    /// The same bytes were seen before.
    #[error("replayed: the same report was already received")]
    Replayed,
    /// Received after its deadline.
    #[error("late: received at {received_ms} ms, deadline {deadline_ms} ms")]
    Late {
        /// Receive time, Unix ms.
        received_ms: u64,
        /// The deadline, Unix ms.
        deadline_ms: u64,
    },
    /// The deadline is further after the event than the policy allows.
    #[error("deadline {deadline_ms} ms is more than {max_s} s after the event at {event_ms} ms")]
    DeadlineTooFar {
        /// The deadline.
        deadline_ms: u64,
        /// The event.
        event_ms: u64,
        /// The policy's bound, s.
        max_s: u64,
    },
    /// Window length not valid or tx time outside the window.
    #[error("window: {0}")]
    WindowMismatch(String),
    /// The window is shorter than the policy's minimum (a test-network window).
    #[error("window of {len_s} s is shorter than this verifier's minimum of {min_s} s (windows that short are for test networks)")]
    WindowTooShort {
        /// The beacon's window length, s.
        len_s: u32,
        /// The policy's minimum, s.
        min_s: u32,
    },
    /// The verifier does not know this window's entropy (and requires it).
    #[error("no network entropy known for window {0}")]
    EntropyUnknown(u64),
    /// The entropy is not the network's for the window.
    #[error("network entropy is not the one published for window {0}")]
    EntropyMismatch(u64),
    /// Not later than the key's previous beacon.
    #[error("irregular interval: window {window} is not after this key's previous beacon in window {previous}")]
    IrregularInterval {
        /// This beacon's window.
        window: u64,
        /// The previous one.
        previous: u64,
    },
    /// Frequency differs from the recomputed one.
    #[error("frequency {reported} Hz, recomputed {expected} Hz")]
    FrequencyMismatch {
        /// Reported.
        reported: u64,
        /// Recomputed.
        expected: u64,
    },
    /// Data rate differs from the recomputed one.
    #[error("data rate DR{reported}, recomputed DR{expected}")]
    DataRateMismatch {
        /// Reported.
        reported: u8,
        /// Recomputed.
        expected: u8,
    },
    /// The claimed EIRP exceeds the region's limit.
    #[error("claimed EIRP {eirp_dbm:.2} dBm is above the limit {limit_dbm:.2} dBm")]
    PowerAboveLimit {
        /// Claimed EIRP.
        eirp_dbm: f64,
        /// The region's limit there.
        limit_dbm: f64,
    },
    /// The beacon's parameters cannot be recomputed (region without beacon channel/DR).
    #[error("beacon cannot be recomputed: {0}")]
    Unplannable(String),
    /// No location in the report.
    #[error("no location")]
    NoLocation,
    /// The witnessed frame is not a beacon, or no valid beacon has that payload.
    #[error("no valid beacon with this payload: {0}")]
    NoBeacon(&'static str),
    /// The witness is the beaconer.
    #[error("self-witness: the witness key is the beaconer's")]
    SelfWitness,
    /// Witness and beaconer have the same owner.
    #[error("witness and beaconer belong to the same owner {0}")]
    SameOwner(String),
    /// This key already witnessed this beacon.
    #[error("duplicate witness: this key already witnessed this beacon")]
    DuplicateWitness,
    /// Witness region differs.
    #[error("witness region {witness} differs from the beacon's {beacon}")]
    RegionMismatch {
        /// Witness region.
        witness: &'static str,
        /// Beacon region.
        beacon: &'static str,
    },
    /// Witness frequency too far from the beacon's.
    #[error(
        "witness frequency {witness} Hz is more than {tolerance} Hz from the beacon's {beacon} Hz"
    )]
    WitnessFrequencyMismatch {
        /// Witness frequency.
        witness: u64,
        /// Beacon frequency.
        beacon: u64,
        /// Tolerance.
        tolerance: u64,
    },
    /// Witness SF/BW differ from the beacon's DR.
    #[error("witness heard SF{sf}/{bw_hz} Hz, the beacon was sent at DR{dr}")]
    WitnessDataRateMismatch {
        /// Witness SF.
        sf: u8,
        /// Witness BW.
        bw_hz: u32,
        /// Beacon DR.
        dr: u8,
    },
    /// Witness time does not fit the beacon.
    #[error("time: {0}")]
    TimeMismatch(String),
    /// Closer than the minimum distance.
    #[error("distance {distance_m:.0} m is below the minimum {min_m:.0} m")]
    BelowMinDistance {
        /// Distance.
        distance_m: f64,
        /// Minimum.
        min_m: f64,
    },
    /// Farther than the maximum distance.
    #[error("distance {distance_m:.0} m is above the maximum {max_m:.0} m")]
    AboveMaxDistance {
        /// Distance.
        distance_m: f64,
        /// Maximum.
        max_m: f64,
    },
    /// Heard louder than free space allows.
    #[error("RSSI {rssi_dbm:.1} dBm is above the free-space bound {max_dbm:.1} dBm at {distance_m:.0} m")]
    RssiTooHigh {
        /// Reported RSSI.
        rssi_dbm: f64,
        /// The bound.
        max_dbm: f64,
        /// Distance.
        distance_m: f64,
    },
    /// Receipt inconsistent, or its hash chain does not match the uplinks.
    #[error("receipt: {0}")]
    Receipt(ReceiptError),
    /// The receipt continues an earlier head of its key that another receipt already
    /// continues: a second claim from the same point of the chain (§6.4.3).
    #[error("receipt chain fork: prev_head is an earlier head of this key, already continued by another receipt")]
    ReceiptFork,
    /// The receipt's period or uplink ids reach back into what its key already claimed
    /// (§6.4.3).
    #[error("receipt overlaps what this key already claimed: {0}")]
    ReceiptOverlap(String),
}

/// The stable names of invalid verdicts, in the order of docs/proof-of-coverage.md §7.2.
pub const REASON_NAMES: &[&str] = &[
    "Malformed",
    "BadSignature",
    "Replayed",
    "Late",
    "TimeMismatch",
    "DeadlineTooFar",
    "WindowMismatch",
    "WindowTooShort",
    "EntropyMismatch",
    "EntropyUnknown",
    "IrregularInterval",
    "Unplannable",
    "FrequencyMismatch",
    "DataRateMismatch",
    "PowerAboveLimit",
    "NoLocation",
    "NoBeacon",
    "SelfWitness",
    "SameOwner",
    "DuplicateWitness",
    "RegionMismatch",
    "WitnessFrequencyMismatch",
    "WitnessDataRateMismatch",
    "BelowMinDistance",
    "AboveMaxDistance",
    "RssiTooHigh",
    "ReceiptInconsistent",
    "ReceiptFork",
    "ReceiptOverlap",
    "ReceiptChainMismatch",
];

/// The stable names of valid verdicts (the report's kind; a receipt that starts a new
/// chain segment is `ReceiptNewSegment`).
pub const VALID_NAMES: &[&str] = &[
    "Beacon",
    "Witness",
    "Receipt",
    "ReceiptNewSegment",
    "Onboarding",
];

impl Reason {
    /// The reason's stable name (one of [`REASON_NAMES`]): what `gatewayd poc verify`
    /// prints after `INVALID:` and `--json` gives as `verdict`.
    pub fn name(&self) -> &'static str {
        match self {
            Reason::Malformed(_) => "Malformed",
            Reason::BadSignature(_) => "BadSignature",
            Reason::Replayed => "Replayed",
            Reason::Late { .. } => "Late",
            Reason::DeadlineTooFar { .. } => "DeadlineTooFar",
            Reason::WindowMismatch(_) => "WindowMismatch",
            Reason::WindowTooShort { .. } => "WindowTooShort",
            Reason::EntropyUnknown(_) => "EntropyUnknown",
            Reason::EntropyMismatch(_) => "EntropyMismatch",
            Reason::IrregularInterval { .. } => "IrregularInterval",
            Reason::FrequencyMismatch { .. } => "FrequencyMismatch",
            Reason::DataRateMismatch { .. } => "DataRateMismatch",
            Reason::PowerAboveLimit { .. } => "PowerAboveLimit",
            Reason::Unplannable(_) => "Unplannable",
            Reason::NoLocation => "NoLocation",
            Reason::NoBeacon(_) => "NoBeacon",
            Reason::SelfWitness => "SelfWitness",
            Reason::SameOwner(_) => "SameOwner",
            Reason::DuplicateWitness => "DuplicateWitness",
            Reason::RegionMismatch { .. } => "RegionMismatch",
            Reason::WitnessFrequencyMismatch { .. } => "WitnessFrequencyMismatch",
            Reason::WitnessDataRateMismatch { .. } => "WitnessDataRateMismatch",
            Reason::TimeMismatch(_) => "TimeMismatch",
            Reason::BelowMinDistance { .. } => "BelowMinDistance",
            Reason::AboveMaxDistance { .. } => "AboveMaxDistance",
            Reason::RssiTooHigh { .. } => "RssiTooHigh",
            Reason::Receipt(ReceiptError::Inconsistent(_)) => "ReceiptInconsistent",
            Reason::Receipt(ReceiptError::Chain(_)) => "ReceiptChainMismatch",
            Reason::ReceiptFork => "ReceiptFork",
            Reason::ReceiptOverlap(_) => "ReceiptOverlap",
        }
    }
}

/// The stable name of a verdict: the kind of a valid report (one of [`VALID_NAMES`]) or
/// the reason of an invalid one (one of [`REASON_NAMES`]).
pub fn verdict_name(verdict: &Result<Kind, Reason>) -> &'static str {
    match verdict {
        Ok(Kind::Beacon) => "Beacon",
        Ok(Kind::Witness) => "Witness",
        Ok(Kind::Receipt) => "Receipt",
        Ok(Kind::ReceiptNewSegment) => "ReceiptNewSegment",
        Ok(Kind::Onboarding) => "Onboarding",
        Err(reason) => reason.name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// One reason of every variant.
    fn every_reason() -> Vec<Reason> {
        let s = String::new;
        vec![
            Reason::Malformed(CodecError::Text(s())),
            Reason::BadSignature(PublicKey([0; 32])),
            Reason::Replayed,
            Reason::Late {
                received_ms: 0,
                deadline_ms: 0,
            },
            Reason::TimeMismatch(s()),
            Reason::DeadlineTooFar {
                deadline_ms: 0,
                event_ms: 0,
                max_s: 0,
            },
            Reason::WindowMismatch(s()),
            Reason::WindowTooShort { len_s: 0, min_s: 0 },
            Reason::EntropyMismatch(0),
            Reason::EntropyUnknown(0),
            Reason::IrregularInterval {
                window: 0,
                previous: 0,
            },
            Reason::Unplannable(s()),
            Reason::FrequencyMismatch {
                reported: 0,
                expected: 0,
            },
            Reason::DataRateMismatch {
                reported: 0,
                expected: 0,
            },
            Reason::PowerAboveLimit {
                eirp_dbm: 0.0,
                limit_dbm: 0.0,
            },
            Reason::NoLocation,
            Reason::NoBeacon(""),
            Reason::SelfWitness,
            Reason::SameOwner(s()),
            Reason::DuplicateWitness,
            Reason::RegionMismatch {
                witness: "",
                beacon: "",
            },
            Reason::WitnessFrequencyMismatch {
                witness: 0,
                beacon: 0,
                tolerance: 0,
            },
            Reason::WitnessDataRateMismatch {
                sf: 0,
                bw_hz: 0,
                dr: 0,
            },
            Reason::BelowMinDistance {
                distance_m: 0.0,
                min_m: 0.0,
            },
            Reason::AboveMaxDistance {
                distance_m: 0.0,
                max_m: 0.0,
            },
            Reason::RssiTooHigh {
                rssi_dbm: 0.0,
                max_dbm: 0.0,
                distance_m: 0.0,
            },
            Reason::Receipt(ReceiptError::Inconsistent("")),
            Reason::ReceiptFork,
            Reason::ReceiptOverlap(s()),
            Reason::Receipt(ReceiptError::Chain("")),
        ]
    }

    #[test]
    fn every_reason_has_its_own_listed_name() {
        let names: Vec<&str> = every_reason().iter().map(Reason::name).collect();
        // In the documented order, each once: the list and the mapping agree.
        assert_eq!(names, REASON_NAMES);
        let distinct: BTreeSet<&str> = REASON_NAMES.iter().chain(VALID_NAMES).copied().collect();
        assert_eq!(distinct.len(), REASON_NAMES.len() + VALID_NAMES.len());
        assert!(names
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric())));
    }

    #[test]
    fn verdict_names_of_valid_and_invalid_reports() {
        let valid: Vec<&str> = [
            Kind::Beacon,
            Kind::Witness,
            Kind::Receipt,
            Kind::ReceiptNewSegment,
            Kind::Onboarding,
        ]
        .into_iter()
        .map(|k| verdict_name(&Ok(k)))
        .collect();
        assert_eq!(valid, VALID_NAMES);
        assert_eq!(verdict_name(&Err(Reason::SelfWitness)), "SelfWitness");
    }
}
