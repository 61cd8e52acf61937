//! [`TxGate`]: the guard and the radio's transmit handle owned together, so that the only
//! way the daemon transmits is approve → send → release-if-not-sent.

use std::time::{Duration, SystemTime};

use drivers::radio::{RadioControl, RadioError, TxRequest, TxStatus};

use super::{Guard, GuardVerdict, Refusal};

/// Why [`TxGate::send`] did not get an answer from the backend.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum SendError {
    /// The guard refused the request; nothing was sent.
    #[error("refused by the regulatory guard: {0}")]
    Refused(Refusal),
    /// The backend did not answer; the airtime stays charged (it may have transmitted).
    #[error("radio: {0}")]
    Radio(RadioError),
}

impl SendError {
    /// The status to report to the network.
    pub fn tx_status(&self) -> TxStatus {
        match self {
            SendError::Refused(r) => r.tx_status(),
            SendError::Radio(_) => TxStatus::InternalError,
        }
    }
}

/// The guard plus the radio's control handle: the single transmit path of the daemon.
/// Give the radio's [`RadioControl`] to this and to nothing else.
#[derive(Debug)]
pub struct TxGate {
    guard: Guard,
    control: RadioControl,
    timeout: Duration,
}

impl TxGate {
    /// A gate that sends through `control`, waiting at most `timeout` for each answer.
    pub fn new(guard: Guard, control: RadioControl, timeout: Duration) -> TxGate {
        TxGate {
            guard,
            control,
            timeout,
        }
    }

    /// The guard (for counters, limits and dry-run checks).
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Approve `req` at `now` and hand it to the backend. When the backend answers anything
    /// but [`TxStatus::Ok`] the airtime is released again. Returns the backend's status and
    /// the guard's verdict (clamped power, airtime, band).
    pub async fn send(
        &mut self,
        now: SystemTime,
        req: TxRequest,
    ) -> Result<(TxStatus, GuardVerdict), SendError> {
        let approved = self.guard.approve(now, req).map_err(SendError::Refused)?;
        let verdict = approved.verdict().clone();
        let (request, receipt) = approved.into_parts();
        let status = self
            .control
            .transmit(request, self.timeout)
            .await
            .map_err(SendError::Radio)?;
        if status != TxStatus::Ok {
            if let Err(e) = self.guard.release(receipt) {
                // The charge stays: over-counting airtime is the safe side.
                log::warn!("guard: could not release airtime of an unsent frame: {e}");
            }
        }
        Ok((status, verdict))
    }
}
