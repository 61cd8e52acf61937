//! The `datr` and `codr` strings: `"SF7BW125"`, LR-FHSS `"M0CW137"`, `"4/5"`, `"OFF"`.

use crate::radio::CodeRate;

/// Spreading factors a LoRa concentrator can report (SX1302 adds 5 and 6).
pub const SF_RANGE: std::ops::RangeInclusive<u8> = 5..=12;

/// Whether `bw_hz` is a LoRa bandwidth (7.8 kHz … 500 kHz, or the 2.4 GHz 1.6 MHz).
pub fn lora_bw_valid(bw_hz: u32) -> bool {
    (7_800..=500_000).contains(&bw_hz) || bw_hz == 1_600_000 || bw_hz == 1_625_000
}

/// kHz with up to three decimals (`"125"`, `"7.8"`, `"31.25"`) → Hz.
fn khz_to_hz(s: &str) -> Option<u32> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty()
        || int.len() > 6
        || frac.len() > 3
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let int: u32 = int.parse().ok()?;
    let mut frac_hz = 0u32;
    for (i, b) in frac.bytes().enumerate() {
        frac_hz += u32::from(b - b'0') * 10u32.pow(2 - i as u32);
    }
    int.checked_mul(1000)?.checked_add(frac_hz)
}

/// Hz → kHz text without trailing zeros (`125000` → `"125"`, `7800` → `"7.8"`).
pub fn hz_to_khz(hz: u32) -> String {
    let (int, frac) = (hz / 1000, hz % 1000);
    if frac == 0 {
        int.to_string()
    } else {
        let f = format!("{frac:03}");
        format!("{int}.{}", f.trim_end_matches('0'))
    }
}

/// `"SF7BW125"` → (7, 125_000). Ranges are not checked here.
pub fn parse_lora_datr(s: &str) -> Option<(u8, u32)> {
    let rest = s.strip_prefix("SF")?;
    let (sf, bw) = rest.split_once("BW")?;
    if sf.is_empty() || sf.len() > 2 || !sf.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((sf.parse().ok()?, khz_to_hz(bw)?))
}

/// (7, 125_000) → `"SF7BW125"`.
pub fn format_lora_datr(sf: u8, bw_hz: u32) -> String {
    format!("SF{sf}BW{}", hz_to_khz(bw_hz))
}

/// LR-FHSS `"M0CW137"` (operating channel width in kHz) → OCW in Hz.
pub fn parse_lr_fhss_datr(s: &str) -> Option<u32> {
    let khz = s.strip_prefix("M0CW")?;
    if khz.is_empty() || !khz.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    khz.parse::<u32>().ok()?.checked_mul(1000)
}

/// A LoRa coding rate: `"4/5"`…`"4/8"`, the aliases `"2/3"` (4/6), `"1/2"` and `"2/4"`
/// (4/8), and `"OFF"` (the SX1301/SX1302 forwarders' CR0 false sync).
///
/// The alias table is the one ChirpStack's MQTT forwarder accepts from the forwarders it
/// fronts (`src/backend/semtech_udp/structs.rs`, `impl Deserialize for CodeRate`).
pub fn parse_lora_codr(s: &str) -> Option<CodeRate> {
    Some(match s {
        "4/5" => CodeRate::Cr45,
        "4/6" | "2/3" => CodeRate::Cr46,
        "4/7" => CodeRate::Cr47,
        "4/8" | "1/2" | "2/4" => CodeRate::Cr48,
        "OFF" | "off" => CodeRate::Off,
        _ => return None,
    })
}

/// The `codr` the Semtech reference forwarders write when the concentrator reported a
/// coding rate they have no text for (`lora_pkt_fwd.c`: `"codr":"?"`). The frame itself is
/// good; its coding rate is unknown.
pub const UNKNOWN_CODR: &str = "?";

/// An LR-FHSS coding rate, in either spelling real forwarders use: the reduced fraction
/// (`"1/3"`, `"2/3"`, `"1/2"`) or the LoRa-style `x/6`, `4/x` form (`"2/6"`, `"4/6"`,
/// `"4/8"`, `"2/4"`). 1/2 is reported as [`CodeRate::Cr48`], as ChirpStack's `CR_4_8`.
pub fn parse_lr_fhss_codr(s: &str) -> Option<CodeRate> {
    Some(match s {
        "1/3" | "2/6" => CodeRate::Cr13,
        "2/3" | "4/6" => CodeRate::Cr23,
        "1/2" | "4/8" | "2/4" => CodeRate::Cr48,
        _ => return None,
    })
}

/// The `codr` text of a LoRa coding rate (`None` for the LR-FHSS-only and `Off` values).
pub fn format_lora_codr(cr: CodeRate) -> Option<&'static str> {
    Some(match cr {
        CodeRate::Cr45 => "4/5",
        CodeRate::Cr46 => "4/6",
        CodeRate::Cr47 => "4/7",
        CodeRate::Cr48 => "4/8",
        CodeRate::Cr13 | CodeRate::Cr23 | CodeRate::Off => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_datr() {
        assert_eq!(parse_lora_datr("SF7BW125"), Some((7, 125_000)));
        assert_eq!(parse_lora_datr("SF12BW500"), Some((12, 500_000)));
        assert_eq!(parse_lora_datr("SF5BW7.8"), Some((5, 7_800)));
        assert_eq!(parse_lora_datr("SF9BW31.25"), Some((9, 31_250)));
        assert_eq!(parse_lora_datr("SF10BW1600"), Some((10, 1_600_000)));
        for bad in [
            "",
            "SF",
            "SFBW125",
            "SF7",
            "SF7BW",
            "SF7BW12a",
            "sf7bw125",
            "SF123BW125",
        ] {
            assert_eq!(parse_lora_datr(bad), None, "{bad}");
        }
        for (sf, bw) in [(7, 125_000), (5, 7_800), (9, 31_250), (12, 62_500)] {
            assert_eq!(parse_lora_datr(&format_lora_datr(sf, bw)), Some((sf, bw)));
        }
        assert_eq!(format_lora_datr(11, 125_000), "SF11BW125");
        assert!(lora_bw_valid(125_000) && !lora_bw_valid(600_000) && !lora_bw_valid(7_000));
    }

    #[test]
    fn lr_fhss_and_codr() {
        assert_eq!(parse_lr_fhss_datr("M0CW137"), Some(137_000));
        assert_eq!(parse_lr_fhss_datr("M0CW1523"), Some(1_523_000));
        assert_eq!(parse_lr_fhss_datr("M0CW"), None);
        assert_eq!(parse_lora_codr("OFF"), Some(CodeRate::Off));
        assert_eq!(parse_lora_codr("2/3"), Some(CodeRate::Cr46));
        assert_eq!(parse_lora_codr("4/9"), None);
        assert_eq!(parse_lr_fhss_codr("2/3"), Some(CodeRate::Cr23));
        for (spellings, cr) in [
            (&["1/3", "2/6"][..], CodeRate::Cr13),
            (&["2/3", "4/6"][..], CodeRate::Cr23),
            (&["1/2", "4/8", "2/4"][..], CodeRate::Cr48),
        ] {
            for s in spellings {
                assert_eq!(parse_lr_fhss_codr(s), Some(cr), "{s}");
            }
        }
        for bad in ["4/5", "4/7", "5/6", "3/6", "OFF", "?", ""] {
            assert_eq!(parse_lr_fhss_codr(bad), None, "{bad}");
        }
        assert_eq!(parse_lora_codr("2/4"), Some(CodeRate::Cr48));
        assert_eq!(format_lora_codr(CodeRate::Cr47), Some("4/7"));
        assert_eq!(format_lora_codr(CodeRate::Off), None);
    }
}
