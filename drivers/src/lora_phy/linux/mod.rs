//! Linux adapters for lora-phy: spidev ([`spi`]), the GPIO character device ([`gpio`]) and
//! tokio delays ([`delay`]), assembled into [`LinuxHardware`].

pub mod delay;
pub mod gpio;
pub mod spi;

use crate::lora_phy::{ErrorNote, LoraHardware, LoraPhyError, LoraPhySettings};

pub use delay::TokioDelay;
pub use gpio::{GpioError, IvPins, LinuxIv};
pub use spi::LinuxSpi;

/// Real devices: the SPI device and gpiochip lines named in the settings.
#[derive(Debug, Clone)]
pub struct LinuxHardware {
    settings: LoraPhySettings,
    note: ErrorNote,
}

impl LinuxHardware {
    /// Hardware for validated settings (nothing is opened until the backend starts).
    pub fn new(settings: &LoraPhySettings) -> LinuxHardware {
        LinuxHardware {
            settings: settings.clone(),
            note: ErrorNote::default(),
        }
    }
}

impl LoraHardware for LinuxHardware {
    type Spi = LinuxSpi;
    type Iv = LinuxIv;

    fn open(&mut self) -> Result<(LinuxSpi, LinuxIv), LoraPhyError> {
        let s = &self.settings;
        let cs = s.spi_cs_pin.map(|l| (s.gpiochip.as_path(), l));
        let spi = LinuxSpi::open(&s.spi_device, s.spi_speed_hz, cs, self.note.clone())?;
        let pins = IvPins {
            reset: s.reset_pin,
            busy: s.busy_pin,
            irq: s.irq_pin,
            irq_name: if s.chip.is_sx126x() {
                "dio1_pin"
            } else {
                "dio0_pin"
            },
            rxen: s.rxen_pin,
            txen: s.txen_pin,
        };
        let iv = LinuxIv::open(&s.gpiochip, pins, self.note.clone())?;
        Ok((spi, iv))
    }

    fn errors(&self) -> ErrorNote {
        self.note.clone()
    }

    fn describe(&self) -> String {
        format!(
            "{} on {}",
            self.settings.chip.name(),
            self.settings.spi_device.display()
        )
    }
}
