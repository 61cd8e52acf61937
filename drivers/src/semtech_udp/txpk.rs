//! Downlink: [`TxRequest`] → `{"txpk":{...}}` (PULL_RESP body), and the TX_ACK body
//! `{"txpk_ack":{...}}` → [`TxStatus`].

use std::fmt::Write;

use base64::Engine;
use serde_json::Value;

use super::datr::{format_lora_codr, format_lora_datr, lora_bw_valid, SF_RANGE};
use super::error::GwmpError;
use super::packet::{Packet, Version};
use super::rxpk::{FREQ_RANGE_HZ, MAX_PAYLOAD};
use crate::radio::{Modulation, TxRequest, TxStatus, TxTiming};

fn unencodable(reason: impl Into<String>) -> GwmpError {
    GwmpError::Unencodable {
        reason: reason.into(),
    }
}

/// The `{"txpk":{...}}` JSON for a request. The frequency is written as `%.6f` MHz from
/// the integer Hz, so it is exact.
pub fn encode_txpk(req: &TxRequest) -> Result<String, GwmpError> {
    if !FREQ_RANGE_HZ.contains(&req.freq_hz) {
        return Err(unencodable(format!(
            "frequency {} Hz out of range",
            req.freq_hz
        )));
    }
    if req.payload.len() > MAX_PAYLOAD {
        return Err(unencodable(format!(
            "payload of {} bytes (at most {MAX_PAYLOAD})",
            req.payload.len()
        )));
    }
    let mut s = String::from("{\"txpk\":{");
    // Writing to a String cannot fail.
    let _ = match req.timing {
        TxTiming::Immediate => write!(s, "\"imme\":true"),
        TxTiming::AtCounter(t) => write!(s, "\"tmst\":{t}"),
        TxTiming::AtGpsTime(d) => write!(s, "\"tmms\":{}", d.as_millis()),
    };
    let _ = write!(
        s,
        ",\"freq\":{}.{:06},\"rfch\":{},\"powe\":{}",
        req.freq_hz / 1_000_000,
        req.freq_hz % 1_000_000,
        req.rf_chain,
        req.power_dbm
    );
    match req.modulation {
        Modulation::Lora { sf, bw_hz, cr } => {
            if !SF_RANGE.contains(&sf) || !lora_bw_valid(bw_hz) {
                return Err(unencodable(format!("LoRa SF{sf} BW {bw_hz} Hz")));
            }
            let codr = match cr {
                None => "4/5",
                Some(cr) => format_lora_codr(cr)
                    .ok_or_else(|| unencodable(format!("LoRa coding rate {cr:?}")))?,
            };
            let _ = write!(
                s,
                ",\"modu\":\"LORA\",\"datr\":\"{}\",\"codr\":\"{codr}\",\"ipol\":{}",
                format_lora_datr(sf, bw_hz),
                req.invert_iq
            );
        }
        Modulation::Fsk { bitrate } => {
            // The forwarder requires fdev; LoRaWAN FSK uses half the bit rate (50 kb/s, 25 kHz).
            let _ = write!(
                s,
                ",\"modu\":\"FSK\",\"datr\":{bitrate},\"fdev\":{}",
                bitrate / 2
            );
        }
        Modulation::LrFhss { .. } => {
            return Err(unencodable("the packet forwarder cannot transmit LR-FHSS"));
        }
    }
    if let Some(p) = req.preamble {
        let _ = write!(s, ",\"prea\":{p}");
    }
    let _ = write!(
        s,
        ",\"size\":{},\"data\":\"{}\"",
        req.payload.len(),
        base64::engine::general_purpose::STANDARD.encode(&req.payload)
    );
    if !req.crc {
        s.push_str(",\"ncrc\":true");
    }
    if req.board != 0 {
        let _ = write!(s, ",\"brd\":{}", req.board);
    }
    if req.antenna != 0 {
        let _ = write!(s, ",\"ant\":{}", req.antenna);
    }
    s.push_str("}}");
    Ok(s)
}

/// A whole PULL_RESP datagram (v1: pass token 0).
pub fn encode_pull_resp(
    version: Version,
    token: u16,
    req: &TxRequest,
) -> Result<Vec<u8>, GwmpError> {
    Ok(Packet::PullResp {
        version,
        token,
        json: encode_txpk(req)?.into_bytes(),
    }
    .to_bytes())
}

/// The status a TX_ACK body reports. An empty body or `NONE` is success; the SX1302
/// `{"warn":"TX_POWER","value":N}` is success (the packet is sent at power N).
pub fn decode_tx_ack(json: &[u8]) -> Result<TxStatus, GwmpError> {
    let end = json.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let body = &json[..end];
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(TxStatus::Ok);
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| GwmpError::BadJson {
        reason: e.to_string(),
    })?;
    let ack = match value.get("txpk_ack") {
        None | Some(Value::Null) if value.is_object() => return Ok(TxStatus::Ok),
        Some(ack @ Value::Object(_)) => ack,
        _ => {
            return Err(GwmpError::BadJson {
                reason: "expected {\"txpk_ack\":{...}}".into(),
            })
        }
    };
    let error = match ack.get("error") {
        None | Some(Value::Null) => return Ok(TxStatus::Ok),
        Some(Value::String(e)) => e.as_str(),
        Some(other) => {
            return Err(GwmpError::BadJson {
                reason: format!("txpk_ack.error is not a string: {other}"),
            })
        }
    };
    Ok(match error {
        "" | "NONE" => TxStatus::Ok,
        "TOO_LATE" => TxStatus::TooLate,
        "TOO_EARLY" => TxStatus::TooEarly,
        "COLLISION_PACKET" => TxStatus::CollisionPacket,
        "COLLISION_BEACON" => TxStatus::CollisionBeacon,
        "TX_FREQ" => TxStatus::TxFreq,
        "TX_POWER" => TxStatus::TxPower,
        "GPS_UNLOCKED" => TxStatus::GpsUnlocked,
        "SEND_LBT" => TxStatus::LbtBusy,
        _ => TxStatus::InternalError,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radio::CodeRate;
    use std::time::Duration;

    fn doc_request() -> TxRequest {
        TxRequest {
            freq_hz: 864_123_456,
            power_dbm: 14,
            modulation: Modulation::Lora {
                sf: 11,
                bw_hz: 125_000,
                cr: Some(CodeRate::Cr46),
            },
            invert_iq: false,
            preamble: None,
            crc: true,
            timing: TxTiming::Immediate,
            rf_chain: 0,
            board: 0,
            antenna: 0,
            payload: (0u8..32).collect(),
        }
    }

    #[test]
    fn doc_example_txpk() {
        assert_eq!(
            encode_txpk(&doc_request()).unwrap(),
            r#"{"txpk":{"imme":true,"freq":864.123456,"rfch":0,"powe":14,"modu":"LORA","datr":"SF11BW125","codr":"4/6","ipol":false,"size":32,"data":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}}"#
        );
    }

    #[test]
    fn timing_options_and_pull_resp_bytes() {
        let mut r = doc_request();
        r.timing = TxTiming::AtCounter(4_000_000_000);
        r.invert_iq = true;
        r.crc = false;
        r.preamble = Some(8);
        r.freq_hz = 869_525_000;
        r.power_dbm = 27;
        r.rf_chain = 1;
        r.payload = vec![0xff];
        let bytes = encode_pull_resp(Version::V2, 0xbeef, &r).unwrap();
        assert_eq!(&bytes[..4], &[2, 0xbe, 0xef, 0x03]);
        let json: Value = serde_json::from_slice(&bytes[4..]).unwrap();
        let t = &json["txpk"];
        assert_eq!(t["tmst"], 4_000_000_000u64);
        assert!(t.get("imme").is_none());
        assert_eq!(t["freq"].as_f64(), Some(869.525));
        assert_eq!(t["ipol"], true);
        assert_eq!(t["ncrc"], true);
        assert_eq!(t["prea"], 8);
        assert_eq!(t["powe"], 27);
        assert_eq!(t["rfch"], 1);
        assert_eq!(t["size"], 1);
        assert_eq!(t["data"], "/w==");
        assert!(String::from_utf8_lossy(&bytes).contains("\"freq\":869.525000,"));

        r.timing = TxTiming::AtGpsTime(Duration::from_millis(1_300_000_000_456));
        let json: Value = serde_json::from_str(&encode_txpk(&r).unwrap()).unwrap();
        assert_eq!(json["txpk"]["tmms"], 1_300_000_000_456u64);

        r.modulation = Modulation::Fsk { bitrate: 50_000 };
        let json: Value = serde_json::from_str(&encode_txpk(&r).unwrap()).unwrap();
        assert_eq!(json["txpk"]["modu"], "FSK");
        assert_eq!(json["txpk"]["datr"], 50_000);
        assert_eq!(json["txpk"]["fdev"], 25_000);
        assert_eq!(
            encode_pull_resp(Version::V1, 0, &r).unwrap()[..4],
            [1, 0, 0, 3]
        );
    }

    #[test]
    fn unencodable_requests() {
        let mut r = doc_request();
        r.payload = vec![0; 256];
        assert!(matches!(
            encode_txpk(&r),
            Err(GwmpError::Unencodable { .. })
        ));
        let mut r = doc_request();
        r.modulation = Modulation::LrFhss {
            ocw_hz: 137_000,
            cr: CodeRate::Cr13,
            grid_steps: 52,
        };
        assert!(matches!(
            encode_txpk(&r),
            Err(GwmpError::Unencodable { .. })
        ));
        let mut r = doc_request();
        r.freq_hz = 50_000_000;
        assert!(matches!(
            encode_txpk(&r),
            Err(GwmpError::Unencodable { .. })
        ));
    }

    #[test]
    fn tx_ack_statuses() {
        for (body, status) in [
            ("", TxStatus::Ok),
            ("{}", TxStatus::Ok),
            (r#"{"txpk_ack":{"error":"NONE"}}"#, TxStatus::Ok),
            (r#"{"txpk_ack":{"error":"TOO_LATE"}}"#, TxStatus::TooLate),
            (r#"{"txpk_ack":{"error":"TOO_EARLY"}}"#, TxStatus::TooEarly),
            (
                r#"{"txpk_ack":{"error":"COLLISION_PACKET"}}"#,
                TxStatus::CollisionPacket,
            ),
            (
                r#"{"txpk_ack":{"error":"COLLISION_BEACON"}}"#,
                TxStatus::CollisionBeacon,
            ),
            (r#"{"txpk_ack":{"error":"TX_FREQ"}}"#, TxStatus::TxFreq),
            (r#"{"txpk_ack":{"error":"TX_POWER"}}"#, TxStatus::TxPower),
            (
                r#"{"txpk_ack":{"warn":"TX_POWER","value":20}}"#,
                TxStatus::Ok,
            ),
            (
                r#"{"txpk_ack":{"error":"GPS_UNLOCKED"}}"#,
                TxStatus::GpsUnlocked,
            ),
            (r#"{"txpk_ack":{"error":"SEND_LBT"}}"#, TxStatus::LbtBusy),
            (
                r#"{"txpk_ack":{"error":"SEND_FAIL"}}"#,
                TxStatus::InternalError,
            ),
            (
                r#"{"txpk_ack":{"error":"UNKNOWN"}}"#,
                TxStatus::InternalError,
            ),
            (
                r#"{"txpk_ack":{"error":"WHATEVER"}}"#,
                TxStatus::InternalError,
            ),
            (
                "{\"txpk_ack\":{\"error\":\"TOO_LATE\"}}\0",
                TxStatus::TooLate,
            ),
        ] {
            assert_eq!(decode_tx_ack(body.as_bytes()).unwrap(), status, "{body}");
        }
        for bad in [
            "{",
            "[]",
            r#"{"txpk_ack":3}"#,
            r#"{"txpk_ack":{"error":5}}"#,
        ] {
            assert!(
                matches!(
                    decode_tx_ack(bad.as_bytes()),
                    Err(GwmpError::BadJson { .. })
                ),
                "{bad}"
            );
        }
    }
}
