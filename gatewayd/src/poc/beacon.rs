//! The beacon (docs/proof-of-coverage.md §4–5): aligned windows, the payload derived from
//! network entropy, local entropy, window and key, and the deterministic frequency and data
//! rate per region. Pure functions; the regulatory guard decides whether it may be sent.

use std::time::{Duration, SystemTime};

use drivers::airtime::{time_on_air, FrameShape};
use drivers::radio::{CodeRate, Modulation, TxRequest, TxTiming};
use drivers::time::{from_unix_ms, unix_ms};
use ring::digest::{digest, SHA256};
use ring::rand::SecureRandom;

use crate::region::{ChannelPlan, Direction, DrKind, Region, DWELL_TIME_LIMIT};

use super::identity::PublicKey;

/// LoRaWAN MHDR of a proprietary frame (MType 111).
pub const MHDR_PROPRIETARY: u8 = 0xE0;
/// Version byte of the beacon frame.
pub const BEACON_VERSION: u8 = 0x01;
/// Length of the derived beacon body.
pub const BODY_LEN: usize = 32;
/// PHYPayload length on air: MHDR + version + body.
pub const FRAME_LEN: usize = 2 + BODY_LEN;
/// The beacon's airtime cap in every region (the dwell limit, applied everywhere).
pub const MAX_BEACON_AIRTIME: Duration = DWELL_TIME_LIMIT;
/// Default window length: 6 h.
pub const DEFAULT_WINDOW_S: u32 = 21_600;
/// Shortest window length (test networks; production networks use hours).
pub const MIN_WINDOW_S: u32 = 10;
/// Margin kept free at both ends of a window.
pub const WINDOW_MARGIN: Duration = Duration::from_secs(1);

const DOMAIN: &[u8] = b"gatewayd-poc-beacon-v1";

/// Why no beacon can be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeaconError {
    /// The window length does not divide a day or is shorter than [`MIN_WINDOW_S`].
    #[error("beacon window of {0} s: must be ≥ 10 s and divide 86400 s")]
    BadWindow(u32),
    /// The region (with this sub-band) has no channel for beacons.
    #[error("{region}: no beacon channel (sub-band {sub_band:?})")]
    NoChannel {
        /// Region name.
        region: &'static str,
        /// Sub-band.
        sub_band: Option<u8>,
    },
    /// No LoRa uplink data rate carries the frame within 400 ms.
    #[error("{0}: no LoRa uplink data rate carries a beacon within 400 ms")]
    NoDataRate(&'static str),
}

/// A beacon window: `[id·len_s, (id+1)·len_s)` seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BeaconWindow {
    /// Length in seconds.
    pub len_s: u32,
    /// Index since the epoch.
    pub id: u64,
}

impl BeaconWindow {
    /// Whether `len_s` is a valid window length (≥ [`MIN_WINDOW_S`], divides a day).
    pub fn valid_len(len_s: u32) -> bool {
        len_s >= MIN_WINDOW_S && 86_400 % len_s == 0
    }

    /// The window of length `len_s` containing `t`.
    pub fn containing(len_s: u32, t: SystemTime) -> Result<BeaconWindow, BeaconError> {
        if !Self::valid_len(len_s) {
            return Err(BeaconError::BadWindow(len_s));
        }
        let secs = unix_ms(t) / 1000;
        Ok(BeaconWindow {
            len_s,
            id: secs / u64::from(len_s),
        })
    }

    /// Start in Unix milliseconds.
    pub fn start_ms(&self) -> u64 {
        self.id
            .saturating_mul(u64::from(self.len_s))
            .saturating_mul(1000)
    }

    /// End (exclusive) in Unix milliseconds.
    pub fn end_ms(&self) -> u64 {
        self.start_ms().saturating_add(u64::from(self.len_s) * 1000)
    }

    /// Whether Unix millisecond `t_ms` lies inside the window.
    pub fn contains_ms(&self, t_ms: u64) -> bool {
        (self.start_ms()..self.end_ms()).contains(&t_ms)
    }

    /// The next window.
    pub fn next(&self) -> BeaconWindow {
        BeaconWindow {
            len_s: self.len_s,
            id: self.id + 1,
        }
    }
}

/// A uniformly random instant in `[start + margin, end − margin − airtime]` of `window`,
/// drawn from `rng` (the OS RNG in the daemon).
pub fn random_instant(
    window: &BeaconWindow,
    airtime: Duration,
    rng: &dyn SecureRandom,
) -> Result<SystemTime, ring::error::Unspecified> {
    let margin = WINDOW_MARGIN.as_millis() as u64;
    let lo = window.start_ms() + margin;
    let hi = window
        .end_ms()
        .saturating_sub(margin + airtime.as_millis() as u64 + 1)
        .max(lo);
    let mut b = [0u8; 8];
    rng.fill(&mut b)?;
    let t = lo + u64::from_be_bytes(b) % (hi - lo + 1);
    Ok(from_unix_ms(t))
}

/// Fresh local entropy from `rng`.
pub fn local_entropy(rng: &dyn SecureRandom) -> Result<[u8; 32], ring::error::Unspecified> {
    let mut b = [0u8; 32];
    rng.fill(&mut b)?;
    Ok(b)
}

/// The beacon body (§5.1): SHA-256 over domain, network entropy, window, local entropy, key.
pub fn derive_body(
    network_entropy: &[u8; 32],
    window: &BeaconWindow,
    local_entropy: &[u8; 32],
    key: &PublicKey,
) -> [u8; BODY_LEN] {
    let mut m = Vec::with_capacity(DOMAIN.len() + 108);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(network_entropy);
    m.extend_from_slice(&window.len_s.to_be_bytes());
    m.extend_from_slice(&window.id.to_be_bytes());
    m.extend_from_slice(local_entropy);
    m.extend_from_slice(&key.0);
    let mut out = [0u8; BODY_LEN];
    out.copy_from_slice(digest(&SHA256, &m).as_ref());
    out
}

/// The PHYPayload on air: `0xE0 ‖ 0x01 ‖ body`.
pub fn frame(body: &[u8; BODY_LEN]) -> Vec<u8> {
    let mut f = Vec::with_capacity(FRAME_LEN);
    f.push(MHDR_PROPRIETARY);
    f.push(BEACON_VERSION);
    f.extend_from_slice(body);
    f
}

/// The body of a received frame, if it is a v1 beacon (witness detection).
pub fn parse_frame(phy: &[u8]) -> Option<[u8; BODY_LEN]> {
    match phy {
        [MHDR_PROPRIETARY, BEACON_VERSION, rest @ ..] if rest.len() == BODY_LEN => {
            let mut b = [0u8; BODY_LEN];
            b.copy_from_slice(rest);
            Some(b)
        }
        _ => None,
    }
}

/// The beacon channels of `region` (§5.3): default channels of dynamic plans, the 125 kHz
/// uplink grid (restricted to `sub_band`) of fixed plans.
pub fn channels(region: &Region, sub_band: Option<u8>) -> Vec<u64> {
    match region.channels {
        ChannelPlan::Dynamic {
            default_channels_hz,
            ..
        } => default_channels_hz.to_vec(),
        ChannelPlan::Fixed {
            uplink_125k,
            sub_bands,
            ..
        } => (0..uplink_125k.count)
            .filter(|i| match sub_band.filter(|_| sub_bands) {
                Some(sb) => i / 8 == u16::from(sb).wrapping_sub(1),
                None => true,
            })
            .filter_map(|i| uplink_125k.freq(i))
            .collect(),
    }
}

/// The modulation of a beacon at `sf`/`bw_hz` (coding rate 4/5).
pub fn modulation(sf: u8, bw_hz: u32) -> Modulation {
    Modulation::Lora {
        sf,
        bw_hz,
        cr: Some(CodeRate::Cr45),
    }
}

/// Airtime of the beacon frame at `m` (preamble 8, CRC on, explicit header).
pub fn airtime(m: &Modulation) -> Duration {
    time_on_air(m, &FrameShape::lorawan(FRAME_LEN, true))
}

/// The beacon data rate of `region` (§5.3): the highest-SF uplink LoRa 125 kHz DR that
/// holds the frame (under the uplink dwell limit where it applies) within 400 ms.
pub fn data_rate(region: &'static Region) -> Result<(u8, Modulation), BeaconError> {
    let dwell = region.dwell.applies(Direction::Uplink);
    region
        .data_rates
        .iter()
        .filter(|d| d.allows(Direction::Uplink))
        .filter_map(|d| match d.kind {
            DrKind::Lora { sf, bw_hz: 125_000 } => Some((d.dr, sf)),
            _ => None,
        })
        .filter(|&(dr, sf)| {
            region
                .max_payload(dr, dwell)
                .is_some_and(|m| usize::from(m) + 5 >= FRAME_LEN)
                && airtime(&modulation(sf, 125_000)) <= MAX_BEACON_AIRTIME
        })
        .max_by_key(|&(dr, sf)| (sf, std::cmp::Reverse(dr)))
        .map(|(dr, sf)| (dr, modulation(sf, 125_000)))
        .ok_or(BeaconError::NoDataRate(region.name))
}

/// Everything about one beacon that follows deterministically from its inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct BeaconPlan {
    /// The window.
    pub window: BeaconWindow,
    /// The derived body.
    pub body: [u8; BODY_LEN],
    /// The PHYPayload on air.
    pub frame: Vec<u8>,
    /// Frequency in Hz.
    pub freq_hz: u64,
    /// Region DR index.
    pub dr: u8,
    /// Modulation of that DR.
    pub modulation: Modulation,
    /// Airtime of the frame.
    pub airtime: Duration,
}

/// Plan the beacon of `key` in `window` (§5.1, §5.3).
pub fn plan(
    region: &'static Region,
    sub_band: Option<u8>,
    network_entropy: &[u8; 32],
    window: &BeaconWindow,
    local_entropy: &[u8; 32],
    key: &PublicKey,
) -> Result<BeaconPlan, BeaconError> {
    if !BeaconWindow::valid_len(window.len_s) {
        return Err(BeaconError::BadWindow(window.len_s));
    }
    let body = derive_body(network_entropy, window, local_entropy, key);
    let chans = channels(region, sub_band);
    if chans.is_empty() {
        return Err(BeaconError::NoChannel {
            region: region.name,
            sub_band,
        });
    }
    let pick = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize % chans.len();
    let (dr, modulation) = data_rate(region)?;
    Ok(BeaconPlan {
        window: *window,
        body,
        frame: frame(&body),
        freq_hz: chans[pick],
        dr,
        modulation,
        airtime: airtime(&modulation),
    })
}

/// The beacon's conducted power (§5.4): the guard's limit at `freq_hz`, capped by the
/// radio's maximum; `None` when the guard has no limit there (not a channel of the region).
pub fn power_dbm(guard: &crate::guard::Guard, freq_hz: u64, radio_max_dbm: i8) -> Option<i8> {
    power_from_limit(guard.conducted_limit_dbm(freq_hz), radio_max_dbm)
}

/// [`power_dbm`] from the guard's conducted limit (as a `TxClient` answers it).
pub fn power_from_limit(conducted_limit_dbm: Option<i8>, radio_max_dbm: i8) -> Option<i8> {
    conducted_limit_dbm.map(|limit| limit.min(radio_max_dbm))
}

impl BeaconPlan {
    /// The transmit request for the guard: non-inverted IQ, CRC on, preamble 8, at
    /// `power_dbm` (the guard clamps it and reports the approved power).
    pub fn tx_request(&self, power_dbm: i8, timing: TxTiming) -> TxRequest {
        TxRequest {
            freq_hz: self.freq_hz,
            power_dbm,
            modulation: self.modulation,
            invert_iq: false,
            preamble: Some(8),
            crc: true,
            timing,
            rf_chain: 0,
            board: 0,
            antenna: 0,
            payload: self.frame.clone(),
        }
    }
}

#[cfg(test)]
#[path = "beacon_tests.rs"]
mod tests;
