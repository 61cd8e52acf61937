//! A fleet of simulated devices derived deterministically from a seed (keys, positions, data
//! rates, timing), and a pure driver that runs a fleet on an in-process [`Air`].

use std::collections::{BTreeMap, HashMap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use drivers::radio::{Eui64, Modulation};

use super::air::Transmission;
use super::air::{Air, AirError, Listen, NodeConfig, NodeId, Outcome, Reception, SimTime};
use super::crypto::{Key, Session};
use super::device::{Activation, Device, DeviceConfig, DeviceCounters, DownlinkOutcome};
use super::model::SimPosition;

/// How fleet devices are activated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetActivation {
    /// ABP: uplinks flow with no network server.
    Abp,
    /// OTAA, optionally falling back to ABP after this many unanswered joins.
    Otaa {
        /// Unanswered joins before the ABP fallback (`None`: keep joining).
        abp_fallback_after: Option<u32>,
    },
}

/// What the fleet looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    /// Number of devices.
    pub devices: usize,
    /// Seed for keys, positions, data rates and timing.
    pub seed: u64,
    /// Mean time between uplinks per device, µs.
    pub interval_us: u64,
    /// Application payload bytes.
    pub payload_len: usize,
    /// Spreading factors, assigned round-robin (index modulo length).
    pub sf_mix: Vec<u8>,
    /// Uplink bandwidth, Hz.
    pub bw_hz: u32,
    /// Uplink channels, Hz.
    pub channels_hz: Vec<u64>,
    /// RX2 frequency, Hz.
    pub rx2_freq_hz: u64,
    /// RX2 spreading factor.
    pub rx2_sf: u8,
    /// Devices are placed uniformly in this disc: centre …
    pub center: SimPosition,
    /// … and radius, metres (for lat/lon centres, metres converted near the centre).
    pub radius_m: f64,
    /// Transmit power, dBm.
    pub power_dbm: f64,
    /// Antenna gain, dBi.
    pub antenna_gain_dbi: f64,
    /// OTAA or ABP.
    pub activation: FleetActivation,
    /// JoinEUI of every device.
    pub join_eui: Eui64,
}

impl Default for FleetConfig {
    /// 10 ABP devices on EU868's three default channels, SF7–SF12, one uplink a minute, in a
    /// 2 km disc around (0, 0).
    fn default() -> Self {
        FleetConfig {
            devices: 10,
            seed: 1,
            interval_us: 60_000_000,
            payload_len: 12,
            sf_mix: vec![7, 8, 9, 10, 11, 12],
            bw_hz: 125_000,
            channels_hz: vec![868_100_000, 868_300_000, 868_500_000],
            rx2_freq_hz: 869_525_000,
            rx2_sf: 12,
            center: SimPosition::xy(0.0, 0.0),
            radius_m: 2000.0,
            power_dbm: 14.0,
            antenna_gain_dbi: 0.0,
            activation: FleetActivation::Abp,
            join_eui: Eui64([0x70, 0xb3, 0xd5, 0x7e, 0xd0, 0x00, 0x00, 0x00]),
        }
    }
}

/// The identity and keys of fleet device `index` for a seed (to provision a network server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceKeys {
    /// DevEUI: `5e 51` + seed bits + index.
    pub dev_eui: Eui64,
    /// AppKey (OTAA).
    pub app_key: Key,
    /// ABP session (DevAddr `0x26000000 + index`).
    pub abp: Session,
}

/// Keys of fleet device `index` for `seed`.
pub fn device_keys(seed: u64, index: u32) -> DeviceKeys {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let s = (seed as u16).to_be_bytes();
    let i = index.to_be_bytes();
    let mut keys = [[0u8; 16]; 3];
    for k in &mut keys {
        rng.fill(&mut k[..]);
    }
    DeviceKeys {
        dev_eui: Eui64([0x5e, 0x51, s[0], s[1], i[0], i[1], i[2], i[3]]),
        app_key: keys[0],
        abp: Session {
            dev_addr: 0x2600_0000u32.wrapping_add(index & 0x01ff_ffff),
            nwk_skey: keys[1],
            app_skey: keys[2],
        },
    }
}

/// Why a fleet configuration is unusable.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum FleetError {
    /// A field has a bad value.
    #[error("fleet {field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn invalid(field: &'static str, message: impl Into<String>) -> FleetError {
    FleetError::Invalid {
        field,
        message: message.into(),
    }
}

fn place(center: SimPosition, r: f64, angle: f64) -> SimPosition {
    let (dx, dy) = (r * angle.cos(), r * angle.sin());
    match center {
        SimPosition::Xy { x_m, y_m } => SimPosition::xy(x_m + dx, y_m + dy),
        SimPosition::LatLon { lat, lon } => SimPosition::LatLon {
            lat: lat + dy / 111_320.0,
            lon: lon + dx / (111_320.0 * lat.to_radians().cos().max(1e-6)),
        },
    }
}

/// Summed counters of a fleet.
pub type FleetCounters = DeviceCounters;

/// A fleet of devices with positions.
pub struct Fleet {
    devices: Vec<Device>,
    positions: Vec<SimPosition>,
    antenna_gain_dbi: f64,
}

impl Fleet {
    /// Build the fleet; devices start transmitting within one interval after `start`.
    pub fn new(cfg: &FleetConfig, start: SimTime) -> Result<Fleet, FleetError> {
        if cfg.sf_mix.is_empty() || cfg.sf_mix.iter().any(|sf| !(5..=12).contains(sf)) {
            return Err(invalid("sf_mix", "needs spreading factors in 5..=12"));
        }
        if cfg.channels_hz.is_empty() {
            return Err(invalid("channels_hz", "needs at least one channel"));
        }
        if cfg.payload_len > 222 {
            return Err(invalid("payload_len", "at most 222 bytes"));
        }
        if cfg.interval_us < 3_000_000 {
            return Err(invalid(
                "interval",
                "at least 3 s (Class A windows take 2 s)",
            ));
        }
        if !(cfg.radius_m.is_finite() && cfg.radius_m >= 0.0 && cfg.center.is_valid()) {
            return Err(invalid("radius_m/center", "must be finite"));
        }
        if !(5..=12).contains(&cfg.rx2_sf) {
            return Err(invalid("rx2_sf", "must be in 5..=12"));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut devices = Vec::with_capacity(cfg.devices);
        let mut positions = Vec::with_capacity(cfg.devices);
        for i in 0..cfg.devices {
            let keys = device_keys(cfg.seed, i as u32);
            let r = cfg.radius_m * rng.random::<f64>().sqrt();
            let angle = rng.random::<f64>() * std::f64::consts::TAU;
            positions.push(place(cfg.center, r, angle));
            let lora = |sf| Modulation::Lora {
                sf,
                bw_hz: cfg.bw_hz,
                cr: Some(drivers::radio::CodeRate::Cr45),
            };
            let activation = match cfg.activation {
                FleetActivation::Abp => Activation::Abp(keys.abp),
                FleetActivation::Otaa { abp_fallback_after } => Activation::Otaa {
                    abp_fallback_after,
                    fallback: keys.abp,
                },
            };
            let dc = DeviceConfig {
                dev_eui: keys.dev_eui,
                join_eui: cfg.join_eui,
                app_key: keys.app_key,
                activation,
                interval_us: cfg.interval_us,
                payload_len: cfg.payload_len,
                fport: 1,
                modulation: lora(cfg.sf_mix[i % cfg.sf_mix.len()]),
                channels_hz: cfg.channels_hz.clone(),
                power_dbm: cfg.power_dbm,
                rx2_freq_hz: cfg.rx2_freq_hz,
                rx2_modulation: lora(cfg.rx2_sf),
                join_backoff_us: 10_000_000,
                join_backoff_max_us: 320_000_000,
                window_tolerance_us: 50_000,
            };
            devices.push(Device::new(dc, rng.random(), start));
        }
        Ok(Fleet {
            devices,
            positions,
            antenna_gain_dbi: cfg.antenna_gain_dbi,
        })
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Whether the fleet has no devices.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Device `i`.
    pub fn device(&self, i: usize) -> Option<&Device> {
        self.devices.get(i)
    }

    /// The air node configuration of device `i` (position, gain, downlink listener).
    pub fn node_config(&self, i: usize) -> Option<NodeConfig> {
        Some(NodeConfig {
            position: *self.positions.get(i)?,
            antenna_gain_dbi: self.antenna_gain_dbi,
            listen: Listen::device(),
        })
    }

    /// Counters summed over all devices.
    pub fn counters(&self) -> FleetCounters {
        let mut c = FleetCounters::default();
        for d in &self.devices {
            let x = d.counters();
            c.join_requests += x.join_requests;
            c.joins += x.joins;
            c.uplinks += x.uplinks;
            c.downlinks += x.downlinks;
            c.rejected += x.rejected;
            c.abp_fallbacks += x.abp_fallbacks;
        }
        c
    }

    /// The earliest time a device wants to be polled.
    pub fn next_wake(&self) -> Option<SimTime> {
        self.devices.iter().map(Device::next_wake).min()
    }

    /// Poll every device; returns (device index, frame) for those transmitting now.
    pub fn poll(&mut self, now: SimTime) -> Vec<(usize, Transmission)> {
        self.devices
            .iter_mut()
            .enumerate()
            .filter_map(|(i, d)| d.poll(now).map(|tx| (i, tx)))
            .collect()
    }

    /// A frame heard by device `i`, ending at `end`.
    pub fn on_downlink(&mut self, i: usize, end: SimTime, frame: &Transmission) -> DownlinkOutcome {
        match self.devices.get_mut(i) {
            Some(d) => d.on_downlink(end, frame),
            None => DownlinkOutcome::OutsideWindow,
        }
    }
}

/// A transmission another party (a simulated network or hotspot) puts on the air later.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    /// When it starts.
    pub at: SimTime,
    /// The sending node.
    pub from: NodeId,
    /// The frame.
    pub frame: Transmission,
}

/// What a [`simulate`] run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimulationLog {
    /// Every frame put on the air, in start order.
    pub transmissions: Vec<Scheduled>,
    /// Every reception the air reported, in end order.
    pub receptions: Vec<Reception>,
}

/// Add every fleet device to `air`; returns their node ids in device order.
pub fn attach(fleet: &Fleet, air: &mut Air) -> Result<Vec<NodeId>, AirError> {
    (0..fleet.len())
        .map(|i| match fleet.node_config(i) {
            Some(cfg) => air.add_node(cfg),
            None => Err(AirError::UnknownNode(NodeId(u32::MAX))),
        })
        .collect()
}

/// Run `fleet` (attached as `nodes`) on `air` from `from` until `until`, all in simulated
/// time. Receptions at non-device nodes go to `network`, which may schedule transmissions
/// (a network server answering through a hotspot). Returns what happened.
pub fn simulate(
    air: &mut Air,
    fleet: &mut Fleet,
    nodes: &[NodeId],
    from: SimTime,
    until: SimTime,
    mut network: impl FnMut(&Reception) -> Vec<Scheduled>,
) -> Result<SimulationLog, AirError> {
    let index: HashMap<NodeId, usize> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut pending: BTreeMap<(SimTime, u64), Scheduled> = BTreeMap::new();
    let mut seq = 0u64;
    let mut out = SimulationLog::default();
    let mut now = from;
    for _ in 0..100_000_000u64 {
        let next = [
            fleet.next_wake(),
            air.next_event(),
            pending.keys().next().map(|k| k.0),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        if next > until {
            break;
        }
        now = now.max(next);
        for r in air.advance(now)? {
            if let Some(&i) = index.get(&r.to) {
                if r.outcome == Outcome::Delivered {
                    fleet.on_downlink(i, r.end, &r.frame);
                }
            } else {
                for s in network(&r) {
                    pending.insert((s.at.max(now), seq), s);
                    seq += 1;
                }
            }
            out.receptions.push(r);
        }
        while let Some(entry) = pending.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let s = entry.remove();
            air.transmit(now, s.from, s.frame.clone())?;
            out.transmissions.push(Scheduled { at: now, ..s });
        }
        for (i, tx) in fleet.poll(now) {
            if let Some(&node) = nodes.get(i) {
                air.transmit(now, node, tx.clone())?;
                out.transmissions.push(Scheduled {
                    at: now,
                    from: node,
                    frame: tx,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
