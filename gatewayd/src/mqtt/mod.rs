//! The MQTT link to the network (ChirpStack v4 gateway protocol over MQTT 3.1.1).
//!
//! Publishes what the [`outbox`](crate::outbox) hands out on
//! `{prefix}/gateway/{id}/event/...` at QoS 1 (the outbox deletes a message on its PUBACK;
//! with `mqtt.qos = 0`, once it is written), keeps `{prefix}/gateway/{id}/state/conn`
//! retained (`gw.ConnState` ONLINE on connect, OFFLINE as the last will and on graceful
//! shutdown), and passes what arrives on `{prefix}/gateway/{id}/command/+` to the daemon as
//! [`Command`]s.
//!
//! - `state.rs`: the pure protocol logic (in-flight window, backoff), tested without I/O;
//! - `options.rs`: rumqttc options (client id, TLS, credentials, last will);
//! - `link.rs`: the async task, which only moves bytes.

mod link;
mod options;
pub mod state;

use std::time::Duration;

use chirpstack_api::gw;
use chirpstack_api::prost::Message as _;
use drivers::radio::Eui64;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::MqttConfig;
use crate::outbox::OutboxHandle;

/// The topic `{prefix}/gateway/{gateway id}/{suffix}`, e.g. suffix `event/up`.
pub fn topic(prefix: &str, gateway: Eui64, suffix: &str) -> String {
    format!("{prefix}/gateway/{gateway}/{suffix}")
}

/// A command from the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The last topic level: `down`, `config`, `exec`, ...
    pub kind: String,
    /// The payload as received (protobuf or JSON, as configured).
    pub payload: Vec<u8>,
}

/// What the link is doing (for status output and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Trying to connect.
    Connecting,
    /// Connected, subscribed and publishing.
    Connected,
    /// Not connected; the next attempt is in `retry_in` (zero after a graceful shutdown).
    Disconnected {
        /// Why.
        reason: String,
        /// When it tries again.
        retry_in: Duration,
    },
}

/// Commands queued for the daemon at most; more are dropped with a warning.
pub const COMMAND_QUEUE: usize = 64;

/// Start the link task. It runs until `shutdown` is cancelled, then stops pulling from the
/// outbox, waits (at most 2 s, `DRAIN_TIMEOUT`) for in-flight PUBACKs, publishes OFFLINE
/// and disconnects.
pub fn spawn(
    config: MqttConfig,
    gateway: Eui64,
    outbox: OutboxHandle,
    shutdown: CancellationToken,
) -> (
    tokio::task::JoinHandle<()>,
    mpsc::Receiver<Command>,
    watch::Receiver<LinkState>,
) {
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    let (state_tx, state_rx) = watch::channel(LinkState::Connecting);
    let task = tokio::spawn(link::run(
        config,
        gateway,
        outbox,
        shutdown,
        commands_tx,
        state_tx,
    ));
    (task, commands_rx, state_rx)
}

/// The `gw.ConnState` payload: protobuf, or its JSON mapping when `json`.
pub fn conn_state_payload(gateway: Eui64, online: bool, json: bool) -> Vec<u8> {
    let state = if online {
        gw::conn_state::State::Online
    } else {
        gw::conn_state::State::Offline
    };
    let msg = gw::ConnState {
        gateway_id: gateway.to_string(),
        state: state.into(),
        ..Default::default()
    };
    if json {
        // Serializing a plain generated message cannot fail; fall back to protobuf anyway.
        serde_json::to_vec(&msg).unwrap_or_else(|_| msg.encode_to_vec())
    } else {
        msg.encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: Eui64 = Eui64([1, 2, 3, 4, 5, 6, 7, 0xab]);

    #[test]
    fn topics_use_the_lowercase_hex_gateway_id() {
        assert_eq!(
            topic("eu868", GW, "event/up"),
            "eu868/gateway/01020304050607ab/event/up"
        );
        assert_eq!(
            topic("a/b", GW, "state/conn"),
            "a/b/gateway/01020304050607ab/state/conn"
        );
    }

    #[test]
    fn conn_state_protobuf_bytes() {
        let mut online = vec![0x10, 0x01, 0x1a, 0x10];
        online.extend_from_slice(b"01020304050607ab");
        assert_eq!(conn_state_payload(GW, true, false), online);
        // OFFLINE is the default enum value: proto3 leaves it out.
        let mut offline = vec![0x1a, 0x10];
        offline.extend_from_slice(b"01020304050607ab");
        assert_eq!(conn_state_payload(GW, false, false), offline);
        let back = gw::ConnState::decode(online.as_slice()).unwrap();
        assert_eq!(back.state(), gw::conn_state::State::Online);
    }

    #[test]
    fn conn_state_json_mapping() {
        let v: serde_json::Value =
            serde_json::from_slice(&conn_state_payload(GW, true, true)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"gatewayId": "01020304050607ab", "state": "ONLINE"})
        );
        let v: serde_json::Value =
            serde_json::from_slice(&conn_state_payload(GW, false, true)).unwrap();
        assert_eq!(v["gatewayId"], "01020304050607ab");
        assert!(v.get("state").is_none() || v["state"] == "OFFLINE", "{v}");
    }
}
