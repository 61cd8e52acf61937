//! Downlinks: `command/down` from the network → the regulatory guard → the radio, and the
//! `gw.DownlinkTxAck` back.
//!
//! - `decode.rs`: the `gw.DownlinkFrame` payload (protobuf or JSON) → checked frame;
//!   rejections (malformed, another gateway's id) change nothing; the ack message.
//! - `scheduler.rs`: pure: each item → a [`TxRequest`](drivers::radio::TxRequest) (EIRP →
//!   conducted power, Class A `delay` after the uplink's counter with the u32 wrap, Class C
//!   `immediately`, Class B `gps_epoch`), items tried in order as alternatives, statuses.
//! - `task.rs`: the task that owns the [`TxGate`](crate::guard::TxGate), the daemon's only
//!   way to transmit, and stores acks in the outbox (`Class::Control`).
//! - `stats.rs`: its counters (received, scheduled, sent, item statuses acked) and the
//!   [`DownlinkStats`] view status and metrics read (with the guard's counters and the
//!   duty-cycle use per band).
//! - `client.rs`: [`TxClient`], the handle through which beacons use the same gate.

mod client;
mod decode;
mod scheduler;
mod stats;
mod task;
#[cfg(test)]
mod tests;

pub use client::{TxClient, TxClientError, TxJob, TX_JOB_QUEUE};
pub use decode::{decode_downlink, reject_ack, tx_ack, CommandError, MAX_ITEMS};
pub use scheduler::{ack_status, build_request, Attempt, ItemError, Step};
pub use stats::{
    DownlinkCounters, DownlinkStats, DownlinkStatus, DutyCycleUse, GuardStatus, ACK_STATUSES,
    DUTY_CYCLE_REFRESH,
};
pub use task::{DownlinkConfig, DownlinkTask, WARN_INTERVAL};
