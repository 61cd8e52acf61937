//! One `rxpk` entry → [`RxFrame`]s: every field of the Semtech and SX1302 docs, and the
//! multi-antenna `rsig` shape (one frame per signal, as the ChirpStack bridge does).

use std::time::Duration;

use base64::Engine;
use serde_json_borrow::Value;

use super::datr;
use super::error::GwmpError;
use super::fields::Fields;
use super::time::parse_iso8601;
use crate::radio::{CrcStatus, Modulation, RxFrame, RxMeta};

/// Accepted receive frequencies: 100 MHz … 3 GHz.
pub const FREQ_RANGE_HZ: std::ops::RangeInclusive<u64> = 100_000_000..=3_000_000_000;
/// Accepted RSSI range in dBm.
pub const RSSI_RANGE: (i64, i64) = (-200, 20);
/// Accepted SNR range in dB.
pub const SNR_RANGE: (f64, f64) = (-50.0, 50.0);
/// Largest LoRa PHY payload.
pub const MAX_PAYLOAD: usize = 255;

/// Base64 with the standard alphabet; padding optional.
pub(crate) const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// MHz float → Hz, exact for the forwarder's 6 decimals (866.349812 → 866349812).
pub fn mhz_to_hz(mhz: f64) -> Option<u64> {
    let hz = (mhz * 1e6).round();
    if hz.is_finite() && hz >= 0.0 && hz <= u64::MAX as f64 {
        Some(hz as u64)
    } else {
        None
    }
}

fn modulation(f: &Fields) -> Result<Modulation, GwmpError> {
    let modu = f.str("modu")?;
    let datr = f.req("datr", f.get("datr"))?;
    let codr = f.str("codr")?.filter(|s| !s.is_empty());
    let m = if let Some(bitrate) = datr.as_u64() {
        if bitrate == 0 || bitrate > 1_000_000 {
            return Err(f.out_of_range("datr", bitrate));
        }
        Modulation::Fsk {
            bitrate: bitrate as u32,
        }
    } else if let Some(s) = datr.as_str() {
        if let Some(ocw_hz) = datr::parse_lr_fhss_datr(s) {
            if !(100_000..=2_000_000).contains(&ocw_hz) {
                return Err(f.out_of_range("datr", s));
            }
            let cr = match codr {
                Some(c) => datr::parse_lr_fhss_codr(c).ok_or_else(|| {
                    f.bad(
                        "codr",
                        format!(
                            "{c:?} is not an LR-FHSS coding rate (1/3, 2/3, 1/2, or 2/6, 4/6, 4/8)"
                        ),
                    )
                })?,
                None => return Err(f.missing("codr")),
            };
            let grid_steps = f.u32("hpw")?.unwrap_or(0);
            Modulation::LrFhss {
                ocw_hz,
                cr,
                grid_steps,
            }
        } else if let Some((sf, bw_hz)) = datr::parse_lora_datr(s) {
            if !datr::SF_RANGE.contains(&sf) || !datr::lora_bw_valid(bw_hz) {
                return Err(f.out_of_range("datr", s));
            }
            let cr = match codr {
                Some(datr::UNKNOWN_CODR) | None => None,
                Some(c) => Some(
                    datr::parse_lora_codr(c)
                        .ok_or_else(|| f.bad("codr", format!("{c:?} is not a coding rate")))?,
                ),
            };
            Modulation::Lora { sf, bw_hz, cr }
        } else {
            return Err(f.bad("datr", format!("{s:?} is not SFxBWy or M0CWx")));
        }
    } else {
        return Err(f.bad("datr", format!("expected a string or bit rate, got {datr}")));
    };
    let consistent = matches!(
        (modu, &m),
        (None, _)
            | (Some("LORA"), Modulation::Lora { .. })
            | (Some("FSK"), Modulation::Fsk { .. })
            | (Some("LR-FHSS" | "LRFHSS"), Modulation::LrFhss { .. })
    );
    if !consistent {
        return Err(f.bad("modu", format!("{modu:?} does not match datr {datr}")));
    }
    Ok(m)
}

fn rssi(f: &Fields, field: &str) -> Result<Option<i32>, GwmpError> {
    Ok(f.int_in(field, RSSI_RANGE.0, RSSI_RANGE.1)?
        .map(|i| i as i32))
}

fn snr(f: &Fields, field: &str) -> Result<Option<f32>, GwmpError> {
    match f.f64(field)? {
        Some(s) if !(SNR_RANGE.0..=SNR_RANGE.1).contains(&s) => Err(f.out_of_range(field, s)),
        other => Ok(other.map(|s| s as f32)),
    }
}

fn foff(f: &Fields) -> Result<Option<i32>, GwmpError> {
    Ok(f.int_in("foff", -1_000_000, 1_000_000)?.map(|i| i as i32))
}

fn payload(f: &Fields) -> Result<Vec<u8>, GwmpError> {
    let data = f.req("data", f.str("data")?)?;
    if data.len() > 4 * MAX_PAYLOAD.div_ceil(3) + 4 {
        return Err(f.out_of_range("data", format!("{} base64 characters", data.len())));
    }
    let bytes = BASE64
        .decode(data.trim())
        .map_err(|_| GwmpError::BadBase64 { index: f.index() })?;
    if bytes.len() > MAX_PAYLOAD {
        return Err(f.out_of_range("data", format!("{} bytes", bytes.len())));
    }
    if let Some(size) = f.i64("size")? {
        if !(0..=MAX_PAYLOAD as i64).contains(&size) {
            return Err(f.out_of_range("size", size));
        }
        if size as usize != bytes.len() {
            return Err(GwmpError::SizeMismatch {
                index: f.index(),
                size: size as u64,
                actual: bytes.len(),
            });
        }
    }
    Ok(bytes)
}

/// Decode the rxpk entry at position `index` into one frame (or one per `rsig` signal).
pub fn decode_rxpk<'a>(index: usize, value: &'a Value<'a>) -> Result<Vec<RxFrame>, GwmpError> {
    let f = Fields::new(value, index, String::new())?;
    let freq = f.req("freq", f.f64("freq")?)?;
    let freq_hz = match mhz_to_hz(freq) {
        Some(hz) if FREQ_RANGE_HZ.contains(&hz) => hz,
        _ => return Err(f.out_of_range("freq", freq)),
    };
    let tmst = f.req("tmst", f.u32("tmst")?)?;
    let time = match f.str("time")? {
        Some(s) => Some(parse_iso8601(s).map_err(|e| f.bad("time", e.to_string()))?),
        None => None,
    };
    let gps_time = f
        .int_in("tmms", 0, i64::MAX)?
        .map(|ms| Duration::from_millis(ms as u64));
    let fine_time_ns = match f.u32("ftime")? {
        Some(ns) if ns > 999_999_999 => return Err(f.out_of_range("ftime", ns)),
        other => other,
    };
    let crc = match f.req("stat", f.i64("stat")?)? {
        1 => CrcStatus::Ok,
        -1 => CrcStatus::Bad,
        0 => CrcStatus::Missing,
        other => return Err(f.out_of_range("stat", other)),
    };
    let modulation = modulation(&f)?;
    // `mid` (SX1302 modem id) has no place in RxMeta; it is only type-checked.
    f.u32("mid")?;
    let payload = payload(&f)?;
    let base = RxMeta {
        freq_hz,
        modulation,
        tmst,
        time,
        gps_time,
        fine_time_ns,
        channel: f.u32("chan")?.unwrap_or(0),
        rf_chain: f.u32("rfch")?.unwrap_or(0),
        board: f.u32("brd")?.unwrap_or(0),
        antenna: f.u32("ant")?.unwrap_or(0),
        rssi: 0,
        signal_rssi: None,
        snr: None,
        freq_offset_hz: None,
        crc,
    };
    match f.get("rsig") {
        None => {
            let meta = RxMeta {
                rssi: f.req("rssi", rssi(&f, "rssi")?)?,
                signal_rssi: rssi(&f, "rssis")?,
                snr: snr(&f, "lsnr")?,
                freq_offset_hz: foff(&f)?,
                ..base
            };
            Ok(vec![RxFrame { payload, meta }])
        }
        Some(Value::Array(signals)) if !signals.is_empty() && signals.len() <= 64 => signals
            .iter()
            .enumerate()
            .map(|(i, sig)| {
                let s = Fields::new(sig, index, format!("rsig[{i}]."))?;
                let meta = RxMeta {
                    antenna: s.u32("ant")?.unwrap_or(0),
                    channel: s.u32("chan")?.unwrap_or(base.channel),
                    rssi: s.req("rssic", rssi(&s, "rssic")?)?,
                    signal_rssi: rssi(&s, "rssis")?,
                    snr: snr(&s, "lsnr")?,
                    freq_offset_hz: foff(&s)?,
                    ..base.clone()
                };
                Ok(RxFrame {
                    payload: payload.clone(),
                    meta,
                })
            })
            .collect(),
        Some(other) => Err(f.bad(
            "rsig",
            format!("expected an array of 1..=64 signals, got {other}"),
        )),
    }
}
