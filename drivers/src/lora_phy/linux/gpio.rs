//! The lora-phy `InterfaceVariant` over the Linux GPIO character device (`/dev/gpiochipN`):
//! RESET and optional RX/TX-enable outputs, BUSY polled with a timeout, the interrupt line
//! (DIO1 / DIO0) waited on with kernel edge events.
//!
//! Values are physical levels (lines are requested active-high): `Active` = high.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use embedded_hal_async::delay::DelayNs;
use gpiocdev::line::{EdgeDetection, Value};
use gpiocdev::tokio::AsyncRequest;
use gpiocdev::Request;
use lora_phy::mod_params::RadioError;
use lora_phy::mod_traits::InterfaceVariant;

use crate::lora_phy::{ErrorNote, LoraPhyError};

/// How long BUSY may stay high before the chip is declared hung.
pub const BUSY_TIMEOUT: Duration = Duration::from_millis(250);

/// A GPIO line operation failed; the message names the operation, the line and the chip,
/// with a hint for the usual causes.
#[derive(Debug, thiserror::Error)]
#[error("{what} (line {line} on {}): {source}{}", chip.display(), hint(source))]
pub struct GpioError {
    /// What was being done (`requesting reset_pin`, `setting cs_pin`, …).
    pub what: String,
    /// The GPIO chip.
    pub chip: PathBuf,
    /// The line offset.
    pub line: u32,
    /// Why.
    #[source]
    pub source: gpiocdev::Error,
}

fn gpio_error(what: &str, chip: &Path, line: u32, source: gpiocdev::Error) -> GpioError {
    GpioError {
        what: what.to_owned(),
        chip: chip.to_path_buf(),
        line,
        source,
    }
}

fn hint(e: &gpiocdev::Error) -> &'static str {
    let text = e.to_string();
    if text.contains("ermission") || text.contains("EACCES") {
        "; add the service user to group `gpio`"
    } else if text.contains("busy") || text.contains("EBUSY") {
        "; another program (or a kernel driver) holds the line"
    } else {
        ""
    }
}

/// One requested output line with a name for messages.
pub struct LineOut {
    req: Request,
    line: u32,
    name: String,
}

impl LineOut {
    /// Drive the line; the error names the pin.
    pub fn set(&self, v: Value) -> Result<(), GpioError> {
        self.req.set_value(self.line, v).map_err(|e| {
            gpio_error(
                &format!("setting {}", self.name),
                &self.req.chip_path(),
                self.line,
                e,
            )
        })
    }
}

/// Request output lines `(key, line, initial value)`, one request each.
pub fn open_lines(chip: &Path, lines: &[(&str, u32, Value)]) -> Result<Vec<LineOut>, LoraPhyError> {
    lines
        .iter()
        .map(|(key, line, value)| {
            let req = Request::builder()
                .on_chip(chip)
                .with_consumer("gatewayd")
                .with_line(*line)
                .as_output(*value)
                .request()
                .map_err(|e| gpio_error(&format!("requesting {key}"), chip, *line, e))?;
            Ok(LineOut {
                req,
                line: *line,
                name: (*key).to_string(),
            })
        })
        .collect()
}

fn open_input(chip: &Path, key: &str, line: u32, edge: bool) -> Result<Request, LoraPhyError> {
    let mut b = Request::builder();
    b.on_chip(chip)
        .with_consumer("gatewayd")
        .with_line(line)
        .as_input();
    if edge {
        b.with_edge_detection(EdgeDetection::RisingEdge);
    }
    b.request()
        .map_err(|e| gpio_error(&format!("requesting {key}"), chip, line, e).into())
}

/// Pin numbers for [`LinuxIv::open`].
#[derive(Debug, Clone)]
pub struct IvPins {
    /// NRESET.
    pub reset: u32,
    /// BUSY (SX126x).
    pub busy: Option<u32>,
    /// DIO1 (SX126x) / DIO0 (SX127x).
    pub irq: u32,
    /// Name of the interrupt pin for messages (`dio1_pin` / `dio0_pin`).
    pub irq_name: &'static str,
    /// RX enable.
    pub rxen: Option<u32>,
    /// TX enable.
    pub txen: Option<u32>,
}

/// The InterfaceVariant over gpiochip lines.
pub struct LinuxIv {
    chip: String,
    pins: IvPins,
    reset: LineOut,
    rxen: Option<LineOut>,
    txen: Option<LineOut>,
    busy: Option<Request>,
    irq: AsyncRequest,
    note: ErrorNote,
}

impl LinuxIv {
    /// Request the lines on `chip`.
    pub fn open(chip: &Path, pins: IvPins, note: ErrorNote) -> Result<LinuxIv, LoraPhyError> {
        let mut outs = open_lines(chip, &[("reset_pin", pins.reset, Value::Active)])?;
        let reset = outs.remove(0);
        let rxen = match pins.rxen {
            Some(l) => Some(open_lines(chip, &[("rxen_pin", l, Value::Inactive)])?.remove(0)),
            None => None,
        };
        let txen = match pins.txen {
            Some(l) => Some(open_lines(chip, &[("txen_pin", l, Value::Inactive)])?.remove(0)),
            None => None,
        };
        let busy = match pins.busy {
            Some(l) => Some(open_input(chip, "busy_pin", l, false)?),
            None => None,
        };
        let irq = AsyncRequest::new(open_input(chip, pins.irq_name, pins.irq, true)?);
        Ok(LinuxIv {
            chip: chip.display().to_string(),
            pins,
            reset,
            rxen,
            txen,
            busy,
            irq,
            note,
        })
    }

    fn fail(&self, detail: String, e: RadioError) -> RadioError {
        self.note.record(detail);
        e
    }

    fn switch(&self, rx: Value, tx: Value, e: fn() -> RadioError) -> Result<(), RadioError> {
        for (line, v) in [(&self.txen, tx), (&self.rxen, rx)] {
            if let Some(line) = line {
                line.set(v).map_err(|d| self.fail(d.to_string(), e()))?;
            }
        }
        Ok(())
    }
}

impl InterfaceVariant for LinuxIv {
    async fn reset(&mut self, delay: &mut impl DelayNs) -> Result<(), RadioError> {
        delay.delay_ms(10).await;
        self.reset
            .set(Value::Inactive)
            .map_err(|d| self.fail(d.to_string(), RadioError::Reset))?;
        delay.delay_ms(20).await;
        self.reset
            .set(Value::Active)
            .map_err(|d| self.fail(d.to_string(), RadioError::Reset))?;
        delay.delay_ms(10).await;
        Ok(())
    }

    async fn wait_on_busy(&mut self) -> Result<(), RadioError> {
        let Some(busy) = &self.busy else {
            return Ok(());
        };
        let line = self.pins.busy.unwrap_or_default();
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            match busy.value(line) {
                Ok(Value::Inactive) => return Ok(()),
                Ok(Value::Active) => {}
                Err(e) => {
                    return Err(self.fail(
                        gpio_error("reading busy_pin", Path::new(&self.chip), line, e).to_string(),
                        RadioError::Busy,
                    ))
                }
            }
            if start.elapsed() > BUSY_TIMEOUT {
                let detail = format!(
                    "BUSY (line {line} on {}) stayed high for {} ms: the chip hangs (wrong tcxo_voltage?) or busy_pin is wrong",
                    self.chip,
                    BUSY_TIMEOUT.as_millis()
                );
                return Err(self.fail(detail, RadioError::Busy));
            }
            // BUSY normally drops within microseconds; calibrations take a few ms.
            spins += 1;
            if spins < 64 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    async fn await_irq(&mut self) -> Result<(), RadioError> {
        let line = self.pins.irq;
        loop {
            match self.irq.as_ref().value(line) {
                Ok(Value::Active) => return Ok(()),
                Ok(Value::Inactive) => {}
                Err(e) => {
                    return Err(self.fail(
                        gpio_error(
                            &format!("reading {}", self.pins.irq_name),
                            Path::new(&self.chip),
                            line,
                            e,
                        )
                        .to_string(),
                        RadioError::Irq,
                    ))
                }
            }
            // Edge events queue in the kernel, so an edge between the read above and this
            // wait is not lost; a stale edge just loops back to the level check.
            if let Err(e) = self.irq.read_edge_event().await {
                return Err(self.fail(
                    gpio_error(
                        &format!("waiting on {}", self.pins.irq_name),
                        Path::new(&self.chip),
                        line,
                        e,
                    )
                    .to_string(),
                    RadioError::Irq,
                ));
            }
        }
    }

    async fn enable_rf_switch_rx(&mut self) -> Result<(), RadioError> {
        self.switch(Value::Active, Value::Inactive, || RadioError::RfSwitchRx)
    }

    async fn enable_rf_switch_tx(&mut self) -> Result<(), RadioError> {
        self.switch(Value::Inactive, Value::Active, || RadioError::RfSwitchTx)
    }

    async fn disable_rf_switch(&mut self) -> Result<(), RadioError> {
        self.switch(Value::Inactive, Value::Inactive, || RadioError::RfSwitchRx)
    }
}
