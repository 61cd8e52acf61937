//! Why an emulated chip refused an SPI transaction or did not hear a frame.

/// An emulated chip's refusal: a protocol fault on the bus, or a frame on the air it did
/// not receive. The text is what the driver or test sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChipError {
    /// A malformed or unexpected SPI access (also recorded in the chip's faults).
    #[error("{0}")]
    Protocol(String),
    /// The chip did not receive a frame put on the air.
    #[error(transparent)]
    NotHeard(#[from] NotHeard),
}

/// Why the chip did not receive a frame put on the air.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotHeard {
    /// The chip is not in a receive mode; the detail names the mode it is in.
    #[error("chip not receiving ({0})")]
    NotReceiving(String),
    /// The frame is on another channel than the one the chip listens on.
    #[error("chip listens on {freq_hz} Hz SF{sf} BW{bw_hz}")]
    OtherChannel {
        /// The frequency the chip is tuned to.
        freq_hz: u32,
        /// The spreading factor it is set to.
        sf: u8,
        /// The bandwidth it is set to (0 if the code is unknown).
        bw_hz: u32,
    },
    /// The frame's sync word, IQ polarity or header mode differ from the chip's.
    #[error("sync word, IQ or header mode differ")]
    FormatMismatch,
    /// The payload is longer than the chip accepts; the detail names the limit.
    #[error("payload longer than {0}")]
    TooLong(&'static str),
}
