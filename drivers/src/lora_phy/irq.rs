//! A wrapper around any `InterfaceVariant` that lets the backend interrupt a continuous
//! receive at a safe point (only while lora-phy waits for an interrupt), bounds the wait for
//! a TX-done interrupt, and records when each interrupt arrived (for `tmst`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use embedded_hal_async::delay::DelayNs;
use lora_phy::mod_params::RadioError;
use lora_phy::mod_traits::InterfaceVariant;
use tokio::sync::Notify;

use super::ErrorNote;

/// Shared between the backend loop and [`ControlledIv`].
#[derive(Debug, Default)]
pub struct IrqControl {
    preempt: AtomicBool,
    wake: Notify,
    deadline: Mutex<Option<(Instant, String)>>,
    last_irq: Mutex<Option<Instant>>,
}

impl IrqControl {
    /// Ask the current interrupt wait to give up (it returns `RadioError::Irq` and
    /// [`IrqControl::preempted`] is true until [`IrqControl::clear_preempt`]).
    pub fn preempt(&self) {
        self.preempt.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    /// Whether a preemption is pending.
    pub fn preempted(&self) -> bool {
        self.preempt.load(Ordering::SeqCst)
    }

    /// Forget a pending preemption.
    pub fn clear_preempt(&self) {
        self.preempt.store(false, Ordering::SeqCst);
    }

    /// Bound the next interrupt waits: past `deadline` they fail with `what` as the detail.
    pub fn set_deadline(&self, deadline: Option<(Instant, String)>) {
        if let Ok(mut d) = self.deadline.lock() {
            *d = deadline;
        }
    }

    /// When the last interrupt was seen.
    pub fn last_irq(&self) -> Option<Instant> {
        self.last_irq.lock().ok().and_then(|t| *t)
    }
}

/// The wrapped interface variant.
pub struct ControlledIv<IV> {
    inner: IV,
    control: Arc<IrqControl>,
    note: ErrorNote,
}

impl<IV> ControlledIv<IV> {
    /// Wrap `inner`.
    pub fn new(inner: IV, control: Arc<IrqControl>, note: ErrorNote) -> Self {
        ControlledIv {
            inner,
            control,
            note,
        }
    }
}

impl<IV: InterfaceVariant> InterfaceVariant for ControlledIv<IV> {
    async fn reset(&mut self, delay: &mut impl DelayNs) -> Result<(), RadioError> {
        self.inner.reset(delay).await
    }

    async fn wait_on_busy(&mut self) -> Result<(), RadioError> {
        self.inner.wait_on_busy().await
    }

    async fn await_irq(&mut self) -> Result<(), RadioError> {
        let wake = self.control.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        if self.control.preempted() {
            return Err(RadioError::Irq);
        }
        let deadline = self.control.deadline.lock().ok().and_then(|d| d.clone());
        let timeout = async {
            match &deadline {
                Some((at, _)) => tokio::time::sleep_until((*at).into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        let result = tokio::select! {
            r = self.inner.await_irq() => r,
            _ = &mut wake => Err(RadioError::Irq),
            _ = timeout => {
                if let Some((_, what)) = deadline {
                    self.note.record(what);
                }
                Err(RadioError::TransmitTimeout)
            }
        };
        if result.is_ok() {
            if let Ok(mut t) = self.control.last_irq.lock() {
                *t = Some(Instant::now());
            }
        }
        result
    }

    async fn enable_rf_switch_rx(&mut self) -> Result<(), RadioError> {
        self.inner.enable_rf_switch_rx().await
    }

    async fn enable_rf_switch_tx(&mut self) -> Result<(), RadioError> {
        self.inner.enable_rf_switch_tx().await
    }

    async fn disable_rf_switch(&mut self) -> Result<(), RadioError> {
        self.inner.disable_rf_switch().await
    }
}
