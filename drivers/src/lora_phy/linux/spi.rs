//! Async `SpiDevice` over a Linux spidev (`/dev/spidevB.C`).
//!
//! lora-phy issues multi-part transactions (opcode, then status, then data). Each is sent as
//! one `SPI_IOC_MESSAGE` ioctl with all parts, so chip select stays asserted across them;
//! with a GPIO chip select (`spi_cs_pin`) the line is held low around that one ioctl.
//! The ioctl blocks for the transfer (a few µs to ~1 ms for 255 bytes at 2 MHz); the backend
//! runs on its own thread, so no other task waits behind it.

use std::io;
use std::path::Path;

use embedded_hal::spi::{ErrorKind, ErrorType, Operation};
use gpiocdev::line::Value;
use linux_embedded_hal::SpidevDevice;
use spidev::{SpiModeFlags, SpidevOptions};

use super::gpio::{open_lines, LineOut};
use crate::lora_phy::{ErrorNote, LoraPhyError};

/// An SPI transfer failed; the detail (device, OS error) is in the hardware's
/// [`ErrorNote`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpiFailure;

impl embedded_hal::spi::Error for SpiFailure {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

/// An opened spidev with an optional GPIO chip select.
pub struct LinuxSpi {
    dev: SpidevDevice,
    path: String,
    cs: Option<LineOut>,
    note: ErrorNote,
}

/// Explain an OS error on a device, with what the operator can do about it.
pub fn explain_io(what: &str, path: &str, e: &io::Error, group: &str) -> String {
    match e.kind() {
        io::ErrorKind::PermissionDenied => format!(
            "{what} {path}: permission denied; add the service user to group `{group}`"
        ),
        io::ErrorKind::NotFound => format!(
            "{what} {path}: no such device; enable the interface (Raspberry Pi: dtparam=spi=on) or fix the path"
        ),
        _ => format!("{what} {path}: {e}"),
    }
}

impl LinuxSpi {
    /// Open and configure (mode 0, 8 bits, `speed_hz`) the device; `cs` is
    /// `(gpiochip, line)` for a GPIO chip select.
    pub fn open(
        path: &Path,
        speed_hz: u32,
        cs: Option<(&Path, u32)>,
        note: ErrorNote,
    ) -> Result<LinuxSpi, LoraPhyError> {
        let shown = path.display().to_string();
        let mut dev = SpidevDevice::open(path).map_err(|e| {
            LoraPhyError::Device(explain_io("opening SPI device", &shown, e.inner(), "spi"))
        })?;
        let mut mode = SpiModeFlags::SPI_MODE_0;
        if cs.is_some() {
            mode |= SpiModeFlags::SPI_NO_CS;
        }
        let options = SpidevOptions::new()
            .bits_per_word(8)
            .max_speed_hz(speed_hz)
            .mode(mode)
            .build();
        if let Err(e) = dev.0.configure(&options) {
            // Some controllers refuse SPI_NO_CS; then the CE line toggles too, which is
            // harmless when nothing else sits on it.
            let retry = SpidevOptions::new()
                .bits_per_word(8)
                .max_speed_hz(speed_hz)
                .mode(SpiModeFlags::SPI_MODE_0)
                .build();
            if cs.is_none() || dev.0.configure(&retry).is_err() {
                return Err(LoraPhyError::Device(explain_io(
                    "configuring SPI device",
                    &shown,
                    &e,
                    "spi",
                )));
            }
        }
        let cs = match cs {
            Some((chip, line)) => {
                Some(open_lines(chip, &[("spi_cs_pin", line, Value::Active)])?.remove(0))
            }
            None => None,
        };
        Ok(LinuxSpi {
            dev,
            path: shown,
            cs,
            note,
        })
    }
}

impl ErrorType for LinuxSpi {
    type Error = SpiFailure;
}

impl embedded_hal_async::spi::SpiDevice<u8> for LinuxSpi {
    async fn transaction(
        &mut self,
        operations: &mut [Operation<'_, u8>],
    ) -> Result<(), SpiFailure> {
        if let Some(cs) = &self.cs {
            cs.set(Value::Inactive).map_err(|e| {
                self.note.record(e.to_string());
                SpiFailure
            })?;
        }
        let result = embedded_hal::spi::SpiDevice::transaction(&mut self.dev, operations);
        if let Some(cs) = &self.cs {
            if let Err(e) = cs.set(Value::Active) {
                self.note.record(e.to_string());
                return Err(SpiFailure);
            }
        }
        result.map_err(|e| {
            self.note
                .record(format!("SPI transfer on {}: {}", self.path, e.inner()));
            SpiFailure
        })
    }
}
