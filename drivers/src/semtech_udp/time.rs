//! Civil-date parsing for the two GWMP time formats (no calendar crate needed):
//! rxpk `time` (ISO 8601 compact, `2013-03-31T16:21:17.528002Z`) and stat `time`
//! (`2014-01-12 08:59:28 GMT`). The calendar itself is [`crate::time`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::time::{days_from_civil, days_in_month};

/// Why a GWMP time field is not a time; names the part at fault and its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// A part is not made of digits.
    #[error("{what} {text:?} is not a number")]
    NotANumber {
        /// Which part (year, month, …).
        what: &'static str,
        /// Its text.
        text: String,
    },
    /// A part has too many digits.
    #[error("{what} {text:?} is too large")]
    TooLarge {
        /// Which part.
        what: &'static str,
        /// Its text.
        text: String,
        /// Why.
        #[source]
        source: std::num::ParseIntError,
    },
    /// The date is not `YYYY-MM-DD`.
    #[error("date {0:?} is not YYYY-MM-DD")]
    DateShape(String),
    /// No such day.
    #[error("date {0:?} does not exist")]
    NoSuchDate(String),
    /// The time of day is not `HH:MM:SS`.
    #[error("time {0:?} is not HH:MM:SS")]
    ClockShape(String),
    /// No such time of day.
    #[error("time {0:?} does not exist")]
    NoSuchTime(String),
    /// The fraction of a second has no digits or more than 9.
    #[error("fraction {0:?} must have 1 to 9 digits")]
    Fraction(String),
    /// The date is before the Unix epoch.
    #[error("date {0:?} is before 1970")]
    Before1970(String),
    /// An rxpk time not in UTC.
    #[error("{0:?} does not end in Z (UTC)")]
    NoZ(String),
    /// An rxpk time without `T`.
    #[error("{0:?} has no T between date and time")]
    NoT(String),
    /// A stat time without date and time.
    #[error("{0:?} is not \"YYYY-MM-DD HH:MM:SS GMT\"")]
    StatShape(String),
    /// A stat time in another zone.
    #[error("{0:?} is not in UTC/GMT")]
    NotUtc(String),
}

fn digits(s: &str, what: &'static str) -> Result<u32, TimeError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TimeError::NotANumber {
            what,
            text: s.to_owned(),
        });
    }
    s.parse::<u32>().map_err(|source| TimeError::TooLarge {
        what,
        text: s.to_owned(),
        source,
    })
}

/// `YYYY-MM-DD` and `HH:MM:SS` (+ optional fraction digits) → time since the Unix epoch.
fn civil(date: &str, clock: &str) -> Result<SystemTime, TimeError> {
    let mut d = date.split('-');
    let (Some(y), Some(mo), Some(da), None) = (d.next(), d.next(), d.next(), d.next()) else {
        return Err(TimeError::DateShape(date.to_owned()));
    };
    if y.len() != 4 || mo.len() != 2 || da.len() != 2 {
        return Err(TimeError::DateShape(date.to_owned()));
    }
    let (year, month, day) = (
        i64::from(digits(y, "year")?),
        digits(mo, "month")?,
        digits(da, "day")?,
    );
    // Two digits each, so both fit in a u8.
    let (month, day) = (month as u8, day as u8);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(TimeError::NoSuchDate(date.to_owned()));
    }
    let (hms, frac) = match clock.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (clock, None),
    };
    let mut t = hms.split(':');
    let (Some(h), Some(mi), Some(s), None) = (t.next(), t.next(), t.next(), t.next()) else {
        return Err(TimeError::ClockShape(clock.to_owned()));
    };
    if h.len() != 2 || mi.len() != 2 || s.len() != 2 {
        return Err(TimeError::ClockShape(clock.to_owned()));
    }
    let (hour, min, sec) = (
        digits(h, "hour")?,
        digits(mi, "minute")?,
        digits(s, "second")?,
    );
    // 60 is a leap second; it folds onto the next second like most clocks do.
    if hour > 23 || min > 59 || sec > 60 {
        return Err(TimeError::NoSuchTime(clock.to_owned()));
    }
    let nanos = match frac {
        None => 0,
        Some(f) if f.is_empty() || f.len() > 9 => {
            return Err(TimeError::Fraction(f.to_owned()));
        }
        Some(f) => digits(f, "fraction")? * 10u32.pow(9 - f.len() as u32),
    };
    let days = days_from_civil(year, month, day);
    if days < 0 {
        return Err(TimeError::Before1970(date.to_owned()));
    }
    let secs = days as u64 * 86_400 + u64::from(hour) * 3600 + u64::from(min) * 60 + u64::from(sec);
    Ok(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Parse the rxpk `time` field: ISO 8601 "compact" UTC, e.g. `2013-03-31T16:21:17.528002Z`.
pub fn parse_iso8601(s: &str) -> Result<SystemTime, TimeError> {
    let Some(rest) = s.strip_suffix('Z') else {
        return Err(TimeError::NoZ(s.to_owned()));
    };
    let Some((date, clock)) = rest.split_once('T') else {
        return Err(TimeError::NoT(s.to_owned()));
    };
    civil(date, clock)
}

/// Parse the stat `time` field: `2014-01-12 08:59:28 GMT` (also accepts `UTC` or no zone).
pub fn parse_stat_time(s: &str) -> Result<SystemTime, TimeError> {
    let mut parts = s.split(' ');
    let (Some(date), Some(clock)) = (parts.next(), parts.next()) else {
        return Err(TimeError::StatShape(s.to_owned()));
    };
    match (parts.next(), parts.next()) {
        (None | Some("GMT") | Some("UTC") | Some("Z"), None) => civil(date, clock),
        _ => Err(TimeError::NotUtc(s.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::GPS_EPOCH_UNIX_SECS;

    fn unix(s: &str) -> Duration {
        parse_iso8601(s)
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
    }

    #[test]
    fn iso8601_examples() {
        // date -u -d 2013-03-31T16:21:17Z +%s = 1364746877
        assert_eq!(
            unix("2013-03-31T16:21:17.528002Z"),
            Duration::new(1_364_746_877, 528_002_000)
        );
        assert_eq!(unix("1970-01-01T00:00:00Z"), Duration::ZERO);
        assert_eq!(unix("1980-01-06T00:00:00Z").as_secs(), GPS_EPOCH_UNIX_SECS);
        // leap day 2024-02-29 = 19782 days
        assert_eq!(
            unix("2024-02-29T00:00:00.5Z"),
            Duration::new(19_782 * 86_400, 500_000_000)
        );
        assert_eq!(unix("2000-03-01T00:00:01Z").as_secs(), 951_868_801);
    }

    #[test]
    fn iso8601_rejects_nonsense() {
        for bad in [
            "2013-03-31T16:21:17.528002",
            "2013-03-31 16:21:17Z",
            "2013-02-29T00:00:00Z",
            "2013-13-01T00:00:00Z",
            "2013-03-31T24:00:00Z",
            "2013-03-31T16:21:17.Z",
            "2013-03-31T16:21:17.1234567890Z",
            "13-03-31T16:21:17Z",
            "2013-03-31T16:2a:17Z",
            "1969-12-31T23:59:59Z",
            "",
        ] {
            assert!(parse_iso8601(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn stat_time() {
        let t = parse_stat_time("2014-01-12 08:59:28 GMT").unwrap();
        // date -u -d '2014-01-12 08:59:28' +%s = 1389517168
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_389_517_168
        );
        assert!(parse_stat_time("2014-01-12 08:59:28 CET").is_err());
        assert!(parse_stat_time("2014-01-12").is_err());
    }
}
