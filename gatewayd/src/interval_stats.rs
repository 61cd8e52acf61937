//! The counters of one stats interval and the `gw.GatewayStats` built from them: what the
//! radio received (counted by the pipeline), what the network asked to transmit and what went
//! out (counted by the downlink task into a shared [`TxStatsHandle`]), and the duty-cycle use
//! per band (from the guard's ledger). Every `stats_interval_secs` the pipeline takes both and
//! the next interval starts at zero: ChirpStack adds up the counts of successive messages.
//!
//! Counting follows ChirpStack's own forwarders: statuses by their `TxAckStatus` names
//! (`"OK"`, `"TOO_LATE"`, …) for every item the gateway tried (`IGNORED`, an item not tried
//! because an earlier one was sent, is left out, as chirpstack-gateway-bridge does);
//! frequency and modulation of what was emitted, as the network asked for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use chirpstack_api::common;
use chirpstack_api::gw;
use drivers::radio::{CrcStatus, Eui64, Modulation, RxMeta};

use crate::chirpstack::{duration, location, modulation, timestamp};
use crate::guard::{BandUse, DUTY_CYCLE_WINDOW};
use crate::position::SourcedLocation;
use crate::region::Region;

/// Counts per key, kept as a short list searched in place: a gateway hears a handful of
/// frequencies, data rates and statuses, so counting a key seen before (once per uplink)
/// neither hashes nor allocates.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally<K>(Vec<(K, u32)>);

impl<K> Default for Tally<K> {
    fn default() -> Self {
        Tally(Vec::new())
    }
}

impl<K: PartialEq + Copy> Tally<K> {
    /// Count one more `key`.
    pub fn add(&mut self, key: K) {
        match self.0.iter_mut().find(|(seen, _)| *seen == key) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => self.0.push((key, 1)),
        }
    }

    /// The count of `key`.
    pub fn count(&self, key: K) -> u32 {
        self.0
            .iter()
            .find(|(seen, _)| *seen == key)
            .map_or(0, |(_, n)| *n)
    }

    /// Every key with its count, in the order first seen.
    pub fn iter(&self) -> impl Iterator<Item = (K, u32)> + '_ {
        self.0.iter().copied()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Counts per modulation with the IQ polarization.
pub type ModulationCounts = Tally<(Modulation, bool)>;

impl ModulationCounts {
    /// As `gw.PerModulationCount`s, in the order first seen.
    pub fn to_proto(&self) -> Vec<gw::PerModulationCount> {
        self.iter()
            .map(|((m, inverted), n)| gw::PerModulationCount {
                modulation: Some(modulation(&m, inverted)),
                count: n,
            })
            .collect()
    }
}

/// What the radio received in one interval (the pipeline's own counters).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RxInterval {
    /// Frames received.
    pub received: u32,
    /// Frames received with a good CRC.
    pub ok: u32,
    /// Frames per frequency (Hz).
    pub per_frequency: Tally<u32>,
    /// Frames per modulation (uplinks: IQ not inverted).
    pub per_modulation: ModulationCounts,
}

impl RxInterval {
    /// Count one received frame (filtered, duplicate or not: the radio heard it).
    pub fn count(&mut self, meta: &RxMeta) {
        self.received = self.received.saturating_add(1);
        if meta.crc == CrcStatus::Ok {
            self.ok = self.ok.saturating_add(1);
        }
        self.per_frequency
            .add(u32::try_from(meta.freq_hz).unwrap_or(u32::MAX));
        self.per_modulation.add((meta.modulation, false));
    }
}

/// The transmission that went out for one downlink, as the network asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emitted {
    /// Frequency in Hz.
    pub freq_hz: u64,
    /// Modulation and data rate.
    pub modulation: Modulation,
    /// Inverted IQ.
    pub invert_iq: bool,
}

/// What the network asked to transmit in one interval and what went out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TxInterval {
    /// Downlink commands for this gateway (each answered with an ack).
    pub received: u32,
    /// Downlinks one of whose items was sent.
    pub emitted: u32,
    /// Items tried, by `TxAckStatus` name (`IGNORED` left out).
    pub per_status: Tally<&'static str>,
    /// Emitted downlinks per frequency (Hz).
    pub per_frequency: Tally<u32>,
    /// Emitted downlinks per modulation.
    pub per_modulation: ModulationCounts,
}

impl TxInterval {
    /// Count one downlink command answered with `statuses` (one per item, as in its ack);
    /// `emitted`: the item that was sent, if one was.
    pub fn count_downlink(&mut self, statuses: &[gw::TxAckStatus], emitted: Option<&Emitted>) {
        self.received = self.received.saturating_add(1);
        for s in statuses.iter().filter(|s| **s != gw::TxAckStatus::Ignored) {
            self.per_status.add(s.as_str_name());
        }
        if let Some(e) = emitted {
            self.emitted = self.emitted.saturating_add(1);
            self.per_frequency
                .add(u32::try_from(e.freq_hz).unwrap_or(u32::MAX));
            self.per_modulation.add((e.modulation, e.invert_iq));
        }
    }
}

#[derive(Debug, Default)]
struct TxShared {
    interval: TxInterval,
    duty_cycle: Option<gw::DutyCycleStats>,
}

/// The downlink task's side of the stats: it counts into it, the pipeline takes the interval
/// when it publishes stats. Cloneable; the lock is held only to add or to swap.
#[derive(Debug, Clone, Default)]
pub struct TxStatsHandle(Arc<Mutex<TxShared>>);

impl TxStatsHandle {
    fn with<T>(&self, f: impl FnOnce(&mut TxShared) -> T) -> T {
        // Counters stay usable after a panic elsewhere: they hold no invariant to break.
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// See [`TxInterval::count_downlink`].
    pub fn count_downlink(&self, statuses: &[gw::TxAckStatus], emitted: Option<&Emitted>) {
        self.with(|s| s.interval.count_downlink(statuses, emitted));
    }

    /// The latest duty-cycle use (replaces the previous; it is a level, not a count).
    pub fn set_duty_cycle(&self, stats: Option<gw::DutyCycleStats>) {
        self.with(|s| s.duty_cycle = stats);
    }

    /// The interval so far (the next one starts at zero) and the latest duty-cycle use.
    pub fn take(&self) -> (TxInterval, Option<gw::DutyCycleStats>) {
        self.with(|s| (std::mem::take(&mut s.interval), s.duty_cycle.clone()))
    }
}

/// The regulation a region's duty-cycle limits come from.
pub fn regulation(region: &Region) -> common::Regulation {
    match region.name {
        "EU868" | "EU433" => common::Regulation::EtsiEn300220,
        _ => common::Regulation::Unknown,
    }
}

/// `gw.DutyCycleStats` of the duty-cycle use per limited band of `region` (as the guard
/// reads it from its ledger); `None` when the region limits no band's duty cycle.
pub fn duty_cycle_stats(region: &Region, uses: &[BandUse]) -> Option<gw::DutyCycleStats> {
    if uses.is_empty() {
        return None;
    }
    let bands = uses
        .iter()
        .map(|u| {
            let band = region.bands.iter().find(|b| b.name == u.band);
            let edge = |hz: u64| u32::try_from(hz).unwrap_or(u32::MAX);
            gw::DutyCycleBand {
                name: u.band.to_string(),
                frequency_min: band.map_or(0, |b| edge(b.min_hz)),
                frequency_max: band.map_or(0, |b| edge(b.max_hz)),
                load_max: Some(duration(u.budget)),
                load_tracked: Some(duration(u.used)),
            }
        })
        .collect();
    Some(gw::DutyCycleStats {
        regulation: regulation(region).into(),
        window: Some(duration(DUTY_CYCLE_WINDOW)),
        bands,
    })
}

/// Build `GatewayStats` for one interval.
pub fn gateway_stats(
    gateway: Eui64,
    time: SystemTime,
    rx: &RxInterval,
    tx: &TxInterval,
    duty_cycle: Option<gw::DutyCycleStats>,
    loc: Option<&SourcedLocation>,
    metadata: HashMap<String, String>,
) -> gw::GatewayStats {
    gw::GatewayStats {
        gateway_id: gateway.to_string(),
        time: Some(timestamp(time)),
        location: loc.map(location),
        rx_packets_received: rx.received,
        rx_packets_received_ok: rx.ok,
        tx_packets_received: tx.received,
        tx_packets_emitted: tx.emitted,
        rx_packets_per_frequency: rx.per_frequency.iter().collect(),
        rx_packets_per_modulation: rx.per_modulation.to_proto(),
        tx_packets_per_frequency: tx.per_frequency.iter().collect(),
        tx_packets_per_modulation: tx.per_modulation.to_proto(),
        tx_packets_per_status: tx
            .per_status
            .iter()
            .map(|(k, n)| (k.to_string(), n))
            .collect(),
        duty_cycle_stats: duty_cycle,
        metadata,
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "interval_stats_tests.rs"]
mod tests;
