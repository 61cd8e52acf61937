//! The PUSH_DATA JSON body: `{"rxpk":[...],"stat":{...}}`. A body that is not such an
//! object is rejected whole; within it each rxpk entry (and the stat) stands alone, so one
//! bad entry does not drop its neighbours.

use serde_json_borrow::Value;

use super::error::GwmpError;
use super::rxpk::decode_rxpk;
use super::stat::decode_stat;
use crate::radio::{RadioStats, RxFrame};

/// Most rxpk entries accepted in one datagram (the forwarder sends at most 8).
pub const MAX_RXPK: usize = 256;

/// A decoded PUSH_DATA body.
#[derive(Debug, Default)]
pub struct PushData {
    /// Frames of the good rxpk entries, in order (an `rsig` entry yields one per signal).
    pub frames: Vec<RxFrame>,
    /// Why each bad rxpk entry (or the stat object) was rejected.
    pub rejected: Vec<GwmpError>,
    /// Number of rxpk entries in the datagram.
    pub rxpk_count: usize,
    /// The stat object, when present and valid.
    pub stats: Option<RadioStats>,
}

/// Decode a PUSH_DATA JSON body.
pub fn decode_push_data(json: &[u8]) -> Result<PushData, GwmpError> {
    // Some forwarders NUL-terminate the JSON.
    let end = json.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let value: Value = serde_json::from_slice(&json[..end]).map_err(|e| GwmpError::BadJson {
        reason: e.to_string(),
    })?;
    let Value::Object(obj) = value else {
        return Err(GwmpError::BadJson {
            reason: "the body is not a JSON object".into(),
        });
    };
    let mut out = PushData::default();
    match obj.get("rxpk") {
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) => {
            if entries.len() > MAX_RXPK {
                return Err(GwmpError::TooManyRxpk {
                    count: entries.len(),
                });
            }
            out.rxpk_count = entries.len();
            for (i, entry) in entries.iter().enumerate() {
                match decode_rxpk(i, entry) {
                    Ok(frames) => out.frames.extend(frames),
                    Err(e) => out.rejected.push(e),
                }
            }
        }
        Some(_) => {
            return Err(GwmpError::BadJson {
                reason: "\"rxpk\" is not an array".into(),
            })
        }
    }
    match obj.get("stat") {
        None | Some(Value::Null) => {}
        Some(stat) => match decode_stat(stat) {
            Ok(s) => out.stats = Some(s),
            Err(e) => out.rejected.push(e),
        },
    }
    Ok(out)
}

#[cfg(test)]
#[path = "push_data_tests.rs"]
mod tests;
