//! Test doubles for gatewayd, kept out of the shipped daemon: the simulated world (a virtual
//! air shared by hotspot radios and a fleet of LoRaWAN end devices) and emulated radio chips,
//! so that everything runs and is tested without hardware. Used by the demo and tools, by the
//! tests, and by `gatewayd` only when it is built with its `simulated` feature.
//!
//! - [`model`], [`air`]: the pure, seeded medium (path loss, sensitivity, collisions).
//! - [`wire`], [`hub`]: the air as a task ([`hub::AirHandle`]) and its loopback UDP hub so
//!   several processes share one air.
//! - [`radio`]: the simulated radio backend producing a [`drivers::radio::Radio`].
//! - [`crypto`], [`device`], [`fleet`]: LoRaWAN 1.0.x end devices (OTAA/ABP), seeded;
//!   [`fleet::simulate`] runs them on an in-process [`air::Air`] in simulated time and
//!   [`fleet_task::run_fleet`] in real time on an [`hub::AirHandle`].
//! - [`emulated`]: emulated SX1262/SX1276 chips behind the same SPI/GPIO traits as the real
//!   ones, so the lora-phy driver path ([`drivers::lora_phy`]) runs unchanged in tests.
#![warn(missing_docs)]

pub mod air;
pub mod crypto;
pub mod device;
pub mod emulated;
pub mod fleet;
pub mod fleet_task;
pub mod hub;
pub mod model;
pub mod radio;
pub mod wire;

use std::time::Duration;

/// Errors of the simulated world's tasks and configuration.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The air refused a request.
    #[error(transparent)]
    Air(#[from] air::AirError),
    /// A hub datagram was malformed.
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    /// A fleet configuration is unusable.
    #[error(transparent)]
    Fleet(#[from] fleet::FleetError),
    /// A socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The hub answered with an error.
    #[error("air hub refused: {0}")]
    Hub(String),
    /// The air task or hub connection has stopped.
    #[error("the simulated air has stopped")]
    Stopped,
    /// No answer in time.
    #[error("no answer from the air hub within {0:?}")]
    Timeout(Duration),
    /// A `[radio.simulated]` setting is invalid.
    #[error("radio.simulated.{key}: {message}")]
    Config {
        /// The key, relative to `[radio.simulated]`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The operation is not available over this kind of connection.
    #[error("{0} is not available over a hub connection")]
    Unsupported(&'static str),
}
