//! Field-level parsing for NMEA sentences: numbers, coordinates, time and date, each
//! checked strictly (no exponents, `inf` or `NaN`) and reported with the field's index.

use super::{Date, LatLon, NmeaError, TimeOfDay};

/// Field access with the error context of one sentence type.
pub(super) struct Fields<'a> {
    kind: &'static str,
    fields: &'a [&'a str],
}

impl<'a> Fields<'a> {
    pub(super) fn new(
        kind: &'static str,
        fields: &'a [&'a str],
        expected: usize,
    ) -> Result<Self, NmeaError> {
        if fields.len() < expected {
            return Err(NmeaError::TooFewFields {
                kind,
                expected,
                found: fields.len(),
            });
        }
        Ok(Fields { kind, fields })
    }

    pub(super) fn get(&self, index: usize) -> &'a str {
        self.fields.get(index).copied().unwrap_or("")
    }

    pub(super) fn bad(&self, index: usize, name: &'static str) -> NmeaError {
        NmeaError::BadField {
            kind: self.kind,
            index,
            name,
            value: self.get(index).to_string(),
        }
    }

    pub(super) fn time(&self, index: usize) -> Result<Option<TimeOfDay>, NmeaError> {
        let text = self.get(index);
        if text.is_empty() {
            return Ok(None);
        }
        parse_time(text)
            .map(Some)
            .ok_or_else(|| self.bad(index, "UTC time"))
    }

    pub(super) fn date(&self, index: usize) -> Result<Option<Date>, NmeaError> {
        let text = self.get(index);
        if text.is_empty() {
            return Ok(None);
        }
        parse_date(text)
            .map(Some)
            .ok_or_else(|| self.bad(index, "date"))
    }

    /// Latitude at `index`, N/S at `index + 1`, longitude at `+2`, E/W at `+3`.
    pub(super) fn position(&self, index: usize) -> Result<Option<LatLon>, NmeaError> {
        let lat = self.coordinate(index, "latitude", 2, 90.0, ('N', 'S'))?;
        let lon = self.coordinate(index + 2, "longitude", 3, 180.0, ('E', 'W'))?;
        match (lat, lon) {
            (Some(latitude), Some(longitude)) => Ok(Some(LatLon {
                latitude,
                longitude,
            })),
            (None, None) => Ok(None),
            (None, Some(_)) => Err(self.bad(index, "latitude")),
            (Some(_), None) => Err(self.bad(index + 2, "longitude")),
        }
    }

    fn coordinate(
        &self,
        index: usize,
        name: &'static str,
        degree_digits: usize,
        max: f64,
        (positive, negative): (char, char),
    ) -> Result<Option<f64>, NmeaError> {
        let (value, hemi) = (self.get(index), self.get(index + 1));
        if value.is_empty() && hemi.is_empty() {
            return Ok(None);
        }
        let magnitude =
            parse_ddmm(value, degree_digits, max).ok_or_else(|| self.bad(index, name))?;
        let sign = match hemi {
            h if h.len() == 1 && h.starts_with(positive) => 1.0,
            h if h.len() == 1 && h.starts_with(negative) => -1.0,
            _ => return Err(self.bad(index + 1, "hemisphere")),
        };
        Ok(Some(sign * magnitude))
    }

    pub(super) fn decimal(
        &self,
        index: usize,
        name: &'static str,
        signed: bool,
    ) -> Result<Option<f64>, NmeaError> {
        let text = self.get(index);
        if text.is_empty() {
            return Ok(None);
        }
        parse_decimal(text, signed)
            .map(Some)
            .ok_or_else(|| self.bad(index, name))
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn two_digits(s: &[u8]) -> u8 {
    (s[0] - b'0') * 10 + (s[1] - b'0')
}

pub(super) fn parse_small_int(s: &str) -> Option<u8> {
    if !all_digits(s) || s.len() > 3 {
        return None;
    }
    s.parse().ok()
}

/// `hhmmss` or `hhmmss.f…` (up to 9 fraction digits).
fn parse_time(text: &str) -> Option<TimeOfDay> {
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if whole.len() != 6
        || !all_digits(whole)
        || frac.len() > 9
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let b = whole.as_bytes();
    let (hour, minute, second) = (
        two_digits(&b[0..2]),
        two_digits(&b[2..4]),
        two_digits(&b[4..6]),
    );
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let nanos = frac
        .bytes()
        .zip([
            100_000_000u32,
            10_000_000,
            1_000_000,
            100_000,
            10_000,
            1_000,
            100,
            10,
            1,
        ])
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    Some(TimeOfDay {
        hour,
        minute,
        second,
        nanos,
    })
}

/// `ddmmyy`.
fn parse_date(text: &str) -> Option<Date> {
    if text.len() != 6 || !all_digits(text) {
        return None;
    }
    let b = text.as_bytes();
    let (day, month, yy) = (
        two_digits(&b[0..2]),
        two_digits(&b[2..4]),
        two_digits(&b[4..6]),
    );
    let year = if yy >= 80 {
        1900 + u16::from(yy)
    } else {
        2000 + u16::from(yy)
    };
    if !(1..=12).contains(&month)
        || day == 0
        || day > crate::time::days_in_month(i64::from(year), month)
    {
        return None;
    }
    Some(Date { year, month, day })
}

/// Plain decimal number: digits with at most one `.`, optionally a leading `-`.
fn parse_decimal(text: &str, signed: bool) -> Option<f64> {
    let digits = match text.strip_prefix('-') {
        Some(rest) if signed => rest,
        Some(_) => return None,
        None => text,
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let ok = !(int.is_empty() && frac.is_empty())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return None;
    }
    text.parse().ok()
}

/// `ddmm.mmmm` (or `dddmm.mmmm`) → degrees.
fn parse_ddmm(text: &str, degree_digits: usize, max: f64) -> Option<f64> {
    let int_len = text.find('.').unwrap_or(text.len());
    if int_len != degree_digits + 2 {
        return None;
    }
    let value = parse_decimal(text, false)?;
    let degrees = text[..degree_digits].parse::<u16>().ok()?;
    let minutes = value - f64::from(degrees) * 100.0;
    if minutes >= 60.0 {
        return None;
    }
    let result = f64::from(degrees) + minutes / 60.0;
    (result <= max).then_some(result)
}
