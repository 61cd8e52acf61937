//! Test helpers: a deterministic signer and valid sample reports around one beacon.

use ring::signature::{Ed25519KeyPair, KeyPair};

use super::beacon::{self, BeaconWindow};
use super::identity::{IdentityError, PublicKey, Signer};
use super::report::{BeaconReport, Body, Report, SignedReport, WitnessReport};
use super::wire::{PositionSource, TimeSource, WirePosition};
use crate::region::Region;

/// An Ed25519 key from a fixed seed (deterministic signatures for fixtures).
pub struct SeedSigner(pub Ed25519KeyPair);

impl SeedSigner {
    pub fn new(seed: u8) -> SeedSigner {
        SeedSigner(Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap())
    }
}

impl Signer for SeedSigner {
    fn public_key(&self) -> PublicKey {
        PublicKey(self.0.public_key().as_ref().try_into().unwrap())
    }
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], IdentityError> {
        Ok(self.0.sign(message).as_ref().try_into().unwrap())
    }
}

pub const WINDOW: BeaconWindow = BeaconWindow {
    len_s: 3600,
    id: 490_000,
};
pub const ENTROPY: [u8; 32] = [0x11; 32];
pub const LOCAL: [u8; 32] = [0x22; 32];

pub fn eu868() -> &'static Region {
    Region::by_name("EU868").unwrap()
}

pub fn tx_time_ms() -> u64 {
    WINDOW.start_ms() + 1_234_567
}

/// A valid beacon report of `signer` in [`WINDOW`], 14 dBm + 2.0 dBi − 0.5 dB.
pub fn beacon(signer: &SeedSigner) -> BeaconReport {
    let plan = beacon::plan(
        eu868(),
        None,
        &ENTROPY,
        &WINDOW,
        &LOCAL,
        &signer.public_key(),
    )
    .unwrap();
    BeaconReport {
        window: WINDOW,
        network_entropy: ENTROPY,
        local_entropy: LOCAL,
        region: eu868(),
        sub_band: None,
        tx_time_ms: tx_time_ms(),
        time_source: TimeSource::Gps,
        freq_hz: plan.freq_hz as u32,
        dr: plan.dr,
        power_dbm: 14,
        antenna_gain_ddbi: 20,
        cable_loss_ddb: 5,
        location: Some(WirePosition::from_degrees(
            PositionSource::Gps,
            52.52,
            13.405,
            40.0,
        )),
    }
}

/// A valid witness of `beacon` (frame from `beaconer`'s plan) 5 km north, −110 dBm.
pub fn witness(beaconer: &SeedSigner) -> WitnessReport {
    let plan = beacon::plan(
        eu868(),
        None,
        &ENTROPY,
        &WINDOW,
        &LOCAL,
        &beaconer.public_key(),
    )
    .unwrap();
    WitnessReport {
        frame: plan.frame,
        region: eu868(),
        freq_hz: plan.freq_hz as u32 + 1_200,
        sf: 9,
        bw_hz: 125_000,
        rssi_ddbm: -1100,
        snr_ddb: -35,
        rx_time_ms: tx_time_ms() + 300,
        time_source: TimeSource::Gps,
        antenna_gain_ddbi: 30,
        location: Some(WirePosition::from_degrees(
            PositionSource::Config,
            52.52 + 5_000.0 / 111_195.0,
            13.405,
            35.0,
        )),
    }
}

/// Sign `body` by `signer`, made at `created_ms`, due by `created_ms + 10 min`.
pub fn signed(signer: &SeedSigner, body: Body, created_ms: u64) -> SignedReport {
    Report {
        key: signer.public_key(),
        created_ms,
        deadline_ms: created_ms + 600_000,
        body,
    }
    .sign(signer)
    .unwrap()
}
