//! Time arithmetic every layer shares, without a date library: Unix milliseconds, the GPS
//! epoch and leap seconds, and the proleptic Gregorian calendar (UTC, no time zones) with the
//! few text forms the daemon writes.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix time of the GPS epoch, 1980-01-06 00:00:00 UTC.
pub const GPS_EPOCH_UNIX_SECS: u64 = 315_964_800;

/// GPS − UTC in seconds: the leap seconds inserted since 1980 (18 since 2017-01-01; no leap
/// second has been scheduled since).
pub const GPS_LEAP_SECONDS: u64 = 18;

const SECS_PER_DAY: u64 = 86_400;

/// Time since the Unix epoch of `t` (zero before the epoch).
pub fn since_unix_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Unix milliseconds of `t` (0 before the epoch, saturating far in the future).
pub fn unix_ms(t: SystemTime) -> u64 {
    u64::try_from(since_unix_epoch(t).as_millis()).unwrap_or(u64::MAX)
}

/// The instant `ms` Unix milliseconds after the epoch; the inverse of [`unix_ms`].
pub fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Unix microseconds of `t` (0 before the epoch, saturating far in the future).
pub fn unix_us(t: SystemTime) -> u64 {
    u64::try_from(since_unix_epoch(t).as_micros()).unwrap_or(u64::MAX)
}

/// The instant `us` Unix microseconds after the epoch; the inverse of [`unix_us`].
pub fn from_unix_us(us: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us)
}

/// GPS time (time since the GPS epoch, which counts no leap seconds) of a UTC instant; `None`
/// before the GPS epoch.
pub fn since_gps_epoch(utc: SystemTime) -> Option<Duration> {
    let unix = utc.duration_since(UNIX_EPOCH).ok()?;
    unix.checked_sub(Duration::from_secs(GPS_EPOCH_UNIX_SECS))
        .map(|d| d + Duration::from_secs(GPS_LEAP_SECONDS))
}

/// The UTC instant of a GPS time; the inverse of [`since_gps_epoch`] (`None` if it does not
/// fit in a `SystemTime`).
pub fn from_gps_epoch(gps: Duration) -> Option<SystemTime> {
    (UNIX_EPOCH + Duration::from_secs(GPS_EPOCH_UNIX_SECS))
        .checked_add(gps)?
        .checked_sub(Duration::from_secs(GPS_LEAP_SECONDS))
}

/// True for leap years of the Gregorian calendar.
pub fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Number of days in `month` (1–12) of `year`; 0 for an invalid month.
pub fn days_in_month(year: i64, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days from 1970-01-01 to the given date (negative before it).
///
/// The era-based algorithm (H. Hinnant): shift the year to start in March so the leap day is
/// last, split into 400-year eras of 146 097 days, and count days within the era.
pub fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // 0..=399
    let mp = (month + 9) % 12; // March = 0 … February = 11
    let doy = (153 * mp + 2) / 5 + day - 1; // 0..=365
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // 0..=146096
    era * 146_097 + doe - 719_468
}

/// The date (year, month 1–12, day 1–31) `days` after 1970-01-01; the inverse of
/// [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365
    let mp = (5 * doy + 2) / 153; // March = 0 … February = 11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// A UTC instant split into calendar fields, for writing it as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcDateTime {
    /// Year (proleptic Gregorian).
    pub year: i64,
    /// Month, 1–12.
    pub month: u8,
    /// Day of the month, 1–31.
    pub day: u8,
    /// Hour, 0–23.
    pub hour: u8,
    /// Minute, 0–59.
    pub minute: u8,
    /// Second, 0–59 (a Unix clock repeats a second rather than showing 60).
    pub second: u8,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

impl UtcDateTime {
    /// The calendar fields of `t` (the Unix epoch for earlier times).
    pub fn from_system_time(t: SystemTime) -> UtcDateTime {
        let d = since_unix_epoch(t);
        let secs = d.as_secs();
        let (year, month, day) = civil_from_days((secs / SECS_PER_DAY) as i64);
        let rem = secs % SECS_PER_DAY;
        UtcDateTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
            nanos: d.subsec_nanos(),
        }
    }

    /// ISO 8601 extended with milliseconds: `2024-02-29T00:00:00.250Z` (log lines).
    pub fn iso8601_millis(&self) -> impl fmt::Display + '_ {
        Fmt(self, |t, f| {
            write!(
                f,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year,
                t.month,
                t.day,
                t.hour,
                t.minute,
                t.second,
                t.nanos / 1_000_000
            )
        })
    }

    /// ISO 8601 basic, whole seconds: `20240229T000000Z` (file names).
    pub fn iso8601_basic(&self) -> impl fmt::Display + '_ {
        Fmt(self, |t, f| {
            write!(
                f,
                "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
                t.year, t.month, t.day, t.hour, t.minute, t.second
            )
        })
    }

    /// For people, whole seconds: `2024-02-29 00:00:00 UTC` (status and log messages).
    pub fn readable(&self) -> impl fmt::Display + '_ {
        Fmt(self, |t, f| {
            write!(
                f,
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                t.year, t.month, t.day, t.hour, t.minute, t.second
            )
        })
    }
}

/// A [`UtcDateTime`] with one of its text forms.
struct Fmt<'a>(
    &'a UtcDateTime,
    fn(&UtcDateTime, &mut fmt::Formatter<'_>) -> fmt::Result,
);

impl fmt::Display for Fmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.1)(self.0, f)
    }
}

#[cfg(test)]
#[path = "time_tests.rs"]
mod tests;
