//! The simulated world: a virtual air shared by hotspot radios and a fleet of LoRaWAN end
//! devices, so that everything runs and is tested without hardware.
//!
//! - [`model`], [`air`]: the pure, seeded medium (path loss, sensitivity, collisions).
//! - [`wire`], [`hub`]: the air as a task ([`hub::AirHandle`]) and its loopback UDP hub so
//!   several processes share one air.
//! - [`radio`]: the simulated radio backend producing a [`crate::radio::Radio`].
//! - [`crypto`], [`device`], [`fleet`]: LoRaWAN 1.0.x end devices (OTAA/ABP) on the air.

pub mod air;
pub mod crypto;
pub mod device;
pub mod fleet;
pub mod model;
pub mod wire;
