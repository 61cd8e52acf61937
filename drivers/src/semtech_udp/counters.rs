//! Counters of the Semtech UDP backend, shared as atomics with whoever wants to read them.

use std::sync::atomic::{AtomicU64, Ordering};

use super::error::GwmpError;

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
}
