//! Conversions between the radio types and the ChirpStack v4 `gw` messages, and their
//! encoding (binary protobuf, or the protobuf JSON mapping). Pure functions.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use chirpstack_api::common;
use chirpstack_api::gw;
use chirpstack_api::pbjson_types;
use drivers::radio::{CodeRate, CrcStatus, Eui64, Modulation, RxFrame};

use crate::position::{LocationSource, SourcedLocation};

/// Encode a message as protobuf, or as its JSON mapping when `json`.
pub fn encode<M>(msg: &M, json: bool) -> Vec<u8>
where
    M: chirpstack_api::prost::Message + serde::Serialize,
{
    if json {
        // Serializing generated messages to JSON cannot fail (no maps with non-string keys
        // that serde_json rejects: pbjson renders them as strings).
        serde_json::to_vec(msg).unwrap_or_default()
    } else {
        msg.encode_to_vec()
    }
}

/// A protobuf timestamp.
pub fn timestamp(t: SystemTime) -> pbjson_types::Timestamp {
    let d = drivers::time::since_unix_epoch(t);
    pbjson_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// A protobuf duration.
pub fn duration(d: Duration) -> pbjson_types::Duration {
    pbjson_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn code_rate(cr: Option<CodeRate>) -> gw::CodeRate {
    match cr {
        Some(CodeRate::Cr45) => gw::CodeRate::Cr45,
        Some(CodeRate::Cr46) => gw::CodeRate::Cr46,
        Some(CodeRate::Cr47) => gw::CodeRate::Cr47,
        Some(CodeRate::Cr48) => gw::CodeRate::Cr48,
        Some(CodeRate::Cr13) => gw::CodeRate::Cr26,
        Some(CodeRate::Cr23) => gw::CodeRate::Cr46,
        Some(CodeRate::Off) | None => gw::CodeRate::CrUndefined,
    }
}

/// The `gw.Modulation` of a radio modulation; `inverted` is the IQ polarization.
pub fn modulation(m: &Modulation, inverted: bool) -> gw::Modulation {
    use gw::modulation::Parameters;
    let parameters = match *m {
        Modulation::Lora { sf, bw_hz, cr } => Parameters::Lora(gw::LoraModulationInfo {
            bandwidth: bw_hz,
            spreading_factor: u32::from(sf),
            code_rate: code_rate(cr).into(),
            polarization_inversion: inverted,
            ..Default::default()
        }),
        Modulation::Fsk { bitrate } => Parameters::Fsk(gw::FskModulationInfo {
            datarate: bitrate,
            ..Default::default()
        }),
        Modulation::LrFhss {
            ocw_hz,
            cr,
            grid_steps,
        } => Parameters::LrFhss(gw::LrFhssModulationInfo {
            operating_channel_width: ocw_hz,
            code_rate: code_rate(Some(cr)).into(),
            grid_steps,
            ..Default::default()
        }),
    };
    gw::Modulation {
        parameters: Some(parameters),
    }
}

/// The `common.Location` of a sourced location.
pub fn location(l: &SourcedLocation) -> common::Location {
    common::Location {
        latitude: l.location.latitude,
        longitude: l.location.longitude,
        altitude: l.location.altitude,
        source: match l.source {
            LocationSource::Gps => common::LocationSource::Gps,
            LocationSource::Config => common::LocationSource::Config,
        }
        .into(),
        accuracy: 0.0,
    }
}

/// The opaque scheduling context for a frame: the concentrator counter, 4 bytes big-endian,
/// as the reference forwarder does (the network echoes it in `DownlinkTxInfo.context`).
pub fn context(tmst: u32) -> Vec<u8> {
    tmst.to_be_bytes().to_vec()
}

/// The counter in a context produced by [`context`].
pub fn counter_from_context(ctx: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = ctx.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// Build the `UplinkFrame` a ChirpStack network server expects for one received frame.
pub fn uplink_frame(
    gateway: Eui64,
    frame: &RxFrame,
    uplink_id: u32,
    loc: Option<&SourcedLocation>,
) -> gw::UplinkFrame {
    let m = &frame.meta;
    let mut metadata = HashMap::new();
    if let Some(rssi) = m.signal_rssi {
        metadata.insert("rssis".to_string(), rssi.to_string());
    }
    if let Some(foff) = m.freq_offset_hz {
        metadata.insert("foff".to_string(), foff.to_string());
    }
    let fine_time_since_gps_epoch = match (m.gps_time, m.fine_time_ns) {
        (Some(gps), Some(ns)) => Some(duration(
            Duration::from_secs(gps.as_secs()) + Duration::from_nanos(u64::from(ns)),
        )),
        _ => None,
    };
    gw::UplinkFrame {
        phy_payload: frame.payload.clone(),
        tx_info: Some(gw::UplinkTxInfo {
            frequency: u32::try_from(m.freq_hz).unwrap_or(u32::MAX),
            modulation: Some(modulation(&m.modulation, false)),
        }),
        rx_info: Some(gw::UplinkRxInfo {
            gateway_id: gateway.to_string(),
            uplink_id,
            gw_time: m.time.map(timestamp),
            ns_time: None,
            time_since_gps_epoch: m.gps_time.map(duration),
            fine_time_since_gps_epoch,
            rssi: m.rssi,
            snr: m.snr.unwrap_or(0.0),
            channel: m.channel,
            rf_chain: m.rf_chain,
            board: m.board,
            antenna: m.antenna,
            location: loc.map(location),
            context: context(m.tmst),
            metadata,
            crc_status: match m.crc {
                CrcStatus::Ok => gw::CrcStatus::CrcOk,
                CrcStatus::Bad => gw::CrcStatus::BadCrc,
                CrcStatus::Missing => gw::CrcStatus::NoCrc,
            }
            .into(),
        }),
        ..Default::default()
    }
}

/// The retained connection-state message.
pub fn conn_state(gateway: Eui64, online: bool) -> gw::ConnState {
    gw::ConnState {
        gateway_id: gateway.to_string(),
        state: if online {
            gw::conn_state::State::Online
        } else {
            gw::conn_state::State::Offline
        }
        .into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use chirpstack_api::prost::Message as _;
    use drivers::radio::RxMeta;

    use super::*;
    use crate::config::Location;

    fn frame() -> RxFrame {
        RxFrame {
            payload: vec![
                0x40, 4, 3, 2, 1, 0x80, 1, 0, 1, 0xa6, 0x94, 0x64, 0x26, 0x15, 0xd6, 0xc3, 0xb5,
                0x82,
            ],
            meta: RxMeta {
                freq_hz: 866_349_812,
                modulation: Modulation::Lora {
                    sf: 7,
                    bw_hz: 125_000,
                    cr: Some(CodeRate::Cr46),
                },
                tmst: 3_512_348_611,
                time: Some(UNIX_EPOCH + Duration::new(1_364_746_877, 528_002_000)),
                gps_time: Some(Duration::from_millis(1_048_782_095_528)),
                fine_time_ns: Some(528_002_123),
                channel: 2,
                rf_chain: 0,
                board: 0,
                antenna: 1,
                rssi: -35,
                signal_rssi: Some(-36),
                snr: Some(5.1),
                freq_offset_hz: Some(-120),
                crc: CrcStatus::Ok,
            },
        }
    }

    #[test]
    fn uplink_frame_carries_all_metadata() {
        let gw_id: Eui64 = "0102030405060708".parse().unwrap();
        let loc = SourcedLocation {
            location: Location {
                latitude: 52.1,
                longitude: 4.3,
                altitude: 12.0,
            },
            source: LocationSource::Config,
        };
        let up = uplink_frame(gw_id, &frame(), 77, Some(&loc));
        let bytes = encode(&up, false);
        let back = gw::UplinkFrame::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, up);
        let tx = back.tx_info.unwrap();
        assert_eq!(tx.frequency, 866_349_812);
        match tx.modulation.unwrap().parameters.unwrap() {
            gw::modulation::Parameters::Lora(l) => {
                assert_eq!((l.spreading_factor, l.bandwidth), (7, 125_000));
                assert_eq!(l.code_rate(), gw::CodeRate::Cr46);
                assert!(!l.polarization_inversion);
            }
            other => panic!("not LoRa: {other:?}"),
        }
        let rx = back.rx_info.unwrap();
        assert_eq!(rx.gateway_id, "0102030405060708");
        assert_eq!(rx.uplink_id, 77);
        assert_eq!(rx.rssi, -35);
        assert!((rx.snr - 5.1).abs() < 1e-6);
        assert_eq!(rx.channel, 2);
        assert_eq!(rx.antenna, 1);
        assert_eq!(counter_from_context(&rx.context), Some(3_512_348_611));
        assert_eq!(rx.gw_time.unwrap().seconds, 1_364_746_877);
        assert_eq!(rx.time_since_gps_epoch.unwrap().seconds, 1_048_782_095);
        assert_eq!(rx.fine_time_since_gps_epoch.unwrap().nanos, 528_002_123);
        assert_eq!(rx.crc_status(), gw::CrcStatus::CrcOk);
        assert_eq!(
            rx.location.unwrap().source(),
            common::LocationSource::Config
        );
        assert_eq!(rx.metadata.get("rssis").map(String::as_str), Some("-36"));
    }

    #[test]
    fn json_mapping_uses_camel_case() {
        let gw_id: Eui64 = "0102030405060708".parse().unwrap();
        let up = uplink_frame(gw_id, &frame(), 1, None);
        let v: serde_json::Value = serde_json::from_slice(&encode(&up, true)).unwrap();
        assert_eq!(v["rxInfo"]["gatewayId"], "0102030405060708");
        assert_eq!(v["txInfo"]["frequency"], 866_349_812);
        assert_eq!(v["rxInfo"]["crcStatus"], "CRC_OK");
        assert!(v["phyPayload"].is_string());
    }

    #[test]
    fn fsk_and_lr_fhss_modulations() {
        match modulation(&Modulation::Fsk { bitrate: 50_000 }, false)
            .parameters
            .unwrap()
        {
            gw::modulation::Parameters::Fsk(f) => assert_eq!(f.datarate, 50_000),
            other => panic!("{other:?}"),
        }
        let m = Modulation::LrFhss {
            ocw_hz: 137_000,
            cr: CodeRate::Cr13,
            grid_steps: 52,
        };
        match modulation(&m, false).parameters.unwrap() {
            gw::modulation::Parameters::LrFhss(f) => {
                assert_eq!((f.operating_channel_width, f.grid_steps), (137_000, 52));
                assert_eq!(f.code_rate(), gw::CodeRate::Cr26);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn conn_state_and_short_context() {
        let gw_id: Eui64 = "0102030405060708".parse().unwrap();
        let on = conn_state(gw_id, true);
        assert_eq!(on.state(), gw::conn_state::State::Online);
        assert_eq!(
            conn_state(gw_id, false).state(),
            gw::conn_state::State::Offline
        );
        assert_eq!(counter_from_context(&[1, 2]), None);
    }
}
