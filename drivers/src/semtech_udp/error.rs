//! Errors of the GWMP codec and backend: each names what was wrong and where.

use std::net::SocketAddr;

/// Why a GWMP datagram, or one entry inside it, was rejected.
#[derive(Debug, thiserror::Error)]
pub enum GwmpError {
    /// Byte 0 is not protocol version 1 or 2.
    #[error("unsupported GWMP protocol version {0} (expected 1 or 2)")]
    UnsupportedVersion(u8),
    /// The datagram is shorter than its packet type requires.
    #[error("datagram of {len} bytes is too short: needs at least {need}")]
    TooShort {
        /// Bytes received.
        len: usize,
        /// Bytes required.
        need: usize,
    },
    /// The datagram is larger than any UDP/IPv4 payload (65507 bytes).
    #[error("datagram of {len} bytes is larger than the 65507-byte UDP maximum")]
    TooLarge {
        /// Bytes received.
        len: usize,
    },
    /// Byte 3 is not a known packet identifier.
    #[error("unknown GWMP packet identifier 0x{0:02x}")]
    UnknownIdentifier(u8),
    /// A packet that has no body carried extra bytes.
    #[error("{packet} must be {expected} bytes, got {len}")]
    UnexpectedBody {
        /// Packet name.
        packet: &'static str,
        /// Exact length the packet has.
        expected: usize,
        /// Bytes received.
        len: usize,
    },
    /// The JSON body is not valid JSON or not the expected object shape.
    #[error("bad JSON body: {reason}")]
    BadJson {
        /// What is wrong.
        reason: String,
    },
    /// A datagram carried more rxpk entries than any concentrator produces.
    #[error("{count} rxpk entries in one datagram (at most 256 accepted)")]
    TooManyRxpk {
        /// Entries in the datagram.
        count: usize,
    },
    /// A required field of an rxpk entry is absent.
    #[error("rxpk[{index}]: missing field {field:?}")]
    MissingField {
        /// Position of the entry in the rxpk array.
        index: usize,
        /// Field name.
        field: String,
    },
    /// A field of an rxpk entry has the wrong type or an unparsable value.
    #[error("rxpk[{index}].{field}: {reason}")]
    BadField {
        /// Position of the entry in the rxpk array.
        index: usize,
        /// Field name.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The `data` field of an rxpk entry is not valid base64.
    #[error("rxpk[{index}].data is not valid base64")]
    BadBase64 {
        /// Position of the entry in the rxpk array.
        index: usize,
    },
    /// The decoded payload length differs from the `size` field.
    #[error("rxpk[{index}]: size says {size} bytes but data decodes to {actual}")]
    SizeMismatch {
        /// Position of the entry in the rxpk array.
        index: usize,
        /// The `size` field.
        size: u64,
        /// Decoded payload length.
        actual: usize,
    },
    /// A field of an rxpk entry holds an absurd value.
    #[error("rxpk[{index}].{field} = {value} is out of range")]
    OutOfRange {
        /// Position of the entry in the rxpk array.
        index: usize,
        /// Field name.
        field: String,
        /// The offending value as received.
        value: String,
    },
    /// A field of the `stat` object is wrong.
    #[error("stat.{field}: {reason}")]
    BadStat {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A transmit request cannot be expressed as a txpk.
    #[error("cannot encode txpk: {reason}")]
    Unencodable {
        /// What is wrong.
        reason: String,
    },
    /// The backend could not bind its UDP socket.
    #[error("cannot bind the Semtech UDP socket to {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

impl GwmpError {
    /// A short stable name of the error kind (for counters and rate-limited logs).
    pub fn kind(&self) -> &'static str {
        match self {
            GwmpError::UnsupportedVersion(_) => "unsupported_version",
            GwmpError::TooShort { .. } => "too_short",
            GwmpError::TooLarge { .. } => "too_large",
            GwmpError::UnknownIdentifier(_) => "unknown_identifier",
            GwmpError::UnexpectedBody { .. } => "unexpected_body",
            GwmpError::BadJson { .. } => "bad_json",
            GwmpError::TooManyRxpk { .. } => "too_many_rxpk",
            GwmpError::MissingField { .. } => "missing_field",
            GwmpError::BadField { .. } => "bad_field",
            GwmpError::BadBase64 { .. } => "bad_base64",
            GwmpError::SizeMismatch { .. } => "size_mismatch",
            GwmpError::OutOfRange { .. } => "out_of_range",
            GwmpError::BadStat { .. } => "bad_stat",
            GwmpError::Unencodable { .. } => "unencodable",
            GwmpError::Bind { .. } => "bind",
        }
    }
}
