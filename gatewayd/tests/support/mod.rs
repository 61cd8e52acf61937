//! Shared test harness for gatewayd's integration tests: a real Mosquitto broker and an MQTT
//! subscriber. Use with `mod support;` in a test file.
#![allow(dead_code)]

pub mod mosquitto;
