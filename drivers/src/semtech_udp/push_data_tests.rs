//! Byte-fixture tests of the PUSH_DATA body: the gwmp.md examples, SX1302 fields, `rsig`,
//! FSK, LR-FHSS, and each rejection.

use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::radio::{CodeRate, CrcStatus, Modulation};

/// 32 bytes 0x00..=0x1f.
const DATA32: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn doc_rxpk() -> String {
    format!(
        r#"{{"time":"2013-03-31T16:21:17.528002Z","tmst":3512348611,"chan":2,"rfch":0,"freq":866.349812,"stat":1,"modu":"LORA","datr":"SF7BW125","codr":"4/6","rssi":-35,"lsnr":5.1,"size":32,"data":"{DATA32}"}}"#
    )
}

fn decode(json: &str) -> PushData {
    decode_push_data(json.as_bytes()).unwrap()
}

fn one_error(json: &str) -> GwmpError {
    let mut p = decode(json);
    assert!(p.frames.is_empty(), "{json}");
    assert_eq!(p.rejected.len(), 1, "{json}");
    p.rejected.remove(0)
}

#[test]
fn doc_example_frame() {
    let p = decode(&format!(r#"{{"rxpk":[{}]}}"#, doc_rxpk()));
    assert!(p.rejected.is_empty());
    assert_eq!(p.rxpk_count, 1);
    let f = &p.frames[0];
    assert_eq!(f.payload, (0u8..32).collect::<Vec<_>>());
    let m = &f.meta;
    assert_eq!(m.freq_hz, 866_349_812);
    assert_eq!(m.tmst, 3_512_348_611);
    assert_eq!(
        m.time,
        Some(UNIX_EPOCH + Duration::new(1_364_746_877, 528_002_000))
    );
    assert_eq!(m.channel, 2);
    assert_eq!(m.rf_chain, 0);
    assert_eq!(m.crc, CrcStatus::Ok);
    assert_eq!(
        m.modulation,
        Modulation::Lora {
            sf: 7,
            bw_hz: 125_000,
            cr: Some(CodeRate::Cr46)
        }
    );
    assert_eq!(m.rssi, -35);
    assert_eq!(m.snr, Some(5.1));
    assert_eq!(m.gps_time, None);
    assert_eq!(m.fine_time_ns, None);
    assert_eq!(m.signal_rssi, None);
    assert_eq!(p.stats, None);
}

#[test]
fn sx1302_fields_and_stat() {
    let p = decode(
        r#"{"rxpk":[{"jver":1,"tmst":12,"tmms":1300000000123,"ftime":123456789,"chan":7,"rfch":1,
        "freq":923.3,"mid":8,"stat":-1,"modu":"LORA","datr":"SF5BW500","codr":"OFF","rssis":-112,
        "rssi":-108,"lsnr":-13.5,"foff":-1234,"brd":1,"size":3,"data":"AQID"}],
        "stat":{"time":"2014-01-12 08:59:28 GMT","rxnb":1,"rxok":0,"rxfw":1,"ackr":100.0,"dwnb":0,"txnb":0,"temp":37.5}}"#,
    );
    assert!(p.rejected.is_empty(), "{:?}", p.rejected);
    let m = &p.frames[0].meta;
    assert_eq!(m.freq_hz, 923_300_000);
    assert_eq!(m.gps_time, Some(Duration::from_millis(1_300_000_000_123)));
    assert_eq!(m.fine_time_ns, Some(123_456_789));
    assert_eq!(m.crc, CrcStatus::Bad);
    assert_eq!(
        m.modulation,
        Modulation::Lora {
            sf: 5,
            bw_hz: 500_000,
            cr: Some(CodeRate::Off)
        }
    );
    assert_eq!((m.rssi, m.signal_rssi), (-108, Some(-112)));
    assert_eq!(m.snr, Some(-13.5));
    assert_eq!(m.freq_offset_hz, Some(-1234));
    assert_eq!((m.channel, m.rf_chain, m.board), (7, 1, 1));
    assert_eq!(p.frames[0].payload, vec![1, 2, 3]);
    let s = p.stats.unwrap();
    assert_eq!(s.temperature, Some(37.5));
    assert_eq!(s.rx_received, 1);
}

#[test]
fn fsk_and_lr_fhss_and_no_crc() {
    let p = decode(
        r#"{"rxpk":[
        {"tmst":1,"freq":868.8,"chan":8,"rfch":1,"stat":0,"modu":"FSK","datr":50000,"rssi":-75,"size":2,"data":"qrs="},
        {"tmst":2,"freq":868.1,"stat":1,"modu":"LR-FHSS","datr":"M0CW137","codr":"2/3","hpw":52,"rssi":-120,"size":1,"data":"AA"}
        ]}"#,
    );
    assert!(p.rejected.is_empty(), "{:?}", p.rejected);
    assert_eq!(
        p.frames[0].meta.modulation,
        Modulation::Fsk { bitrate: 50_000 }
    );
    assert_eq!(p.frames[0].meta.crc, CrcStatus::Missing);
    assert_eq!(p.frames[0].meta.snr, None);
    assert_eq!(p.frames[0].payload, vec![0xaa, 0xbb]);
    assert_eq!(
        p.frames[1].meta.modulation,
        Modulation::LrFhss {
            ocw_hz: 137_000,
            cr: CodeRate::Cr23,
            grid_steps: 52
        }
    );
}

#[test]
fn rsig_becomes_one_frame_per_antenna() {
    let p = decode(
        r#"{"rxpk":[{"jver":2,"tmst":42,"chan":3,"rfch":0,"freq":868.1,"stat":1,"modu":"LORA",
        "datr":"SF9BW125","codr":"4/5","size":1,"data":"/w==","brd":2,"time":"2020-01-01T00:00:00Z",
        "rsig":[{"ant":0,"chan":3,"rssic":-60,"lsnr":9.5,"rssis":-61,"foff":10},
                {"ant":1,"chan":5,"rssic":-70,"lsnr":-2.0}]}]}"#,
    );
    assert!(p.rejected.is_empty(), "{:?}", p.rejected);
    assert_eq!(p.frames.len(), 2);
    let (a, b) = (&p.frames[0].meta, &p.frames[1].meta);
    assert_eq!(
        (a.antenna, a.channel, a.rssi, a.snr),
        (0, 3, -60, Some(9.5))
    );
    assert_eq!((a.signal_rssi, a.freq_offset_hz), (Some(-61), Some(10)));
    assert_eq!(
        (b.antenna, b.channel, b.rssi, b.snr),
        (1, 5, -70, Some(-2.0))
    );
    assert_eq!(b.board, 2);
    assert_eq!(a.tmst, b.tmst);
    assert_eq!(p.frames[1].payload, vec![0xff]);
    // An rsig signal without rssic is rejected, naming the signal.
    let e = one_error(
        r#"{"rxpk":[{"tmst":1,"freq":868.1,"stat":1,"datr":"SF7BW125","data":"AA","rsig":[{"ant":0}]}]}"#,
    );
    assert!(
        matches!(&e, GwmpError::MissingField { index: 0, field } if field == "rsig[0].rssic"),
        "{e:?}"
    );
    let e = one_error(
        r#"{"rxpk":[{"tmst":1,"freq":868.1,"stat":1,"datr":"SF7BW125","data":"AA","rsig":[]}]}"#,
    );
    assert!(matches!(&e, GwmpError::BadField { field, .. } if field == "rsig"));
}

#[test]
fn frequency_is_exact() {
    for (mhz, hz) in [
        ("866.349812", 866_349_812u64),
        ("868.100000", 868_100_000),
        ("902.3", 902_300_000),
        ("2403.000001", 2_403_000_001),
        ("433.175", 433_175_000),
    ] {
        let p = decode(&format!(
            r#"{{"rxpk":[{{"tmst":1,"freq":{mhz},"stat":1,"datr":"SF7BW125","rssi":-1,"data":""}}]}}"#
        ));
        assert_eq!(p.frames[0].meta.freq_hz, hz, "{mhz}");
    }
}

fn entry_with(field: &str, value: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&doc_rxpk()).unwrap();
    if value.is_empty() {
        v.as_object_mut().unwrap().remove(field);
    } else {
        v[field] = serde_json::from_str(value).unwrap();
    }
    format!(r#"{{"rxpk":[{v}]}}"#)
}

#[test]
fn absurd_values_are_rejected_naming_the_field() {
    for (field, value) in [
        ("freq", "99.9"),
        ("freq", "3000.000001"),
        ("freq", "-868.1"),
        ("rssi", "-201"),
        ("rssi", "21"),
        ("lsnr", "50.1"),
        ("lsnr", "-51"),
        ("size", "256"),
        ("stat", "2"),
        ("tmst", "4294967296"),
        ("ftime", "1000000000"),
        ("datr", "\"SF13BW125\""),
        ("datr", "\"SF4BW125\""),
        ("datr", "\"SF7BW600\""),
        ("datr", "\"SF7BW7\""),
    ] {
        let e = one_error(&entry_with(field, value));
        match &e {
            GwmpError::OutOfRange {
                index: 0, field: f, ..
            } => assert_eq!(f, field),
            other => panic!("{field}={value}: {other:?}"),
        }
    }
}

#[test]
fn malformed_fields_are_rejected_naming_the_field() {
    for (field, value) in [
        ("datr", "\"fast\""),
        ("datr", "true"),
        ("codr", "\"4/9\""),
        ("time", "\"2013-03-31 16:21:17\""),
        ("rssi", "\"-35\""),
        ("modu", "\"FSK\""),
        ("chan", "-1.5"),
    ] {
        match one_error(&entry_with(field, value)) {
            GwmpError::BadField {
                index: 0, field: f, ..
            } => assert_eq!(f, field),
            other => panic!("{field}={value}: {other:?}"),
        }
    }
    for field in ["freq", "tmst", "stat", "datr", "data", "rssi"] {
        match one_error(&entry_with(field, "")) {
            GwmpError::MissingField { index: 0, field: f } => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert!(matches!(
        one_error(&entry_with("data", "\"not*base64\"")),
        GwmpError::BadBase64 { index: 0 }
    ));
    assert!(matches!(
        one_error(&entry_with("size", "31")),
        GwmpError::SizeMismatch {
            index: 0,
            size: 31,
            actual: 32
        }
    ));
    let long = format!("\"{}\"", "A".repeat(400));
    assert!(matches!(
        one_error(&entry_with("data", &long)),
        GwmpError::OutOfRange { .. }
    ));
    assert!(matches!(
        one_error(r#"{"rxpk":[7]}"#),
        GwmpError::BadField { index: 0, .. }
    ));
}

#[test]
fn one_bad_entry_does_not_drop_the_others() {
    let bad = r#"{"tmst":1,"freq":1.0,"stat":1,"datr":"SF7BW125","rssi":0,"data":""}"#;
    let json = format!(
        r#"{{"rxpk":[{good},{bad},{good}],"stat":{{"rxnb":"x"}}}}"#,
        good = doc_rxpk()
    );
    let p = decode(&json);
    assert_eq!(p.rxpk_count, 3);
    assert_eq!(p.frames.len(), 2);
    assert_eq!(p.rejected.len(), 2);
    assert!(
        matches!(&p.rejected[0], GwmpError::OutOfRange { index: 1, field, .. } if field == "freq")
    );
    assert!(matches!(
        &p.rejected[1],
        GwmpError::BadStat { field: "rxnb", .. }
    ));
    assert_eq!(p.stats, None);
}

#[test]
fn bad_bodies_are_rejected_whole() {
    for body in [
        &b""[..],
        b"{",
        b"[1,2]",
        b"\"rxpk\"",
        b"{\"rxpk\":{}}",
        b"\xff\xfe",
    ] {
        assert!(
            matches!(decode_push_data(body), Err(GwmpError::BadJson { .. })),
            "{body:?}"
        );
    }
    let many = format!(r#"{{"rxpk":[{}]}}"#, vec!["{}"; 257].join(","));
    assert!(matches!(
        decode_push_data(many.as_bytes()),
        Err(GwmpError::TooManyRxpk { count: 257 })
    ));
    // Empty object, stat-only and NUL-terminated bodies are fine.
    assert!(decode(r#"{}"#).frames.is_empty());
    assert!(decode_push_data(b"{\"stat\":{\"rxnb\":1}}\0")
        .unwrap()
        .stats
        .is_some());
}
