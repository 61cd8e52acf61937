//! A fix for lora-phy 3.0.1's SX1276 output power above 17 dBm on PA_BOOST.
//!
//! For `p_out` > 17 dBm lora-phy turns the +20 dBm DAC on (`RegPaDac` = 0x87) but still
//! writes `OutputPower = p_out - 2` (16..=18) into `RegPaConfig`, whose field is 4 bits wide:
//! the value spills into `MaxPower` and the chip, which computes `Pout = 5 + OutputPower` in
//! that mode, sends 20 dBm requests at 7 dBm (18 → 5, 19 → 6). Found by the emulated SX1276.
//! This SPI wrapper rewrites exactly that write to `OutputPower = p_out - 5`; every other
//! transaction passes unchanged.

use embedded_hal::spi::{ErrorType, Operation};
use embedded_hal_async::spi::SpiDevice;

/// `RegPaConfig` write address.
const WRITE_PA_CONFIG: u8 = 0x09 | 0x80;
/// `PaSelect`: PA_BOOST pin.
const PA_BOOST: u8 = 0x80;

/// The corrected bytes for a register write lora-phy sends, if it is the faulty one: a
/// `RegPaConfig` write on PA_BOOST whose `OutputPower` overflowed (only lora-phy's
/// `p_out - 2` for 18..=20 dBm produces 16..=18 there).
pub fn fix_pa_config(write: &[u8]) -> Option<[u8; 2]> {
    match *write {
        [WRITE_PA_CONFIG, v] if v & PA_BOOST != 0 && (16..=18).contains(&(v & 0x7F)) => {
            let p_out = (v & 0x7F) + 2;
            Some([WRITE_PA_CONFIG, PA_BOOST | (p_out - 5)])
        }
        _ => None,
    }
}

/// The SPI wrapper applying [`fix_pa_config`] (SX127x only).
pub struct PaBoostFix<S>(pub S);

impl<S: ErrorType> ErrorType for PaBoostFix<S> {
    type Error = S::Error;
}

impl<S: SpiDevice<u8>> SpiDevice<u8> for PaBoostFix<S> {
    async fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), S::Error> {
        if let [Operation::Write(w)] = operations {
            if let Some(fixed) = fix_pa_config(w) {
                return self.0.transaction(&mut [Operation::Write(&fixed)]).await;
            }
        }
        self.0.transaction(operations).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_overflowed_pa_boost_write_is_rewritten() {
        // lora-phy: 18, 19, 20 dBm → 0x90, 0x91, 0x92; the chip needs 0x8D, 0x8E, 0x8F.
        assert_eq!(fix_pa_config(&[0x89, 0x90]), Some([0x89, 0x8D]));
        assert_eq!(fix_pa_config(&[0x89, 0x91]), Some([0x89, 0x8E]));
        assert_eq!(fix_pa_config(&[0x89, 0x92]), Some([0x89, 0x8F]));
        // 2..=17 dBm on PA_BOOST, RFO, other registers, reads, bursts: unchanged.
        assert_eq!(fix_pa_config(&[0x89, 0x8F]), None);
        assert_eq!(fix_pa_config(&[0x89, 0x80]), None);
        assert_eq!(fix_pa_config(&[0x89, 0x7E]), None);
        assert_eq!(fix_pa_config(&[0x8A, 0x92]), None);
        assert_eq!(fix_pa_config(&[0x09, 0x92]), None);
        assert_eq!(fix_pa_config(&[0x89, 0x92, 0x00]), None);
    }
}
