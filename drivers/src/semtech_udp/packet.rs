//! GWMP datagram framing: the 4-byte header, the gateway EUI and the raw JSON body of the
//! six packet types, for protocol versions 1 and 2. Pure functions over bytes.

use super::error::GwmpError;
use crate::radio::Eui64;

/// Largest UDP payload over IPv4; longer datagrams cannot be genuine.
pub const MAX_DATAGRAM: usize = 65_507;

/// Packet identifiers (byte 3).
pub mod id {
    /// Gateway → server: uplinks and stats.
    pub const PUSH_DATA: u8 = 0x00;
    /// Server → gateway: PUSH_DATA received.
    pub const PUSH_ACK: u8 = 0x01;
    /// Gateway → server: keepalive that opens the downlink route.
    pub const PULL_DATA: u8 = 0x02;
    /// Server → gateway: a txpk to send.
    pub const PULL_RESP: u8 = 0x03;
    /// Server → gateway: PULL_DATA received.
    pub const PULL_ACK: u8 = 0x04;
    /// Gateway → server: outcome of a PULL_RESP (protocol v2).
    pub const TX_ACK: u8 = 0x05;
}

/// GWMP protocol version (byte 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// packet_forwarder ≤ v2.x: no TX_ACK, PULL_RESP token unused.
    V1,
    /// packet_forwarder v3+ and sx1302_hal: TX_ACK echoes the PULL_RESP token.
    V2,
}

impl Version {
    /// The version byte.
    pub fn byte(self) -> u8 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }

    /// Parse the version byte.
    pub fn from_byte(b: u8) -> Result<Version, GwmpError> {
        match b {
            1 => Ok(Version::V1),
            2 => Ok(Version::V2),
            other => Err(GwmpError::UnsupportedVersion(other)),
        }
    }
}

/// One GWMP datagram. Bodies are kept as raw JSON bytes; see `rxpk`, `stat` and `txpk`
/// for their contents. The token is the two raw bytes 1-2 read big-endian (opaque).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// 0x00: `{"rxpk":[...],"stat":{...}}` from a gateway.
    PushData {
        /// Protocol version.
        version: Version,
        /// Random token to echo in PUSH_ACK.
        token: u16,
        /// Gateway EUI.
        gateway: Eui64,
        /// JSON body (bytes 12..).
        json: Vec<u8>,
    },
    /// 0x01: acknowledges a PUSH_DATA.
    PushAck {
        /// Protocol version.
        version: Version,
        /// Token of the PUSH_DATA.
        token: u16,
    },
    /// 0x02: keepalive; its source address is the downlink route.
    PullData {
        /// Protocol version.
        version: Version,
        /// Random token to echo in PULL_ACK.
        token: u16,
        /// Gateway EUI.
        gateway: Eui64,
    },
    /// 0x03: `{"txpk":{...}}` to a gateway.
    PullResp {
        /// Protocol version.
        version: Version,
        /// v1: 0 (unused); v2: random token echoed by TX_ACK.
        token: u16,
        /// JSON body (bytes 4..).
        json: Vec<u8>,
    },
    /// 0x04: acknowledges a PULL_DATA.
    PullAck {
        /// Protocol version.
        version: Version,
        /// Token of the PULL_DATA.
        token: u16,
    },
    /// 0x05: outcome of a PULL_RESP.
    TxAck {
        /// Protocol version.
        version: Version,
        /// Token of the PULL_RESP.
        token: u16,
        /// Gateway EUI (absent in the v3.0.0 doc layout).
        gateway: Option<Eui64>,
        /// Optional JSON body `{"txpk_ack":{...}}` (may be empty).
        json: Vec<u8>,
    },
}

fn eui_at(buf: &[u8]) -> Eui64 {
    let mut e = [0u8; 8];
    e.copy_from_slice(&buf[4..12]);
    Eui64(e)
}

fn exact(packet: &'static str, buf: &[u8], expected: usize) -> Result<(), GwmpError> {
    if buf.len() < expected {
        Err(GwmpError::TooShort {
            len: buf.len(),
            need: expected,
        })
    } else if buf.len() > expected {
        Err(GwmpError::UnexpectedBody {
            packet,
            expected,
            len: buf.len(),
        })
    } else {
        Ok(())
    }
}

impl Packet {
    /// Parse one datagram. Only framing is checked here; JSON bodies are checked by the
    /// body decoders.
    pub fn parse(buf: &[u8]) -> Result<Packet, GwmpError> {
        if buf.len() > MAX_DATAGRAM {
            return Err(GwmpError::TooLarge { len: buf.len() });
        }
        if buf.len() < 4 {
            return Err(GwmpError::TooShort {
                len: buf.len(),
                need: 4,
            });
        }
        let version = Version::from_byte(buf[0])?;
        let token = u16::from_be_bytes([buf[1], buf[2]]);
        match buf[3] {
            id::PUSH_DATA => {
                if buf.len() < 12 {
                    return Err(GwmpError::TooShort {
                        len: buf.len(),
                        need: 12,
                    });
                }
                Ok(Packet::PushData {
                    version,
                    token,
                    gateway: eui_at(buf),
                    json: buf[12..].to_vec(),
                })
            }
            id::PUSH_ACK => {
                exact("PUSH_ACK", buf, 4)?;
                Ok(Packet::PushAck { version, token })
            }
            id::PULL_DATA => {
                exact("PULL_DATA", buf, 12)?;
                Ok(Packet::PullData {
                    version,
                    token,
                    gateway: eui_at(buf),
                })
            }
            id::PULL_RESP => Ok(Packet::PullResp {
                version,
                token,
                json: buf[4..].to_vec(),
            }),
            id::PULL_ACK => {
                exact("PULL_ACK", buf, 4)?;
                Ok(Packet::PullAck { version, token })
            }
            id::TX_ACK => {
                // v4.0.0 doc and all code: 12-byte header with EUI, then optional JSON.
                // v3.0.0 doc: JSON straight after byte 4. The 12-byte form wins whenever it
                // fits (an EUI may well start with 0x7b, '{'); JSON-after-4 only otherwise.
                let header_form = buf.len() == 12 || (buf.len() > 12 && buf[12] == b'{');
                let body_from_4 = !header_form && (buf.len() == 4 || buf[4] == b'{');
                if body_from_4 {
                    return Ok(Packet::TxAck {
                        version,
                        token,
                        gateway: None,
                        json: buf[4..].to_vec(),
                    });
                }
                if buf.len() < 12 {
                    return Err(GwmpError::TooShort {
                        len: buf.len(),
                        need: 12,
                    });
                }
                Ok(Packet::TxAck {
                    version,
                    token,
                    gateway: Some(eui_at(buf)),
                    json: buf[12..].to_vec(),
                })
            }
            other => Err(GwmpError::UnknownIdentifier(other)),
        }
    }

    /// The datagram bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (version, token, ident) = (self.version(), self.token(), self.identifier());
        let mut out = Vec::with_capacity(12);
        out.push(version.byte());
        out.extend_from_slice(&token.to_be_bytes());
        out.push(ident);
        match self {
            Packet::PushData { gateway, json, .. } => {
                out.extend_from_slice(&gateway.0);
                out.extend_from_slice(json);
            }
            Packet::PullData { gateway, .. } => out.extend_from_slice(&gateway.0),
            Packet::PullResp { json, .. } => out.extend_from_slice(json),
            Packet::TxAck { gateway, json, .. } => {
                if let Some(g) = gateway {
                    out.extend_from_slice(&g.0);
                }
                out.extend_from_slice(json);
            }
            Packet::PushAck { .. } | Packet::PullAck { .. } => {}
        }
        out
    }

    /// Protocol version.
    pub fn version(&self) -> Version {
        match self {
            Packet::PushData { version, .. }
            | Packet::PushAck { version, .. }
            | Packet::PullData { version, .. }
            | Packet::PullResp { version, .. }
            | Packet::PullAck { version, .. }
            | Packet::TxAck { version, .. } => *version,
        }
    }

    /// Token (bytes 1-2).
    pub fn token(&self) -> u16 {
        match self {
            Packet::PushData { token, .. }
            | Packet::PushAck { token, .. }
            | Packet::PullData { token, .. }
            | Packet::PullResp { token, .. }
            | Packet::PullAck { token, .. }
            | Packet::TxAck { token, .. } => *token,
        }
    }

    /// Identifier (byte 3).
    pub fn identifier(&self) -> u8 {
        match self {
            Packet::PushData { .. } => id::PUSH_DATA,
            Packet::PushAck { .. } => id::PUSH_ACK,
            Packet::PullData { .. } => id::PULL_DATA,
            Packet::PullResp { .. } => id::PULL_RESP,
            Packet::PullAck { .. } => id::PULL_ACK,
            Packet::TxAck { .. } => id::TX_ACK,
        }
    }

    /// The packet type's name, as in the protocol document.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::PushData { .. } => "PUSH_DATA",
            Packet::PushAck { .. } => "PUSH_ACK",
            Packet::PullData { .. } => "PULL_DATA",
            Packet::PullResp { .. } => "PULL_RESP",
            Packet::PullAck { .. } => "PULL_ACK",
            Packet::TxAck { .. } => "TX_ACK",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EUI: [u8; 8] = [0xaa, 0x55, 0x5a, 0x00, 0x00, 0x00, 0x01, 0x01];

    fn roundtrip(bytes: &[u8], expect: Packet) {
        let p = Packet::parse(bytes).unwrap();
        assert_eq!(p, expect);
        assert_eq!(p.to_bytes(), bytes);
    }

    #[test]
    fn all_six_types_both_versions() {
        for (vb, v) in [(1u8, Version::V1), (2u8, Version::V2)] {
            let mut push = vec![vb, 0x12, 0x34, 0x00];
            push.extend_from_slice(&EUI);
            push.extend_from_slice(b"{\"stat\":{}}");
            roundtrip(
                &push,
                Packet::PushData {
                    version: v,
                    token: 0x1234,
                    gateway: Eui64(EUI),
                    json: b"{\"stat\":{}}".to_vec(),
                },
            );
            roundtrip(
                &[vb, 0xab, 0xcd, 0x01],
                Packet::PushAck {
                    version: v,
                    token: 0xabcd,
                },
            );
            let mut pull = vec![vb, 0x00, 0x07, 0x02];
            pull.extend_from_slice(&EUI);
            roundtrip(
                &pull,
                Packet::PullData {
                    version: v,
                    token: 7,
                    gateway: Eui64(EUI),
                },
            );
            let mut resp = vec![vb, 0x00, 0x00, 0x03];
            resp.extend_from_slice(b"{\"txpk\":{}}");
            roundtrip(
                &resp,
                Packet::PullResp {
                    version: v,
                    token: 0,
                    json: b"{\"txpk\":{}}".to_vec(),
                },
            );
            roundtrip(
                &[vb, 0xff, 0x00, 0x04],
                Packet::PullAck {
                    version: v,
                    token: 0xff00,
                },
            );
        }
    }

    #[test]
    fn tx_ack_layouts() {
        // v4.0.0 / code: 12-byte header, no JSON.
        let mut a = vec![2, 0x11, 0x22, 0x05];
        a.extend_from_slice(&EUI);
        roundtrip(
            &a,
            Packet::TxAck {
                version: Version::V2,
                token: 0x1122,
                gateway: Some(Eui64(EUI)),
                json: vec![],
            },
        );
        // 12-byte header with JSON.
        let body = b"{\"txpk_ack\":{\"error\":\"TOO_LATE\"}}";
        let mut b = a.clone();
        b.extend_from_slice(body);
        roundtrip(
            &b,
            Packet::TxAck {
                version: Version::V2,
                token: 0x1122,
                gateway: Some(Eui64(EUI)),
                json: body.to_vec(),
            },
        );
        // v3.0.0 doc: JSON right after byte 4.
        let mut c = vec![2, 0x11, 0x22, 0x05];
        c.extend_from_slice(body);
        roundtrip(
            &c,
            Packet::TxAck {
                version: Version::V2,
                token: 0x1122,
                gateway: None,
                json: body.to_vec(),
            },
        );
        // Bare 4 bytes.
        roundtrip(
            &[2, 0, 1, 5],
            Packet::TxAck {
                version: Version::V2,
                token: 1,
                gateway: None,
                json: vec![],
            },
        );
        // A partial EUI is neither layout.
        assert!(matches!(
            Packet::parse(&[2, 0, 1, 5, 0xaa, 0x55]),
            Err(GwmpError::TooShort { len: 6, need: 12 })
        ));
    }

    #[test]
    fn framing_errors() {
        assert!(matches!(
            Packet::parse(&[3, 0, 0, 0]),
            Err(GwmpError::UnsupportedVersion(3))
        ));
        assert!(matches!(
            Packet::parse(&[0, 0, 0, 0]),
            Err(GwmpError::UnsupportedVersion(0))
        ));
        assert!(matches!(
            Packet::parse(&[2, 0, 0]),
            Err(GwmpError::TooShort { len: 3, need: 4 })
        ));
        assert!(matches!(
            Packet::parse(&[]),
            Err(GwmpError::TooShort { len: 0, need: 4 })
        ));
        assert!(matches!(
            Packet::parse(&[2, 0, 0, 0x06]),
            Err(GwmpError::UnknownIdentifier(6))
        ));
        assert!(matches!(
            Packet::parse(&[2, 0, 0, 0x00, 1, 2, 3]),
            Err(GwmpError::TooShort { len: 7, need: 12 })
        ));
        assert!(matches!(
            Packet::parse(&[2, 0, 0, 0x02, 1, 2, 3, 4, 5, 6, 7]),
            Err(GwmpError::TooShort { len: 11, need: 12 })
        ));
        assert!(matches!(
            Packet::parse(&[2, 0, 0, 0x02, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
            Err(GwmpError::UnexpectedBody {
                packet: "PULL_DATA",
                expected: 12,
                len: 13
            })
        ));
        assert!(matches!(
            Packet::parse(&[2, 0, 0, 0x01, 0]),
            Err(GwmpError::UnexpectedBody {
                packet: "PUSH_ACK",
                ..
            })
        ));
        let huge = vec![2u8; MAX_DATAGRAM + 1];
        assert!(matches!(
            Packet::parse(&huge),
            Err(GwmpError::TooLarge { len: 65_508 })
        ));
    }
}
