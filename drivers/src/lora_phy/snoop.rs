//! A transparent SPI wrapper that keeps what lora-phy reads but does not pass on: the IRQ
//! flags (for the CRC status of a received frame) and the SNR in quarter dB (lora-phy
//! rounds it to whole dB). Bytes are not changed.

use std::sync::{Arc, Mutex};

use embedded_hal::spi::{ErrorType, Operation};
use embedded_hal_async::spi::SpiDevice;

/// What the snoop saw last.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snooped {
    /// The last IRQ flags read showed a CRC error.
    pub crc_error: bool,
    /// SNR of the last packet status read, dB.
    pub snr_db: Option<f32>,
}

/// The wrapper; `sx126x` selects how commands are recognised.
pub struct Snoop<S> {
    inner: S,
    sx126x: bool,
    seen: Arc<Mutex<Snooped>>,
}

impl<S> Snoop<S> {
    /// Wrap `inner`; `seen` is read by the backend after each frame.
    pub fn new(inner: S, sx126x: bool, seen: Arc<Mutex<Snooped>>) -> Self {
        Snoop {
            inner,
            sx126x,
            seen,
        }
    }
}

impl<S: ErrorType> ErrorType for Snoop<S> {
    type Error = S::Error;
}

impl<S: SpiDevice<u8>> SpiDevice<u8> for Snoop<S> {
    async fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), S::Error> {
        self.inner.transaction(operations).await?;
        let first = match operations.first() {
            Some(Operation::Write(w)) if !w.is_empty() => w[0],
            _ => return Ok(()),
        };
        let reads: Vec<&[u8]> = operations[1..]
            .iter()
            .filter_map(|op| match op {
                Operation::Read(r) => Some(&**r),
                _ => None,
            })
            .collect();
        let Ok(mut seen) = self.seen.lock() else {
            return Ok(());
        };
        if self.sx126x {
            // lora-phy reads these as [opcode] [status] [data...]
            match (first, reads.as_slice()) {
                (0x12, [_, flags]) if flags.len() == 2 => seen.crc_error = flags[1] & 0x40 != 0,
                (0x14, [_, pkt]) if pkt.len() == 3 => {
                    seen.snr_db = Some(f32::from(pkt[1] as i8) / 4.0)
                }
                _ => {}
            }
        } else {
            // SX127x register reads: [addr] then [value]
            match (first, reads.as_slice()) {
                (0x12, [v]) if v.len() == 1 => seen.crc_error = v[0] & 0x20 != 0,
                (0x19, [v]) if v.len() == 1 => seen.snr_db = Some(f32::from(v[0] as i8) / 4.0),
                _ => {}
            }
        }
        Ok(())
    }
}
