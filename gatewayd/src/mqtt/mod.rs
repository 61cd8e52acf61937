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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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

/// Largest command payload passed on (a `gw.DownlinkFrame` is well under 1 KiB). A larger
/// one is discarded with a counted, rate-limited warning; the connection stays up. With
/// [`COMMAND_QUEUE`] this bounds the queued commands to 4 MiB.
pub const MAX_COMMAND: usize = 64 * 1024;

/// Largest MQTT packet read from the broker. Anything up to this size is read (and, above
/// [`MAX_COMMAND`], discarded); a larger packet ends the connection, because rumqttc cannot
/// skip a packet it refuses to read. Cap what publishers may send at the broker (Mosquitto:
/// `max_packet_size`) to keep hostile commands below it. See docs/operations.md.
pub const MAX_INCOMING_PACKET: usize = 2 * 1024 * 1024;

/// Why a command from the broker was not passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandDrop {
    /// Its payload is larger than [`MAX_COMMAND`].
    Oversized,
    /// The command queue was full.
    QueueFull,
    /// It arrived on a topic that is not `{prefix}/gateway/{id}/command/{kind}`.
    Topic,
    /// Its kind is not one the daemon knows (counted by the command router).
    Unknown,
    /// Its receiver was busy or stopped (counted by the command router).
    Busy,
}

impl CommandDrop {
    /// Every reason, in counter order.
    pub const ALL: [CommandDrop; 5] = [
        CommandDrop::Oversized,
        CommandDrop::QueueFull,
        CommandDrop::Topic,
        CommandDrop::Unknown,
        CommandDrop::Busy,
    ];

    /// The label in status and metrics.
    pub fn name(self) -> &'static str {
        match self {
            CommandDrop::Oversized => "oversized",
            CommandDrop::QueueFull => "queue_full",
            CommandDrop::Topic => "topic",
            CommandDrop::Unknown => "unknown",
            CommandDrop::Busy => "busy",
        }
    }
}

/// What the link counted since start (for status and metrics).
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// Sessions established (CONNACK received).
    pub connections: AtomicU64,
    /// Messages published again on a later connection because their PUBACK never came:
    /// the only messages the broker may have received twice.
    pub resent: AtomicU64,
    /// Commands passed on to the daemon.
    pub commands: AtomicU64,
    dropped: [AtomicU64; 5],
}

impl LinkCounters {
    /// Count a command not passed on.
    pub fn dropped(&self, why: CommandDrop) {
        self.dropped[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Commands not passed on, by reason (every reason, zeros included).
    pub fn dropped_by_reason(&self) -> Vec<(&'static str, u64)> {
        CommandDrop::ALL
            .iter()
            .map(|r| (r.name(), self.dropped[*r as usize].load(Ordering::Relaxed)))
            .collect()
    }
}

/// The running link.
pub struct Spawned {
    /// The link task.
    pub task: tokio::task::JoinHandle<()>,
    /// Commands from the network.
    pub commands: mpsc::Receiver<Command>,
    /// The link's state.
    pub state: watch::Receiver<LinkState>,
    /// Its counters.
    pub counters: Arc<LinkCounters>,
}

/// Start the link task. It runs until `shutdown` is cancelled, then stops pulling from the
/// outbox, waits (at most 2 s, `DRAIN_TIMEOUT`) for in-flight PUBACKs, publishes OFFLINE
/// and disconnects.
pub fn spawn(
    config: MqttConfig,
    gateway: Eui64,
    outbox: OutboxHandle,
    shutdown: CancellationToken,
) -> Spawned {
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let (state_tx, state) = watch::channel(LinkState::Connecting);
    let counters = Arc::new(LinkCounters::default());
    let task = tokio::spawn(link::run(
        config,
        gateway,
        outbox,
        shutdown,
        commands_tx,
        state_tx,
        counters.clone(),
    ));
    Spawned {
        task,
        commands,
        state,
        counters,
    }
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
