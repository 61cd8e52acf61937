//! Signed PoC reports (docs/proof-of-coverage.md §6): the envelope, the beacon and witness
//! report bodies and the onboarding statement, one canonical big-endian encoding each.
//! Receipts' bodies live in [`super::receipt`].

use super::beacon::BeaconWindow;
use super::identity::{IdentityError, PublicKey, Signer};
use super::receipt::TransferReceipt;
use super::wire::{bad, read_region, region_code, CodecError, Reader, TimeSource, WirePosition};
use crate::region::Region;

/// Magic bytes at the start of every report.
pub const MAGIC: [u8; 2] = *b"GP";
/// Encoding version.
pub const VERSION: u8 = 1;
/// Prefix of every signed message (domain separation).
pub const SIGNING_DOMAIN: &[u8] = b"gatewayd-poc-v1\0";
/// Bytes before the body.
pub const HEADER_LEN: usize = 54;
/// Signature length.
pub const SIGNATURE_LEN: usize = 64;
/// Encoded length of a beacon report body.
pub const BEACON_BODY_LEN: usize = 110;

/// Kind of report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Beacon report.
    Beacon,
    /// Witness report.
    Witness,
    /// Data-transfer receipt.
    Receipt,
    /// Onboarding statement.
    Onboarding,
    /// Verdict only, never decoded: a data-transfer receipt accepted as the start of a new
    /// chain segment after missing receipts (§6.4.3); on the wire it is a receipt.
    ReceiptNewSegment,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Beacon => 1,
            Kind::Witness => 2,
            Kind::Receipt | Kind::ReceiptNewSegment => 3,
            Kind::Onboarding => 4,
        }
    }
}

/// What a hotspot says about the beacon it sent (§6.2).
#[derive(Debug, Clone, PartialEq)]
pub struct BeaconReport {
    /// The window.
    pub window: BeaconWindow,
    /// The network's entropy for the window.
    pub network_entropy: [u8; 32],
    /// The hotspot's local entropy.
    pub local_entropy: [u8; 32],
    /// The region.
    pub region: &'static Region,
    /// The US915/AU915 sub-band the beacon channels were restricted to.
    pub sub_band: Option<u8>,
    /// When the beacon was scheduled, Unix ms.
    pub tx_time_ms: u64,
    /// Source of `tx_time_ms`.
    pub time_source: TimeSource,
    /// Frequency in Hz.
    pub freq_hz: u32,
    /// Region DR index.
    pub dr: u8,
    /// Conducted power the guard approved, dBm.
    pub power_dbm: i8,
    /// Antenna gain, dBi × 10.
    pub antenna_gain_ddbi: i16,
    /// Cable loss, dB × 10.
    pub cable_loss_ddb: u16,
    /// The beaconer's location.
    pub location: Option<WirePosition>,
}

/// What a hotspot says about a beacon it heard (§6.3).
#[derive(Debug, Clone, PartialEq)]
pub struct WitnessReport {
    /// The PHYPayload as heard.
    pub frame: Vec<u8>,
    /// The witness's region.
    pub region: &'static Region,
    /// Frequency as received, Hz.
    pub freq_hz: u32,
    /// Spreading factor as received.
    pub sf: u8,
    /// Bandwidth as received, Hz.
    pub bw_hz: u32,
    /// RSSI, dBm × 10.
    pub rssi_ddbm: i16,
    /// SNR, dB × 10.
    pub snr_ddb: i16,
    /// Reception time, Unix ms.
    pub rx_time_ms: u64,
    /// Source of `rx_time_ms`.
    pub time_source: TimeSource,
    /// Antenna gain, dBi × 10.
    pub antenna_gain_ddbi: i16,
    /// The witness's location.
    pub location: Option<WirePosition>,
}

/// "This key belongs to this owner" (§6.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onboarding {
    /// The owner's wallet address.
    pub owner: String,
}

/// Whether `owner` is a valid owner address: 1..=64 of `[A-Za-z0-9._:-]`.
pub fn valid_owner(owner: &str) -> bool {
    (1..=64).contains(&owner.len())
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// A report body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Beacon report.
    Beacon(BeaconReport),
    /// Witness report.
    Witness(WitnessReport),
    /// Data-transfer receipt.
    Receipt(TransferReceipt),
    /// Onboarding statement.
    Onboarding(Onboarding),
}

/// A report before signing.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The hotspot that makes it.
    pub key: PublicKey,
    /// When it was made, Unix ms.
    pub created_ms: u64,
    /// The network must have it by then, Unix ms.
    pub deadline_ms: u64,
    /// What it says.
    pub body: Body,
}

/// A signed report and its exact bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedReport {
    /// The content.
    pub report: Report,
    /// The Ed25519 signature.
    pub signature: [u8; 64],
    bytes: Vec<u8>,
}

impl Report {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self.body {
            Body::Beacon(_) => Kind::Beacon,
            Body::Witness(_) => Kind::Witness,
            Body::Receipt(_) => Kind::Receipt,
            Body::Onboarding(_) => Kind::Onboarding,
        }
    }

    /// The canonical bytes without the signature.
    pub fn unsigned_bytes(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(128);
        match &self.body {
            Body::Beacon(b) => write_beacon(b, &mut body),
            Body::Witness(w) => write_witness(w, &mut body),
            Body::Receipt(r) => r.write(&mut body),
            Body::Onboarding(o) => {
                body.push(o.owner.len() as u8);
                body.extend_from_slice(o.owner.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + SIGNATURE_LEN);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind().code());
        out.extend_from_slice(&self.key.0);
        out.extend_from_slice(&self.created_ms.to_be_bytes());
        out.extend_from_slice(&self.deadline_ms.to_be_bytes());
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Sign with `signer`, whose key must be `self.key`.
    pub fn sign(self, signer: &dyn Signer) -> Result<SignedReport, IdentityError> {
        if signer.public_key() != self.key {
            return Err(IdentityError::Signing(format!(
                "report of {} cannot be signed by {}",
                self.key,
                signer.public_key()
            )));
        }
        match &self.body {
            Body::Onboarding(o) if !valid_owner(&o.owner) => {
                return Err(IdentityError::Signing(format!(
                    "{:?} is not an owner address (1..=64 of A-Z a-z 0-9 . _ : -)",
                    o.owner
                )))
            }
            Body::Witness(w) if w.frame.len() > 255 => {
                return Err(IdentityError::Signing(
                    "witnessed frame over 255 bytes".into(),
                ))
            }
            _ => {}
        }
        let mut bytes = self.unsigned_bytes();
        let signature = signer.sign(&signed_message(&bytes))?;
        bytes.extend_from_slice(&signature);
        Ok(SignedReport {
            report: self,
            signature,
            bytes,
        })
    }
}

/// The message a report's signature covers: domain ‖ unsigned bytes.
pub fn signed_message(unsigned: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_DOMAIN.len() + unsigned.len());
    m.extend_from_slice(SIGNING_DOMAIN);
    m.extend_from_slice(unsigned);
    m
}

impl SignedReport {
    /// Parse a report (does not check the signature: see [`SignedReport::signature_valid`]).
    pub fn decode(bytes: &[u8]) -> Result<SignedReport, CodecError> {
        let mut r = Reader::new(bytes);
        if r.array::<2>("magic")? != MAGIC {
            return Err(bad("magic", "not a gatewayd PoC report (expected \"GP\")"));
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(bad("version", format!("{version} (this verifier knows 1)")));
        }
        let kind = r.u8("kind")?;
        let key = PublicKey(r.array("public key")?);
        let created_ms = r.u64("created")?;
        let deadline_ms = r.u64("deadline")?;
        let len = usize::from(r.u16("body length")?);
        let mut b = Reader::new(r.take(len, "body")?);
        let body = match kind {
            1 => Body::Beacon(read_beacon(&mut b)?),
            2 => Body::Witness(read_witness(&mut b)?),
            3 => Body::Receipt(TransferReceipt::read(&mut b)?),
            4 => {
                let n = usize::from(b.u8("owner length")?);
                let owner = String::from_utf8(b.take(n, "owner")?.to_vec())
                    .map_err(|_| bad("owner", "not UTF-8"))?;
                if !valid_owner(&owner) {
                    return Err(bad("owner", format!("{owner:?} is not an owner address")));
                }
                Body::Onboarding(Onboarding { owner })
            }
            k => return Err(bad("kind", format!("unknown report kind {k}"))),
        };
        b.finish("body")?;
        let signature = r.array::<64>("signature")?;
        r.finish("signature")?;
        Ok(SignedReport {
            report: Report {
                key,
                created_ms,
                deadline_ms,
                body,
            },
            signature,
            bytes: bytes.to_vec(),
        })
    }

    /// Whether the signature is the report key's over the canonical bytes.
    pub fn signature_valid(&self) -> bool {
        let unsigned = &self.bytes[..self.bytes.len() - SIGNATURE_LEN];
        self.report
            .key
            .verify(&signed_message(unsigned), &self.signature)
    }

    /// The exact bytes (what is published).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes in lowercase hex (the CLI's line format).
    pub fn to_hex(&self) -> String {
        super::identity::hex(&self.bytes)
    }
}

fn write_beacon(b: &BeaconReport, out: &mut Vec<u8>) {
    out.extend_from_slice(&b.window.len_s.to_be_bytes());
    out.extend_from_slice(&b.window.id.to_be_bytes());
    out.extend_from_slice(&b.network_entropy);
    out.extend_from_slice(&b.local_entropy);
    out.push(region_code(b.region));
    out.push(b.sub_band.unwrap_or(0));
    out.extend_from_slice(&b.tx_time_ms.to_be_bytes());
    out.push(b.time_source.code());
    out.extend_from_slice(&b.freq_hz.to_be_bytes());
    out.push(b.dr);
    out.extend_from_slice(&b.power_dbm.to_be_bytes());
    out.extend_from_slice(&b.antenna_gain_ddbi.to_be_bytes());
    out.extend_from_slice(&b.cable_loss_ddb.to_be_bytes());
    WirePosition::write(&b.location, out);
}

fn read_beacon(r: &mut Reader<'_>) -> Result<BeaconReport, CodecError> {
    let window = BeaconWindow {
        len_s: r.u32("window length")?,
        id: r.u64("window id")?,
    };
    let network_entropy = r.array("network entropy")?;
    let local_entropy = r.array("local entropy")?;
    let region = read_region(r)?;
    let sub_band = match r.u8("sub-band")? {
        0 => None,
        s @ 1..=8 if region.has_sub_bands() => Some(s),
        s => return Err(bad("sub-band", format!("{s} in {}", region.name))),
    };
    let b = BeaconReport {
        window,
        network_entropy,
        local_entropy,
        region,
        sub_band,
        tx_time_ms: r.u64("tx time")?,
        time_source: TimeSource::read(r)?,
        freq_hz: r.u32("frequency")?,
        dr: r.u8("data rate")?,
        power_dbm: r.i8("power")?,
        antenna_gain_ddbi: r.i16("antenna gain")?,
        cable_loss_ddb: r.u16("cable loss")?,
        location: WirePosition::read(r)?,
    };
    debug_assert_eq!(r.position(), BEACON_BODY_LEN);
    Ok(b)
}

fn write_witness(w: &WitnessReport, out: &mut Vec<u8>) {
    out.push(w.frame.len() as u8);
    out.extend_from_slice(&w.frame);
    out.push(region_code(w.region));
    out.extend_from_slice(&w.freq_hz.to_be_bytes());
    out.push(w.sf);
    out.extend_from_slice(&w.bw_hz.to_be_bytes());
    out.extend_from_slice(&w.rssi_ddbm.to_be_bytes());
    out.extend_from_slice(&w.snr_ddb.to_be_bytes());
    out.extend_from_slice(&w.rx_time_ms.to_be_bytes());
    out.push(w.time_source.code());
    out.extend_from_slice(&w.antenna_gain_ddbi.to_be_bytes());
    WirePosition::write(&w.location, out);
}

fn read_witness(r: &mut Reader<'_>) -> Result<WitnessReport, CodecError> {
    let n = usize::from(r.u8("frame length")?);
    Ok(WitnessReport {
        frame: r.take(n, "frame")?.to_vec(),
        region: read_region(r)?,
        freq_hz: r.u32("frequency")?,
        sf: r.u8("spreading factor")?,
        bw_hz: r.u32("bandwidth")?,
        rssi_ddbm: r.i16("rssi")?,
        snr_ddb: r.i16("snr")?,
        rx_time_ms: r.u64("rx time")?,
        time_source: TimeSource::read(r)?,
        antenna_gain_ddbi: r.i16("antenna gain")?,
        location: WirePosition::read(r)?,
    })
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
