//! Semtech UDP packet-forwarder protocol (GWMP v1/v2): codec and backend task.
//!
//! The codec is pure: [`Packet`] frames datagrams; [`decode_push_data`] turns a PUSH_DATA
//! body into [`crate::radio::RxFrame`]s and [`crate::radio::RadioStats`];
//! [`encode_pull_resp`] turns a [`crate::radio::TxRequest`] into a txpk;
//! [`decode_tx_ack`] turns a TX_ACK body into a [`crate::radio::TxStatus`].
//! [`spawn`] runs the backend that serves a packet forwarder on a UDP socket.

mod backend;
mod counters;
mod datr;
mod error;
mod fields;
mod packet;
mod push_data;
mod rxpk;
mod session;
mod stat;
mod time;
mod txpk;

pub use crate::ratelimit::RateLimiter;
pub use backend::{spawn, SemtechUdpConfig, SemtechUdpHandle, SHUTDOWN_GRACE, WARN_INTERVAL};
pub use counters::{Counters, CountersSnapshot};
pub use datr::{format_lora_datr, parse_lora_datr};
pub use error::GwmpError;
pub use packet::{id, Packet, Version, MAX_DATAGRAM};
pub use push_data::{decode_push_data, PushData, MAX_RXPK};
pub use rxpk::{decode_rxpk, mhz_to_hz};
pub use stat::decode_stat;
pub use time::{parse_iso8601, parse_stat_time, TimeError};
pub use txpk::{decode_tx_ack, encode_pull_resp, encode_txpk};

#[cfg(test)]
mod dialect_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests_udp;
