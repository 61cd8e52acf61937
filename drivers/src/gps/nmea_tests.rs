//! Byte-fixture tests for the NMEA codec: real u-blox-style sentences with and without a
//! fix, and one fixture per error.

use super::*;

const GGA_FIX: &[u8] =
    b"$GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,*76\r\n";
const RMC_FIX: &[u8] = b"$GPRMC,092750.000,A,5321.6802,N,00630.3372,W,0.02,31.66,280511,,,A*43\r\n";
const UBX_GGA: &[u8] = b"$GPGGA,092725.00,4717.11399,N,00833.91590,E,1,08,1.01,499.6,M,48.0,M,,*5B";
const UBX_RMC: &[u8] = b"$GPRMC,083559.00,A,4717.11437,N,00833.91522,E,0.004,77.52,091202,,,A*57";
const GN_RMC_SW: &[u8] = b"$GNRMC,235959.50,A,3352.12345,S,15112.54321,W,12.5,270.0,311299,,,D*7D";
const GN_GGA_SW: &[u8] =
    b"$GNGGA,235959.50,3352.12345,S,15112.54321,W,2,12,0.80,-12.3,M,22.1,M,,*5C";
const RMC_NOFIX: &[u8] = b"$GPRMC,,V,,,,,,,,,,N*53\r\n";
const GGA_NOFIX: &[u8] = b"$GPGGA,,,,,,0,00,99.99,,,,,,*48\r\n";
const RMC_41_LEAP_DAY: &[u8] =
    b"$GNRMC,000000.00,A,0000.00000,N,00000.00000,E,0.0,,290224,,,A,V*1B";

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
fn gga_with_fix() {
    let Sentence::Gga(g) = parse(GGA_FIX).unwrap() else {
        panic!("not GGA")
    };
    assert_eq!(g.talker, Talker::Gps);
    assert_eq!(
        g.time,
        Some(TimeOfDay {
            hour: 9,
            minute: 27,
            second: 50,
            nanos: 0
        })
    );
    let p = g.position.unwrap();
    assert!(close(p.latitude, 53.0 + 21.6802 / 60.0), "{}", p.latitude);
    assert!(
        close(p.longitude, -(6.0 + 30.3372 / 60.0)),
        "{}",
        p.longitude
    );
    assert_eq!(g.quality, 1);
    assert!(g.has_fix());
    assert_eq!(g.satellites, Some(8));
    assert_eq!(g.hdop, Some(1.03));
    assert_eq!(g.altitude, Some(61.7));
}

#[test]
fn ublox_gga_and_rmc_with_fix() {
    let Sentence::Gga(g) = parse(UBX_GGA).unwrap() else {
        panic!("not GGA")
    };
    assert_eq!(g.time.unwrap().nanos, 0);
    assert!(close(g.position.unwrap().latitude, 47.0 + 17.11399 / 60.0));
    assert!(close(g.position.unwrap().longitude, 8.0 + 33.91590 / 60.0));
    assert_eq!((g.satellites, g.altitude), (Some(8), Some(499.6)));

    let Sentence::Rmc(r) = parse(UBX_RMC).unwrap() else {
        panic!("not RMC")
    };
    assert!(r.status_valid && r.has_fix());
    assert_eq!(r.mode, Some('A'));
    assert_eq!(
        r.date,
        Some(Date {
            year: 2002,
            month: 12,
            day: 9
        })
    );
    assert_eq!(r.speed_knots, Some(0.004));
    assert_eq!(r.course, Some(77.52));
    // 2002-12-09 08:35:59 UTC = 1039422959.
    assert!(close(secs(r.utc.unwrap()), 1_039_422_959.0));
}

#[test]
fn rmc_with_fix_gives_utc() {
    let Sentence::Rmc(r) = parse(RMC_FIX).unwrap() else {
        panic!("not RMC")
    };
    // 2011-05-28 09:27:50 UTC = 1306574870.
    assert_eq!(r.utc, Some(UNIX_EPOCH + Duration::from_secs(1_306_574_870)));
    assert!(close(r.speed_mps().unwrap(), 0.02 * 1852.0 / 3600.0));
    assert!(close(r.position.unwrap().latitude, 53.0 + 21.6802 / 60.0));
}

#[test]
fn southern_western_hemispheres_and_fractions() {
    let Sentence::Rmc(r) = parse(GN_RMC_SW).unwrap() else {
        panic!("not RMC")
    };
    assert_eq!(r.talker, Talker::Gnss);
    let p = r.position.unwrap();
    assert!(close(p.latitude, -(33.0 + 52.12345 / 60.0)));
    assert!(close(p.longitude, -(151.0 + 12.54321 / 60.0)));
    assert_eq!(r.time.unwrap().nanos, 500_000_000);
    // 1999-12-31 23:59:59.5 UTC = 946684799.5.
    assert!(close(secs(r.utc.unwrap()), 946_684_799.5));
    assert_eq!(r.mode, Some('D'));

    let Sentence::Gga(g) = parse(GN_GGA_SW).unwrap() else {
        panic!("not GGA")
    };
    assert_eq!(
        (g.quality, g.satellites, g.altitude),
        (2, Some(12), Some(-12.3))
    );
}

#[test]
fn leap_day_and_nmea_41_fields() {
    let Sentence::Rmc(r) = parse(RMC_41_LEAP_DAY).unwrap() else {
        panic!("not RMC")
    };
    assert_eq!(
        r.date,
        Some(Date {
            year: 2024,
            month: 2,
            day: 29
        })
    );
    assert_eq!(r.utc, Some(UNIX_EPOCH + Duration::from_secs(1_709_164_800)));
    assert_eq!(r.course, None);
    assert_eq!(
        r.position,
        Some(LatLon {
            latitude: 0.0,
            longitude: 0.0
        })
    );
}

#[test]
fn no_fix_sentences_have_empty_fields() {
    let Sentence::Rmc(r) = parse(RMC_NOFIX).unwrap() else {
        panic!("not RMC")
    };
    assert!(!r.status_valid && !r.has_fix());
    assert_eq!(
        (r.time, r.position, r.date, r.utc),
        (None, None, None, None)
    );
    assert_eq!(r.mode, Some('N'));

    let Sentence::Gga(g) = parse(GGA_NOFIX).unwrap() else {
        panic!("not GGA")
    };
    assert!(!g.has_fix());
    assert_eq!((g.time, g.position, g.altitude), (None, None, None));
    assert_eq!((g.satellites, g.hdop), (Some(0), Some(99.99)));
}

#[test]
fn rmc_status_a_with_mode_n_is_not_a_fix() {
    let body = "GPRMC,092750.000,A,5321.6802,N,00630.3372,W,0.02,31.66,280511,,,N";
    let line = format!("${body}*{:02X}", checksum(body.as_bytes()));
    let Sentence::Rmc(r) = parse(line.as_bytes()).unwrap() else {
        panic!("not RMC")
    };
    assert!(r.status_valid && !r.has_fix());
}

#[test]
fn other_sentences_and_talkers_are_ignored_not_errors() {
    for (line, kind) in [
        (
            &b"$GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00*74"[..],
            "GPGSV",
        ),
        (b"$GPTXT,01,01,02,ANTSTATUS=OK*3B", "GPTXT"),
        (b"$GPVTG,,,,,,,,,N*30", "GPVTG"),
        (b"$GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99*30", "GPGSA"),
        (b"$GPGLL,,,,,,V,N*64", "GPGLL"),
    ] {
        assert_eq!(parse(line), Ok(Sentence::Other(kind.to_string())));
    }
    let pubx = "PUBX,00,,,,,,,,,";
    let line = format!("${pubx}*{:02X}", checksum(pubx.as_bytes()));
    assert_eq!(parse(line.as_bytes()), Ok(Sentence::Other("PUBX".into())));
    // GGA from a talker outside the list (NavIC) is ignored, not mis-parsed.
    let gi = "GIGGA,,,,,,0,00,99.99,,,,,,";
    let line = format!("${gi}*{:02X}", checksum(gi.as_bytes()));
    assert_eq!(parse(line.as_bytes()), Ok(Sentence::Other("GIGGA".into())));
}

#[test]
fn all_listed_talkers_decode() {
    for (id, talker) in [
        ("GP", Talker::Gps),
        ("GN", Talker::Gnss),
        ("GL", Talker::Glonass),
        ("GA", Talker::Galileo),
        ("BD", Talker::BeiDou),
        ("GB", Talker::BeiDou),
        ("GQ", Talker::Qzss),
    ] {
        let body = format!("{id}GGA,,,,,,0,00,99.99,,,,,,");
        let line = format!("${body}*{:02X}", checksum(body.as_bytes()));
        let Ok(Sentence::Gga(g)) = parse(line.as_bytes()) else {
            panic!("{id}")
        };
        assert_eq!(g.talker, talker);
    }
}

fn with_checksum(body: &str) -> Vec<u8> {
    format!("${body}*{:02X}", checksum(body.as_bytes())).into_bytes()
}

#[test]
fn checksum_errors() {
    assert_eq!(
        parse(b"$GPGGA,,,,,,0,00,99.99,,,,,,"),
        Err(NmeaError::MissingChecksum)
    );
    assert_eq!(
        parse(b"$GPGGA,,,,,,0,00,99.99,,,,,,*49"),
        Err(NmeaError::ChecksumMismatch {
            stated: 0x49,
            computed: 0x48
        })
    );
    assert_eq!(
        parse(b"$GPGGA,,,,,,0,00,99.99,,,,,,*4"),
        Err(NmeaError::MalformedChecksum("4".into()))
    );
    assert_eq!(
        parse(b"$GPGGA,,,,,,0,00,99.99,,,,,,*4G"),
        Err(NmeaError::MalformedChecksum("4G".into()))
    );
    assert_eq!(
        parse(b"$GPGGA,,,,,,0,00,99.99,,,,,,*480"),
        Err(NmeaError::MalformedChecksum("480".into()))
    );
    // Lowercase hex is accepted.
    assert!(parse(b"$GPTXT,01,01,02,ANTSTATUS=OK*3b").is_ok());
    for e in [
        NmeaError::MissingChecksum,
        NmeaError::MalformedChecksum(String::new()),
    ] {
        assert_eq!(e.reason(), RejectReason::Checksum);
    }
}

#[test]
fn framing_errors() {
    assert_eq!(parse(b""), Err(NmeaError::NoStart));
    assert_eq!(
        parse(b"GPGGA,,,,,,0,00,99.99,,,,,,*48"),
        Err(NmeaError::NoStart)
    );
    assert_eq!(
        parse(b"$GP\x00GA*00"),
        Err(NmeaError::InvalidByte { byte: 0, offset: 3 })
    );
    assert_eq!(
        parse(b"$GP\xC3GA*00").unwrap_err().reason(),
        RejectReason::Syntax
    );
    let long = with_checksum(&format!("GPTXT,{}", "A".repeat(MAX_LINE)));
    let err = parse(&long).unwrap_err();
    assert_eq!(
        err,
        NmeaError::TooLong {
            len: long.len(),
            max: MAX_LINE
        }
    );
    assert_eq!(err.reason(), RejectReason::TooLong);
    assert_eq!(
        parse(&with_checksum("GPGG")),
        Err(NmeaError::BadAddress("GPGG".into()))
    );
    assert_eq!(
        parse(&with_checksum("gpgga,")),
        Err(NmeaError::BadAddress("gpgga".into()))
    );
}

#[test]
fn field_count_errors() {
    assert_eq!(
        parse(&with_checksum("GPGGA,,,,,,0,00")),
        Err(NmeaError::TooFewFields {
            kind: "GGA",
            expected: 15,
            found: 8
        })
    );
    assert_eq!(
        parse(&with_checksum("GPRMC,,V,,,")),
        Err(NmeaError::TooFewFields {
            kind: "RMC",
            expected: 12,
            found: 6
        })
    );
}

fn bad_field(line: &str) -> (usize, &'static str, String) {
    match parse(&with_checksum(line)) {
        Err(NmeaError::BadField {
            index, name, value, ..
        }) => (index, name, value),
        other => panic!("{line}: expected BadField, got {other:?}"),
    }
}

#[test]
fn field_errors_name_the_field() {
    let gga = |time: &str,
               lat: &str,
               ns: &str,
               lon: &str,
               ew: &str,
               q: &str,
               sats: &str,
               hdop: &str,
               alt: &str| {
        format!("GPGGA,{time},{lat},{ns},{lon},{ew},{q},{sats},{hdop},{alt},M,,M,,")
    };
    let ok = [
        "092750.000",
        "5321.6802",
        "N",
        "00630.3372",
        "W",
        "1",
        "08",
        "1.0",
        "61.7",
    ];
    assert!(parse(&with_checksum(&gga(
        ok[0], ok[1], ok[2], ok[3], ok[4], ok[5], ok[6], ok[7], ok[8]
    )))
    .is_ok());
    let cases: &[(usize, &str, usize, &str)] = &[
        (0, "250000.00", 1, "UTC time"),
        (0, "09275", 1, "UTC time"),
        (0, "0927a0", 1, "UTC time"),
        (1, "5360.0000", 2, "latitude"),
        (1, "9100.0000", 2, "latitude"),
        (1, "532.6802", 2, "latitude"),
        (1, "5321.68e2", 2, "latitude"),
        (2, "X", 3, "hemisphere"),
        (2, "", 3, "hemisphere"),
        (3, "18100.0000", 4, "longitude"),
        (3, "", 4, "longitude"),
        (4, "N", 5, "hemisphere"),
        (5, "x", 6, "fix quality"),
        (5, "12", 6, "fix quality"),
        (6, "-1", 7, "satellites"),
        (6, "1000", 7, "satellites"),
        (7, "inf", 8, "HDOP"),
        (7, "-1.0", 8, "HDOP"),
        (8, "NaN", 9, "altitude"),
        (8, "1.2.3", 9, "altitude"),
    ];
    for &(which, value, index, name) in cases {
        let mut f = ok;
        f[which] = value;
        let line = gga(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]);
        let (i, n, v) = bad_field(&line);
        assert_eq!((i, n, v.as_str()), (index, name, value), "{line}");
    }
    // Latitude missing while its hemisphere is there.
    assert_eq!(bad_field("GPGGA,,,N,,,0,,,,,,,,").1, "latitude");

    let (index, name, value) = bad_field("GPRMC,,X,,,,,,,,,,N");
    assert_eq!((index, name, value.as_str()), (2, "status", "X"));
    assert_eq!(bad_field("GPRMC,,V,,,,,,,310299,,,N").1, "date");
    assert_eq!(bad_field("GPRMC,,V,,,,,,,290223,,,N").1, "date");
    assert_eq!(bad_field("GPRMC,,V,,,,,,,011399,,,N").1, "date");
    assert_eq!(bad_field("GPRMC,,V,,,,,,360.0,,,,N").1, "course");
    assert_eq!(bad_field("GPRMC,,V,,,,,-3,,,,,N").1, "speed");
    assert_eq!(bad_field("GPRMC,,V,,,,,,,,,,n").1, "mode");
}

#[test]
fn error_messages_say_what_and_where() {
    let e = parse(&with_checksum("GPRMC,,V,,,,,,,310299,,,N")).unwrap_err();
    assert_eq!(e.to_string(), "RMC: field 9 (date) invalid: \"310299\"");
    let e = parse(b"$GPGGA,,,,,,0,00,99.99,,,,,,*49").unwrap_err();
    assert_eq!(
        e.to_string(),
        "checksum mismatch: line says 49, content gives 48"
    );
}

#[test]
fn leap_second_is_accepted() {
    let Sentence::Rmc(r) = parse(&with_checksum(
        "GPRMC,235960.00,A,5321.6802,N,00630.3372,W,0.0,,311216,,,A",
    ))
    .unwrap() else {
        panic!("not RMC")
    };
    // 23:59:60 on 2016-12-31 lands on 2017-01-01 00:00:00 (1483228800).
    assert_eq!(r.utc, Some(UNIX_EPOCH + Duration::from_secs(1_483_228_800)));
}
