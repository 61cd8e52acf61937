//! Radio and peripheral drivers for gatewayd: only the real backends and the types they share.
//! The test doubles (simulated air, device fleet, simulated radio, emulated chips) live in the
//! `gatewayd-sim` crate, which depends on this one, so the shipped daemon carries none of them.
//!
//! Layout:
//! - [`radio`]: the one interface the daemon sees ([`radio::Radio`], frames, transmit
//!   requests, stats). Every backend produces and consumes these types.
//! - [`semtech_udp`]: the Semtech UDP packet-forwarder protocol (GWMP): a pure codec and
//!   the backend task that serves a concentrator's packet forwarder on loopback.
//! - [`lora_phy`]: SX126x/SX127x through the lora-phy crate on spidev + GPIO.
//! - [`gps`]: NMEA 0183 over a serial port: codec, state machine, reader task.
//! - [`airtime`]: LoRa/FSK time on air; [`ratelimit`]: rate-limited warnings.
//! - [`time`]: Unix milliseconds, GPS epoch and leap seconds, the civil calendar; shared by
//!   every layer.
#![warn(missing_docs)]

pub mod airtime;
pub mod gps;
pub mod lora_phy;
pub mod radio;
pub mod ratelimit;
pub mod semtech_udp;
pub mod time;
