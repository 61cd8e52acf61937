//! `command/down` payloads → `gw.DownlinkFrame`, and the `gw.DownlinkTxAck` answer. Pure
//! functions over bytes.
//!
//! The items are counted before the frame is decoded (at the protobuf wire level, or with a
//! JSON pass that keeps nothing per item), so a hostile 10,000-item frame costs no more
//! memory than its payload: it is rejected with [`CommandError::ItemCount`] and, being
//! addressed to this gateway with an id, answered with a [`reject_ack`].

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
    /// The downlink has no items, or more than [`MAX_ITEMS`] (nothing is transmitted; the
    /// network gets a [`reject_ack`]).
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
    // Too many items: decode the frame without them (ids only) to say which one it was.
    let counted = if json {
        json_items(payload)
    } else {
        protobuf_items(payload)
    };
    if let Some((items, header)) = counted.filter(|(n, _)| *n > MAX_ITEMS) {
        let header = addressed(header, gateway)?;
        return Err(CommandError::ItemCount {
            downlink_id: header.downlink_id,
            items,
        });
    }
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
    let frame = addressed(frame, gateway)?;
    if frame.items.is_empty() || frame.items.len() > MAX_ITEMS {
        return Err(CommandError::ItemCount {
            downlink_id: frame.downlink_id,
            items: frame.items.len(),
        });
    }
    Ok(frame)
}

/// `frame` if its gateway id is `gateway`.
fn addressed(frame: gw::DownlinkFrame, gateway: Eui64) -> Result<gw::DownlinkFrame, CommandError> {
    let got: Eui64 = frame
        .gateway_id
        .parse()
        .map_err(|_| CommandError::BadGatewayId(frame.gateway_id.clone()))?;
    if got != gateway {
        return Err(CommandError::OtherGateway { got, ours: gateway });
    }
    Ok(frame)
}

/// The answer to a rejected command that is addressed to `gateway` and names a downlink:
/// one `INTERNAL_ERROR` item, so the network server stops waiting for it. `None` for the
/// other rejections (the sender cannot be told which downlink failed, or it is not ours).
pub fn reject_ack(gateway: Eui64, error: &CommandError) -> Option<gw::DownlinkTxAck> {
    match error {
        CommandError::ItemCount { downlink_id, .. } => {
            let header = gw::DownlinkFrame {
                downlink_id: *downlink_id,
                ..Default::default()
            };
            Some(tx_ack(gateway, &header, &[gw::TxAckStatus::InternalError]))
        }
        _ => None,
    }
}

/// Protobuf field number of `DownlinkFrame.items`.
const ITEMS_FIELD: u64 = 5;

/// The number of `items` in a protobuf `DownlinkFrame` and the frame decoded without them,
/// read at the wire level. `None` when the bytes are not protobuf (the decoder says why).
fn protobuf_items(payload: &[u8]) -> Option<(usize, gw::DownlinkFrame)> {
    fn varint(buf: &[u8], at: &mut usize) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *buf.get(*at)?;
            *at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut at = 0;
    let mut items = 0;
    let mut rest = Vec::new();
    while at < payload.len() {
        let start = at;
        let key = varint(payload, &mut at)?;
        match key & 7 {
            0 => {
                varint(payload, &mut at)?;
            }
            1 => at += 8,
            2 => {
                let len = usize::try_from(varint(payload, &mut at)?).ok()?;
                at = at.checked_add(len)?;
            }
            5 => at += 4,
            _ => return None,
        }
        if at > payload.len() {
            return None;
        }
        if key >> 3 == ITEMS_FIELD {
            items += 1;
        } else {
            rest.extend_from_slice(&payload[start..at]);
        }
    }
    let header = gw::DownlinkFrame::decode(rest.as_slice()).ok()?;
    Some((items, header))
}

/// The same for the JSON mapping: counts `items` without keeping them.
fn json_items(payload: &[u8]) -> Option<(usize, gw::DownlinkFrame)> {
    use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};

    #[derive(Default)]
    struct Count(usize);
    impl<'de> serde::Deserialize<'de> for Count {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Count;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a list of items")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                    let mut n = 0;
                    while seq.next_element::<IgnoredAny>()?.is_some() {
                        n += 1;
                    }
                    Ok(Count(n))
                }
                fn visit_unit<E>(self) -> Result<Count, E> {
                    Ok(Count(0))
                }
            }
            d.deserialize_any(V)
        }
    }
    #[derive(serde::Deserialize)]
    struct Shape {
        #[serde(default)]
        items: Count,
        #[serde(default, alias = "downlink_id", rename = "downlinkId")]
        downlink_id: Option<serde_json::Value>,
        #[serde(default, alias = "gateway_id", rename = "gatewayId")]
        gateway_id: String,
    }
    let shape: Shape = serde_json::from_slice(payload).ok()?;
    let downlink_id = match &shape.downlink_id {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => Some(0),
    }
    .and_then(|v| u32::try_from(v).ok())
    .unwrap_or(0);
    Some((
        shape.items.0,
        gw::DownlinkFrame {
            downlink_id,
            gateway_id: shape.gateway_id,
            ..Default::default()
        },
    ))
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
