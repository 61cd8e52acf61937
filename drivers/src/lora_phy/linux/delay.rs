//! Async delays for lora-phy on the tokio timer.

use std::time::Duration;

/// `embedded_hal_async::delay::DelayNs` on `tokio::time::sleep` (millisecond granularity;
/// lora-phy only waits in reset and sleep sequences, where longer is harmless).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioDelay;

impl embedded_hal_async::delay::DelayNs for TokioDelay {
    async fn delay_ns(&mut self, ns: u32) {
        tokio::time::sleep(Duration::from_nanos(u64::from(ns))).await;
    }
}
