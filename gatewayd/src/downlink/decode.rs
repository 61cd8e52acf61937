//! `command/down` payloads → `gw.DownlinkFrame`, and the `gw.DownlinkTxAck` answer. Pure
//! functions over bytes.

use chirpstack_api::gw;
use chirpstack_api::prost::Message as _;
use drivers::radio::Eui64;

/// Items accepted in one downlink at most (ChirpStack sends one or two).
pub const MAX_ITEMS: usize = 8;

/// Why a `command/down` payload was rejected (nothing is transmitted or acknowledged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The payload is not a protobuf `gw.DownlinkFrame`.
    #[error("not a protobuf gw.DownlinkFrame ({len} bytes): {reason}")]
    Protobuf {
        /// Payload length.
        len: usize,
        /// The decoder's message.
        reason: String,
    },
    /// The payload is not the JSON mapping of a `gw.DownlinkFrame`.
    #[error("not a JSON gw.DownlinkFrame ({len} bytes): {reason}")]
    Json {
        /// Payload length.
        len: usize,
        /// The decoder's message (names line and column).
        reason: String,
    },
    /// `gateway_id` is not an EUI-64.
    #[error("gateway_id {0:?} is not an EUI-64")]
    BadGatewayId(String),
    /// The command is addressed to another gateway.
    #[error("gateway_id {got} is not this gateway ({ours})")]
    OtherGateway {
        /// The id in the command.
        got: Eui64,
        /// This gateway's id.
        ours: Eui64,
    },
    /// The downlink has no items, or more than [`MAX_ITEMS`].
    #[error("downlink {downlink_id} has {items} items (1..={MAX_ITEMS} expected)")]
    ItemCount {
        /// The downlink id.
        downlink_id: u32,
        /// Number of items.
        items: usize,
    },
}

impl CommandError {
    /// A short stable label (rate-limiting key, metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            CommandError::Protobuf { .. } => "protobuf",
            CommandError::Json { .. } => "json",
            CommandError::BadGatewayId(_) => "bad_gateway_id",
            CommandError::OtherGateway { .. } => "other_gateway",
            CommandError::ItemCount { .. } => "item_count",
        }
    }
}

/// Decode a `command/down` payload (protobuf, or the protobuf JSON mapping when `json`) and
/// check that it is addressed to `gateway` and has a sensible number of items.
pub fn decode_downlink(
    payload: &[u8],
    json: bool,
    gateway: Eui64,
) -> Result<gw::DownlinkFrame, CommandError> {
    let len = payload.len();
    let frame = if json {
        serde_json::from_slice::<gw::DownlinkFrame>(payload).map_err(|e| CommandError::Json {
            len,
            reason: e.to_string(),
        })?
    } else {
        gw::DownlinkFrame::decode(payload).map_err(|e| CommandError::Protobuf {
            len,
            reason: e.to_string(),
        })?
    };
    let got: Eui64 = frame
        .gateway_id
        .parse()
        .map_err(|_| CommandError::BadGatewayId(frame.gateway_id.clone()))?;
    if got != gateway {
        return Err(CommandError::OtherGateway { got, ours: gateway });
    }
    if frame.items.is_empty() || frame.items.len() > MAX_ITEMS {
        return Err(CommandError::ItemCount {
            downlink_id: frame.downlink_id,
            items: frame.items.len(),
        });
    }
    Ok(frame)
}

/// The `gw.DownlinkTxAck` for `frame` with one status per item.
pub fn tx_ack(
    gateway: Eui64,
    frame: &gw::DownlinkFrame,
    statuses: &[gw::TxAckStatus],
) -> gw::DownlinkTxAck {
    gw::DownlinkTxAck {
        gateway_id: gateway.to_string(),
        downlink_id: frame.downlink_id,
        downlink_id_legacy: frame.downlink_id_legacy.clone(),
        items: statuses
            .iter()
            .map(|s| gw::DownlinkTxAckItem {
                status: (*s).into(),
            })
            .collect(),
        ..Default::default()
    }
}
