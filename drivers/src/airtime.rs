//! LoRa and FSK time on air (Semtech AN1200.13; SX126x SF5/SF6 rule from LoRaMac-node).
//!
//! Pure functions shared by the regulatory guard (duty cycle, dwell time), the simulated air
//! (collisions) and proof of coverage (beacon parameters).

use std::time::Duration;

use crate::radio::{CodeRate, Modulation};

/// Parameters of a frame that decide its airtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameShape {
    /// PHY payload length in bytes.
    pub payload_len: usize,
    /// Programmed preamble symbols (LoRaWAN: 8).
    pub preamble: u16,
    /// Payload CRC on (uplinks) or off (downlinks).
    pub crc: bool,
    /// Implicit header.
    pub implicit_header: bool,
}

impl FrameShape {
    /// A LoRaWAN frame: preamble 8, explicit header.
    pub fn lorawan(payload_len: usize, crc: bool) -> FrameShape {
        FrameShape {
            payload_len,
            preamble: 8,
            crc,
            implicit_header: false,
        }
    }
}

fn cr_index(cr: Option<CodeRate>) -> u32 {
    match cr {
        Some(CodeRate::Cr46) | Some(CodeRate::Cr23) => 2,
        Some(CodeRate::Cr47) => 3,
        Some(CodeRate::Cr48) => 4,
        _ => 1,
    }
}

/// Time on air in microseconds (exact to the nanosecond-rounded microsecond).
pub fn time_on_air_us(modulation: &Modulation, frame: &FrameShape) -> u64 {
    match *modulation {
        Modulation::Lora { sf, bw_hz, cr } => {
            lora_toa_ns(sf, bw_hz, cr_index(cr), frame).div_ceil(1000)
        }
        Modulation::Fsk { bitrate } => {
            // preamble 5 B + sync 3 B + length 1 B + payload + CRC 2 B
            let bits = (5 + 3 + 1 + frame.payload_len as u64 + 2) * 8;
            (bits * 1_000_000).div_ceil(u64::from(bitrate.max(1)))
        }
        Modulation::LrFhss { .. } => {
            // LR-FHSS is uplink-only in LoRaWAN; approximate by header (3 × 233.472 ms at
            // CR 1/3 worst case) plus 102.4 ms per 48 bits. Used only for statistics.
            let blocks = (frame.payload_len as u64 * 8 + 6).div_ceil(48);
            3 * 233_472 + blocks * 102_400
        }
    }
}

/// Time on air as a [`Duration`].
pub fn time_on_air(modulation: &Modulation, frame: &FrameShape) -> Duration {
    Duration::from_micros(time_on_air_us(modulation, frame))
}

/// LoRa ToA in nanoseconds; all arithmetic in integers of quarter symbols.
fn lora_toa_ns(sf: u8, bw_hz: u32, cr: u32, f: &FrameShape) -> u64 {
    let sf = u32::from(sf.clamp(5, 12));
    let bw = u64::from(bw_hz.max(1));
    // Symbol time in ns: 2^SF / BW.
    let t_sym_ns = |quarters: u64| quarters * (1u64 << sf) * 1_000_000_000 / (4 * bw);
    let pl = f.payload_len as i64;
    let crc = i64::from(f.crc);
    let ih = i64::from(f.implicit_header);
    let (quarters, payload_syms) = if sf <= 6 {
        let preamble = u64::from(f.preamble.max(12));
        let num = 8 * pl + 16 * crc - 4 * i64::from(sf) + 20 * (1 - ih);
        let den = 4 * i64::from(sf);
        let ceil = if num > 0 { (num + den - 1) / den } else { 0 };
        // preamble + 6.25 symbols, + 8 payload symbols
        ((preamble * 4) + 25 + 32, ceil as u64 * u64::from(cr + 4))
    } else {
        // Low-data-rate optimisation when a symbol lasts 16 ms or more.
        let t_sym_us = (1u64 << sf) * 1_000_000 / bw;
        let de = i64::from(t_sym_us >= 16_000);
        let num = 8 * pl - 4 * i64::from(sf) + 28 + 16 * crc - 20 * ih;
        let den = 4 * (i64::from(sf) - 2 * de);
        let ceil = if num > 0 { (num + den - 1) / den } else { 0 };
        (
            (u64::from(f.preamble) * 4) + 17 + 32,
            ceil as u64 * u64::from(cr + 4),
        )
    };
    t_sym_ns(quarters + payload_syms * 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lora(sf: u8, bw: u32) -> Modulation {
        Modulation::Lora {
            sf,
            bw_hz: bw,
            cr: Some(CodeRate::Cr45),
        }
    }

    fn us(sf: u8, bw: u32, pl: usize, crc: bool) -> u64 {
        time_on_air_us(&lora(sf, bw), &FrameShape::lorawan(pl, crc))
    }

    #[test]
    fn worked_values_from_reference() {
        // (sf, bw, PHY bytes, crc, ToA µs) from shared/reference/airtime.md
        let cases = [
            (7, 125_000, 20, true, 56_576),
            (7, 125_000, 20, false, 51_456),
            (12, 125_000, 51, true, 2_465_792),
            (12, 125_000, 64, true, 2_793_472),
            (10, 125_000, 11, true, 288_768),
            (10, 125_000, 24, true, 370_688),
            (9, 125_000, 52, true, 328_704),
            (8, 500_000, 20, true, 25_728),
            (8, 500_000, 255, true, 176_768),
            (12, 500_000, 17, false, 288_768),
            (12, 125_000, 17, false, 1_155_072),
            (12, 125_000, 23, true, 1_482_752),
            (7, 250_000, 20, true, 28_288),
            (11, 125_000, 20, true, 741_376),
            (6, 125_000, 20, true, 33_920),
            (5, 125_000, 20, true, 18_240),
        ];
        for (sf, bw, pl, crc, want) in cases {
            assert_eq!(us(sf, bw, pl, crc), want, "SF{sf} BW{bw} PL{pl} crc={crc}");
        }
    }

    #[test]
    fn ttn_cross_checks() {
        let want = [41_216, 72_192, 144_384, 288_768, 577_536, 991_232];
        for (i, sf) in (7..=12).enumerate() {
            assert_eq!(us(sf, 125_000, 10, true), want[i], "SF{sf}");
        }
        assert_eq!(us(7, 250_000, 10, true), 20_608);
        assert_eq!(us(7, 500_000, 10, true), 10_304);
        for (cr, want) in [
            (CodeRate::Cr46, 45_312),
            (CodeRate::Cr47, 49_408),
            (CodeRate::Cr48, 53_504),
        ] {
            let m = Modulation::Lora {
                sf: 7,
                bw_hz: 125_000,
                cr: Some(cr),
            };
            assert_eq!(time_on_air_us(&m, &FrameShape::lorawan(10, true)), want);
        }
        let fsk = Modulation::Fsk { bitrate: 50_000 };
        assert_eq!(
            time_on_air_us(&fsk, &FrameShape::lorawan(200, true)),
            33_760
        );
        assert_eq!(time_on_air_us(&fsk, &FrameShape::lorawan(20, true)), 4_960);
    }

    #[test]
    fn dwell_limits_follow_from_the_formula() {
        // Largest PHY payload within 400 ms at 125 kHz, CRC on.
        for (sf, max) in [(10, 24), (9, 66), (8, 138), (7, 255)] {
            assert!(us(sf, 125_000, max, true) <= 400_000, "SF{sf}");
            if max < 255 {
                assert!(us(sf, 125_000, max + 1, true) > 400_000, "SF{sf}");
            }
        }
        assert!(us(12, 125_000, 0, true) > 400_000);
    }
}
