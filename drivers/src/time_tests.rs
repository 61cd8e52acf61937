use super::*;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn known_dates() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(1969, 12, 31), -1);
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    // date -u -d 2024-02-29 +%s = 1709164800
    assert_eq!(days_from_civil(2024, 2, 29) * 86_400, 1_709_164_800);
    // date -u -d 2011-05-28 +%s = 1306540800
    assert_eq!(days_from_civil(2011, 5, 28) * 86_400, 1_306_540_800);
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
    assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
}

#[test]
fn every_day_from_1900_to_2100_round_trips() {
    // Walk every day and check continuity, month lengths and the inverse.
    let mut expected = days_from_civil(1900, 1, 1);
    assert_eq!(expected, -25_567);
    for year in 1900..2100 {
        for month in 1..=12u8 {
            for day in 1..=days_in_month(year, month) {
                assert_eq!(
                    days_from_civil(year, month, day),
                    expected,
                    "{year}-{month}-{day}"
                );
                assert_eq!(civil_from_days(expected), (year, month, day));
                expected += 1;
            }
        }
    }
    assert_eq!(days_from_civil(2100, 1, 1), expected);
}

#[test]
fn leap_years() {
    assert!(is_leap_year(2000));
    assert!(!is_leap_year(1900));
    assert!(!is_leap_year(2100));
    assert!(is_leap_year(2024));
    assert!(!is_leap_year(2023));
    assert_eq!(days_in_month(2024, 2), 29);
    assert_eq!(days_in_month(2100, 2), 28);
    assert_eq!(days_in_month(2024, 0), 0);
    assert_eq!(days_in_month(2024, 13), 0);
}

#[test]
fn gps_epoch_is_1980_01_06() {
    assert_eq!(
        days_from_civil(1980, 1, 6) * 86_400,
        GPS_EPOCH_UNIX_SECS as i64
    );
    // At the GPS epoch GPS and UTC agreed; the constant is today's offset.
    assert_eq!(
        since_gps_epoch(at(GPS_EPOCH_UNIX_SECS)),
        Some(Duration::from_secs(GPS_LEAP_SECONDS))
    );
    assert_eq!(since_gps_epoch(at(GPS_EPOCH_UNIX_SECS - 1)), None);
    assert_eq!(since_gps_epoch(UNIX_EPOCH), None);
}

#[test]
fn gps_time_counts_the_leap_seconds() {
    // 2024-02-29T00:00:00Z: GPS time 1_393_200_018 s (UTC 1_393_200_000 s after the GPS
    // epoch, plus the 18 leap seconds since 1980).
    let utc = at(1_709_164_800);
    assert_eq!(
        since_gps_epoch(utc),
        Some(Duration::from_secs(1_393_200_018))
    );
    assert_eq!(
        from_gps_epoch(Duration::from_secs(1_393_200_018)),
        Some(utc)
    );
    let t = utc + Duration::from_nanos(528_002_123);
    assert_eq!(from_gps_epoch(since_gps_epoch(t).unwrap()), Some(t));
    assert_eq!(from_gps_epoch(Duration::MAX), None);
}

#[test]
fn unix_milliseconds_and_microseconds() {
    let t = UNIX_EPOCH + Duration::new(1_709_164_800, 250_999_999);
    assert_eq!(unix_ms(t), 1_709_164_800_250);
    assert_eq!(unix_us(t), 1_709_164_800_250_999);
    assert_eq!(
        from_unix_ms(1_709_164_800_250),
        t - Duration::from_nanos(999_999)
    );
    assert_eq!(
        from_unix_us(1_709_164_800_250_999),
        t - Duration::from_nanos(999)
    );
    assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
    assert_eq!(unix_us(UNIX_EPOCH - Duration::from_secs(1)), 0);
    assert_eq!(
        since_unix_epoch(t),
        Duration::new(1_709_164_800, 250_999_999)
    );
}

#[test]
fn text_forms() {
    let t = UtcDateTime::from_system_time(UNIX_EPOCH + Duration::from_millis(1_709_164_800_250));
    assert_eq!(t.iso8601_millis().to_string(), "2024-02-29T00:00:00.250Z");
    assert_eq!(t.iso8601_basic().to_string(), "20240229T000000Z");
    assert_eq!(t.readable().to_string(), "2024-02-29 00:00:00 UTC");
    // date -u -d @1780000000 = 2026-05-28 20:26:40
    let t = UtcDateTime::from_system_time(at(1_780_000_000));
    assert_eq!(t.readable().to_string(), "2026-05-28 20:26:40 UTC");
    assert_eq!(t.iso8601_basic().to_string(), "20260528T202640Z");
    let t = UtcDateTime::from_system_time(at(4_102_444_799));
    assert_eq!(t.iso8601_millis().to_string(), "2099-12-31T23:59:59.000Z");
    let before = UtcDateTime::from_system_time(UNIX_EPOCH - Duration::from_secs(5));
    assert_eq!(
        before.iso8601_millis().to_string(),
        "1970-01-01T00:00:00.000Z"
    );
}
