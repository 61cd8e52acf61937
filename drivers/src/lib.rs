//! Radio and peripheral drivers for gatewayd.
//!
//! Layout:
//! - [`radio`]: the one interface the daemon sees ([`radio::Radio`], frames, transmit
//!   requests, stats). Every backend produces and consumes these types.
//! - [`semtech_udp`]: the Semtech UDP packet-forwarder protocol (GWMP): a pure codec and
//!   the backend task that serves a concentrator's packet forwarder on loopback.
//!
//! Further backends (lora-phy on spidev/GPIO, the simulated air) and the GPS/NMEA reader
//! live beside these, each in its own module.
#![warn(missing_docs)]

pub mod airtime;
pub mod radio;
pub mod semtech_udp;
pub mod sim;
