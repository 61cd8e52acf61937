//! gatewayd: the operating service of a LoRa hotspot.
//!
//! Data flows one way for uplinks, each step owned by one task:
//! radio backend (`drivers`) → [`pipeline`] (CRC policy, LoRaWAN header parsing, filters,
//! de-duplication, encoding as ChirpStack `gw` messages by [`chirpstack`]) → [`outbox`]
//! (SQLite, group commit, priorities, expiry, bound) → [`mqtt`] link (QoS 1, delete on
//! PUBACK) → broker.
//!
//! - [`config`]: the TOML file, validated into runtime values.
//! - [`lorawan`]: pure LoRaWAN header codec.
//! - [`region`]: regional parameters; [`guard`]: the regulatory guard every transmission
//!   passes (EIRP, channels, data rates, dwell time, duty cycle, LBT).
//! - [`position`]: where and when the hotspot is (GPS fix, else the configured location).
//! - [`service`]: systemd notify and watchdog gate, status socket, metrics, privileges;
//!   [`logging`]: the journal, or stderr without one; [`cli`]: the command line.
//! - [`downlink`]: `command/down` → guard → radio, and the TX ack back.
//! - [`interval_stats`]: the counters of one stats interval (received, transmitted, duty
//!   cycle) and their `gw.GatewayStats`.
//! - [`daemon`]: wires the tasks together (radio, pipeline, outbox, MQTT link, service
//!   endpoints), reloads on SIGHUP and shuts them down in order.
#![warn(missing_docs)]

pub mod chirpstack;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod downlink;
pub mod guard;
pub mod interval_stats;
pub mod logging;
pub mod lorawan;
pub mod mqtt;
pub mod outbox;
pub mod pipeline;
pub mod poc;
pub mod position;
pub mod private_file;
pub mod region;
pub mod service;
pub mod timesync;
