//! An emulated SX1276 (RFM95W): the LoRa register page lora-phy's `sx127x` driver uses, as a
//! state machine over SPI byte streams with the time passed in. Register accesses are
//! `[addr | 0x80, data...]` writes and `[addr] + reads` with address auto-increment, except
//! `RegFifo` (0x00), which reads/writes the 256-byte FIFO at `RegFifoAddrPtr`.
//!
//! Modelled: `RegOpMode` (LoRa bit only changeable in Sleep; TX, RX continuous/single),
//! `RegFrf*`, `RegPaConfig`/`RegPaDac` (output power as the datasheet computes it),
//! `RegModemConfig1/2/3`, preamble, `RegFifo*` (TX from `RegFifoTxBaseAddr`, RX written
//! where the receive pointer is, `RegFifoRxCurrentAddr`/`RegRxNbBytes`), `RegIrqFlags`
//! (write 1 to clear) with `RegIrqFlagsMask`, DIO0 mapping, `RegPktSnrValue`,
//! `RegPktRssiValue` (datasheet formula), `RegSyncWord`, `RegInvertIQ`, `RegVersion` 0x12.
//! Anything the real chip would not accept (a LoRa-page access in FSK mode, a write to a
//! read-only register, reconfiguration while transmitting) is recorded as a fault.

use std::time::Instant;

use super::sx1262::{AirFrame, AirTransmission, Mode};
use super::{ChipError, ChipModel, NotHeard};
use drivers::airtime::{time_on_air, FrameShape};
use drivers::radio::{CodeRate, Modulation};

const REG_FIFO: u8 = 0x00;
const REG_OP_MODE: u8 = 0x01;
const REG_FRF_MSB: u8 = 0x06;
const REG_PA_CONFIG: u8 = 0x09;
const REG_FIFO_ADDR_PTR: u8 = 0x0D;
const REG_FIFO_TX_BASE: u8 = 0x0E;
const REG_FIFO_RX_BASE: u8 = 0x0F;
const REG_FIFO_RX_CURRENT: u8 = 0x10;
const REG_IRQ_FLAGS_MASK: u8 = 0x11;
const REG_IRQ_FLAGS: u8 = 0x12;
const REG_RX_NB_BYTES: u8 = 0x13;
const REG_PKT_SNR: u8 = 0x19;
const REG_PKT_RSSI: u8 = 0x1A;
const REG_MODEM_CONFIG1: u8 = 0x1D;
const REG_MODEM_CONFIG2: u8 = 0x1E;
const REG_PREAMBLE_MSB: u8 = 0x20;
const REG_PAYLOAD_LENGTH: u8 = 0x22;
const REG_MODEM_CONFIG3: u8 = 0x26;
const REG_INVERT_IQ: u8 = 0x33;
const REG_SYNC_WORD: u8 = 0x39;
const REG_DIO_MAPPING1: u8 = 0x40;
const REG_VERSION: u8 = 0x42;
const REG_TCXO: u8 = 0x4B;
const REG_PA_DAC: u8 = 0x4D;

const IRQ_TX_DONE: u8 = 0x08;
const IRQ_HEADER_VALID: u8 = 0x10;
const IRQ_CRC_ERR: u8 = 0x20;
const IRQ_RX_DONE: u8 = 0x40;

const MODE_SLEEP: u8 = 0;
const MODE_STDBY: u8 = 1;
const MODE_TX: u8 = 3;
const MODE_RX_CONTINUOUS: u8 = 5;
const MODE_RX_SINGLE: u8 = 6;
const LONG_RANGE: u8 = 0x80;

/// Chip state.
#[derive(Debug)]
pub struct Sx1276 {
    regs: [u8; 0x80],
    fifo: [u8; 256],
    /// Where the next received frame is written (FifoRxByteAddr).
    rx_ptr: u8,
    tx_end: Option<Instant>,
    /// Protocol faults seen.
    pub faults: Vec<String>,
    /// Frames transmitted.
    pub transmissions: Vec<AirTransmission>,
    /// Injected fault: the TX-done interrupt is never raised.
    pub no_irq: bool,
}

impl Default for Sx1276 {
    fn default() -> Self {
        let mut regs = [0u8; 0x80];
        // Datasheet reset values (LoRa page where it differs from FSK) that lora-phy reads
        // back and modifies, or that a test can tell apart from what lora-phy writes.
        for (addr, v) in [
            (REG_OP_MODE, 0x09), // FSK, standby, low-frequency mode
            (REG_FRF_MSB, 0x6C), // 434 MHz
            (0x07, 0x80),
            (REG_PA_CONFIG, 0x4F),
            (0x0A, 0x09),
            (0x0B, 0x2B),
            (0x0C, 0x20),
            (REG_FIFO_TX_BASE, 0x80),
            (REG_MODEM_CONFIG1, 0x72),
            (REG_MODEM_CONFIG2, 0x70),
            (0x1F, 0x64),
            (0x21, 0x08),
            (REG_PAYLOAD_LENGTH, 0x01),
            (0x23, 0xFF),
            (REG_MODEM_CONFIG3, 0x04),
            (0x31, 0xC3),
            (REG_INVERT_IQ, 0x27),
            (0x37, 0x0A),
            (REG_SYNC_WORD, 0x12),
            (0x3B, 0x1D),
            (REG_VERSION, 0x12),
            (REG_TCXO, 0x09),
            (REG_PA_DAC, 0x84),
        ] {
            regs[usize::from(addr)] = v;
        }
        Sx1276 {
            regs,
            fifo: [0; 256],
            rx_ptr: 0,
            tx_end: None,
            faults: Vec::new(),
            transmissions: Vec::new(),
            no_irq: false,
        }
    }
}

fn bw_hz(code: u8) -> Option<u32> {
    Some(match code {
        0 => 7_800,
        1 => 10_400,
        2 => 15_600,
        3 => 20_800,
        4 => 31_250,
        5 => 41_700,
        6 => 62_500,
        7 => 125_000,
        8 => 250_000,
        9 => 500_000,
        _ => return None,
    })
}

fn cr(code: u8) -> Option<CodeRate> {
    Some(match code {
        1 => CodeRate::Cr45,
        2 => CodeRate::Cr46,
        3 => CodeRate::Cr47,
        4 => CodeRate::Cr48,
        _ => return None,
    })
}

impl Sx1276 {
    fn reg(&self, addr: u8) -> u8 {
        self.regs[usize::from(addr & 0x7F)]
    }

    fn op_mode(&self) -> u8 {
        self.reg(REG_OP_MODE) & 0x07
    }

    fn lora(&self) -> bool {
        self.reg(REG_OP_MODE) & LONG_RANGE != 0
    }

    /// Carrier frequency from RegFrf (32 MHz / 2^19 per step), rounded to the Hz.
    pub fn freq_hz(&self) -> u32 {
        let frf = (u64::from(self.reg(REG_FRF_MSB)) << 16)
            | (u64::from(self.reg(REG_FRF_MSB + 1)) << 8)
            | u64::from(self.reg(REG_FRF_MSB + 2));
        ((frf * 32_000_000 + (1 << 18)) >> 19) as u32
    }

    fn sf(&self) -> u8 {
        self.reg(REG_MODEM_CONFIG2) >> 4
    }

    fn bw(&self) -> Option<u32> {
        bw_hz(self.reg(REG_MODEM_CONFIG1) >> 4)
    }

    fn implicit(&self) -> bool {
        self.reg(REG_MODEM_CONFIG1) & 0x01 != 0
    }

    /// The sync word as the SX126x writes the same on-air value (0x34 → 0x3444).
    fn sync_word(&self) -> u16 {
        let sw = u16::from(self.reg(REG_SYNC_WORD));
        ((sw & 0xF0) << 8) | ((sw & 0x0F) << 4) | 0x0404
    }

    /// Output power in dBm as the datasheet defines it from RegPaConfig and RegPaDac.
    fn power_dbm(&self) -> i8 {
        let pa = self.reg(REG_PA_CONFIG);
        let output = (pa & 0x0F) as i8;
        if pa & 0x80 != 0 {
            // PA_BOOST: Pout = 17 - (15 - OutputPower); +3 dB with the 20 dBm DAC (0x87).
            if self.reg(REG_PA_DAC) & 0x07 == 0x07 {
                5 + output
            } else {
                2 + output
            }
        } else {
            // RFO: Pmax = 10.8 + 0.6 * MaxPower, Pout = Pmax - (15 - OutputPower).
            let max_power = f32::from((pa >> 4) & 0x07);
            (10.8 + 0.6 * max_power - 15.0 + f32::from(output)).round() as i8
        }
    }

    fn fault(&mut self, text: String) -> ChipError {
        log::error!("emulated SX1276 fault: {text}");
        self.faults.push(text.clone());
        ChipError::Protocol(text)
    }

    fn read_reg(&mut self, addr: u8) -> u8 {
        if addr == REG_FIFO {
            let ptr = self.reg(REG_FIFO_ADDR_PTR);
            self.regs[usize::from(REG_FIFO_ADDR_PTR)] = ptr.wrapping_add(1);
            return self.fifo[usize::from(ptr)];
        }
        self.reg(addr)
    }

    fn write_reg(&mut self, addr: u8, v: u8, now: Instant) -> Result<(), ChipError> {
        let transmitting = self.op_mode() == MODE_TX;
        match addr {
            REG_FIFO => {
                let ptr = self.reg(REG_FIFO_ADDR_PTR);
                self.fifo[usize::from(ptr)] = v;
                self.regs[usize::from(REG_FIFO_ADDR_PTR)] = ptr.wrapping_add(1);
            }
            REG_OP_MODE => return self.set_op_mode(v, now),
            REG_IRQ_FLAGS => self.regs[usize::from(addr)] &= !v,
            REG_FIFO_RX_CURRENT | REG_RX_NB_BYTES | 0x14..=0x1C | REG_VERSION => {
                return Err(self.fault(format!(
                    "write 0x{v:02x} to read-only register 0x{addr:02x}"
                )));
            }
            0x06..=0x08
            | REG_PA_CONFIG
            | REG_MODEM_CONFIG1
            | REG_MODEM_CONFIG2
            | REG_MODEM_CONFIG3
            | REG_PAYLOAD_LENGTH
            | 0x20
            | 0x21
                if transmitting =>
            {
                return Err(
                    self.fault(format!("write to register 0x{addr:02x} while transmitting"))
                );
            }
            _ => self.regs[usize::from(addr)] = v,
        }
        Ok(())
    }

    fn set_op_mode(&mut self, v: u8, now: Instant) -> Result<(), ChipError> {
        let old = self.reg(REG_OP_MODE);
        let (old_mode, new_mode) = (old & 0x07, v & 0x07);
        if (old ^ v) & LONG_RANGE != 0 && old_mode != MODE_SLEEP && new_mode != MODE_SLEEP {
            return Err(self.fault(format!(
                "RegOpMode 0x{v:02x}: LongRangeMode changed outside Sleep (was 0x{old:02x})"
            )));
        }
        if v & LONG_RANGE == 0 && new_mode != MODE_SLEEP && new_mode != MODE_STDBY {
            return Err(self.fault(format!("RegOpMode 0x{v:02x}: FSK/OOK mode not emulated")));
        }
        if new_mode == 7 {
            return Err(self.fault("RegOpMode: CAD not emulated".into()));
        }
        self.regs[usize::from(REG_OP_MODE)] = v;
        if new_mode != MODE_TX {
            self.tx_end = None;
        }
        match new_mode {
            MODE_TX if old_mode != MODE_TX => self.start_tx(now),
            MODE_RX_CONTINUOUS | MODE_RX_SINGLE if old_mode != new_mode => {
                self.rx_ptr = self.reg(REG_FIFO_RX_BASE);
            }
            _ => {}
        }
        Ok(())
    }

    fn start_tx(&mut self, now: Instant) {
        let base = self.reg(REG_FIFO_TX_BASE);
        let len = self.reg(REG_PAYLOAD_LENGTH);
        let payload: Vec<u8> = (0..len)
            .map(|i| self.fifo[usize::from(base.wrapping_add(i))])
            .collect();
        let (Some(bw), Some(cr)) = (self.bw(), cr((self.reg(REG_MODEM_CONFIG1) >> 1) & 0x07))
        else {
            self.fault("TX with an invalid bandwidth or coding rate".into());
            return;
        };
        let t = AirTransmission {
            freq_hz: self.freq_hz(),
            sf: self.sf(),
            bw_hz: bw,
            cr,
            power_dbm: self.power_dbm(),
            preamble: u16::from_be_bytes([self.reg(REG_PREAMBLE_MSB), self.reg(0x21)]),
            crc: self.reg(REG_MODEM_CONFIG2) & 0x04 != 0,
            invert_iq: self.reg(REG_INVERT_IQ) & 0x01 == 0,
            sync_word: self.sync_word(),
            payload,
            started_at: now,
        };
        let shape = FrameShape {
            payload_len: t.payload.len(),
            preamble: t.preamble,
            crc: t.crc,
            implicit_header: self.implicit(),
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
        self.tx_end = Some(now + toa);
    }

    fn raise(&mut self, flags: u8) {
        let mask = self.reg(REG_IRQ_FLAGS_MASK);
        self.regs[usize::from(REG_IRQ_FLAGS)] |= flags & !mask;
    }
}

impl ChipModel for Sx1276 {
    fn name(&self) -> &'static str {
        "SX1276"
    }

    fn transfer(&mut self, mosi: &[u8], now: Instant) -> Result<Vec<u8>, ChipError> {
        self.advance(now);
        let Some(&first) = mosi.first() else {
            return Err(self.fault("empty SPI transaction".into()));
        };
        let write = first & 0x80 != 0;
        let mut addr = first & 0x7F;
        if (0x0D..0x40).contains(&addr) && !self.lora() {
            return Err(self.fault(format!(
                "LoRa register 0x{addr:02x} accessed in FSK mode (set LongRangeMode in Sleep first)"
            )));
        }
        let mut miso = vec![0u8; mosi.len()];
        for (i, &b) in mosi.iter().enumerate().skip(1) {
            if write {
                self.write_reg(addr, b, now)?;
            } else {
                miso[i] = self.read_reg(addr);
            }
            if addr != REG_FIFO {
                addr = (addr + 1) & 0x7F;
            }
        }
        Ok(miso)
    }

    fn receive(&mut self, f: &AirFrame, now: Instant) -> Result<(), ChipError> {
        self.advance(now);
        let mode = self.op_mode();
        if !self.lora() || !matches!(mode, MODE_RX_CONTINUOUS | MODE_RX_SINGLE) {
            return Err(NotHeard::NotReceiving(format!("RegOpMode 0x{:02x}", self.reg(1))).into());
        }
        let bw = self.bw().unwrap_or(0);
        // One RegFrf step is 61 Hz.
        if f.freq_hz.abs_diff(self.freq_hz()) > 61 || f.sf != self.sf() || f.bw_hz != bw {
            return Err(NotHeard::OtherChannel {
                freq_hz: self.freq_hz(),
                sf: self.sf(),
                bw_hz: bw,
            }
            .into());
        }
        let public = self.reg(REG_SYNC_WORD) == 0x34;
        let rx_inverted = self.reg(REG_INVERT_IQ) & 0x40 != 0;
        if f.public != public || f.invert_iq != rx_inverted || self.implicit() {
            return Err(NotHeard::FormatMismatch.into());
        }
        if f.payload.len() > usize::from(self.reg(0x23)) {
            return Err(NotHeard::TooLong("RegMaxPayloadLength").into());
        }
        let start = self.rx_ptr;
        for (i, b) in f.payload.iter().enumerate() {
            self.fifo[usize::from(start.wrapping_add(i as u8))] = *b;
        }
        self.rx_ptr = start.wrapping_add(f.payload.len() as u8);
        self.regs[usize::from(REG_FIFO_RX_CURRENT)] = start;
        self.regs[usize::from(REG_RX_NB_BYTES)] = f.payload.len() as u8;
        let snr_q = (f.snr_db * 4.0).round() as i8;
        self.regs[usize::from(REG_PKT_SNR)] = snr_q as u8;
        // Datasheet: RSSI = offset + 16/15 * PacketRssi (SNR >= 0), else
        // offset + PacketRssi + PacketSnr / 4; offset -157 (HF port) or -164 (LF port).
        let offset = if self.freq_hz() > 525_000_000 {
            -157.0
        } else {
            -164.0
        };
        let rssi = f32::from(f.rssi_dbm);
        let packet_rssi = if snr_q >= 0 {
            (rssi - offset) * 15.0 / 16.0
        } else {
            rssi - offset - f32::from(snr_q) / 4.0
        };
        self.regs[usize::from(REG_PKT_RSSI)] = packet_rssi.round().clamp(0.0, 255.0) as u8;
        let mut flags = IRQ_RX_DONE | IRQ_HEADER_VALID;
        if !f.crc_ok {
            flags |= IRQ_CRC_ERR;
        }
        self.raise(flags);
        if mode == MODE_RX_SINGLE {
            self.regs[usize::from(REG_OP_MODE)] = LONG_RANGE | MODE_STDBY;
        }
        Ok(())
    }

    fn reset(&mut self) {
        *self = Sx1276 {
            faults: std::mem::take(&mut self.faults),
            transmissions: std::mem::take(&mut self.transmissions),
            no_irq: self.no_irq,
            ..Sx1276::default()
        };
    }

    fn mode(&mut self, now: Instant) -> Mode {
        self.advance(now);
        match self.op_mode() {
            MODE_SLEEP => Mode::Sleep,
            MODE_STDBY => Mode::StandbyRc,
            MODE_TX => Mode::Tx,
            MODE_RX_CONTINUOUS | MODE_RX_SINGLE => Mode::Rx,
            7 => Mode::Cad,
            _ => Mode::StandbyXosc, // frequency synthesis
        }
    }

    /// DIO0, as mapped in RegDioMapping1[7:6].
    fn irq_line(&self) -> bool {
        let flags = self.reg(REG_IRQ_FLAGS) & !self.reg(REG_IRQ_FLAGS_MASK);
        match self.reg(REG_DIO_MAPPING1) >> 6 {
            0 => flags & IRQ_RX_DONE != 0,
            1 => flags & IRQ_TX_DONE != 0,
            _ => false,
        }
    }

    fn busy_until(&self) -> Option<Instant> {
        None
    }

    fn has_busy_line(&self) -> bool {
        false
    }

    fn tx_end(&self) -> Option<Instant> {
        self.tx_end
    }

    fn advance(&mut self, now: Instant) {
        if let Some(end) = self.tx_end {
            if now >= end && !self.no_irq {
                self.tx_end = None;
                self.regs[usize::from(REG_OP_MODE)] = (self.reg(REG_OP_MODE) & 0xF8) | MODE_STDBY;
                self.raise(IRQ_TX_DONE);
            }
        }
    }

    fn transmissions(&self) -> &[AirTransmission] {
        &self.transmissions
    }

    fn faults(&self) -> &[String] {
        &self.faults
    }

    fn set_no_irq(&mut self, on: bool) {
        self.no_irq = on;
    }

    fn no_irq(&self) -> bool {
        self.no_irq
    }

    /// `Some(0x10)` once the driver switched the clock input to a TCXO (RegTcxo bit 4).
    fn tcxo(&self) -> Option<u8> {
        let v = self.reg(REG_TCXO);
        (v & 0x10 != 0).then_some(v & 0x10)
    }
}
