//! An emulated SX1262: the command interface lora-phy uses, as a state machine over SPI
//! byte streams with the time passed in. It keeps the chip mode (sleep, standby, RX, TX,
//! CAD), registers, the 256-byte data buffer, IRQ flags and the DIO1 mask, and puts
//! transmissions on / takes receptions from the emulated air ([`super::EmulatedAir`]).
//!
//! Anything the real chip would not accept (an unknown opcode, a wrong parameter count, a
//! configuration command while in RX/TX, an invalid value) is recorded as a fault, so a
//! test of the driver fails loudly instead of passing against a lenient model.

use std::time::{Duration, Instant};

use drivers::airtime::{time_on_air, FrameShape};
use drivers::radio::{CodeRate, Modulation};

use super::{ChipError, NotHeard};

/// Chip operating mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Sleep (woken by the next transaction).
    Sleep,
    /// Standby on the RC oscillator.
    StandbyRc,
    /// Standby on the crystal / TCXO.
    StandbyXosc,
    /// Receiving.
    Rx,
    /// Transmitting.
    Tx,
    /// Channel activity detection.
    Cad,
}

/// One frame as it left the emulated antenna.
#[derive(Debug, Clone, PartialEq)]
pub struct AirTransmission {
    /// Frequency in Hz (from the PLL steps).
    pub freq_hz: u32,
    /// Spreading factor.
    pub sf: u8,
    /// Bandwidth in Hz.
    pub bw_hz: u32,
    /// Coding rate.
    pub cr: CodeRate,
    /// Output power in dBm (from SetTxParams and SetPAConfig).
    pub power_dbm: i8,
    /// Preamble symbols.
    pub preamble: u16,
    /// PHY CRC on.
    pub crc: bool,
    /// Inverted IQ.
    pub invert_iq: bool,
    /// Sync word register value (0x3444 public LoRaWAN).
    pub sync_word: u16,
    /// The payload.
    pub payload: Vec<u8>,
    /// When `SetTx` was received.
    pub started_at: Instant,
}

/// A frame a test puts on the air for the chip to receive.
#[derive(Debug, Clone, PartialEq)]
pub struct AirFrame {
    /// Frequency in Hz.
    pub freq_hz: u32,
    /// Spreading factor.
    pub sf: u8,
    /// Bandwidth in Hz.
    pub bw_hz: u32,
    /// Inverted IQ (false for uplinks).
    pub invert_iq: bool,
    /// Public LoRaWAN sync word.
    pub public: bool,
    /// The payload.
    pub payload: Vec<u8>,
    /// Packet RSSI in dBm (the chip reports it in 0.5 dB steps).
    pub rssi_dbm: i16,
    /// SNR in dB (0.25 dB steps).
    pub snr_db: f32,
    /// The frame's CRC checks out.
    pub crc_ok: bool,
}

impl AirFrame {
    /// An uplink on `freq_hz` at SF`sf`/125 kHz with a good CRC.
    pub fn uplink(freq_hz: u32, sf: u8, payload: &[u8], rssi_dbm: i16, snr_db: f32) -> AirFrame {
        AirFrame {
            freq_hz,
            sf,
            bw_hz: 125_000,
            invert_iq: false,
            public: true,
            payload: payload.to_vec(),
            rssi_dbm,
            snr_db,
            crc_ok: true,
        }
    }
}

const IRQ_TX_DONE: u16 = 0x0001;
const IRQ_RX_DONE: u16 = 0x0002;
const IRQ_PREAMBLE: u16 = 0x0004;
const IRQ_HEADER_VALID: u16 = 0x0010;
const IRQ_CRC_ERR: u16 = 0x0040;
const IRQ_CAD_DONE: u16 = 0x0080;

/// Chip state.
#[derive(Debug)]
pub struct Sx1262 {
    mode: Mode,
    regs: Vec<u8>,
    buffer: [u8; 256],
    tx_base: u8,
    rx_base: u8,
    packet_type: u8,
    steps: u32,
    sf: u8,
    bw_code: u8,
    cr_code: u8,
    preamble: u16,
    implicit: bool,
    payload_len: u8,
    crc_on: bool,
    iq_inverted: bool,
    tx_power: i8,
    pa: [u8; 4],
    irq_mask: u16,
    dio1_mask: u16,
    irq: u16,
    rx_len: u8,
    pkt_status: [u8; 3],
    tx_end: Option<Instant>,
    busy_until: Option<Instant>,
    /// TCXO code set with SetTCXOMode.
    pub tcxo: Option<u8>,
    /// Protocol faults seen.
    pub faults: Vec<String>,
    /// Frames transmitted.
    pub transmissions: Vec<AirTransmission>,
    /// Injected fault: the TX-done interrupt is never raised.
    pub no_irq: bool,
}

impl Default for Sx1262 {
    fn default() -> Self {
        let mut chip = Sx1262 {
            mode: Mode::StandbyRc,
            regs: vec![0; 0x1000],
            buffer: [0; 256],
            tx_base: 0,
            rx_base: 0,
            packet_type: 0,
            steps: 0,
            sf: 7,
            bw_code: 4,
            cr_code: 1,
            preamble: 8,
            implicit: false,
            payload_len: 0,
            crc_on: true,
            iq_inverted: false,
            tx_power: 0,
            pa: [0; 4],
            irq_mask: 0,
            dio1_mask: 0,
            irq: 0,
            rx_len: 0,
            pkt_status: [0; 3],
            tx_end: None,
            busy_until: None,
            tcxo: None,
            faults: Vec::new(),
            transmissions: Vec::new(),
            no_irq: false,
        };
        chip.power_on_registers();
        chip
    }
}

fn bw_hz(code: u8) -> Option<u32> {
    Some(match code {
        0x00 => 7_810,
        0x08 => 10_420,
        0x01 => 15_630,
        0x09 => 20_830,
        0x02 => 31_250,
        0x0A => 41_670,
        0x03 => 62_500,
        0x04 => 125_000,
        0x05 => 250_000,
        0x06 => 500_000,
        _ => return None,
    })
}

fn cr(code: u8) -> CodeRate {
    match code {
        2 => CodeRate::Cr46,
        3 => CodeRate::Cr47,
        4 => CodeRate::Cr48,
        _ => CodeRate::Cr45,
    }
}

impl Sx1262 {
    fn power_on_registers(&mut self) {
        // Datasheet reset values lora-phy reads back and modifies.
        self.regs[0x0740] = 0x14; // private sync word 0x1424
        self.regs[0x0741] = 0x24;
        self.regs[0x0736] = 0x0D; // IQ polarity
        self.regs[0x08D8] = 0xC8; // TX clamp
        self.regs[0x08AC] = 0x94; // RX gain
    }

    /// NRESET pulse: back to power-on state (recorded faults and air history stay).
    pub fn reset(&mut self) {
        let faults = std::mem::take(&mut self.faults);
        let transmissions = std::mem::take(&mut self.transmissions);
        let no_irq = self.no_irq;
        *self = Sx1262 {
            faults,
            transmissions,
            no_irq,
            ..Sx1262::default()
        };
    }

    /// Current mode (after applying everything due by `now`).
    pub fn mode(&mut self, now: Instant) -> Mode {
        self.advance(now);
        self.mode
    }

    /// DIO1 level.
    pub fn dio1(&self) -> bool {
        self.irq & self.dio1_mask != 0
    }

    /// BUSY is high until this instant.
    pub fn busy_until(&self) -> Option<Instant> {
        self.busy_until
    }

    /// When the transmission on air ends.
    pub fn tx_end(&self) -> Option<Instant> {
        self.tx_end
    }

    /// Carrier frequency from the PLL steps (32 MHz / 2^25 per step).
    pub fn freq_hz(&self) -> u32 {
        ((u64::from(self.steps) * 32_000_000 + (1 << 24)) >> 25) as u32
    }

    fn sync_word(&self) -> u16 {
        u16::from_be_bytes([self.regs[0x0740], self.regs[0x0741]])
    }

    /// Apply what time has done: a transmission ends and raises TxDone.
    pub fn advance(&mut self, now: Instant) {
        if let Some(end) = self.tx_end {
            if now >= end && !self.no_irq {
                self.tx_end = None;
                self.mode = Mode::StandbyRc;
                self.irq |= IRQ_TX_DONE & self.irq_mask;
            }
        }
    }

    fn fault(&mut self, text: String) {
        log::error!("emulated SX1262 fault: {text}");
        self.faults.push(text);
    }

    fn status(&self) -> u8 {
        let mode = match self.mode {
            Mode::Sleep | Mode::StandbyRc => 2,
            Mode::StandbyXosc => 3,
            Mode::Rx | Mode::Cad => 5,
            Mode::Tx => 6,
        };
        let cmd = if self.rx_len > 0 { 2 } else { 1 };
        (mode << 4) | (cmd << 1)
    }

    /// One SPI transaction: MOSI bytes in (reads contribute NOPs), MISO bytes out.
    /// `Err` is a malformed or unexpected command (also recorded in `faults`).
    pub fn transfer(&mut self, mosi: &[u8], now: Instant) -> Result<Vec<u8>, ChipError> {
        self.advance(now);
        let Some(&op) = mosi.first() else {
            return Err(self.reject("empty SPI transaction".into()));
        };
        if self.mode == Mode::Sleep {
            self.mode = Mode::StandbyRc;
            if op != 0xC0 {
                return Err(self.reject(format!(
                    "command 0x{op:02x} sent while asleep (wake with GetStatus first)"
                )));
            }
        }
        let p = &mosi[1..];
        let mut miso = vec![self.status(); mosi.len()];
        let exact = |n: usize| p.len() == n;
        let standby = matches!(self.mode, Mode::StandbyRc | Mode::StandbyXosc);
        let config = matches!(
            op,
            0x8A | 0x8B | 0x8C | 0x86 | 0x89 | 0x98 | 0x97 | 0x96 | 0x8F | 0x0E | 0x83
        );
        if config && !standby {
            return Err(self.reject(format!(
                "command 0x{op:02x} in mode {:?} (the chip accepts it only in standby)",
                self.mode
            )));
        }
        let ok = match op {
            0xC0 | 0x07 | 0x10 => true,
            0x80 if exact(1) && p[0] <= 1 => {
                self.mode = if p[0] == 0 {
                    Mode::StandbyRc
                } else {
                    Mode::StandbyXosc
                };
                self.tx_end = None;
                true
            }
            0x84 if exact(1) => {
                self.mode = Mode::Sleep;
                true
            }
            0x96 | 0x9D | 0x9F | 0xA0 | 0x93 if exact(1) => true,
            0x97 if exact(4) && p[0] <= 7 => {
                self.tcxo = Some(p[0]);
                true
            }
            0x89 if exact(1) => {
                self.busy_until = Some(now + Duration::from_micros(3_500));
                true
            }
            0x98 if exact(2) => true,
            0x8A if exact(1) && p[0] == 1 => {
                self.packet_type = 1;
                true
            }
            0x8F if exact(2) => {
                self.tx_base = p[0];
                self.rx_base = p[1];
                true
            }
            0x8E if exact(2) => {
                self.tx_power = p[0] as i8;
                true
            }
            0x95 if exact(4) => {
                self.pa.copy_from_slice(p);
                true
            }
            0x08 if exact(8) => {
                self.irq_mask = u16::from_be_bytes([p[0], p[1]]);
                self.dio1_mask = u16::from_be_bytes([p[2], p[3]]);
                true
            }
            0x8B if exact(4)
                && (5..=12).contains(&p[0])
                && bw_hz(p[1]).is_some()
                && (1..=4).contains(&p[2])
                && p[3] <= 1 =>
            {
                self.sf = p[0];
                self.bw_code = p[1];
                self.cr_code = p[2];
                true
            }
            0x8C if exact(6) && p[2] <= 1 && p[4] <= 1 && p[5] <= 1 => {
                self.preamble = u16::from_be_bytes([p[0], p[1]]);
                self.implicit = p[2] == 1;
                self.payload_len = p[3];
                self.crc_on = p[4] == 1;
                self.iq_inverted = p[5] == 1;
                true
            }
            0x86 if exact(4) => {
                self.steps = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                true
            }
            0x0D if p.len() >= 3 => {
                let addr = usize::from(u16::from_be_bytes([p[0], p[1]]));
                for (i, v) in p[2..].iter().enumerate() {
                    if let Some(r) = self.regs.get_mut(addr + i) {
                        *r = *v;
                    }
                }
                true
            }
            0x1D if p.len() >= 3 => {
                let addr = usize::from(u16::from_be_bytes([p[0], p[1]]));
                for (i, m) in miso.iter_mut().enumerate().skip(4) {
                    *m = self.regs.get(addr + i - 4).copied().unwrap_or(0);
                }
                true
            }
            0x0E if !p.is_empty() => {
                for (i, v) in p[1..].iter().enumerate() {
                    self.buffer[(usize::from(p[0]) + i) % 256] = *v;
                }
                true
            }
            0x1E if p.len() >= 2 => {
                for (i, m) in miso.iter_mut().enumerate().skip(3) {
                    *m = self.buffer[(usize::from(p[0]) + i - 3) % 256];
                }
                true
            }
            0x12 | 0x13 | 0x14 | 0x11 | 0x15 | 0x17 => {
                let data: Vec<u8> = match op {
                    0x12 => self.irq.to_be_bytes().to_vec(),
                    0x13 => vec![self.rx_len, self.rx_base],
                    0x14 => self.pkt_status.to_vec(),
                    0x11 => vec![self.packet_type],
                    0x15 => vec![self.pkt_status[0]],
                    _ => vec![0, 0],
                };
                for (i, m) in miso.iter_mut().enumerate().skip(2) {
                    *m = data.get(i - 2).copied().unwrap_or(0);
                }
                true
            }
            0x02 if exact(2) => {
                self.irq &= !u16::from_be_bytes([p[0], p[1]]);
                true
            }
            0x83 if exact(3) => {
                self.start_tx(now);
                true
            }
            0x82 if exact(3) => {
                self.mode = Mode::Rx;
                true
            }
            0x88 if exact(7) => true,
            0xC5 if p.is_empty() => {
                self.mode = Mode::StandbyRc;
                self.irq |= IRQ_CAD_DONE & self.irq_mask;
                true
            }
            _ => false,
        };
        if !ok {
            return Err(self.reject(format!("unknown or malformed command {mosi:02x?}")));
        }
        if self.packet_type != 1 && matches!(op, 0x8B | 0x8C | 0x83 | 0x82) {
            return Err(self.reject(format!("command 0x{op:02x} before SetPacketType(LoRa)")));
        }
        Ok(miso)
    }

    fn reject(&mut self, text: String) -> ChipError {
        self.fault(text.clone());
        ChipError::Protocol(text)
    }

    fn power_dbm(&self) -> i8 {
        let p = self.tx_power;
        match (self.pa[2], self.pa[0], self.pa[1]) {
            // device_sel 0: high-power PA (datasheet table 13-21)
            (0, 4, 7) => p.min(22),
            (0, 3, 5) => p - 2,
            (0, 2, 3) => p - 5,
            (0, 2, 2) => p - 8,
            // device_sel 1: low-power PA
            (1, 6, 0) => 15,
            (1, 1, 0) => p - 3,
            _ => p,
        }
    }

    fn start_tx(&mut self, now: Instant) {
        let start = usize::from(self.tx_base);
        let payload: Vec<u8> = (0..usize::from(self.payload_len))
            .map(|i| self.buffer[(start + i) % 256])
            .collect();
        let bw = bw_hz(self.bw_code).unwrap_or(125_000);
        let t = AirTransmission {
            freq_hz: self.freq_hz(),
            sf: self.sf,
            bw_hz: bw,
            cr: cr(self.cr_code),
            power_dbm: self.power_dbm(),
            preamble: self.preamble,
            crc: self.crc_on,
            invert_iq: self.iq_inverted,
            sync_word: self.sync_word(),
            payload,
            started_at: now,
        };
        let shape = FrameShape {
            payload_len: t.payload.len(),
            preamble: t.preamble,
            crc: t.crc,
            implicit_header: self.implicit,
        };
        let toa = time_on_air(
            &Modulation::Lora {
                sf: t.sf,
                bw_hz: bw,
                cr: Some(t.cr),
            },
            &shape,
        );
        self.transmissions.push(t);
        self.mode = Mode::Tx;
        self.tx_end = Some(now + toa);
    }

    /// A frame arrives on the air; `Ok(())` when the chip received it, else why not.
    pub fn receive(&mut self, f: &AirFrame, now: Instant) -> Result<(), ChipError> {
        self.advance(now);
        if self.mode != Mode::Rx {
            return Err(NotHeard::NotReceiving(format!("mode {:?}", self.mode)).into());
        }
        let bw = bw_hz(self.bw_code).unwrap_or(0);
        if f.freq_hz.abs_diff(self.freq_hz()) > 1 || f.sf != self.sf || f.bw_hz != bw {
            return Err(NotHeard::OtherChannel {
                freq_hz: self.freq_hz(),
                sf: self.sf,
                bw_hz: bw,
            }
            .into());
        }
        let public = self.sync_word() == 0x3444;
        if f.public != public || f.invert_iq != self.iq_inverted || self.implicit {
            return Err(NotHeard::FormatMismatch.into());
        }
        if f.payload.len() > 255 {
            return Err(NotHeard::TooLong("255 bytes").into());
        }
        for (i, b) in f.payload.iter().enumerate() {
            self.buffer[(usize::from(self.rx_base) + i) % 256] = *b;
        }
        self.rx_len = f.payload.len() as u8;
        let rssi = (-2 * i32::from(f.rssi_dbm)).clamp(0, 255) as u8;
        self.pkt_status = [rssi, (f.snr_db * 4.0).round() as i8 as u8, rssi];
        let mut flags = IRQ_RX_DONE | IRQ_PREAMBLE | IRQ_HEADER_VALID;
        if !f.crc_ok {
            flags |= IRQ_CRC_ERR;
        }
        self.irq |= flags & self.irq_mask;
        Ok(())
    }
}
