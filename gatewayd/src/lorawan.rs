//! LoRaWAN 1.0.x/1.1 PHYPayload header parsing: a pure function over bytes.
//!
//! The gateway only reads headers (it holds no keys): MType, and for data frames DevAddr,
//! FCtrl, FCnt and FPort; for join requests JoinEUI, DevEUI and DevNonce. Proprietary frames
//! are kept aside for proof of coverage.

use drivers::radio::Eui64;

/// Message type (MHDR bits 7..5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MType {
    /// Join-request.
    JoinRequest,
    /// Join-accept.
    JoinAccept,
    /// Unconfirmed data up.
    UnconfirmedDataUp,
    /// Unconfirmed data down.
    UnconfirmedDataDown,
    /// Confirmed data up.
    ConfirmedDataUp,
    /// Confirmed data down.
    ConfirmedDataDown,
    /// Rejoin-request (1.1).
    RejoinRequest,
    /// Proprietary.
    Proprietary,
}

impl MType {
    /// From the MHDR byte.
    pub fn from_mhdr(mhdr: u8) -> MType {
        match mhdr >> 5 {
            0 => MType::JoinRequest,
            1 => MType::JoinAccept,
            2 => MType::UnconfirmedDataUp,
            3 => MType::UnconfirmedDataDown,
            4 => MType::ConfirmedDataUp,
            5 => MType::ConfirmedDataDown,
            6 => MType::RejoinRequest,
            _ => MType::Proprietary,
        }
    }
}

/// The parsed header of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    /// A data frame (up or down, confirmed or not).
    Data {
        /// Message type.
        mtype: MType,
        /// Device address.
        dev_addr: u32,
        /// Frame control byte.
        fctrl: u8,
        /// 16-bit frame counter as on the wire.
        fcnt: u16,
        /// Frame port, when present.
        fport: Option<u8>,
    },
    /// A join request.
    JoinRequest {
        /// JoinEUI (AppEUI).
        join_eui: Eui64,
        /// DevEUI.
        dev_eui: Eui64,
        /// DevNonce.
        dev_nonce: u16,
    },
    /// A join accept (encrypted; nothing to read).
    JoinAccept,
    /// A rejoin request (1.1).
    RejoinRequest,
    /// A proprietary frame (proof-of-coverage beacons are proprietary frames).
    Proprietary,
}

/// Why a frame's header could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Empty payload.
    #[error("empty PHYPayload")]
    Empty,
    /// Too short for its message type.
    #[error("{mtype:?} frame of {len} bytes is shorter than the minimum {min}")]
    TooShort {
        /// Message type from the MHDR.
        mtype: MType,
        /// Actual length.
        len: usize,
        /// Minimum length.
        min: usize,
    },
    /// The MHDR major version is not LoRaWAN R1.
    #[error("unsupported LoRaWAN major version {0} in MHDR")]
    Major(u8),
}

fn eui_le(bytes: &[u8]) -> Eui64 {
    let mut out = [0u8; 8];
    for (i, b) in bytes.iter().take(8).enumerate() {
        out[7 - i] = *b;
    }
    Eui64(out)
}

/// Parse the header of a PHYPayload.
pub fn parse_header(phy: &[u8]) -> Result<Header, HeaderError> {
    let mhdr = *phy.first().ok_or(HeaderError::Empty)?;
    let mtype = MType::from_mhdr(mhdr);
    if mtype == MType::Proprietary {
        return Ok(Header::Proprietary);
    }
    if mhdr & 0x03 != 0 {
        return Err(HeaderError::Major(mhdr & 0x03));
    }
    let need = |min: usize| {
        if phy.len() < min {
            Err(HeaderError::TooShort {
                mtype,
                len: phy.len(),
                min,
            })
        } else {
            Ok(())
        }
    };
    match mtype {
        MType::JoinRequest => {
            need(23)?;
            Ok(Header::JoinRequest {
                join_eui: eui_le(&phy[1..9]),
                dev_eui: eui_le(&phy[9..17]),
                dev_nonce: u16::from_le_bytes([phy[17], phy[18]]),
            })
        }
        MType::JoinAccept => {
            need(17)?;
            Ok(Header::JoinAccept)
        }
        MType::RejoinRequest => {
            need(19)?;
            Ok(Header::RejoinRequest)
        }
        _ => {
            // MHDR(1) DevAddr(4) FCtrl(1) FCnt(2) [FOpts] [FPort FRMPayload] MIC(4)
            need(12)?;
            let fctrl = phy[5];
            let fopts_len = usize::from(fctrl & 0x0f);
            need(12 + fopts_len)?;
            let port_at = 8 + fopts_len;
            let fport = (phy.len() > port_at + 4).then(|| phy[port_at]);
            Ok(Header::Data {
                mtype,
                dev_addr: u32::from_le_bytes([phy[1], phy[2], phy[3], phy[4]]),
                fctrl,
                fcnt: u16::from_le_bytes([phy[6], phy[7]]),
                fport,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn v1_unconfirmed_data_up() {
        let h = parse_header(&hex("40 04030201 80 0100 01 a694642615 d6c3b582")).unwrap();
        assert_eq!(
            h,
            Header::Data {
                mtype: MType::UnconfirmedDataUp,
                dev_addr: 0x0102_0304,
                fctrl: 0x80,
                fcnt: 1,
                fport: Some(1)
            }
        );
    }

    #[test]
    fn v2_confirmed_data_down() {
        let h = parse_header(&hex("a0 04030201 80 ff2a 2a 0af1a36a05d0125f885d 881d49e1")).unwrap();
        assert!(matches!(
            h,
            Header::Data {
                mtype: MType::ConfirmedDataDown,
                fcnt: 0x2aff,
                fport: Some(42),
                ..
            }
        ));
    }

    #[test]
    fn v4_fopts_without_fport() {
        let h = parse_header(&hex("40 04030201 03 0000 020305 d7fa0c6c")).unwrap();
        assert!(matches!(
            h,
            Header::Data {
                fctrl: 0x03,
                fport: None,
                ..
            }
        ));
    }

    #[test]
    fn v5_join_request() {
        let h = parse_header(&hex("00 0403020104030201 0504030205040302 2d10 6a990e12")).unwrap();
        assert_eq!(
            h,
            Header::JoinRequest {
                join_eui: "0102030401020304".parse().unwrap(),
                dev_eui: "0203040502030405".parse().unwrap(),
                dev_nonce: 0x102d,
            }
        );
    }

    #[test]
    fn v6_join_accept_and_proprietary() {
        assert_eq!(
            parse_header(&hex("20 493eeb51fba2116f810edb3742975142")).unwrap(),
            Header::JoinAccept
        );
        assert_eq!(parse_header(&[0xe0, 1, 2, 3]).unwrap(), Header::Proprietary);
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        assert_eq!(parse_header(&[]), Err(HeaderError::Empty));
        assert!(matches!(
            parse_header(&[0x40, 1, 2]),
            Err(HeaderError::TooShort { len: 3, .. })
        ));
        // FOptsLen 15 but only 12 bytes.
        assert!(matches!(
            parse_header(&hex("40 04030201 0f 0000 00000000")),
            Err(HeaderError::TooShort { min: 27, .. })
        ));
        assert_eq!(
            parse_header(&hex("41 04030201 00 0000 00000000")),
            Err(HeaderError::Major(1))
        );
        assert!(matches!(
            parse_header(&[0x00; 10]),
            Err(HeaderError::TooShort {
                mtype: MType::JoinRequest,
                ..
            })
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = parse_header(&bytes);
        }
    }
}
