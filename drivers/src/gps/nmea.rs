//! NMEA 0183 codec: one line of bytes → a [`Sentence`] or a precise [`NmeaError`].
//!
//! Pure functions, no I/O. The checksum (`*HH`) is mandatory and verified. GGA and RMC from
//! the usual GNSS talkers are decoded; every other well-formed sentence becomes
//! [`Sentence::Other`] so that the caller can ignore it without treating it as an error.
//! Empty fields (what a receiver without a fix sends) decode to `None`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod fields;

use crate::time::days_from_civil;
use fields::{parse_small_int, Fields};

/// Longest line accepted, in bytes, without the CR/LF terminator. NMEA 0183 allows 82
/// characters including `$` and CR/LF; receivers with long proprietary sentences exceed that,
/// so the limit is generous but bounded.
pub const MAX_LINE: usize = 120;

/// Why a line was rejected, coarse enough to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The checksum is missing, malformed or does not match.
    Checksum,
    /// The line is not a well-formed sentence, or a field does not parse.
    Syntax,
    /// The line is longer than [`MAX_LINE`].
    TooLong,
}

/// A line that is not a usable NMEA sentence; says what is wrong and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NmeaError {
    /// The line exceeds [`MAX_LINE`] bytes.
    #[error("line is {len} bytes long, over the limit of {max}")]
    TooLong {
        /// Length of the line seen (at least `max + 1`).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The line is empty or does not start with `$`.
    #[error("line does not start with '$'")]
    NoStart,
    /// A byte that is not printable ASCII appears in the line.
    #[error("invalid byte 0x{byte:02X} at offset {offset}")]
    InvalidByte {
        /// The offending byte.
        byte: u8,
        /// Its offset from the start of the line.
        offset: usize,
    },
    /// The line has no `*HH` checksum.
    #[error("missing checksum ('*HH' at the end of the line)")]
    MissingChecksum,
    /// The text after `*` is not exactly two hex digits.
    #[error("malformed checksum {0:?} (expected two hex digits after '*')")]
    MalformedChecksum(String),
    /// The checksum does not match the line's content.
    #[error("checksum mismatch: line says {stated:02X}, content gives {computed:02X}")]
    ChecksumMismatch {
        /// The checksum written in the line.
        stated: u8,
        /// The XOR of the bytes between `$` and `*`.
        computed: u8,
    },
    /// The address field (talker + sentence type) is malformed.
    #[error("malformed sentence address {0:?}")]
    BadAddress(String),
    /// The sentence has fewer fields than its type requires.
    #[error("{kind}: {found} fields, at least {expected} required")]
    TooFewFields {
        /// Sentence type, e.g. `"GGA"`.
        kind: &'static str,
        /// Fields required (address included).
        expected: usize,
        /// Fields present (address included).
        found: usize,
    },
    /// A field does not parse or is out of range.
    #[error("{kind}: field {index} ({name}) invalid: {value:?}")]
    BadField {
        /// Sentence type, e.g. `"RMC"`.
        kind: &'static str,
        /// Field index, the address being field 0.
        index: usize,
        /// What the field holds, e.g. `"latitude"`.
        name: &'static str,
        /// The field's text.
        value: String,
    },
}

impl NmeaError {
    /// The counting category of this error.
    pub fn reason(&self) -> RejectReason {
        match self {
            NmeaError::TooLong { .. } => RejectReason::TooLong,
            NmeaError::MissingChecksum
            | NmeaError::MalformedChecksum(_)
            | NmeaError::ChecksumMismatch { .. } => RejectReason::Checksum,
            _ => RejectReason::Syntax,
        }
    }
}

/// The satellite system that sent a sentence (the two-letter talker id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Talker {
    /// `GP`: GPS.
    Gps,
    /// `GN`: combined GNSS solution.
    Gnss,
    /// `GL`: GLONASS.
    Glonass,
    /// `GA`: Galileo.
    Galileo,
    /// `BD` or `GB`: BeiDou.
    BeiDou,
    /// `GQ`: QZSS.
    Qzss,
}

impl Talker {
    fn from_id(id: &[u8]) -> Option<Talker> {
        Some(match id {
            b"GP" => Talker::Gps,
            b"GN" => Talker::Gnss,
            b"GL" => Talker::Glonass,
            b"GA" => Talker::Galileo,
            b"BD" | b"GB" => Talker::BeiDou,
            b"GQ" => Talker::Qzss,
            _ => return None,
        })
    }
}

/// UTC time of day as sent in GGA/RMC (`hhmmss.sss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay {
    /// Hour, 0–23.
    pub hour: u8,
    /// Minute, 0–59.
    pub minute: u8,
    /// Second, 0–60 (60 only during a leap second).
    pub second: u8,
    /// Fraction of the second in nanoseconds.
    pub nanos: u32,
}

impl TimeOfDay {
    /// Time since midnight.
    pub fn since_midnight(&self) -> Duration {
        let secs =
            u64::from(self.hour) * 3600 + u64::from(self.minute) * 60 + u64::from(self.second);
        Duration::new(secs, self.nanos)
    }
}

/// A calendar date (UTC) as sent in RMC (`ddmmyy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    /// Full year: two-digit years 80–99 are 1980–1999, 00–79 are 2000–2079.
    pub year: u16,
    /// Month, 1–12.
    pub month: u8,
    /// Day of month, 1–31 (checked against the month).
    pub day: u8,
}

/// A horizontal position in signed decimal degrees (north and east positive).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLon {
    /// Latitude, −90 to 90.
    pub latitude: f64,
    /// Longitude, −180 to 180.
    pub longitude: f64,
}

/// GGA: fix data.
#[derive(Debug, Clone, PartialEq)]
pub struct Gga {
    /// Who sent it.
    pub talker: Talker,
    /// UTC time of the fix, if the receiver knows it.
    pub time: Option<TimeOfDay>,
    /// Position, if any.
    pub position: Option<LatLon>,
    /// Fix quality: 0 = no fix, 1 = GPS, 2 = DGPS, 4/5 = RTK, 6 = dead reckoning, …
    pub quality: u8,
    /// Satellites used.
    pub satellites: Option<u8>,
    /// Horizontal dilution of precision.
    pub hdop: Option<f32>,
    /// Altitude above mean sea level, metres.
    pub altitude: Option<f64>,
}

impl Gga {
    /// True when the receiver reports a fix (quality above 0).
    pub fn has_fix(&self) -> bool {
        self.quality > 0
    }
}

/// RMC: recommended minimum data.
#[derive(Debug, Clone, PartialEq)]
pub struct Rmc {
    /// Who sent it.
    pub talker: Talker,
    /// UTC time of day, if known.
    pub time: Option<TimeOfDay>,
    /// Status field: `true` for `A` (valid), `false` for `V` (warning).
    pub status_valid: bool,
    /// Position, if any.
    pub position: Option<LatLon>,
    /// Speed over ground, knots.
    pub speed_knots: Option<f64>,
    /// Course over ground, degrees true.
    pub course: Option<f64>,
    /// UTC date, if known.
    pub date: Option<Date>,
    /// Mode indicator (NMEA 2.3+): `A` autonomous, `D` differential, `N` not valid, …
    pub mode: Option<char>,
    /// Date and time combined, when both are present.
    pub utc: Option<SystemTime>,
}

impl Rmc {
    /// True when the status is `A` and the mode indicator (if any) is not `N`.
    pub fn has_fix(&self) -> bool {
        self.status_valid && self.mode != Some('N')
    }

    /// Speed over ground in metres per second.
    pub fn speed_mps(&self) -> Option<f64> {
        self.speed_knots.map(|k| k * 1852.0 / 3600.0)
    }
}

/// One decoded sentence.
#[derive(Debug, Clone, PartialEq)]
pub enum Sentence {
    /// Fix data.
    Gga(Gga),
    /// Recommended minimum data.
    Rmc(Rmc),
    /// A well-formed sentence of another type or talker (e.g. `"GPGSV"`, `"PUBX"`); ignored.
    Other(String),
}

/// XOR of the bytes between `$` and `*`, as NMEA defines the checksum.
pub fn checksum(body: &[u8]) -> u8 {
    body.iter().fold(0, |acc, b| acc ^ b)
}

/// Decodes one line (with or without its CR/LF terminator).
pub fn parse(line: &[u8]) -> Result<Sentence, NmeaError> {
    let line = trim_terminator(line);
    if line.len() > MAX_LINE {
        return Err(NmeaError::TooLong {
            len: line.len(),
            max: MAX_LINE,
        });
    }
    if line.first() != Some(&b'$') {
        return Err(NmeaError::NoStart);
    }
    if let Some(offset) = line.iter().position(|b| !(0x20..=0x7E).contains(b)) {
        return Err(NmeaError::InvalidByte {
            byte: line[offset],
            offset,
        });
    }
    let star = line
        .iter()
        .rposition(|&b| b == b'*')
        .ok_or(NmeaError::MissingChecksum)?;
    let body = &line[1..star];
    let stated = parse_hex_checksum(&line[star + 1..])?;
    let computed = checksum(body);
    if stated != computed {
        return Err(NmeaError::ChecksumMismatch { stated, computed });
    }
    // All bytes are printable ASCII, so this cannot fail; map defensively anyway.
    let body = std::str::from_utf8(body).map_err(|_| NmeaError::NoStart)?;
    let fields: Vec<&str> = body.split(',').collect();
    let address = fields[0];
    if address.starts_with('P') && address.len() > 1 {
        return Ok(Sentence::Other(address.to_string()));
    }
    if address.len() != 5
        || !address
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(NmeaError::BadAddress(address.to_string()));
    }
    let Some(talker) = Talker::from_id(&address.as_bytes()[..2]) else {
        return Ok(Sentence::Other(address.to_string()));
    };
    match &address[2..] {
        "GGA" => parse_gga(talker, &fields).map(Sentence::Gga),
        "RMC" => parse_rmc(talker, &fields).map(Sentence::Rmc),
        _ => Ok(Sentence::Other(address.to_string())),
    }
}

fn trim_terminator(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b'\n'] = line {
        line = rest;
    }
    line
}

fn parse_hex_checksum(text: &[u8]) -> Result<u8, NmeaError> {
    let malformed = || NmeaError::MalformedChecksum(String::from_utf8_lossy(text).into_owned());
    if text.len() != 2 {
        return Err(malformed());
    }
    let hi = (text[0] as char).to_digit(16).ok_or_else(malformed)?;
    let lo = (text[1] as char).to_digit(16).ok_or_else(malformed)?;
    Ok((hi * 16 + lo) as u8)
}

fn parse_gga(talker: Talker, fields: &[&str]) -> Result<Gga, NmeaError> {
    let f = Fields::new("GGA", fields, 15)?;
    let time = f.time(1)?;
    let position = f.position(2)?;
    let quality = match f.get(6) {
        "" => 0,
        q if q.len() == 1 && q.as_bytes()[0].is_ascii_digit() => q.as_bytes()[0] - b'0',
        _ => return Err(f.bad(6, "fix quality")),
    };
    let satellites = match f.get(7) {
        "" => None,
        s => Some(parse_small_int(s).ok_or_else(|| f.bad(7, "satellites"))?),
    };
    let hdop = f.decimal(8, "HDOP", false)?.map(|h| h as f32);
    let altitude = f.decimal(9, "altitude", true)?;
    if altitude.is_some() && !matches!(f.get(10), "M" | "") {
        return Err(f.bad(10, "altitude unit"));
    }
    Ok(Gga {
        talker,
        time,
        position,
        quality,
        satellites,
        hdop,
        altitude,
    })
}

fn parse_rmc(talker: Talker, fields: &[&str]) -> Result<Rmc, NmeaError> {
    let f = Fields::new("RMC", fields, 12)?;
    let time = f.time(1)?;
    let status_valid = match f.get(2) {
        "A" => true,
        "V" => false,
        _ => return Err(f.bad(2, "status")),
    };
    let position = f.position(3)?;
    let speed_knots = f.decimal(7, "speed", false)?;
    let course = f.decimal(8, "course", false)?;
    if course.is_some_and(|c| c >= 360.0) {
        return Err(f.bad(8, "course"));
    }
    let date = f.date(9)?;
    let mode = match f.get(12) {
        "" => None,
        m if m.len() == 1 && m.as_bytes()[0].is_ascii_uppercase() => m.chars().next(),
        _ => return Err(f.bad(12, "mode")),
    };
    let utc = match (date, time) {
        (Some(d), Some(t)) => Some(to_system_time(d, t)),
        _ => None,
    };
    Ok(Rmc {
        talker,
        time,
        status_valid,
        position,
        speed_knots,
        course,
        date,
        mode,
        utc,
    })
}

/// Combines a UTC date and time of day into a `SystemTime`.
pub fn to_system_time(date: Date, time: TimeOfDay) -> SystemTime {
    let days = days_from_civil(i64::from(date.year), date.month, date.day);
    // Dates are 1980..=2079 by construction, so days are positive.
    let secs = u64::try_from(days).unwrap_or(0) * 86_400;
    UNIX_EPOCH + Duration::from_secs(secs) + time.since_midnight()
}

#[cfg(test)]
#[path = "nmea_tests.rs"]
mod tests;
