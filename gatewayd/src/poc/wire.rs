//! Byte-level building blocks of the PoC encodings (docs/proof-of-coverage.md §6):
//! a bounds-checked big-endian reader, locations, time sources and region codes.

use crate::region::{Region, REGIONS};

/// Why bytes are not a well-formed (canonical) PoC encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Fewer bytes than the field needs.
    #[error("truncated at {what} (offset {offset}): needs {need} more bytes, {have} left")]
    Truncated {
        /// The field.
        what: &'static str,
        /// Its offset.
        offset: usize,
        /// Bytes it needs.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// Bytes left after the last field.
    #[error("{extra} unexpected bytes after {what}")]
    Trailing {
        /// What was complete.
        what: &'static str,
        /// How many bytes are left over.
        extra: usize,
    },
    /// A field holds a value the protocol does not allow.
    #[error("{what}: {why}")]
    BadValue {
        /// The field.
        what: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A text line is neither hex nor base64.
    #[error("not hex or base64: {0}")]
    Text(String),
}

/// Big-endian reader over a byte slice; every read is bounds-checked.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        let have = self.buf.len() - self.pos;
        if have < n {
            return Err(CodecError::Truncated {
                what,
                offset: self.pos,
                need: n,
                have,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.array::<1>(what)?[0])
    }
    pub(crate) fn i8(&mut self, what: &'static str) -> Result<i8, CodecError> {
        Ok(i8::from_be_bytes(self.array(what)?))
    }
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    pub(crate) fn i16(&mut self, what: &'static str) -> Result<i16, CodecError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    pub(crate) fn i32(&mut self, what: &'static str) -> Result<i32, CodecError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// Bytes read so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Fails when bytes are left.
    pub(crate) fn finish(self, what: &'static str) -> Result<(), CodecError> {
        let extra = self.buf.len() - self.pos;
        if extra == 0 {
            Ok(())
        } else {
            Err(CodecError::Trailing { what, extra })
        }
    }
}

pub(crate) fn bad(what: &'static str, why: impl Into<String>) -> CodecError {
    CodecError::BadValue {
        what,
        why: why.into(),
    }
}

/// Where a time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeSource {
    /// The hotspot's own clock (not trusted by the verifier).
    Local,
    /// GPS.
    Gps,
}

impl TimeSource {
    pub(crate) fn code(self) -> u8 {
        match self {
            TimeSource::Local => 0,
            TimeSource::Gps => 1,
        }
    }
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        match r.u8("time source")? {
            0 => Ok(TimeSource::Local),
            1 => Ok(TimeSource::Gps),
            c => Err(bad(
                "time source",
                format!("{c} is not 0 (local) or 1 (GPS)"),
            )),
        }
    }
}

/// Where a location came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PositionSource {
    /// A GPS fix.
    Gps,
    /// The configured location.
    Config,
}

/// A location as PoC reports carry it: fixed point, 1e-7 degrees and decimetres, with its
/// source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WirePosition {
    /// Where it came from.
    pub source: PositionSource,
    /// Latitude × 1e7, −900000000..=900000000.
    pub lat_e7: i32,
    /// Longitude × 1e7, −1800000000..=1800000000.
    pub lon_e7: i32,
    /// Altitude in decimetres.
    pub alt_dm: i32,
}

/// Encoded size of an optional [`WirePosition`].
pub const POSITION_LEN: usize = 13;

impl WirePosition {
    /// From degrees and metres (rounded to the encoding's resolution).
    pub fn from_degrees(source: PositionSource, lat: f64, lon: f64, alt_m: f64) -> WirePosition {
        let clamp = |x: f64, max: f64| x.clamp(-max, max).round() as i32;
        WirePosition {
            source,
            lat_e7: clamp(lat * 1e7, 900_000_000.0),
            lon_e7: clamp(lon * 1e7, 1_800_000_000.0),
            alt_dm: clamp(alt_m * 10.0, f64::from(i32::MAX)),
        }
    }

    /// Latitude in degrees.
    pub fn lat_deg(&self) -> f64 {
        f64::from(self.lat_e7) / 1e7
    }

    /// Longitude in degrees.
    pub fn lon_deg(&self) -> f64 {
        f64::from(self.lon_e7) / 1e7
    }

    /// Great-circle distance to `other` in metres (haversine, mean Earth radius).
    pub fn distance_m(&self, other: &WirePosition) -> f64 {
        const R: f64 = 6_371_008.8;
        let (p1, p2) = (self.lat_deg().to_radians(), other.lat_deg().to_radians());
        let dp = p2 - p1;
        let dl = (other.lon_deg() - self.lon_deg()).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * R * a.sqrt().min(1.0).asin()
    }

    pub(crate) fn write(p: &Option<WirePosition>, out: &mut Vec<u8>) {
        match p {
            None => out.extend_from_slice(&[0u8; POSITION_LEN]),
            Some(p) => {
                out.push(match p.source {
                    PositionSource::Gps => 1,
                    PositionSource::Config => 2,
                });
                out.extend_from_slice(&p.lat_e7.to_be_bytes());
                out.extend_from_slice(&p.lon_e7.to_be_bytes());
                out.extend_from_slice(&p.alt_dm.to_be_bytes());
            }
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Option<WirePosition>, CodecError> {
        let code = r.u8("location source")?;
        let (lat_e7, lon_e7, alt_dm) =
            (r.i32("latitude")?, r.i32("longitude")?, r.i32("altitude")?);
        let source = match code {
            0 if (lat_e7, lon_e7, alt_dm) == (0, 0, 0) => return Ok(None),
            0 => return Err(bad("location", "source none with non-zero coordinates")),
            1 => PositionSource::Gps,
            2 => PositionSource::Config,
            c => return Err(bad("location source", format!("{c} is not 0, 1 or 2"))),
        };
        if !(-900_000_000..=900_000_000).contains(&lat_e7) {
            return Err(bad("latitude", format!("{lat_e7} is beyond ±90°")));
        }
        if !(-1_800_000_000..=1_800_000_000).contains(&lon_e7) {
            return Err(bad("longitude", format!("{lon_e7} is beyond ±180°")));
        }
        Ok(Some(WirePosition {
            source,
            lat_e7,
            lon_e7,
            alt_dm,
        }))
    }
}

/// The protocol's code of `region` (its 1-based position in [`REGIONS`]).
pub fn region_code(region: &Region) -> u8 {
    REGIONS
        .iter()
        .position(|r| r.name == region.name)
        .map_or(0, |i| i as u8 + 1)
}

/// The region with protocol code `code`.
pub fn region_by_code(code: u8) -> Option<&'static Region> {
    REGIONS.get(usize::from(code).checked_sub(1)?).copied()
}

pub(crate) fn read_region(r: &mut Reader<'_>) -> Result<&'static Region, CodecError> {
    let code = r.u8("region")?;
    region_by_code(code).ok_or_else(|| bad("region", format!("unknown region code {code}")))
}

/// Lowercase hex → bytes.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// One report line: hex (preferred when it parses) or standard base64.
pub fn decode_text(line: &str) -> Result<Vec<u8>, CodecError> {
    use base64::Engine;
    let line = line.trim();
    if let Some(b) = from_hex(line) {
        return Ok(b);
    }
    base64::engine::general_purpose::STANDARD
        .decode(line)
        .map_err(|e| CodecError::Text(format!("{e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_codes_are_stable() {
        let names: Vec<_> = (1..=12).map(|c| region_by_code(c).unwrap().name).collect();
        assert_eq!(
            names,
            [
                "EU868", "US915", "AU915", "AS923-1", "AS923-2", "AS923-3", "AS923-4", "IN865",
                "KR920", "CN470", "RU864", "EU433"
            ]
        );
        assert!(region_by_code(0).is_none() && region_by_code(13).is_none());
        for r in REGIONS {
            assert_eq!(region_by_code(region_code(r)).unwrap().name, r.name);
        }
    }

    #[test]
    fn position_bytes_and_round_trip() {
        let p = WirePosition::from_degrees(PositionSource::Gps, 52.5, -13.25, 34.5);
        let mut out = Vec::new();
        WirePosition::write(&Some(p), &mut out);
        assert_eq!(
            out,
            [1, 0x1f, 0x4a, 0xdd, 0x40, 0xf8, 0x1a, 0x35, 0xe0, 0, 0, 1, 0x59]
        );
        assert_eq!(WirePosition::read(&mut Reader::new(&out)).unwrap(), Some(p));
        let mut none = Vec::new();
        WirePosition::write(&None, &mut none);
        assert_eq!(none, [0u8; 13]);
        none[5] = 1;
        assert!(WirePosition::read(&mut Reader::new(&none)).is_err());
    }

    #[test]
    fn distance_one_degree_of_latitude() {
        let a = WirePosition::from_degrees(PositionSource::Config, 0.0, 0.0, 0.0);
        let b = WirePosition::from_degrees(PositionSource::Config, 1.0, 0.0, 0.0);
        assert!((a.distance_m(&b) - 111_195.0).abs() < 10.0);
    }

    #[test]
    fn text_is_hex_or_base64() {
        assert_eq!(decode_text("0aff\n").unwrap(), [0x0a, 0xff]);
        assert_eq!(decode_text("Cv8=").unwrap(), [0x0a, 0xff]);
        assert!(decode_text("not!valid").is_err());
    }
}
