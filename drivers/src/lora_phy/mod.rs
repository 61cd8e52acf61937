//! Single-channel LoRa transceivers (SX126x / SX127x) driven through the `lora-phy` crate.
//!
//! Layering, like lora-phy's own `InterfaceVariant` / `RadioKind` / `LoRa`:
//! board pins ([`board`], [`config`]) → bus ([`linux`]: spidev + GPIO character device, or
//! the emulated chip in `gatewayd-sim`) → chip (`lora_phy::sx126x` / `sx127x`) → the one
//! [`crate::radio::Radio`] the daemon sees ([`backend::spawn`]).
//!
//! Real devices and the emulated chip sit behind the same [`LoraHardware`] trait, so the
//! driver code path that runs on a Raspberry Pi is the one the tests exercise.

pub mod backend;
pub mod board;
pub mod config;
pub mod irq;
pub mod linux;
pub mod pa_boost;
pub mod schedule;
pub mod snoop;

use std::sync::{Arc, Mutex};

use embedded_hal_async::spi::SpiDevice;
use lora_phy::mod_traits::InterfaceVariant;

pub use backend::spawn;
pub use board::{BoardProfile, Chip, TcxoVoltage};
pub use config::{ConfigError, LoraPhySettings, Sx126xConfig, Sx127xConfig};

/// Errors of the lora-phy backend.
#[derive(Debug, thiserror::Error)]
pub enum LoraPhyError {
    /// The configuration is invalid (names the key).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A device or GPIO line could not be opened (names the device and what to fix).
    #[error("{0}")]
    Device(String),
    /// The chip did not behave (names the operation, the device and the pin involved).
    #[error("{0}")]
    Chip(String),
    /// A GPIO line could not be requested (names the pin, the line, the chip and what to fix).
    #[error(transparent)]
    Gpio(#[from] linux::GpioError),
    /// The backend thread or its runtime could not be started.
    #[error("could not start the lora-phy backend thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The backend thread ended before it started its runtime.
    #[error("could not start the lora-phy backend thread: the thread ended before starting")]
    ThreadEnded,
}

/// A cloneable slot where adapters leave the detail of their last failure.
///
/// `lora-phy` reduces every failure to a coarse `RadioError` (`SPI`, `Busy`, `Irq`…); the
/// adapters record here which device or pin failed and how, and the backend puts that detail
/// into the error it reports.
#[derive(Debug, Clone, Default)]
pub struct ErrorNote(Arc<Mutex<Option<String>>>);

impl ErrorNote {
    /// Record the detail of a failure (replaces an earlier one).
    pub fn record(&self, detail: impl Into<String>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(detail.into());
        }
    }

    /// Take the last recorded detail, if any.
    pub fn take(&self) -> Option<String> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// The hardware under the driver: real Linux devices or the emulated chip.
///
/// `open` is called on the backend's own thread at start and after every failure (the
/// backend then resets and re-initialises the chip), so the returned SPI device and
/// interface variant need not be `Send`.
pub trait LoraHardware: Send + 'static {
    /// The SPI device (chip select held for a whole transaction).
    type Spi: SpiDevice<u8>;
    /// Reset, BUSY, DIO/IRQ and RF-switch pins.
    type Iv: InterfaceVariant;

    /// Open (or re-open) the devices.
    fn open(&mut self) -> Result<(Self::Spi, Self::Iv), LoraPhyError>;

    /// Where the adapters leave the detail of their last failure.
    fn errors(&self) -> ErrorNote;

    /// A short description for messages, e.g. `SX1262 on /dev/spidev0.0`.
    fn describe(&self) -> String;
}
