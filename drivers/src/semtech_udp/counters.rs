//! Counters of the Semtech UDP backend, shared as atomics with whoever wants to read them,
//! and their export as [`CounterSample`]s (`gwmp_rejected{reason}` and friends).

use std::sync::atomic::{AtomicU64, Ordering};

use super::error::GwmpError;
use crate::radio::{CounterSample, CounterSource};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Live counters (relaxed atomics), updated by the backend task.
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A plain copy of [`Counters`] at one moment.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct CountersSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            /// Copy all counters.
            pub fn snapshot(&self) -> CountersSnapshot {
                CountersSnapshot {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }

        impl CountersSnapshot {
            /// Every counter with its field name, in declaration order.
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }

            /// Set one counter by its field name (tests).
            #[cfg(test)]
            fn set(&mut self, field: &str, value: u64) {
                $(if field == stringify!($name) { self.$name = value; })*
            }
        }
    };
}

counters! {
    /// Datagrams received (good or bad).
    datagrams,
    /// Well-framed PUSH_DATA datagrams.
    push_data,
    /// PULL_DATA datagrams.
    pull_data,
    /// TX_ACK datagrams.
    tx_ack,
    /// rxpk entries accepted.
    rxpk_received,
    /// rxpk entries rejected (the rest of their datagram still flowed).
    rxpk_rejected,
    /// Frames handed to the daemon (an `rsig` entry yields one per antenna).
    frames,
    /// stat objects accepted.
    stat_received,
    /// stat objects rejected.
    stat_rejected,
    /// Malformed datagrams: unsupported protocol version.
    malformed_version,
    /// Malformed datagrams: too short for their type.
    malformed_short,
    /// Malformed datagrams: unknown packet identifier.
    malformed_identifier,
    /// Malformed datagrams: JSON body not valid.
    malformed_json,
    /// Malformed datagrams: anything else (too large, extra bytes, too many rxpk).
    malformed_other,
    /// Server-to-gateway packets received from a gateway (PUSH_ACK, PULL_RESP, PULL_ACK).
    unexpected_packets,
    /// PUSH_ACKs sent.
    push_ack_sent,
    /// PUSH_ACKs withheld because the daemon could not store the frames.
    push_ack_withheld,
    /// PULL_ACKs sent.
    pull_ack_sent,
    /// PULL_RESPs sent.
    pull_resp_sent,
    /// TX_ACKs whose token matched no pending PULL_RESP.
    tx_ack_unmatched,
    /// PULL_RESPs whose TX_ACK did not arrive in time.
    tx_ack_timeouts,
    /// Transmit requests refused because no PULL_DATA had been seen.
    tx_no_route,
    /// Transmit requests that could not be encoded as a txpk.
    tx_unencodable,
    /// Socket send or receive errors.
    socket_errors,
}

impl Counters {
    /// Add one to a counter.
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Add `n` to a counter.
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Count a datagram rejected whole, by the kind of error.
    pub(crate) fn malformed(&self, e: &GwmpError) {
        Counters::inc(match e {
            GwmpError::UnsupportedVersion(_) => &self.malformed_version,
            GwmpError::TooShort { .. } => &self.malformed_short,
            GwmpError::UnknownIdentifier(_) => &self.malformed_identifier,
            GwmpError::BadJson { .. } => &self.malformed_json,
            _ => &self.malformed_other,
        });
    }
}

/// How each counter is exported: (field, family, reason). Every rejection of something a
/// packet forwarder sent is one `gwmp_rejected` reason; failed transmit requests are
/// `gwmp_tx_failed` reasons; the rest are families of their own.
const EXPORT: &[(&str, &str, Option<&str>)] = &[
    ("datagrams", "gwmp_datagrams", None),
    ("push_data", "gwmp_push_data", None),
    ("pull_data", "gwmp_pull_data", None),
    ("tx_ack", "gwmp_tx_ack", None),
    ("rxpk_received", "gwmp_rxpk_received", None),
    ("frames", "gwmp_frames", None),
    ("stat_received", "gwmp_stat_received", None),
    ("malformed_version", REJECTED, Some("unsupported_version")),
    ("malformed_short", REJECTED, Some("too_short")),
    ("malformed_identifier", REJECTED, Some("unknown_identifier")),
    ("malformed_json", REJECTED, Some("bad_json")),
    ("malformed_other", REJECTED, Some("malformed_other")),
    ("rxpk_rejected", REJECTED, Some("bad_rxpk")),
    ("stat_rejected", REJECTED, Some("bad_stat")),
    ("unexpected_packets", REJECTED, Some("unexpected_packet")),
    ("tx_ack_unmatched", REJECTED, Some("tx_ack_unmatched")),
    ("push_ack_sent", "gwmp_push_ack_sent", None),
    ("push_ack_withheld", "gwmp_push_ack_withheld", None),
    ("pull_ack_sent", "gwmp_pull_ack_sent", None),
    ("pull_resp_sent", "gwmp_pull_resp_sent", None),
    ("tx_ack_timeouts", TX_FAILED, Some("tx_ack_timeout")),
    ("tx_no_route", TX_FAILED, Some("no_route")),
    ("tx_unencodable", TX_FAILED, Some("unencodable")),
    ("socket_errors", "gwmp_socket_errors", None),
];

const REJECTED: &str = "gwmp_rejected";
const TX_FAILED: &str = "gwmp_tx_failed";

fn help(family: &str) -> &'static str {
    match family {
        "gwmp_datagrams" => "GWMP datagrams received from the packet forwarder (good or bad).",
        "gwmp_push_data" => "Well-framed GWMP PUSH_DATA datagrams received.",
        "gwmp_pull_data" => "GWMP PULL_DATA keepalives received.",
        "gwmp_tx_ack" => "GWMP TX_ACK datagrams received.",
        "gwmp_rxpk_received" => "rxpk entries accepted.",
        "gwmp_frames" => "Frames handed to the daemon (one per antenna of an rxpk).",
        "gwmp_stat_received" => "GWMP stat objects accepted.",
        REJECTED => {
            "Datagrams or entries from the packet forwarder rejected, by reason \
             (the rest of a datagram with one bad entry still flows)."
        }
        "gwmp_push_ack_sent" => "PUSH_ACKs sent (the frames were stored).",
        "gwmp_push_ack_withheld" => "PUSH_ACKs withheld because the frames could not be stored.",
        "gwmp_pull_ack_sent" => "PULL_ACKs sent.",
        "gwmp_pull_resp_sent" => "PULL_RESPs (downlinks) sent to the packet forwarder.",
        TX_FAILED => "Transmit requests the GWMP backend could not complete, by reason.",
        "gwmp_socket_errors" => "GWMP socket send or receive errors.",
        _ => "GWMP backend counter.",
    }
}

impl CountersSnapshot {
    /// The counters as exported samples (see `EXPORT`).
    pub fn samples(&self) -> Vec<CounterSample> {
        let fields = self.fields();
        EXPORT
            .iter()
            .filter_map(|(field, family, reason)| {
                let value = fields.iter().find(|(f, _)| f == field)?.1;
                Some(CounterSample {
                    family,
                    reason: *reason,
                    help: help(family),
                    value,
                })
            })
            .collect()
    }
}

impl CounterSource for Counters {
    fn counter_samples(&self) -> Vec<CounterSample> {
        self.snapshot().samples()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_by_kind() {
        let c = Counters::default();
        c.malformed(&GwmpError::UnsupportedVersion(9));
        c.malformed(&GwmpError::TooShort { len: 1, need: 4 });
        c.malformed(&GwmpError::UnknownIdentifier(9));
        c.malformed(&GwmpError::BadJson { reason: "x".into() });
        c.malformed(&GwmpError::BadJson { reason: "y".into() });
        c.malformed(&GwmpError::TooLarge { len: 70_000 });
        Counters::add(&c.frames, 3);
        let s = c.snapshot();
        assert_eq!(
            (
                s.malformed_version,
                s.malformed_short,
                s.malformed_identifier,
                s.malformed_json,
                s.malformed_other,
                s.frames
            ),
            (1, 1, 1, 2, 1, 3)
        );
    }

    #[test]
    fn every_counter_is_exported_once_with_its_own_value_and_help() {
        let fields = CountersSnapshot::default().fields();
        assert_eq!(EXPORT.len(), fields.len(), "EXPORT names no unknown field");
        for (i, (field, _)) in fields.iter().enumerate() {
            let exported: Vec<_> = EXPORT.iter().filter(|(f, _, _)| f == field).collect();
            assert_eq!(exported.len(), 1, "{field} must be exported exactly once");
            let (_, family, reason) = exported[0];
            let mut snap = CountersSnapshot::default();
            let value = 1000 + i as u64;
            snap.set(field, value);
            let samples = snap.samples();
            let s = samples
                .iter()
                .find(|s| s.family == *family && s.reason == *reason)
                .unwrap();
            assert_eq!(s.value, value, "{field}");
            assert_eq!(samples.iter().map(|s| s.value).sum::<u64>(), value);
            assert_ne!(s.help, "GWMP backend counter.", "{family} has its own help");
            assert!(s.family.starts_with("gwmp_"), "{family}");
        }
    }
}
