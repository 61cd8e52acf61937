//! LoRaWAN regional parameters, compiled in as typed Rust tables (see `tables.rs`).
//!
//! Source: `shared/reference/regions.toml` (RP002-1.0.x as TTN lorawan-stack, ChirpStack and
//! LoRaMac-node encode it). The TOML is not uniform enough to parse as data (several values
//! are prose notes on where the sources disagree), so the numbers live in `tables.rs` as Rust
//! statics, each region commented with its source and with the choice made where sources
//! disagree; `tests.rs` checks every region for consistency and pins those choices.
//!
//! The regulatory guard (`crate::guard`) is the only user that enforces limits; this module
//! only answers questions about a region.

use drivers::radio::{CodeRate, Modulation};

mod tables;
#[cfg(test)]
mod tests;

/// Every region gatewayd knows, in the order of `regions.toml`.
pub static REGIONS: [&Region; 12] = [
    &tables::EU868,
    &tables::US915,
    &tables::AU915,
    &tables::AS923_1,
    &tables::AS923_2,
    &tables::AS923_3,
    &tables::AS923_4,
    &tables::IN865,
    &tables::KR920,
    &tables::CN470,
    &tables::RU864,
    &tables::EU433,
];

/// The 400 ms dwell-time limit, where a region applies one (`[common] dwell_time_limit_ms`).
pub const DWELL_TIME_LIMIT: std::time::Duration = std::time::Duration::from_millis(400);

/// Largest PHYPayload any LoRa radio sends (MACPayload M + 5 never exceeds it).
pub const MAX_PHY_PAYLOAD: usize = 255;

/// Which way a transmission goes, seen from the network.
///
/// A gateway downlink (inverted IQ) must use downlink channels and data rates; a
/// non-inverted transmission (a proof-of-coverage beacon other hotspots receive as an
/// uplink) must obey the uplink channels, data rates and dwell rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Device → gateway (or a hotspot beacon heard as an uplink).
    Uplink,
    /// Gateway → device.
    Downlink,
}

/// The modulation a data rate stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DrKind {
    /// LoRa at a spreading factor and bandwidth (any coding rate).
    Lora {
        /// Spreading factor.
        sf: u8,
        /// Bandwidth in Hz.
        bw_hz: u32,
    },
    /// FSK at a bit rate.
    Fsk {
        /// Bit rate in bit/s.
        bitrate: u32,
    },
    /// LR-FHSS (uplink only in every region).
    LrFhss {
        /// Operating channel width in Hz.
        ocw_hz: u32,
        /// Coding rate (1/3 or 2/3).
        cr: CodeRate,
    },
}

impl DrKind {
    /// Whether a frame's modulation is this data rate (LoRa ignores the coding rate,
    /// LR-FHSS ignores the grid).
    pub fn matches(&self, m: &Modulation) -> bool {
        match (*self, *m) {
            (
                DrKind::Lora { sf, bw_hz },
                Modulation::Lora {
                    sf: s, bw_hz: b, ..
                },
            ) => sf == s && bw_hz == b,
            (DrKind::Fsk { bitrate }, Modulation::Fsk { bitrate: b }) => bitrate == b,
            (
                DrKind::LrFhss { ocw_hz, cr },
                Modulation::LrFhss {
                    ocw_hz: o, cr: c, ..
                },
            ) => ocw_hz == o && cr == c,
            _ => false,
        }
    }
}

/// One data rate of a region.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DataRate {
    /// The DR index.
    pub dr: u8,
    /// Its modulation.
    pub kind: DrKind,
    /// Usable for uplinks.
    pub uplink: bool,
    /// Usable for downlinks.
    pub downlink: bool,
    /// Max MACPayload M in bytes without a dwell limit (0: DR not allowed).
    pub max_m: u16,
    /// Max MACPayload M in bytes under the 400 ms dwell limit (0: DR not allowed).
    pub max_m_dwell: u16,
}

impl DataRate {
    /// Whether this DR may be used in `direction`.
    pub fn allows(&self, direction: Direction) -> bool {
        match direction {
            Direction::Uplink => self.uplink,
            Direction::Downlink => self.downlink,
        }
    }
}

/// A regular grid of channels: `first_hz + i * step_hz` for `i < count`, all `bw_hz` wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Centre of channel 0.
    pub first_hz: u64,
    /// Channel spacing.
    pub step_hz: u64,
    /// Number of channels.
    pub count: u16,
    /// Channel bandwidth.
    pub bw_hz: u32,
}

impl Grid {
    /// Centre frequency of channel `i`, if it exists.
    pub fn freq(&self, i: u16) -> Option<u64> {
        (i < self.count).then(|| self.first_hz + u64::from(i) * self.step_hz)
    }

    /// Index of the channel centred exactly on `freq_hz`.
    pub fn index_of(&self, freq_hz: u64) -> Option<u16> {
        let off = freq_hz.checked_sub(self.first_hz)?;
        if off % self.step_hz != 0 {
            return None;
        }
        let i = off / self.step_hz;
        (i < u64::from(self.count)).then_some(i as u16)
    }
}

/// How a region lays out its channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelPlan {
    /// EU868-like: a few default channels, further ones set by the network (CFList) anywhere
    /// in the region's bands; RX1 uses the uplink frequency.
    Dynamic {
        /// The mandatory default (join) channels.
        default_channels_hz: &'static [u64],
        /// Where the region restricts channel centres to a grid (KR920).
        center_grid: Option<Grid>,
    },
    /// US915/AU915/CN470: fixed uplink grids; RX1 downlink channel = uplink channel index
    /// modulo the downlink channel count (125 kHz channels first, then 500 kHz ones).
    Fixed {
        /// Uplink 125 kHz channels.
        uplink_125k: Grid,
        /// Uplink 500 kHz channels (US915/AU915), numbered after the 125 kHz ones.
        uplink_500k: Option<Grid>,
        /// Downlink channels.
        downlink: Grid,
        /// Whether sub-bands of 8+1 uplink channels (1..=8) apply.
        sub_bands: bool,
    },
}

/// A frequency band with its regulatory limits (ETSI sub-bands in EU868, FCC ranges …).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    /// Name used in logs, refusals and the duty-cycle ledger.
    pub name: &'static str,
    /// Lower edge in Hz; a transmission's whole bandwidth must lie in one band.
    pub min_hz: u64,
    /// Upper edge in Hz.
    pub max_hz: u64,
    /// Duty-cycle fraction over one hour (1.0: no duty-cycle limit).
    pub duty: f64,
    /// Max EIRP in dBm the gateway may radiate in this band.
    pub max_eirp_dbm: f32,
}

impl Band {
    /// Airtime allowed per sliding hour, or `None` without a duty-cycle limit.
    pub fn budget_per_hour(&self) -> Option<std::time::Duration> {
        (self.duty < 1.0).then(|| std::time::Duration::from_secs_f64(3600.0 * self.duty))
    }

    /// Whether `[freq − bw/2, freq + bw/2]` lies inside the band.
    pub fn contains(&self, freq_hz: u64, bw_hz: u32) -> bool {
        let half = u64::from(bw_hz) / 2;
        freq_hz >= self.min_hz + half && freq_hz + half <= self.max_hz
    }
}

/// Listen-before-talk parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LbtParams {
    /// The channel counts as busy above this RSSI.
    pub rssi_threshold_dbm: i16,
    /// How long to sense before transmitting, in ms.
    pub carrier_sense_ms: u16,
    /// Sensing bandwidth in Hz.
    pub bandwidth_hz: u32,
}

/// Whether a region requires listen-before-talk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LbtRule {
    /// No LBT.
    None,
    /// Always (KR920).
    Required(LbtParams),
    /// Only under Japanese rules (AS923, ARIB STD-T108), which also cap EIRP and DR.
    Japan {
        /// LBT parameters.
        params: LbtParams,
        /// EIRP cap in dBm.
        max_eirp_dbm: f32,
        /// Highest DR allowed.
        max_dr: u8,
    },
}

/// Which directions the 400 ms dwell-time limit applies to by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DwellTime {
    /// Uplinks (and uplink-like beacons).
    pub uplink: bool,
    /// Downlinks.
    pub downlink: bool,
}

impl DwellTime {
    /// Whether the limit applies in `direction`.
    pub fn applies(&self, direction: Direction) -> bool {
        match direction {
            Direction::Uplink => self.uplink,
            Direction::Downlink => self.downlink,
        }
    }
}

/// Why a region question has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    /// The uplink frequency is not a channel of the region.
    #[error("{region}: uplink frequency {freq_hz} Hz is not one of its uplink channels")]
    NotAnUplinkChannel {
        /// Region name.
        region: &'static str,
        /// The frequency.
        freq_hz: u64,
    },
    /// The data rate does not exist or has no RX1 mapping.
    #[error("{region}: uplink DR{dr} has no RX1 data rate")]
    UnknownDataRate {
        /// Region name.
        region: &'static str,
        /// The DR.
        dr: u8,
    },
    /// The RX1 DR offset is larger than the region allows.
    #[error("{region}: RX1 DR offset {offset} is above the maximum {max}")]
    Rx1OffsetTooLarge {
        /// Region name.
        region: &'static str,
        /// The offset asked.
        offset: u8,
        /// The region's maximum.
        max: u8,
    },
}

/// One LoRaWAN region: channels, data rates, payload sizes, power and duty-cycle limits.
#[derive(Debug, PartialEq)]
pub struct Region {
    /// Name as in `regions.toml` (`"EU868"`, `"AS923-1"`, …).
    pub name: &'static str,
    /// Data rates, in DR order (RFU DRs absent).
    pub data_rates: &'static [DataRate],
    /// Channel layout.
    pub channels: ChannelPlan,
    /// Bands: every transmission must lie in one; duty cycle and EIRP are per band.
    pub bands: &'static [Band],
    /// Default max EIRP of a device (TX power index 0), in dBm.
    pub default_max_eirp_dbm: f32,
    /// TX power index k → offset from max EIRP in dB.
    pub tx_power_offsets_db: &'static [i8],
    /// Largest RX1 DR offset.
    pub rx1_dr_offset_max: u8,
    /// RX1 DR = `rx1_dr_table[uplink_dr][offset]` (an empty row: no such uplink DR).
    pub rx1_dr_table: &'static [&'static [u8]],
    /// The RX1 table used when downlink dwell is on (AS923), if the region has one.
    pub rx1_dr_table_dwell: Option<&'static [&'static [u8]]>,
    /// RX2 default frequency.
    pub rx2_freq_hz: u64,
    /// RX2 default DR.
    pub rx2_dr: u8,
    /// Default dwell-time limits.
    pub dwell: DwellTime,
    /// Listen-before-talk rule.
    pub lbt: LbtRule,
}

impl Region {
    /// A region by its `regions.toml` name (case-sensitive, e.g. `"AS923-1"`).
    pub fn by_name(name: &str) -> Option<&'static Region> {
        REGIONS.iter().copied().find(|r| r.name == name)
    }

    /// The data rate with index `dr`.
    pub fn data_rate(&self, dr: u8) -> Option<&'static DataRate> {
        self.data_rates.iter().find(|d| d.dr == dr)
    }

    /// The first DR (in either direction) whose modulation is `m`.
    pub fn dr_for(&self, m: &Modulation) -> Option<u8> {
        self.data_rates
            .iter()
            .find(|d| d.kind.matches(m))
            .map(|d| d.dr)
    }

    /// The DR usable in `direction` whose modulation is `m` (US915 SF8/500 kHz is DR4 up,
    /// DR12 down).
    pub fn dr_for_direction(&self, m: &Modulation, direction: Direction) -> Option<u8> {
        self.data_rates
            .iter()
            .find(|d| d.allows(direction) && d.kind.matches(m))
            .map(|d| d.dr)
    }

    /// Max MACPayload M in bytes at `dr`, under the 400 ms dwell limit or not; `None` when
    /// the DR does not exist or is not allowed under that setting.
    pub fn max_payload(&self, dr: u8, dwell: bool) -> Option<u16> {
        let d = self.data_rate(dr)?;
        let m = if dwell { d.max_m_dwell } else { d.max_m };
        (m > 0).then_some(m)
    }

    /// RX1 frequency and DR for an uplink (downlink dwell off).
    pub fn rx1(
        &self,
        uplink_freq_hz: u64,
        uplink_dr: u8,
        rx1_dr_offset: u8,
    ) -> Result<(u64, u8), RegionError> {
        self.rx1_with_dwell(uplink_freq_hz, uplink_dr, rx1_dr_offset, false)
    }

    /// RX1 frequency and DR, choosing the dwell RX1 table where the region has one.
    pub fn rx1_with_dwell(
        &self,
        uplink_freq_hz: u64,
        uplink_dr: u8,
        rx1_dr_offset: u8,
        downlink_dwell: bool,
    ) -> Result<(u64, u8), RegionError> {
        if rx1_dr_offset > self.rx1_dr_offset_max {
            return Err(RegionError::Rx1OffsetTooLarge {
                region: self.name,
                offset: rx1_dr_offset,
                max: self.rx1_dr_offset_max,
            });
        }
        let table = match (downlink_dwell, self.rx1_dr_table_dwell) {
            (true, Some(t)) => t,
            _ => self.rx1_dr_table,
        };
        let dr = table
            .get(usize::from(uplink_dr))
            .and_then(|row| row.get(usize::from(rx1_dr_offset)))
            .copied()
            .ok_or(RegionError::UnknownDataRate {
                region: self.name,
                dr: uplink_dr,
            })?;
        let not_channel = RegionError::NotAnUplinkChannel {
            region: self.name,
            freq_hz: uplink_freq_hz,
        };
        let freq = match self.channels {
            ChannelPlan::Dynamic { .. } => {
                if !self.is_tx_frequency_allowed(uplink_freq_hz, 0) {
                    return Err(not_channel);
                }
                uplink_freq_hz
            }
            ChannelPlan::Fixed {
                uplink_125k,
                uplink_500k,
                downlink,
                ..
            } => {
                let index = match uplink_125k.index_of(uplink_freq_hz) {
                    Some(i) => i,
                    None => uplink_500k
                        .and_then(|g| g.index_of(uplink_freq_hz))
                        .map(|i| i + uplink_125k.count)
                        .ok_or(not_channel)?,
                };
                downlink
                    .freq(index % downlink.count)
                    .ok_or(RegionError::NotAnUplinkChannel {
                        region: self.name,
                        freq_hz: uplink_freq_hz,
                    })?
            }
        };
        Ok((freq, dr))
    }

    /// RX2 default frequency and DR.
    pub fn rx2(&self) -> (u64, u8) {
        (self.rx2_freq_hz, self.rx2_dr)
    }

    /// The band whose whole width contains `[freq − bw/2, freq + bw/2]`.
    pub fn band_for(&self, freq_hz: u64, bw_hz: u32) -> Option<&'static Band> {
        self.bands.iter().find(|b| b.contains(freq_hz, bw_hz))
    }

    /// The duty-cycle band a centre frequency lies in (EIRP and duty limits).
    pub fn duty_cycle_band(&self, freq_hz: u64) -> Option<&'static Band> {
        self.band_for(freq_hz, 0)
    }

    /// The max EIRP at `freq_hz`, from its band (`None` outside every band).
    pub fn max_eirp_dbm(&self, freq_hz: u64) -> Option<f32> {
        self.duty_cycle_band(freq_hz).map(|b| b.max_eirp_dbm)
    }

    /// Whether the region has a transmit channel at `freq_hz` in either direction with
    /// the occupied bandwidth `bw_hz` inside one band (no sub-band restriction).
    pub fn is_tx_frequency_allowed(&self, freq_hz: u64, bw_hz: u32) -> bool {
        self.is_channel_allowed(freq_hz, bw_hz, Direction::Downlink, None)
            || self.is_channel_allowed(freq_hz, bw_hz, Direction::Uplink, None)
    }

    /// Whether `freq_hz` (occupying `bw_hz`) is a channel for `direction`; for fixed plans
    /// with sub-bands, `sub_band` (1..=8) restricts uplink channels to that sub-band's 8+1.
    pub fn is_channel_allowed(
        &self,
        freq_hz: u64,
        bw_hz: u32,
        direction: Direction,
        sub_band: Option<u8>,
    ) -> bool {
        if self.band_for(freq_hz, bw_hz).is_none() {
            return false;
        }
        match self.channels {
            ChannelPlan::Dynamic { center_grid, .. } => {
                center_grid.is_none_or(|g| g.index_of(freq_hz).is_some())
            }
            ChannelPlan::Fixed {
                uplink_125k,
                uplink_500k,
                downlink,
                sub_bands,
            } => match direction {
                Direction::Downlink => {
                    bw_hz <= downlink.bw_hz && downlink.index_of(freq_hz).is_some()
                }
                Direction::Uplink => {
                    let sb = sub_band.filter(|_| sub_bands);
                    let in_125 = uplink_125k
                        .index_of(freq_hz)
                        .filter(|_| bw_hz <= uplink_125k.bw_hz)
                        .is_some_and(|i| sb.is_none_or(|s| i / 8 == u16::from(s) - 1));
                    let in_500 = uplink_500k
                        .and_then(|g| g.index_of(freq_hz).filter(|_| bw_hz <= g.bw_hz))
                        .is_some_and(|i| sb.is_none_or(|s| i == u16::from(s) - 1));
                    in_125 || in_500
                }
            },
        }
    }

    /// Whether the region has sub-bands of 8+1 uplink channels (US915, AU915).
    pub fn has_sub_bands(&self) -> bool {
        matches!(
            self.channels,
            ChannelPlan::Fixed {
                sub_bands: true,
                ..
            }
        )
    }
}

/// The bandwidth a modulation occupies, for the band-edge check (FSK: Carson's rule with
/// LoRaWAN's 25 kHz deviation, i.e. twice the bit rate).
pub fn occupied_bandwidth_hz(m: &Modulation) -> u32 {
    match *m {
        Modulation::Lora { bw_hz, .. } => bw_hz,
        Modulation::Fsk { bitrate } => bitrate.saturating_mul(2),
        Modulation::LrFhss { ocw_hz, .. } => ocw_hz,
    }
}
