//! [`TxClient`]: the second input of the [`DownlinkTask`](super::DownlinkTask), so that other
//! transmitters (proof-of-coverage beacons) go through the same [`TxGate`] — one guard, one
//! duty-cycle ledger — without owning it. A small cloneable handle over a channel: submit a
//! [`TxRequest`] and await the gate's answer, or ask the guard's conducted-power limit.

use std::time::SystemTime;

use drivers::radio::{TxRequest, TxStatus};
use tokio::sync::{mpsc, oneshot};

use crate::guard::{GuardVerdict, SendError, TxGate};

/// Jobs waiting for the gate at most (a beacon every window needs one).
pub const TX_JOB_QUEUE: usize = 8;

/// Why a [`TxClient`] call got no answer from the gate.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum TxClientError {
    /// The gate refused the request or the radio did not answer.
    #[error("{0}")]
    Gate(#[from] SendError),
    /// The task owning the gate has stopped.
    #[error("the transmit task has stopped")]
    Closed,
}

/// One job for the gate's owner.
#[derive(Debug)]
pub enum TxJob {
    /// Approve and send `request` at `now`.
    Send {
        /// The current time (duty-cycle accounting).
        now: SystemTime,
        /// What to send.
        request: TxRequest,
        /// The gate's answer.
        reply: oneshot::Sender<Result<(TxStatus, GuardVerdict), SendError>>,
    },
    /// The guard's highest conducted power at a frequency
    /// ([`Guard::conducted_limit_dbm`](crate::guard::Guard::conducted_limit_dbm)).
    ConductedLimit {
        /// Frequency in Hz.
        freq_hz: u64,
        /// The limit, `None` outside the region's bands.
        reply: oneshot::Sender<Option<i8>>,
    },
}

impl TxJob {
    /// Carry the job out on `gate` and answer it (a dropped caller is not an error).
    pub async fn run(self, gate: &mut TxGate) {
        match self {
            TxJob::Send {
                now,
                request,
                reply,
            } => {
                let _ = reply.send(gate.send(now, request).await);
            }
            TxJob::ConductedLimit { freq_hz, reply } => {
                let _ = reply.send(gate.guard().conducted_limit_dbm(freq_hz));
            }
        }
    }
}

/// A cloneable handle to the task that owns the [`TxGate`].
#[derive(Debug, Clone)]
pub struct TxClient {
    jobs: mpsc::Sender<TxJob>,
}

impl TxClient {
    /// A client and the receiving end the gate's owner serves with [`TxJob::run`].
    pub fn channel() -> (TxClient, mpsc::Receiver<TxJob>) {
        let (jobs, rx) = mpsc::channel(TX_JOB_QUEUE);
        (TxClient { jobs }, rx)
    }

    /// Approve `request` at `now` through the guard and send it: the backend's status and
    /// the guard's verdict (approved power, airtime), or why it was not sent.
    pub async fn send(
        &self,
        now: SystemTime,
        request: TxRequest,
    ) -> Result<(TxStatus, GuardVerdict), TxClientError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(TxJob::Send {
                now,
                request,
                reply,
            })
            .await
            .map_err(|_| TxClientError::Closed)?;
        Ok(answer.await.map_err(|_| TxClientError::Closed)??)
    }

    /// The guard's conducted-power limit at `freq_hz` (`Ok(None)`: not a channel of the
    /// region).
    pub async fn conducted_limit_dbm(&self, freq_hz: u64) -> Result<Option<i8>, TxClientError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(TxJob::ConductedLimit { freq_hz, reply })
            .await
            .map_err(|_| TxClientError::Closed)?;
        answer.await.map_err(|_| TxClientError::Closed)
    }
}
