//! The uplink pipeline: frames from the radio → decision ([`filter`]) → `gw.UplinkFrame`
//! messages → the outbox; the radio's acknowledgement is released once they are stored.

pub mod dedup;
pub mod filter;
pub mod outcome;
pub mod task;

pub use task::{Pipeline, PipelineConfig, PipelineCounters};
