//! Shared test harness of gatewayd's integration tests: a real Mosquitto broker (the same
//! launcher the demo uses), MQTT subscribers, the real `gatewayd` binary and a GWMP packet
//! forwarder, and a TCP proxy that breaks connections on demand. Use with `mod support;` in a
//! test file.
#![allow(dead_code)]

#[path = "../../../tools/src/broker.rs"]
pub mod broker;
pub mod daemon;
pub mod hotspot;
pub mod mosquitto;
pub mod network;
pub mod observe;
pub mod proxy;
pub mod publisher;
pub mod smallfs;
