//! Emulated radio chips behind the same SPI and GPIO traits as the real ones, so the
//! lora-phy driver path runs unchanged in tests: an SX1262 ([`sx1262`]) and an SX1276
//! ([`sx1276`]), both behind [`ChipModel`].
//!
//! [`EmulatedAir`] is the test's handle: it injects received frames, captures transmitted
//! ones, injects faults (BUSY stuck, no interrupt, SPI errors, a silent chip) and reports
//! protocol faults the chip saw. [`EmulatedHardware`] plugs it into
//! [`drivers::lora_phy::spawn`].

mod error;
pub mod sx1262;
pub mod sx1276;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use embedded_hal::spi::{ErrorKind, ErrorType, Operation};
use embedded_hal_async::delay::DelayNs;
use lora_phy::mod_params::RadioError;
use lora_phy::mod_traits::InterfaceVariant;
use tokio::sync::Notify;

use drivers::lora_phy::linux::gpio::BUSY_TIMEOUT;
use drivers::lora_phy::{ErrorNote, LoraHardware, LoraPhyError};
pub use error::{ChipError, NotHeard};
pub use sx1262::{AirFrame, AirTransmission, Mode, Sx1262};
pub use sx1276::Sx1276;

/// What the emulated SPI bus and pins need of a chip model. Every method takes or applies
/// the current time, so models are deterministic state machines.
pub trait ChipModel: Send + std::fmt::Debug {
    /// The chip's name for messages (`SX1262`).
    fn name(&self) -> &'static str;
    /// One SPI transaction: MOSI bytes in (reads contribute NOPs), MISO bytes out. `Err` is
    /// a malformed or unexpected access (also recorded in [`ChipModel::faults`]).
    fn transfer(&mut self, mosi: &[u8], now: Instant) -> Result<Vec<u8>, ChipError>;
    /// A frame arrives on the air; `Ok(())` when the chip received it, else why not.
    fn receive(&mut self, frame: &AirFrame, now: Instant) -> Result<(), ChipError>;
    /// NRESET pulse (recorded faults and air history stay).
    fn reset(&mut self);
    /// The mode after applying everything due by `now`.
    fn mode(&mut self, now: Instant) -> Mode;
    /// Level of the interrupt line the driver waits on (DIO1 / DIO0).
    fn irq_line(&self) -> bool;
    /// BUSY is high until this instant.
    fn busy_until(&self) -> Option<Instant>;
    /// The chip has a BUSY line (SX126x); without one, [`Faults::busy_stuck`] has no effect.
    fn has_busy_line(&self) -> bool {
        true
    }
    /// When the transmission on air ends.
    fn tx_end(&self) -> Option<Instant>;
    /// Apply what time has done (a transmission ends and raises TxDone).
    fn advance(&mut self, now: Instant);
    /// Frames transmitted.
    fn transmissions(&self) -> &[AirTransmission];
    /// Protocol faults seen.
    fn faults(&self) -> &[String];
    /// Injected fault: the TX-done interrupt is never raised.
    fn set_no_irq(&mut self, on: bool);
    /// Whether [`ChipModel::set_no_irq`] is on.
    fn no_irq(&self) -> bool;
    /// The TCXO setting the driver programmed, if any.
    fn tcxo(&self) -> Option<u8>;
}

impl ChipModel for Sx1262 {
    fn name(&self) -> &'static str {
        "SX1262"
    }
    fn transfer(&mut self, mosi: &[u8], now: Instant) -> Result<Vec<u8>, ChipError> {
        Sx1262::transfer(self, mosi, now)
    }
    fn receive(&mut self, frame: &AirFrame, now: Instant) -> Result<(), ChipError> {
        Sx1262::receive(self, frame, now)
    }
    fn reset(&mut self) {
        Sx1262::reset(self)
    }
    fn mode(&mut self, now: Instant) -> Mode {
        Sx1262::mode(self, now)
    }
    fn irq_line(&self) -> bool {
        self.dio1()
    }
    fn busy_until(&self) -> Option<Instant> {
        Sx1262::busy_until(self)
    }
    fn tx_end(&self) -> Option<Instant> {
        Sx1262::tx_end(self)
    }
    fn advance(&mut self, now: Instant) {
        Sx1262::advance(self, now)
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
    fn tcxo(&self) -> Option<u8> {
        self.tcxo
    }
}

/// Faults a test can inject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// BUSY stays high.
    pub busy_stuck: bool,
    /// TX never raises TxDone on DIO1.
    pub no_irq: bool,
    /// The next this-many SPI transactions fail.
    pub spi_errors: u32,
    /// MISO reads 0xFF (no chip on the bus).
    pub silent: bool,
}

#[derive(Debug)]
struct Shared {
    chip: Mutex<Box<dyn ChipModel>>,
    faults: Mutex<Faults>,
    changed: Notify,
}

/// The test's handle on the emulated chip and its air. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmulatedAir {
    shared: Arc<Shared>,
}

impl Default for EmulatedAir {
    fn default() -> Self {
        EmulatedAir::with_chip(Box::new(Sx1262::default()))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl EmulatedAir {
    /// A powered-on SX1262 on a quiet air.
    pub fn new() -> EmulatedAir {
        EmulatedAir::default()
    }

    /// A powered-on SX1276 (RFM95W) on a quiet air.
    pub fn sx1276() -> EmulatedAir {
        EmulatedAir::with_chip(Box::new(Sx1276::default()))
    }

    /// `chip` on a quiet air.
    pub fn with_chip(chip: Box<dyn ChipModel>) -> EmulatedAir {
        EmulatedAir {
            shared: Arc::new(Shared {
                chip: Mutex::new(chip),
                faults: Mutex::new(Faults::default()),
                changed: Notify::new(),
            }),
        }
    }

    /// The emulated chip's name (`SX1262`, `SX1276`).
    pub fn chip_name(&self) -> &'static str {
        lock(&self.shared.chip).name()
    }

    /// Put a frame on the air now; `Ok(instant)` when the chip received it (the instant its
    /// RxDone interrupt was raised), else why it did not.
    pub fn inject(&self, frame: &AirFrame) -> Result<Instant, ChipError> {
        let now = Instant::now();
        let r = lock(&self.shared.chip).receive(frame, now);
        self.shared.changed.notify_waiters();
        r.map(|()| now)
    }

    /// Everything transmitted so far.
    pub fn transmissions(&self) -> Vec<AirTransmission> {
        lock(&self.shared.chip).transmissions().to_vec()
    }

    /// Wait (bounded) until at least `n` frames have been transmitted.
    pub async fn wait_transmissions(&self, n: usize, timeout: Duration) -> Vec<AirTransmission> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            let t = self.transmissions();
            if t.len() >= n || tokio::time::Instant::now() >= deadline {
                return t;
            }
            let _ = tokio::time::timeout_at(deadline, changed).await;
        }
    }

    /// The chip's mode now.
    pub fn mode(&self) -> Mode {
        lock(&self.shared.chip).mode(Instant::now())
    }

    /// Wait (bounded) until the chip is in `mode`.
    pub async fn wait_mode(&self, mode: Mode, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.mode() == mode {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Replace the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = faults;
        lock(&self.shared.chip).set_no_irq(faults.no_irq);
        self.shared.changed.notify_waiters();
    }

    /// Protocol faults the chip recorded (unknown/malformed commands…).
    pub fn protocol_faults(&self) -> Vec<String> {
        lock(&self.shared.chip).faults().to_vec()
    }

    /// Panic with the recorded protocol faults, if any.
    pub fn assert_no_faults(&self) {
        let f = self.protocol_faults();
        assert!(
            f.is_empty(),
            "the emulated {} saw protocol faults: {f:#?}",
            self.chip_name()
        );
    }

    /// The TCXO code the driver programmed (SX1262 SetTCXOMode; SX1276 RegTcxo bit 4), if
    /// any.
    pub fn tcxo(&self) -> Option<u8> {
        lock(&self.shared.chip).tcxo()
    }
}

/// The emulated SPI device.
pub struct EmulatedSpi {
    air: EmulatedAir,
    note: ErrorNote,
}

/// An emulated SPI transaction failed (detail in the [`ErrorNote`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmulatedSpiError;

impl embedded_hal::spi::Error for EmulatedSpiError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

impl ErrorType for EmulatedSpi {
    type Error = EmulatedSpiError;
}

impl embedded_hal_async::spi::SpiDevice<u8> for EmulatedSpi {
    async fn transaction(&mut self, ops: &mut [Operation<'_, u8>]) -> Result<(), EmulatedSpiError> {
        {
            let mut f = lock(&self.air.shared.faults);
            if f.spi_errors > 0 {
                f.spi_errors -= 1;
                self.note
                    .record("SPI transfer on emulated spidev: input/output error (injected)");
                return Err(EmulatedSpiError);
            }
        }
        let silent = lock(&self.air.shared.faults).silent;
        // Full duplex: writes and reads (NOPs) form one MOSI stream.
        let mut mosi = Vec::new();
        for op in ops.iter() {
            match op {
                Operation::Write(w) => mosi.extend_from_slice(w),
                Operation::Read(r) => mosi.extend(std::iter::repeat_n(0u8, r.len())),
                Operation::Transfer(r, w) => {
                    mosi.extend((0..r.len().max(w.len())).map(|i| w.get(i).copied().unwrap_or(0)))
                }
                Operation::TransferInPlace(b) => mosi.extend_from_slice(b),
                Operation::DelayNs(_) => {}
            }
        }
        let miso = if silent {
            vec![0xFF; mosi.len()]
        } else {
            let (r, name) = {
                let mut chip = lock(&self.air.shared.chip);
                (chip.transfer(&mosi, Instant::now()), chip.name())
            };
            self.air.shared.changed.notify_waiters();
            r.map_err(|e| {
                self.note
                    .record(format!("emulated {name} rejected a command: {e}"));
                EmulatedSpiError
            })?
        };
        let mut pos = 0;
        for op in ops.iter_mut() {
            match op {
                Operation::Write(w) => pos += w.len(),
                Operation::Read(r) => {
                    r.copy_from_slice(&miso[pos..pos + r.len()]);
                    pos += r.len();
                }
                Operation::Transfer(r, w) => {
                    let n = r.len().max(w.len());
                    let m = r.len();
                    r.copy_from_slice(&miso[pos..pos + m]);
                    pos += n;
                }
                Operation::TransferInPlace(b) => {
                    let n = b.len();
                    b.copy_from_slice(&miso[pos..pos + n]);
                    pos += n;
                }
                Operation::DelayNs(_) => {}
            }
        }
        Ok(())
    }
}

/// The emulated board pins (RESET, BUSY, DIO1; RF switch recorded nowhere).
pub struct EmulatedIv {
    air: EmulatedAir,
    note: ErrorNote,
}

impl InterfaceVariant for EmulatedIv {
    async fn reset(&mut self, delay: &mut impl DelayNs) -> Result<(), RadioError> {
        lock(&self.air.shared.chip).reset();
        delay.delay_ms(1).await;
        Ok(())
    }

    async fn wait_on_busy(&mut self) -> Result<(), RadioError> {
        let start = Instant::now();
        loop {
            let stuck = lock(&self.air.shared.faults).busy_stuck
                && lock(&self.air.shared.chip).has_busy_line();
            let until = if stuck {
                None
            } else {
                lock(&self.air.shared.chip).busy_until()
            };
            let now = Instant::now();
            if !stuck && until.is_none_or(|u| u <= now) {
                return Ok(());
            }
            if now.duration_since(start) > BUSY_TIMEOUT {
                self.note.record(format!(
                    "BUSY (emulated line) stayed high for {} ms: the chip hangs",
                    BUSY_TIMEOUT.as_millis()
                ));
                return Err(RadioError::Busy);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn await_irq(&mut self) -> Result<(), RadioError> {
        loop {
            let changed = self.air.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wake = {
                let mut chip = lock(&self.air.shared.chip);
                chip.advance(Instant::now());
                if chip.irq_line() {
                    return Ok(());
                }
                if chip.no_irq() {
                    None
                } else {
                    chip.tx_end()
                }
            };
            match wake {
                Some(at) => {
                    tokio::select! {
                        _ = &mut changed => {}
                        _ = tokio::time::sleep_until(at.into()) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    async fn enable_rf_switch_rx(&mut self) -> Result<(), RadioError> {
        Ok(())
    }

    async fn enable_rf_switch_tx(&mut self) -> Result<(), RadioError> {
        Ok(())
    }

    async fn disable_rf_switch(&mut self) -> Result<(), RadioError> {
        Ok(())
    }
}

/// [`LoraHardware`] over an [`EmulatedAir`].
#[derive(Debug, Clone)]
pub struct EmulatedHardware {
    air: EmulatedAir,
    note: ErrorNote,
}

impl EmulatedHardware {
    /// Hardware whose chip is `air`'s.
    pub fn new(air: &EmulatedAir) -> EmulatedHardware {
        EmulatedHardware {
            air: air.clone(),
            note: ErrorNote::default(),
        }
    }
}

impl LoraHardware for EmulatedHardware {
    type Spi = EmulatedSpi;
    type Iv = EmulatedIv;

    fn open(&mut self) -> Result<(EmulatedSpi, EmulatedIv), LoraPhyError> {
        Ok((
            EmulatedSpi {
                air: self.air.clone(),
                note: self.note.clone(),
            },
            EmulatedIv {
                air: self.air.clone(),
                note: self.note.clone(),
            },
        ))
    }

    fn errors(&self) -> ErrorNote {
        self.note.clone()
    }

    fn describe(&self) -> String {
        format!("{} on emulated spidev", self.air.chip_name())
    }
}

#[cfg(test)]
mod sx1276_tests;
#[cfg(test)]
mod tests;
