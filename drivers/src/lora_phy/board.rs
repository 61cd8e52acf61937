//! Chips and board profiles: what each supported transceiver can do, and the pin-out of
//! common Raspberry Pi LoRa boards as data. Every value of a profile can be overridden in
//! the config ([`super::config`]).

use std::ops::RangeInclusive;

/// A supported transceiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Chip {
    /// SX1261: low-power PA only (-17..=15 dBm).
    Sx1261,
    /// SX1262: high-power PA (-9..=22 dBm), 150–960 MHz.
    Sx1262,
    /// SX1268: as SX1262, for the 410–810 MHz bands (China 470, EU 433).
    Sx1268,
    /// SX1276 (RFM95W/96W/98W): 137–1020 MHz.
    Sx1276,
    /// SX1277: as SX1276, SF6–SF9 only.
    Sx1277,
    /// SX1278: 137–525 MHz.
    Sx1278,
    /// SX1279: 137–960 MHz.
    Sx1279,
}

impl Chip {
    /// Parse a chip name as written in the config (`"sx1262"`, case-insensitive).
    pub fn parse(name: &str) -> Option<Chip> {
        Some(match name.to_ascii_lowercase().as_str() {
            "sx1261" => Chip::Sx1261,
            "sx1262" => Chip::Sx1262,
            "sx1268" => Chip::Sx1268,
            "sx1276" | "rfm95w" | "rfm95" => Chip::Sx1276,
            "sx1277" => Chip::Sx1277,
            "sx1278" | "rfm98w" => Chip::Sx1278,
            "sx1279" => Chip::Sx1279,
            _ => return None,
        })
    }

    /// The chip's name.
    pub fn name(self) -> &'static str {
        match self {
            Chip::Sx1261 => "SX1261",
            Chip::Sx1262 => "SX1262",
            Chip::Sx1268 => "SX1268",
            Chip::Sx1276 => "SX1276",
            Chip::Sx1277 => "SX1277",
            Chip::Sx1278 => "SX1278",
            Chip::Sx1279 => "SX1279",
        }
    }

    /// SX126x family (BUSY pin, DIO1 interrupt, command interface).
    pub fn is_sx126x(self) -> bool {
        matches!(self, Chip::Sx1261 | Chip::Sx1262 | Chip::Sx1268)
    }

    /// Frequency range the chip synthesises, in Hz.
    pub fn freq_range_hz(self) -> RangeInclusive<u32> {
        match self {
            Chip::Sx1261 | Chip::Sx1262 => 150_000_000..=960_000_000,
            Chip::Sx1268 => 410_000_000..=810_000_000,
            Chip::Sx1276 | Chip::Sx1277 => 137_000_000..=1_020_000_000,
            Chip::Sx1278 => 137_000_000..=525_000_000,
            Chip::Sx1279 => 137_000_000..=960_000_000,
        }
    }

    /// Spreading factors the chip (and lora-phy for it) supports.
    pub fn sf_range(self) -> RangeInclusive<u8> {
        match self {
            Chip::Sx1261 | Chip::Sx1262 | Chip::Sx1268 => 5..=12,
            Chip::Sx1277 => 6..=9,
            Chip::Sx1276 | Chip::Sx1278 | Chip::Sx1279 => 6..=12,
        }
    }

    /// Conducted output power the chip can be asked for, in dBm.
    pub fn power_range_dbm(self) -> RangeInclusive<i8> {
        match self {
            Chip::Sx1261 => -17..=15,
            Chip::Sx1262 | Chip::Sx1268 => -9..=22,
            // PA_BOOST pin (every common Pi board): 2..=20 dBm.
            _ => 2..=20,
        }
    }
}

/// TCXO supply voltage the SX126x drives on DIO3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcxoVoltage {
    /// 1.6 V
    V1_6,
    /// 1.7 V
    V1_7,
    /// 1.8 V
    V1_8,
    /// 2.2 V
    V2_2,
    /// 2.4 V
    V2_4,
    /// 2.7 V
    V2_7,
    /// 3.0 V
    V3_0,
    /// 3.3 V
    V3_3,
}

impl TcxoVoltage {
    /// The voltage for a value in volts, if the chip can supply it.
    pub fn from_volts(v: f32) -> Option<TcxoVoltage> {
        let table = [
            (1.6, TcxoVoltage::V1_6),
            (1.7, TcxoVoltage::V1_7),
            (1.8, TcxoVoltage::V1_8),
            (2.2, TcxoVoltage::V2_2),
            (2.4, TcxoVoltage::V2_4),
            (2.7, TcxoVoltage::V2_7),
            (3.0, TcxoVoltage::V3_0),
            (3.3, TcxoVoltage::V3_3),
        ];
        table
            .iter()
            .find(|(volts, _)| (volts - v).abs() < 0.01)
            .map(|(_, t)| *t)
    }

    /// The lora-phy value.
    pub fn to_lora_phy(self) -> lora_phy::sx126x::TcxoCtrlVoltage {
        use lora_phy::sx126x::TcxoCtrlVoltage as T;
        match self {
            TcxoVoltage::V1_6 => T::Ctrl1V6,
            TcxoVoltage::V1_7 => T::Ctrl1V7,
            TcxoVoltage::V1_8 => T::Ctrl1V8,
            TcxoVoltage::V2_2 => T::Ctrl2V2,
            TcxoVoltage::V2_4 => T::Ctrl2V4,
            TcxoVoltage::V2_7 => T::Ctrl2V7,
            TcxoVoltage::V3_0 => T::Ctrl3V0,
            TcxoVoltage::V3_3 => T::Ctrl3V3,
        }
    }

    /// The SX126x `SetTCXOMode` code (0..=7).
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A board's wiring and chip options, as data. Pins are line offsets on `gpiochip`
/// (BCM numbers on a Raspberry Pi's `/dev/gpiochip0`).
#[derive(Debug, Clone, PartialEq)]
pub struct BoardProfile {
    /// Name used in the config (`board = "..."`).
    pub name: &'static str,
    /// What the board is.
    pub description: &'static str,
    /// The transceiver on it.
    pub chip: Chip,
    /// SPI device.
    pub spi_device: &'static str,
    /// A GPIO line used as chip select instead of the SPI controller's CE line.
    pub spi_cs_pin: Option<u32>,
    /// GPIO character device.
    pub gpiochip: &'static str,
    /// NRESET line.
    pub reset_pin: u32,
    /// BUSY line (SX126x only).
    pub busy_pin: Option<u32>,
    /// Interrupt line: DIO1 on SX126x, DIO0 on SX127x.
    pub irq_pin: u32,
    /// RX-enable line of an external RF switch.
    pub rxen_pin: Option<u32>,
    /// TX-enable line of an external RF switch.
    pub txen_pin: Option<u32>,
    /// TCXO on DIO3 and its voltage (SX126x); `None` for a crystal.
    pub tcxo: Option<TcxoVoltage>,
    /// SX127x: the board clocks the chip from a TCXO.
    pub sx127x_tcxo: bool,
    /// SX126x: DIO2 drives the RF switch.
    pub dio2_rf_switch: bool,
    /// SX126x: the board has the DC-DC inductor fitted.
    pub dcdc: bool,
}

/// The known board profiles.
pub const BOARDS: &[BoardProfile] = &[
    BoardProfile {
        name: "waveshare-sx1262-hat",
        description: "Waveshare SX1262 868M/915M LoRaWAN HAT (SX1262, chip select on GPIO21)",
        chip: Chip::Sx1262,
        spi_device: "/dev/spidev0.0",
        spi_cs_pin: Some(21),
        gpiochip: "/dev/gpiochip0",
        reset_pin: 18,
        busy_pin: Some(20),
        irq_pin: 16,
        rxen_pin: None,
        txen_pin: None,
        tcxo: None,
        sx127x_tcxo: false,
        dio2_rf_switch: true,
        dcdc: true,
    },
    BoardProfile {
        name: "adafruit-rfm95w-bonnet",
        description: "Adafruit LoRa Radio Bonnet RFM95W (SX1276 on CE1, PA_BOOST)",
        chip: Chip::Sx1276,
        spi_device: "/dev/spidev0.1",
        spi_cs_pin: None,
        gpiochip: "/dev/gpiochip0",
        reset_pin: 25,
        busy_pin: None,
        irq_pin: 22,
        rxen_pin: None,
        txen_pin: None,
        tcxo: None,
        sx127x_tcxo: false,
        dio2_rf_switch: false,
        dcdc: false,
    },
    BoardProfile {
        name: "dragino-lora-hat",
        description: "Dragino LoRa/GPS HAT (SX1276, NSS on GPIO25)",
        chip: Chip::Sx1276,
        spi_device: "/dev/spidev0.0",
        spi_cs_pin: Some(25),
        gpiochip: "/dev/gpiochip0",
        reset_pin: 17,
        busy_pin: None,
        irq_pin: 4,
        rxen_pin: None,
        txen_pin: None,
        tcxo: None,
        sx127x_tcxo: false,
        dio2_rf_switch: false,
        dcdc: false,
    },
];

/// Look a board profile up by name.
pub fn board(name: &str) -> Option<&'static BoardProfile> {
    BOARDS.iter().find(|b| b.name.eq_ignore_ascii_case(name))
}

/// The names of the known boards, for error messages.
pub fn board_names() -> Vec<&'static str> {
    BOARDS.iter().map(|b| b.name).collect()
}
