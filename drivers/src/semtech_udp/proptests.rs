//! Property tests of the codec: no input panics it, framing round-trips, and frequencies
//! survive the MHz text form exactly in both directions.

use proptest::prelude::*;

use super::*;
use crate::radio::{CodeRate, Eui64, Modulation, TxRequest, TxTiming};

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V1), Just(Version::V2)]
}

fn packet() -> impl Strategy<Value = Packet> {
    let json = proptest::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        (version(), any::<u16>(), any::<[u8; 8]>(), json.clone()).prop_map(
            |(version, token, e, json)| {
                Packet::PushData {
                    version,
                    token,
                    gateway: Eui64(e),
                    json,
                }
            }
        ),
        (version(), any::<u16>()).prop_map(|(version, token)| Packet::PushAck { version, token }),
        (version(), any::<u16>(), any::<[u8; 8]>()).prop_map(|(version, token, e)| {
            Packet::PullData {
                version,
                token,
                gateway: Eui64(e),
            }
        }),
        (version(), any::<u16>(), json.clone()).prop_map(|(version, token, json)| {
            Packet::PullResp {
                version,
                token,
                json,
            }
        }),
        (version(), any::<u16>()).prop_map(|(version, token)| Packet::PullAck { version, token }),
        (version(), any::<u16>(), any::<[u8; 8]>(), json).prop_map(|(version, token, e, json)| {
            // A TX_ACK body is empty or a JSON object: that is how the 12-byte header form is
            // told apart from the v3.0.0-doc form with JSON at byte 4.
            let json = if json.is_empty() {
                json
            } else {
                [b"{".as_slice(), &json].concat()
            };
            Packet::TxAck {
                version,
                token,
                gateway: Some(Eui64(e)),
                json,
            }
        }),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(p) = Packet::parse(&bytes) {
            prop_assert_eq!(p.to_bytes(), bytes.clone());
        }
        let _ = decode_push_data(&bytes);
        let _ = decode_tx_ack(&bytes);
    }

    #[test]
    fn framing_round_trips(p in packet()) {
        prop_assert_eq!(Packet::parse(&p.to_bytes()).unwrap(), p);
    }

    #[test]
    fn rxpk_frequency_is_exact(hz in 100_000_000u64..=3_000_000_000) {
        let text = format!("{:.6}", hz as f64 / 1e6);
        let json = format!(
            r#"{{"rxpk":[{{"tmst":1,"freq":{text},"stat":1,"datr":"SF7BW125","rssi":-1,"data":""}}]}}"#
        );
        let p = decode_push_data(json.as_bytes()).unwrap();
        prop_assert_eq!(p.frames[0].meta.freq_hz, hz);
    }

    #[test]
    fn txpk_frequency_is_exact(hz in 100_000_000u64..=3_000_000_000, sf in 5u8..=12) {
        let req = TxRequest {
            freq_hz: hz,
            power_dbm: 14,
            modulation: Modulation::Lora { sf, bw_hz: 125_000, cr: Some(CodeRate::Cr45) },
            invert_iq: true,
            preamble: None,
            crc: false,
            timing: TxTiming::Immediate,
            rf_chain: 0,
            board: 0,
            antenna: 0,
            payload: vec![1],
        };
        let v: serde_json::Value = serde_json::from_str(&encode_txpk(&req).unwrap()).unwrap();
        prop_assert_eq!(mhz_to_hz(v["txpk"]["freq"].as_f64().unwrap()), Some(hz));
        let datr = v["txpk"]["datr"].as_str().unwrap();
        prop_assert_eq!(parse_lora_datr(datr), Some((sf, 125_000)));
    }
}

#[test]
fn tx_ack_with_an_eui_starting_with_a_brace_keeps_its_header() {
    let mut buf = vec![2, 0x12, 0x34, 0x05, b'{', 1, 2, 3, 4, 5, 6, 7];
    let p = Packet::parse(&buf).unwrap();
    assert!(
        matches!(p, Packet::TxAck { gateway: Some(Eui64([b'{', 1, 2, 3, 4, 5, 6, 7])), ref json, .. } if json.is_empty())
    );
    buf.extend_from_slice(br#"{"txpk_ack":{"error":"NONE"}}"#);
    assert!(
        matches!(Packet::parse(&buf).unwrap(), Packet::TxAck { gateway: Some(_), ref json, .. } if json.len() == 29)
    );
    // The v3.0.0-doc form: JSON right after byte 4.
    let v3 = [&[2u8, 0, 1, 5][..], br#"{"txpk_ack":{"error":"TOO_LATE"}}"#].concat();
    assert!(matches!(
        Packet::parse(&v3).unwrap(),
        Packet::TxAck { gateway: None, .. }
    ));
}
