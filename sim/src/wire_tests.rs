//! Hub wire codec: byte fixtures, round trips, and every truncation rejected without panic.

use super::*;

fn frame() -> Transmission {
    Transmission {
        freq_hz: 868_100_000,
        modulation: Modulation::Lora {
            sf: 7,
            bw_hz: 125_000,
            cr: Some(CodeRate::Cr45),
        },
        power_dbm: 14.0,
        invert_iq: false,
        preamble: 8,
        crc: true,
        payload: vec![0x40, 0x01],
    }
}

#[test]
fn transmit_fixture() {
    let msg = Message::Transmit {
        node: NodeId(3),
        frame: frame(),
    };
    let want: Vec<u8> = [
        &b"GWSA"[..],
        &[1, 3],
        &[0, 0, 0, 3],
        &868_100_000u64.to_be_bytes(),
        &[0, 7],
        &125_000u32.to_be_bytes(),
        &[1],
        &14.0f64.to_be_bytes(),
        &[0, 0, 8, 1, 0, 2, 0x40, 0x01],
    ]
    .concat();
    assert_eq!(encode(&msg), want);
    assert_eq!(decode(&want), Ok(msg));
}

#[test]
fn attached_and_detach_fixtures() {
    let b = encode(&Message::Attached {
        cookie: 0x0102_0304,
        node: NodeId(9),
    });
    assert_eq!(b, b"GWSA\x01\x02\x01\x02\x03\x04\x00\x00\x00\x09");
    assert_eq!(
        decode(b"GWSA\x01\x05\x00\x00\x00\x07"),
        Ok(Message::Detach { node: NodeId(7) })
    );
}

fn samples() -> Vec<Message> {
    vec![
        Message::Attach {
            cookie: 1,
            config: NodeConfig {
                position: SimPosition::LatLon {
                    lat: 52.1,
                    lon: 5.2,
                },
                antenna_gain_dbi: 3.0,
                listen: Listen {
                    inverted_iq: true,
                    freqs_hz: vec![869_525_000],
                    modulations: vec![
                        Modulation::Fsk { bitrate: 50_000 },
                        Modulation::LrFhss {
                            ocw_hz: 137_000,
                            cr: CodeRate::Cr13,
                            grid_steps: 52,
                        },
                    ],
                },
            },
        },
        Message::Deliver {
            node: NodeId(2),
            rssi_dbm: -101.5,
            snr_db: 7.25,
            frame: Transmission {
                invert_iq: true,
                payload: vec![7; 255],
                ..frame()
            },
        },
        Message::Error {
            cookie: 4,
            message: "unknown node NodeId(4) ✗".into(),
        },
    ]
}

#[test]
fn round_trips() {
    for m in samples() {
        assert_eq!(decode(&encode(&m)), Ok(m));
    }
}

#[test]
fn every_truncation_and_bad_header_is_an_error() {
    for m in samples() {
        let b = encode(&m);
        for n in 0..b.len() {
            assert!(
                matches!(decode(&b[..n]), Err(WireError::Truncated { .. })),
                "{m:?} cut at {n}"
            );
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(decode(&long), Err(WireError::Trailing(1)));
    }
    assert!(matches!(
        decode(b"XXXX\x01\x05\0\0\0\0"),
        Err(WireError::BadMagic(_))
    ));
    assert_eq!(
        decode(b"GWSA\x02\x05\0\0\0\0"),
        Err(WireError::BadVersion(2))
    );
    let e = decode(b"GWSA\x01\x09").unwrap_err();
    assert_eq!(e.to_string(), "invalid message type at offset 5: 9");
    // SF 13 and a 256-byte payload length are rejected, naming the field.
    let mut b = encode(&Message::Transmit {
        node: NodeId(0),
        frame: frame(),
    });
    b[19] = 13;
    assert!(decode(&b)
        .unwrap_err()
        .to_string()
        .contains("spreading factor"));
    let mut b = encode(&Message::Transmit {
        node: NodeId(0),
        frame: frame(),
    });
    let n = b.len();
    b[n - 4] = 1;
    b[n - 3] = 0;
    assert!(decode(&b)
        .unwrap_err()
        .to_string()
        .contains("payload length"));
    let mut b = encode(&Message::Deliver {
        node: NodeId(0),
        rssi_dbm: 0.0,
        snr_db: 0.0,
        frame: frame(),
    });
    b[10..18].copy_from_slice(&f64::NAN.to_be_bytes());
    assert!(decode(&b).unwrap_err().to_string().contains("rssi"));
}
