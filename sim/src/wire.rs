//! The air hub's wire format: one message per UDP datagram, big-endian, a pure codec.
//!
//! ```text
//! "GWSA" | version 1 | type | body
//! 1 Attach    cookie u32 | position | gain f64 | listen      (client → hub)
//! 2 Attached  cookie u32 | node u32                          (hub → client)
//! 3 Transmit  node u32 | frame                               (client → hub)
//! 4 Deliver   node u32 | rssi f64 | snr f64 | frame          (hub → client)
//! 5 Detach    node u32                                       (client → hub)
//! 6 Error     cookie u32 | len u16 | UTF-8 text              (hub → client)
//! position = kind u8 (0 x/y m, 1 lat/lon °) | f64 | f64
//! listen   = inverted_iq u8 | n u8 | n × freq u64 | m u8 | m × modulation
//! frame    = freq u64 | modulation | power f64 | invert_iq u8 | preamble u16 | crc u8 |
//!            len u16 (≤ 255) | payload
//! modulation = 0 LoRa sf u8 bw u32 cr u8 | 1 FSK bitrate u32 | 2 LR-FHSS ocw u32 cr u8 grid u32
//! cr = 0 none, 1 4/5, 2 4/6, 3 4/7, 4 4/8, 5 1/3, 6 2/3, 7 off
//! ```

use drivers::radio::{CodeRate, Modulation};

use super::air::{Listen, NodeConfig, NodeId, Transmission};
use super::model::SimPosition;

const MAGIC: &[u8; 4] = b"GWSA";
const VERSION: u8 = 1;

/// One hub message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Add a radio to the air; `cookie` is echoed in the answer.
    Attach {
        /// Client-chosen request id.
        cookie: u32,
        /// The radio.
        config: NodeConfig,
    },
    /// The radio was added.
    Attached {
        /// The request id.
        cookie: u32,
        /// The node id on the hub's air.
        node: NodeId,
    },
    /// Put a frame on the air now.
    Transmit {
        /// Sending node.
        node: NodeId,
        /// The frame.
        frame: Transmission,
    },
    /// A frame the node received.
    Deliver {
        /// Receiving node.
        node: NodeId,
        /// Received power, dBm.
        rssi_dbm: f64,
        /// SNR, dB.
        snr_db: f64,
        /// The frame.
        frame: Transmission,
    },
    /// Remove a radio.
    Detach {
        /// The node.
        node: NodeId,
    },
    /// The hub refused a request.
    Error {
        /// The request id (attach) or node id.
        cookie: u32,
        /// Why.
        message: String,
    },
}

/// Why a datagram is not a valid message.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The datagram ends inside a field.
    #[error("datagram of {len} bytes ends inside {field} at offset {offset}")]
    Truncated {
        /// The field.
        field: &'static str,
        /// Where it starts.
        offset: usize,
        /// Datagram length.
        len: usize,
    },
    /// Not a hub datagram.
    #[error("not a gatewayd-sim air datagram (magic {0:02x?})")]
    BadMagic(Vec<u8>),
    /// Another protocol version.
    #[error("unsupported air protocol version {0} (this is version 1)")]
    BadVersion(u8),
    /// A field has an invalid value.
    #[error("invalid {field} at offset {offset}: {value}")]
    BadValue {
        /// The field.
        field: &'static str,
        /// Where it starts.
        offset: usize,
        /// What was found.
        value: String,
    },
    /// Bytes left after the message.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

/// Encode a message into a datagram.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(MAGIC);
    b.push(VERSION);
    match msg {
        Message::Attach { cookie, config } => {
            b.push(1);
            b.extend_from_slice(&cookie.to_be_bytes());
            match config.position {
                SimPosition::Xy { x_m, y_m } => put_pos(&mut b, 0, x_m, y_m),
                SimPosition::LatLon { lat, lon } => put_pos(&mut b, 1, lat, lon),
            }
            b.extend_from_slice(&config.antenna_gain_dbi.to_be_bytes());
            let l = &config.listen;
            b.push(u8::from(l.inverted_iq));
            b.push(l.freqs_hz.len().min(255) as u8);
            for f in l.freqs_hz.iter().take(255) {
                b.extend_from_slice(&f.to_be_bytes());
            }
            b.push(l.modulations.len().min(255) as u8);
            for m in l.modulations.iter().take(255) {
                put_mod(&mut b, m);
            }
        }
        Message::Attached { cookie, node } => {
            b.push(2);
            b.extend_from_slice(&cookie.to_be_bytes());
            b.extend_from_slice(&node.0.to_be_bytes());
        }
        Message::Transmit { node, frame } => {
            b.push(3);
            b.extend_from_slice(&node.0.to_be_bytes());
            put_frame(&mut b, frame);
        }
        Message::Deliver {
            node,
            rssi_dbm,
            snr_db,
            frame,
        } => {
            b.push(4);
            b.extend_from_slice(&node.0.to_be_bytes());
            b.extend_from_slice(&rssi_dbm.to_be_bytes());
            b.extend_from_slice(&snr_db.to_be_bytes());
            put_frame(&mut b, frame);
        }
        Message::Detach { node } => {
            b.push(5);
            b.extend_from_slice(&node.0.to_be_bytes());
        }
        Message::Error { cookie, message } => {
            b.push(6);
            b.extend_from_slice(&cookie.to_be_bytes());
            let text = &message.as_bytes()[..message.len().min(1024)];
            let text = match std::str::from_utf8(text) {
                Ok(t) => t.as_bytes(),
                Err(e) => &text[..e.valid_up_to()],
            };
            b.extend_from_slice(&(text.len() as u16).to_be_bytes());
            b.extend_from_slice(text);
        }
    }
    b
}

fn put_pos(b: &mut Vec<u8>, kind: u8, a: f64, c: f64) {
    b.push(kind);
    b.extend_from_slice(&a.to_be_bytes());
    b.extend_from_slice(&c.to_be_bytes());
}

fn cr_code(cr: Option<CodeRate>) -> u8 {
    match cr {
        None => 0,
        Some(CodeRate::Cr45) => 1,
        Some(CodeRate::Cr46) => 2,
        Some(CodeRate::Cr47) => 3,
        Some(CodeRate::Cr48) => 4,
        Some(CodeRate::Cr13) => 5,
        Some(CodeRate::Cr23) => 6,
        Some(CodeRate::Off) => 7,
    }
}

fn put_mod(b: &mut Vec<u8>, m: &Modulation) {
    match *m {
        Modulation::Lora { sf, bw_hz, cr } => {
            b.extend_from_slice(&[0, sf]);
            b.extend_from_slice(&bw_hz.to_be_bytes());
            b.push(cr_code(cr));
        }
        Modulation::Fsk { bitrate } => {
            b.push(1);
            b.extend_from_slice(&bitrate.to_be_bytes());
        }
        Modulation::LrFhss {
            ocw_hz,
            cr,
            grid_steps,
        } => {
            b.push(2);
            b.extend_from_slice(&ocw_hz.to_be_bytes());
            b.push(cr_code(Some(cr)));
            b.extend_from_slice(&grid_steps.to_be_bytes());
        }
    }
}

fn put_frame(b: &mut Vec<u8>, f: &Transmission) {
    b.extend_from_slice(&f.freq_hz.to_be_bytes());
    put_mod(b, &f.modulation);
    b.extend_from_slice(&f.power_dbm.to_be_bytes());
    b.push(u8::from(f.invert_iq));
    b.extend_from_slice(&f.preamble.to_be_bytes());
    b.push(u8::from(f.crc));
    b.extend_from_slice(&(f.payload.len() as u16).to_be_bytes());
    b.extend_from_slice(&f.payload);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() - self.pos < n {
            return Err(WireError::Truncated {
                field,
                offset: self.pos,
                len: self.buf.len(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }
    fn u8(&mut self, f: &'static str) -> Result<u8, WireError> {
        Ok(self.arr::<1>(f)?[0])
    }
    fn u16(&mut self, f: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.arr(f)?))
    }
    fn u32(&mut self, f: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.arr(f)?))
    }
    fn u64(&mut self, f: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.arr(f)?))
    }
    fn f64(&mut self, f: &'static str) -> Result<f64, WireError> {
        let at = self.pos;
        let v = f64::from_be_bytes(self.arr(f)?);
        if !v.is_finite() {
            return Err(bad(f, at, v));
        }
        Ok(v)
    }
    fn flag(&mut self, f: &'static str) -> Result<bool, WireError> {
        let at = self.pos;
        match self.u8(f)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(bad(f, at, v)),
        }
    }
}

fn bad(field: &'static str, offset: usize, value: impl std::fmt::Debug) -> WireError {
    WireError::BadValue {
        field,
        offset,
        value: format!("{value:?}"),
    }
}

fn get_cr(r: &mut Reader<'_>) -> Result<Option<CodeRate>, WireError> {
    let at = r.pos;
    Ok(match r.u8("coding rate")? {
        0 => None,
        1 => Some(CodeRate::Cr45),
        2 => Some(CodeRate::Cr46),
        3 => Some(CodeRate::Cr47),
        4 => Some(CodeRate::Cr48),
        5 => Some(CodeRate::Cr13),
        6 => Some(CodeRate::Cr23),
        7 => Some(CodeRate::Off),
        v => return Err(bad("coding rate", at, v)),
    })
}

fn get_mod(r: &mut Reader<'_>) -> Result<Modulation, WireError> {
    let at = r.pos;
    match r.u8("modulation kind")? {
        0 => {
            let sf_at = r.pos;
            let sf = r.u8("spreading factor")?;
            if !(5..=12).contains(&sf) {
                return Err(bad("spreading factor", sf_at, sf));
            }
            let bw_hz = r.u32("bandwidth")?;
            let cr = get_cr(r)?;
            Ok(Modulation::Lora { sf, bw_hz, cr })
        }
        1 => Ok(Modulation::Fsk {
            bitrate: r.u32("bitrate")?,
        }),
        2 => {
            let ocw_hz = r.u32("LR-FHSS width")?;
            let cr_at = r.pos;
            let cr = get_cr(r)?.ok_or_else(|| bad("coding rate", cr_at, 0))?;
            let grid_steps = r.u32("grid steps")?;
            Ok(Modulation::LrFhss {
                ocw_hz,
                cr,
                grid_steps,
            })
        }
        v => Err(bad("modulation kind", at, v)),
    }
}

fn get_frame(r: &mut Reader<'_>) -> Result<Transmission, WireError> {
    let freq_hz = r.u64("frequency")?;
    let modulation = get_mod(r)?;
    let power_dbm = r.f64("power")?;
    let invert_iq = r.flag("invert_iq")?;
    let preamble = r.u16("preamble")?;
    let crc = r.flag("crc")?;
    let len_at = r.pos;
    let len = r.u16("payload length")?;
    if len > 255 {
        return Err(bad("payload length", len_at, len));
    }
    let payload = r.take(usize::from(len), "payload")?.to_vec();
    Ok(Transmission {
        freq_hz,
        modulation,
        power_dbm,
        invert_iq,
        preamble,
        crc,
        payload,
    })
}

/// Decode a datagram.
pub fn decode(buf: &[u8]) -> Result<Message, WireError> {
    let mut r = Reader { buf, pos: 0 };
    let magic = r.take(4, "magic")?;
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic.to_vec()));
    }
    let v = r.u8("version")?;
    if v != VERSION {
        return Err(WireError::BadVersion(v));
    }
    let type_at = r.pos;
    let msg = match r.u8("message type")? {
        1 => {
            let cookie = r.u32("cookie")?;
            let kind_at = r.pos;
            let kind = r.u8("position kind")?;
            let (a, c) = (r.f64("position")?, r.f64("position")?);
            let position = match kind {
                0 => SimPosition::Xy { x_m: a, y_m: c },
                1 => SimPosition::LatLon { lat: a, lon: c },
                v => return Err(bad("position kind", kind_at, v)),
            };
            let antenna_gain_dbi = r.f64("antenna gain")?;
            let inverted_iq = r.flag("inverted_iq")?;
            let n = r.u8("frequency count")?;
            let freqs_hz = (0..n)
                .map(|_| r.u64("frequency"))
                .collect::<Result<_, _>>()?;
            let m = r.u8("modulation count")?;
            let modulations = (0..m).map(|_| get_mod(&mut r)).collect::<Result<_, _>>()?;
            Message::Attach {
                cookie,
                config: NodeConfig {
                    position,
                    antenna_gain_dbi,
                    listen: Listen {
                        inverted_iq,
                        freqs_hz,
                        modulations,
                    },
                },
            }
        }
        2 => Message::Attached {
            cookie: r.u32("cookie")?,
            node: NodeId(r.u32("node")?),
        },
        3 => Message::Transmit {
            node: NodeId(r.u32("node")?),
            frame: get_frame(&mut r)?,
        },
        4 => Message::Deliver {
            node: NodeId(r.u32("node")?),
            rssi_dbm: r.f64("rssi")?,
            snr_db: r.f64("snr")?,
            frame: get_frame(&mut r)?,
        },
        5 => Message::Detach {
            node: NodeId(r.u32("node")?),
        },
        6 => {
            let cookie = r.u32("cookie")?;
            let len = r.u16("text length")?;
            let at = r.pos;
            let text = r.take(usize::from(len), "text")?;
            let message = std::str::from_utf8(text)
                .map_err(|e| bad("text", at, e))?
                .to_string();
            Message::Error { cookie, message }
        }
        v => return Err(bad("message type", type_at, v)),
    };
    if r.pos != buf.len() {
        return Err(WireError::Trailing(buf.len() - r.pos));
    }
    Ok(msg)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
