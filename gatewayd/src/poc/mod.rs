//! Proof of coverage (protocol: `docs/proof-of-coverage.md`): the hotspot's Ed25519
//! identity, the deterministic beacon, signed reports with one canonical encoding, data
//! transfer receipts with a hash chain, and the verifier the network (and
//! `gatewayd poc verify`) runs over them.
//!
//! Everything here is pure (time is an argument, randomness an `&dyn SecureRandom`) apart
//! from [`identity`]'s key file. The daemon wiring (entropy command → scheduler → `TxGate`,
//! witness detection in the pipeline, receipts, outbox) builds on these functions:
//! [`beacon::plan`] → `BeaconPlan::tx_request` → `TxGate::send` → [`report::Report::sign`].
//!
//! - [`identity`]: [`identity::Signer`], key file (PKCS#8, mode 0600), hotspot address.
//! - [`private`]: state files created 0600 whatever the umask.
//! - [`entropy`]: the `command/poc_entropy` payload and the per-window entropy book.
//! - [`beacon`]: windows, payload derivation, frequency/DR choice, the on-air frame.
//! - [`report`]: the envelope, beacon/witness reports, onboarding statements.
//! - [`receipt`]: data-transfer receipts and their hash chain.
//! - [`verify`]: the verifier and its verdicts.
//! - [`reason`]: why a report is invalid, and the stable names of verdicts.
//! - [`receipt_verify`]: the verifier's record of each key's receipt chain (links, segments).
//! - [`commands`]: `gatewayd keys …` and `gatewayd poc verify`.
//! - [`witness`]: witness detection over received frames, the report of a sent beacon.
//! - [`scheduler`]: the pure beacon scheduler (one beacon per window, random instant).
//! - [`beacon_task`]: the task that beacons through the guard and reports.
//! - [`task`]: the witness task.
//! - [`wire`]: byte-level pieces (locations, time sources, region codes, text lines).

pub mod beacon;
pub mod beacon_task;
pub mod commands;
pub mod entropy;
pub mod identity;
pub mod reason;
pub mod receipt;
pub mod receipt_order;
pub mod receipt_state;
pub mod receipt_task;
pub mod receipt_verify;
pub mod report;
pub mod scheduler;
pub mod task;
pub mod verify;
pub mod wire;
pub mod witness;

#[cfg(test)]
mod test_support;

pub use identity::{KeyFileSigner, PublicKey, Signer};
pub use report::{Body, Kind, Report, SignedReport};
