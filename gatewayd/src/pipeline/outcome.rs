//! What became of each forwarded uplink, as the pipeline reports it through a
//! [`ReceiptFeed`](super::task::ReceiptFeed): the input of the PoC receipt task, defined here so
//! that the pipeline needs nothing from proof of coverage.

/// What became of one uplink id the pipeline assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Committed to the durable outbox: forwarded; its PHYPayload.
    Stored(Vec<u8>),
    /// The store failed: the uplink was refused upstream and is not forwarded.
    Failed,
}

/// An uplink id and what became of it.
pub type UplinkOutcome = (u32, Outcome);
