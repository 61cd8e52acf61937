//! Byte-exact PUSH_DATA bodies as real forwarders write them (`fixtures/forwarder_dialects.txt`,
//! each citing its public source) decode into the canonical metadata.

use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::radio::{CodeRate, CrcStatus, Modulation};

const FIXTURES: &str = include_str!("fixtures/forwarder_dialects.txt");

/// `(name, body)` of every fixture, in file order.
fn fixtures() -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    let mut name = None;
    for line in FIXTURES.lines() {
        if let Some(n) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            name = Some(n);
        } else if !line.is_empty() && !line.starts_with('#') {
            out.push((name.take().expect("a [name] line before each body"), line));
        }
    }
    out
}

fn fixture(name: &str) -> PushData {
    let (_, body) = fixtures()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no fixture {name}"));
    let p = decode_push_data(body.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(p.rejected.is_empty(), "{name}: {:?}", p.rejected);
    assert_eq!(p.frames.len(), 1, "{name}");
    p
}

#[test]
fn every_fixture_decodes_to_one_frame() {
    let all = fixtures();
    assert!(all.len() >= 10, "fixture file parsed: {}", all.len());
    for (name, _) in all {
        fixture(name);
    }
}

#[test]
fn sx1302_lora_with_gps() {
    let m = fixture("sx1302-lora-gps").frames[0].meta.clone();
    assert_eq!(m.freq_hz, 868_500_000);
    let lora_45 = Modulation::Lora {
        sf: 7,
        bw_hz: 125_000,
        cr: Some(CodeRate::Cr45),
    };
    assert_eq!(m.modulation, lora_45);
    assert_eq!((m.rssi, m.signal_rssi, m.snr), (-35, Some(-36), Some(9.5)));
    assert_eq!(m.freq_offset_hz, Some(-234));
    assert_eq!(
        m.time,
        Some(UNIX_EPOCH + Duration::new(1_714_564_800, 528_002_000))
    );
    assert_eq!(m.gps_time, Some(Duration::from_millis(1_398_600_018_528)));
    assert_eq!(m.crc, CrcStatus::Ok);
}

#[test]
fn sx1302_false_sync_keeps_off_and_negative_zero() {
    let m = fixture("sx1302-lora-false-sync").frames[0].meta.clone();
    assert_eq!(m.crc, CrcStatus::Bad);
    assert!(matches!(
        m.modulation,
        Modulation::Lora {
            sf: 12,
            cr: Some(CodeRate::Off),
            ..
        }
    ));
    assert_eq!(m.signal_rssi, Some(0), "\"rssis\":-0 is zero");
    assert_eq!(m.time, None);
}

#[test]
fn sx1302_unknown_codr_keeps_the_frame_without_a_coding_rate() {
    let m = fixture("sx1302-lora-unknown-codr").frames[0].meta.clone();
    assert_eq!(
        m.modulation,
        Modulation::Lora {
            sf: 9,
            bw_hz: 125_000,
            cr: None
        }
    );
}

#[test]
fn sx1302_fsk_and_sx1301_lora() {
    let fsk = fixture("sx1302-fsk").frames[0].meta.clone();
    assert_eq!(fsk.modulation, Modulation::Fsk { bitrate: 50_000 });
    assert_eq!((fsk.rssi, fsk.snr), (-80, None));
    let v4 = fixture("sx1301-lora").frames[0].meta.clone();
    assert_eq!(v4.freq_hz, 866_349_812);
    assert!(matches!(
        v4.modulation,
        Modulation::Lora {
            cr: Some(CodeRate::Cr46),
            ..
        }
    ));
    assert_eq!((v4.rssi, v4.snr), (-35, Some(5.1)));
}

#[test]
fn lr_fhss_coding_rates_in_every_spelling_are_canonical() {
    for (name, cr) in [
        ("lr-fhss-codr-4-6", CodeRate::Cr23),
        ("lr-fhss-codr-2-3", CodeRate::Cr23),
        ("lr-fhss-codr-2-6", CodeRate::Cr13),
        ("lr-fhss-codr-1-3", CodeRate::Cr13),
        ("lr-fhss-codr-4-8", CodeRate::Cr48),
    ] {
        let m = fixture(name).frames[0].meta.clone();
        assert_eq!(
            m.modulation,
            Modulation::LrFhss {
                ocw_hz: 137_000,
                cr,
                grid_steps: 52
            },
            "{name}"
        );
    }
}

#[test]
fn a_coding_rate_no_forwarder_writes_is_still_refused_by_name() {
    let body = fixtures()
        .into_iter()
        .find(|(n, _)| *n == "lr-fhss-codr-4-6")
        .unwrap()
        .1
        .replace("\"4/6\"", "\"4/5\"");
    let p = decode_push_data(body.as_bytes()).unwrap();
    assert!(p.frames.is_empty());
    let e = p.rejected[0].to_string();
    assert!(
        e.contains("rxpk[0].codr") && e.contains("\"4/5\" is not an LR-FHSS coding rate"),
        "{e}"
    );
}

#[test]
fn escaped_strings_decode_like_plain_ones() {
    // JSON lets a forwarder escape `/` and any character; the borrowed parse must unescape.
    let (_, plain) = fixtures()
        .into_iter()
        .find(|(n, _)| *n == "sx1301-lora")
        .unwrap();
    let escaped = plain
        .replace("\"SF7BW125\"", "\"SF7\\u0042W125\"")
        .replace("\"4/6\"", "\"4\\/6\"");
    assert_ne!(escaped, plain);
    let a = decode_push_data(plain.as_bytes()).unwrap();
    let b = decode_push_data(escaped.as_bytes()).unwrap();
    assert!(b.rejected.is_empty(), "{:?}", b.rejected);
    assert_eq!(a.frames[0].meta, b.frames[0].meta);
    assert_eq!(a.frames[0].payload, b.frames[0].payload);
}
