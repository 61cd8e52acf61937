//! `[radio.sx126x]` / `[radio.sx127x]` config sections and their validation into
//! [`LoraPhySettings`]: a board profile merged with the operator's overrides.
//!
//! Hazards: these options describe the hardware. A wrong one does not just fail; it can hang
//! the chip (TCXO), damage the PA (RF switch, power), or make the radio deaf (sync word).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::board::{self, BoardProfile, Chip, TcxoVoltage};
use crate::radio::CodeRate;

/// A config value that cannot be used; names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// Full key, e.g. `radio.sx126x.busy_pin`.
    pub key: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

/// `[radio.sx126x]`: an SX1261/SX1262/SX1268 on SPI + GPIO.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sx126xConfig {
    /// Board profile (`waveshare-sx1262-hat`); every value below overrides it. Without a
    /// board, `chip`, `spi_device`, `reset_pin`, `busy_pin` and `dio1_pin` are required.
    pub board: Option<String>,
    /// `sx1261`, `sx1262` or `sx1268`. Hazard: `sx1261` on an SX1262 board caps power at
    /// 15 dBm; `sx1262` on an SX1261 selects a PA that does not exist.
    pub chip: Option<String>,
    /// SPI device, e.g. `/dev/spidev0.0` (the service user must be in group `spi`).
    pub spi_device: Option<PathBuf>,
    /// SPI clock in Hz (default 2 MHz; SX126x allows up to 16 MHz).
    pub spi_speed_hz: Option<u32>,
    /// GPIO line driven as chip select when the board does not use the SPI controller's CE.
    pub spi_cs_pin: Option<u32>,
    /// GPIO character device, e.g. `/dev/gpiochip0` (group `gpio`).
    pub gpiochip: Option<PathBuf>,
    /// NRESET line. Hazard: a wrong line leaves the chip unreset and toggles another device.
    pub reset_pin: Option<u32>,
    /// BUSY line. Hazard: a wrong line reads as "busy forever" or "never busy"; the second
    /// corrupts commands silently.
    pub busy_pin: Option<u32>,
    /// DIO1 interrupt line.
    pub dio1_pin: Option<u32>,
    /// RX-enable line of an external RF switch (E22 modules). Hazard: transmitting with the
    /// switch on the LNA side can destroy the LNA.
    pub rxen_pin: Option<u32>,
    /// TX-enable line of an external RF switch.
    pub txen_pin: Option<u32>,
    /// TCXO supply voltage on DIO3 in volts (1.6, 1.7, 1.8, 2.2, 2.4, 2.7, 3.0, 3.3), or 0 for
    /// a crystal. Hazard: enabling a TCXO on a crystal board, or the wrong voltage, leaves the
    /// chip without a clock: calibration never ends and BUSY stays high (the chip hangs until
    /// reset). Omitting it on a TCXO board does the same.
    pub tcxo_voltage: Option<f32>,
    /// DIO2 drives the RF switch (most SX1262 HATs). Hazard: off on such a board = no TX/RX
    /// path; on where DIO2 is not the switch drives a pin that may be wired elsewhere.
    pub dio2_rf_switch: Option<bool>,
    /// Use the DC-DC regulator. Hazard: on a board without the inductor the chip browns out.
    pub dcdc: Option<bool>,
    /// Boosted LNA gain (+~3 dB sensitivity, +2 mA).
    pub rx_boost: Option<bool>,
    /// Receive channel in Hz.
    pub frequency_hz: Option<u32>,
    /// Receive spreading factor (5..=12).
    pub sf: Option<u8>,
    /// Receive bandwidth in Hz (125000, 250000, 500000).
    pub bw_hz: Option<u32>,
    /// Coding rate: `4/5` (default), `4/6`, `4/7`, `4/8`.
    pub coding_rate: Option<String>,
    /// Receive preamble symbols (default 8).
    pub preamble: Option<u16>,
    /// Public LoRaWAN sync word (0x34; default true). Hazard: false makes the radio deaf to
    /// every public LoRaWAN device.
    pub public_network: Option<bool>,
    /// Lowest conducted power the backend accepts, dBm (default: the chip's minimum).
    pub tx_power_min_dbm: Option<i8>,
    /// Highest conducted power the backend uses, dBm (default: the chip's maximum); a
    /// transmission approved for more is sent at this power.
    /// Hazard: above the antenna path's rating or the region's EIRP minus antenna gain.
    pub tx_power_max_dbm: Option<i8>,
}

/// `[radio.sx127x]`: an SX1276/77/78/79 (RFM95W…) on SPI + GPIO.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sx127xConfig {
    /// Board profile (`adafruit-rfm95w-bonnet`, `dragino-lora-hat`).
    pub board: Option<String>,
    /// `sx1276` (also `rfm95w`), `sx1277`, `sx1278`, `sx1279`.
    pub chip: Option<String>,
    /// SPI device (group `spi`).
    pub spi_device: Option<PathBuf>,
    /// SPI clock in Hz (default 2 MHz; SX127x allows up to 10 MHz).
    pub spi_speed_hz: Option<u32>,
    /// GPIO line used as chip select instead of the controller's CE.
    pub spi_cs_pin: Option<u32>,
    /// GPIO character device (group `gpio`).
    pub gpiochip: Option<PathBuf>,
    /// NRESET line.
    pub reset_pin: Option<u32>,
    /// DIO0 interrupt line (RxDone / TxDone).
    pub dio0_pin: Option<u32>,
    /// RX-enable line of an external RF switch.
    pub rxen_pin: Option<u32>,
    /// TX-enable line of an external RF switch.
    pub txen_pin: Option<u32>,
    /// The board clocks the chip from a TCXO. Hazard: true on a crystal board stops the clock.
    pub tcxo: Option<bool>,
    /// Boosted LNA gain.
    pub rx_boost: Option<bool>,
    /// Receive channel in Hz.
    pub frequency_hz: Option<u32>,
    /// Receive spreading factor (6..=12).
    pub sf: Option<u8>,
    /// Receive bandwidth in Hz.
    pub bw_hz: Option<u32>,
    /// Coding rate: `4/5` (default), `4/6`, `4/7`, `4/8`.
    pub coding_rate: Option<String>,
    /// Receive preamble symbols (default 8).
    pub preamble: Option<u16>,
    /// Public LoRaWAN sync word (default true).
    pub public_network: Option<bool>,
    /// Lowest conducted power accepted, dBm.
    pub tx_power_min_dbm: Option<i8>,
    /// Highest conducted power used, dBm (PA_BOOST: at most 20); more is sent at this.
    pub tx_power_max_dbm: Option<i8>,
}

/// The receive channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    /// Centre frequency in Hz.
    pub freq_hz: u32,
    /// Spreading factor.
    pub sf: u8,
    /// Bandwidth in Hz.
    pub bw_hz: u32,
    /// Coding rate.
    pub cr: CodeRate,
    /// Preamble symbols.
    pub preamble: u16,
}

/// Validated settings the backend runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPhySettings {
    /// The transceiver.
    pub chip: Chip,
    /// SPI device path.
    pub spi_device: PathBuf,
    /// SPI clock in Hz.
    pub spi_speed_hz: u32,
    /// GPIO chip select line, if any.
    pub spi_cs_pin: Option<u32>,
    /// GPIO character device.
    pub gpiochip: PathBuf,
    /// NRESET line.
    pub reset_pin: u32,
    /// BUSY line (SX126x).
    pub busy_pin: Option<u32>,
    /// Interrupt line (DIO1 / DIO0).
    pub irq_pin: u32,
    /// RX-enable line.
    pub rxen_pin: Option<u32>,
    /// TX-enable line.
    pub txen_pin: Option<u32>,
    /// SX126x TCXO voltage.
    pub tcxo: Option<TcxoVoltage>,
    /// SX127x TCXO.
    pub sx127x_tcxo: bool,
    /// SX126x DIO2 as RF switch.
    pub dio2_rf_switch: bool,
    /// SX126x DC-DC.
    pub dcdc: bool,
    /// Boosted LNA gain.
    pub rx_boost: bool,
    /// Public LoRaWAN sync word.
    pub public_network: bool,
    /// Receive channel.
    pub channel: Channel,
    /// Lowest conducted power accepted, dBm (less is refused: TX_POWER).
    pub tx_power_min_dbm: i8,
    /// Highest conducted power used, dBm (more is sent at this).
    pub tx_power_max_dbm: i8,
}

fn err(section: &str, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: format!("{section}.{key}"),
        message: message.into(),
    }
}

/// Fields both sections share, gathered before the common checks.
struct Raw<'a> {
    section: &'a str,
    chip: Chip,
    pins: Vec<(&'static str, Option<u32>)>,
    frequency_hz: Option<u32>,
    sf: Option<u8>,
    bw_hz: Option<u32>,
    coding_rate: Option<&'a str>,
    preamble: Option<u16>,
    power: (Option<i8>, Option<i8>),
}

fn lookup_board(
    section: &str,
    name: Option<&str>,
) -> Result<Option<&'static BoardProfile>, ConfigError> {
    match name {
        None => Ok(None),
        Some(name) => board::board(name).map(Some).ok_or_else(|| {
            err(
                section,
                "board",
                format!(
                    "unknown board {name:?}; known boards: {}",
                    board::board_names().join(", ")
                ),
            )
        }),
    }
}

fn pick_chip(
    section: &str,
    name: Option<&str>,
    board: Option<&BoardProfile>,
    family_126x: bool,
) -> Result<Chip, ConfigError> {
    let chip = match (name, board) {
        (Some(n), _) => {
            Chip::parse(n).ok_or_else(|| err(section, "chip", format!("unknown chip {n:?}")))?
        }
        (None, Some(b)) => b.chip,
        (None, None) => return Err(err(section, "chip", "required when no board is given")),
    };
    if chip.is_sx126x() != family_126x {
        let want = if family_126x {
            "sx1261, sx1262 or sx1268"
        } else {
            "sx1276, sx1277, sx1278 or sx1279"
        };
        return Err(err(
            section,
            "chip",
            format!(
                "{} does not belong in [{section}]; expected {want}",
                chip.name()
            ),
        ));
    }
    Ok(chip)
}

fn common(raw: Raw<'_>) -> Result<(Channel, i8, i8), ConfigError> {
    let s = raw.section;
    // Pins: required ones present, all distinct, plausible line offsets.
    let mut seen: HashMap<u32, &str> = HashMap::new();
    for (key, pin) in &raw.pins {
        let Some(pin) = pin else { continue };
        if *pin > 1023 {
            return Err(err(
                s,
                key,
                format!("line {pin} is not a GPIO line offset (0..=1023)"),
            ));
        }
        if let Some(other) = seen.insert(*pin, key) {
            return Err(err(
                s,
                key,
                format!("line {pin} is already used by {s}.{other}"),
            ));
        }
    }
    let freq = raw
        .frequency_hz
        .ok_or_else(|| err(s, "frequency_hz", "required"))?;
    if !raw.chip.freq_range_hz().contains(&freq) {
        let r = raw.chip.freq_range_hz();
        return Err(err(
            s,
            "frequency_hz",
            format!(
                "{freq} Hz is outside the {} range {}..={} Hz",
                raw.chip.name(),
                r.start(),
                r.end()
            ),
        ));
    }
    let sf = raw.sf.unwrap_or(7);
    if !raw.chip.sf_range().contains(&sf) {
        let r = raw.chip.sf_range();
        return Err(err(
            s,
            "sf",
            format!(
                "SF{sf} is not supported by {} (SF{}..=SF{})",
                raw.chip.name(),
                r.start(),
                r.end()
            ),
        ));
    }
    let bw = raw.bw_hz.unwrap_or(125_000);
    if !matches!(bw, 125_000 | 250_000 | 500_000) {
        return Err(err(
            s,
            "bw_hz",
            format!("{bw} is not a LoRaWAN bandwidth (125000, 250000, 500000)"),
        ));
    }
    if bw > 125_000 && freq < 400_000_000 && raw.chip.is_sx126x() {
        return Err(err(
            s,
            "bw_hz",
            "250/500 kHz is not available below 400 MHz on SX126x",
        ));
    }
    let cr = match raw.coding_rate.unwrap_or("4/5") {
        "4/5" => CodeRate::Cr45,
        "4/6" => CodeRate::Cr46,
        "4/7" => CodeRate::Cr47,
        "4/8" => CodeRate::Cr48,
        other => {
            return Err(err(
                s,
                "coding_rate",
                format!("{other:?} is not one of 4/5, 4/6, 4/7, 4/8"),
            ))
        }
    };
    let preamble = raw.preamble.unwrap_or(8);
    if !(6..=65_535).contains(&preamble) {
        return Err(err(
            s,
            "preamble",
            format!("{preamble} symbols; at least 6"),
        ));
    }
    let range = raw.chip.power_range_dbm();
    let min = raw.power.0.unwrap_or(*range.start());
    let max = raw.power.1.unwrap_or(*range.end());
    for (key, v) in [("tx_power_min_dbm", min), ("tx_power_max_dbm", max)] {
        if !range.contains(&v) {
            return Err(err(
                s,
                key,
                format!(
                    "{v} dBm is outside the {} range {}..={} dBm",
                    raw.chip.name(),
                    range.start(),
                    range.end()
                ),
            ));
        }
    }
    if min > max {
        return Err(err(
            s,
            "tx_power_min_dbm",
            format!("{min} dBm is above tx_power_max_dbm ({max} dBm)"),
        ));
    }
    Ok((
        Channel {
            freq_hz: freq,
            sf,
            bw_hz: bw,
            cr,
            preamble,
        },
        min,
        max,
    ))
}

impl Sx126xConfig {
    /// Validate (merging the board profile) into settings; errors name the key under
    /// `section` (normally `radio.sx126x`).
    pub fn validate(&self, section: &str) -> Result<LoraPhySettings, ConfigError> {
        let board = lookup_board(section, self.board.as_deref())?;
        let chip = pick_chip(section, self.chip.as_deref(), board, true)?;
        let need = |key: &str, v: Option<u32>, b: Option<u32>| {
            v.or(b)
                .ok_or_else(|| err(section, key, "required when the board does not define it"))
        };
        let reset = need("reset_pin", self.reset_pin, board.map(|b| b.reset_pin))?;
        let busy = need("busy_pin", self.busy_pin, board.and_then(|b| b.busy_pin))?;
        let dio1 = need("dio1_pin", self.dio1_pin, board.map(|b| b.irq_pin))?;
        let cs = self.spi_cs_pin.or(board.and_then(|b| b.spi_cs_pin));
        let rxen = self.rxen_pin.or(board.and_then(|b| b.rxen_pin));
        let txen = self.txen_pin.or(board.and_then(|b| b.txen_pin));
        let tcxo = match self.tcxo_voltage {
            Some(0.0) => None,
            Some(v) => Some(TcxoVoltage::from_volts(v).ok_or_else(|| {
                err(section, "tcxo_voltage", format!("{v} V is not a DIO3 TCXO voltage (1.6, 1.7, 1.8, 2.2, 2.4, 2.7, 3.0, 3.3, or 0 for a crystal)"))
            })?),
            None => board.and_then(|b| b.tcxo),
        };
        let (channel, min, max) = common(Raw {
            section,
            chip,
            pins: vec![
                ("reset_pin", Some(reset)),
                ("busy_pin", Some(busy)),
                ("dio1_pin", Some(dio1)),
                ("spi_cs_pin", cs),
                ("rxen_pin", rxen),
                ("txen_pin", txen),
            ],
            frequency_hz: self.frequency_hz,
            sf: self.sf,
            bw_hz: self.bw_hz,
            coding_rate: self.coding_rate.as_deref(),
            preamble: self.preamble,
            power: (self.tx_power_min_dbm, self.tx_power_max_dbm),
        })?;
        if chip == Chip::Sx1268 && channel.freq_hz > 810_000_000 {
            return Err(err(
                section,
                "frequency_hz",
                "SX1268 boards are matched for 410–810 MHz",
            ));
        }
        Ok(LoraPhySettings {
            chip,
            spi_device: spi_device(section, self.spi_device.as_ref(), board)?,
            spi_speed_hz: spi_speed(section, self.spi_speed_hz, 16_000_000)?,
            spi_cs_pin: cs,
            gpiochip: self
                .gpiochip
                .clone()
                .or(board.map(|b| PathBuf::from(b.gpiochip)))
                .unwrap_or_else(|| PathBuf::from("/dev/gpiochip0")),
            reset_pin: reset,
            busy_pin: Some(busy),
            irq_pin: dio1,
            rxen_pin: rxen,
            txen_pin: txen,
            tcxo,
            sx127x_tcxo: false,
            dio2_rf_switch: self
                .dio2_rf_switch
                .or(board.map(|b| b.dio2_rf_switch))
                .unwrap_or(true),
            dcdc: self.dcdc.or(board.map(|b| b.dcdc)).unwrap_or(false),
            rx_boost: self.rx_boost.unwrap_or(false),
            public_network: self.public_network.unwrap_or(true),
            channel,
            tx_power_min_dbm: min,
            tx_power_max_dbm: max,
        })
    }
}

impl Sx127xConfig {
    /// Validate (merging the board profile) into settings; errors name the key under
    /// `section` (normally `radio.sx127x`).
    pub fn validate(&self, section: &str) -> Result<LoraPhySettings, ConfigError> {
        let board = lookup_board(section, self.board.as_deref())?;
        let chip = pick_chip(section, self.chip.as_deref(), board, false)?;
        let need = |key: &str, v: Option<u32>, b: Option<u32>| {
            v.or(b)
                .ok_or_else(|| err(section, key, "required when the board does not define it"))
        };
        let reset = need("reset_pin", self.reset_pin, board.map(|b| b.reset_pin))?;
        let dio0 = need("dio0_pin", self.dio0_pin, board.map(|b| b.irq_pin))?;
        let cs = self.spi_cs_pin.or(board.and_then(|b| b.spi_cs_pin));
        let rxen = self.rxen_pin.or(board.and_then(|b| b.rxen_pin));
        let txen = self.txen_pin.or(board.and_then(|b| b.txen_pin));
        let (channel, min, max) = common(Raw {
            section,
            chip,
            pins: vec![
                ("reset_pin", Some(reset)),
                ("dio0_pin", Some(dio0)),
                ("spi_cs_pin", cs),
                ("rxen_pin", rxen),
                ("txen_pin", txen),
            ],
            frequency_hz: self.frequency_hz,
            sf: self.sf,
            bw_hz: self.bw_hz,
            coding_rate: self.coding_rate.as_deref(),
            preamble: self.preamble,
            power: (self.tx_power_min_dbm, self.tx_power_max_dbm),
        })?;
        Ok(LoraPhySettings {
            chip,
            spi_device: spi_device(section, self.spi_device.as_ref(), board)?,
            spi_speed_hz: spi_speed(section, self.spi_speed_hz, 10_000_000)?,
            spi_cs_pin: cs,
            gpiochip: self
                .gpiochip
                .clone()
                .or(board.map(|b| PathBuf::from(b.gpiochip)))
                .unwrap_or_else(|| PathBuf::from("/dev/gpiochip0")),
            reset_pin: reset,
            busy_pin: None,
            irq_pin: dio0,
            rxen_pin: rxen,
            txen_pin: txen,
            tcxo: None,
            sx127x_tcxo: self.tcxo.or(board.map(|b| b.sx127x_tcxo)).unwrap_or(false),
            dio2_rf_switch: false,
            dcdc: false,
            rx_boost: self.rx_boost.unwrap_or(false),
            public_network: self.public_network.unwrap_or(true),
            channel,
            tx_power_min_dbm: min,
            tx_power_max_dbm: max,
        })
    }
}

fn spi_device(
    section: &str,
    v: Option<&PathBuf>,
    board: Option<&BoardProfile>,
) -> Result<PathBuf, ConfigError> {
    let p = v
        .cloned()
        .or(board.map(|b| PathBuf::from(b.spi_device)))
        .ok_or_else(|| err(section, "spi_device", "required when no board is given"))?;
    if !p.to_string_lossy().starts_with("/dev/") {
        return Err(err(
            section,
            "spi_device",
            format!("{} is not a device path (/dev/spidevB.C)", p.display()),
        ));
    }
    Ok(p)
}

fn spi_speed(section: &str, v: Option<u32>, max: u32) -> Result<u32, ConfigError> {
    let speed = v.unwrap_or(2_000_000);
    if !(100_000..=max).contains(&speed) {
        return Err(err(
            section,
            "spi_speed_hz",
            format!("{speed} Hz; the chip accepts 100000..={max}"),
        ));
    }
    Ok(speed)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
