//! The virtual air: a pure, seeded, deterministic shared medium.
//!
//! Radios (nodes, [`NodeConfig`]) are added with a position, antenna gain and what they listen to. A
//! [`Transmission`] started at a simulated time (µs) reaches every other node with a
//! received power from [`AirModel`]; when it ends, [`Air::advance`] returns one
//! [`Reception`] per node that could hear it (IQ polarity, channel and modulation match,
//! power at or above sensitivity) with its outcome: delivered, lost to a collision (another
//! audible frame on the same frequency, SF and bandwidth overlapping in time, unless capture
//! applies) or lost because the receiver was itself transmitting (half duplex).
//!
//! No I/O and no clocks: the caller passes the time. Time must not go backwards.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use drivers::airtime::{time_on_air_us, FrameShape};
use drivers::radio::Modulation;

use super::model::{same_channel_kind, sensitivity_dbm, AirModel, SimPosition};

/// Simulated time in microseconds.
pub type SimTime = u64;

/// A radio on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u32);

/// A transmission's identity (in start order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxId(pub u64);

/// What a node listens to.
#[derive(Debug, Clone, PartialEq)]
pub struct Listen {
    /// Inverted IQ: end devices listen for downlinks (true); hotspots listen for uplinks
    /// and beacons (false).
    pub inverted_iq: bool,
    /// Frequencies in Hz; empty = all.
    pub freqs_hz: Vec<u64>,
    /// Modulations (SF and bandwidth are compared); empty = all (a multi-SF concentrator).
    pub modulations: Vec<Modulation>,
}

impl Listen {
    /// A hotspot: normal IQ, every channel and data rate.
    pub fn hotspot() -> Listen {
        Listen {
            inverted_iq: false,
            freqs_hz: Vec::new(),
            modulations: Vec::new(),
        }
    }

    /// An end device: inverted IQ, every channel and data rate (the device decides which
    /// frames fall in its receive windows).
    pub fn device() -> Listen {
        Listen {
            inverted_iq: true,
            freqs_hz: Vec::new(),
            modulations: Vec::new(),
        }
    }

    /// Whether a frame with these parameters can be demodulated by this listener.
    pub fn matches(&self, freq_hz: u64, modulation: &Modulation, invert_iq: bool) -> bool {
        invert_iq == self.inverted_iq
            && (self.freqs_hz.is_empty() || self.freqs_hz.contains(&freq_hz))
            && (self.modulations.is_empty()
                || self
                    .modulations
                    .iter()
                    .any(|m| same_channel_kind(m, modulation)))
    }
}

/// A node's static configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// Where it is.
    pub position: SimPosition,
    /// Antenna gain in dBi (applies to transmit and receive).
    pub antenna_gain_dbi: f64,
    /// What it listens to.
    pub listen: Listen,
}

/// A frame put on the air.
#[derive(Debug, Clone, PartialEq)]
pub struct Transmission {
    /// Centre frequency, Hz.
    pub freq_hz: u64,
    /// Modulation and data rate.
    pub modulation: Modulation,
    /// Conducted power, dBm (the node's antenna gain is added).
    pub power_dbm: f64,
    /// Inverted IQ (LoRaWAN downlinks).
    pub invert_iq: bool,
    /// Preamble symbols.
    pub preamble: u16,
    /// PHY CRC present.
    pub crc: bool,
    /// PHY payload.
    pub payload: Vec<u8>,
}

impl Transmission {
    /// Time on air in µs, from [`drivers::airtime`].
    pub fn airtime_us(&self) -> u64 {
        let shape = FrameShape {
            payload_len: self.payload.len(),
            preamble: self.preamble,
            crc: self.crc,
            implicit_header: false,
        };
        time_on_air_us(&self.modulation, &shape)
    }
}

/// What happened to a frame at one receiver that could hear it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Received intact.
    Delivered,
    /// Destroyed by an overlapping frame on the same frequency and SF/BW.
    Collision,
    /// The receiver was transmitting during the frame.
    HalfDuplex,
}

/// One frame at one receiver, reported when the frame ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Reception {
    /// The receiver.
    pub to: NodeId,
    /// The sender.
    pub from: NodeId,
    /// The transmission.
    pub tx: TxId,
    /// Start of the frame, µs.
    pub start: SimTime,
    /// End of the frame, µs.
    pub end: SimTime,
    /// Received power, dBm.
    pub rssi_dbm: f64,
    /// SNR, dB (received power minus the noise floor).
    pub snr_db: f64,
    /// The frame as sent.
    pub frame: Transmission,
    /// What happened to it.
    pub outcome: Outcome,
}

/// Counters over the air's lifetime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AirStats {
    /// Frames put on the air.
    pub transmissions: u64,
    /// Frame × receiver pairs delivered.
    pub delivered: u64,
    /// Frame × receiver pairs lost to collisions.
    pub collisions: u64,
    /// Frame × receiver pairs lost because the receiver was transmitting.
    pub half_duplex: u64,
    /// Frame × receiver pairs that matched the listener but were below sensitivity.
    pub below_sensitivity: u64,
}

/// Why the air refused a request.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum AirError {
    /// No such node.
    #[error("unknown node {0:?}")]
    UnknownNode(NodeId),
    /// Time given is before the last time seen.
    #[error("time went backwards: {now} µs after {last} µs")]
    TimeWentBackwards {
        /// The time given.
        now: SimTime,
        /// The latest time seen.
        last: SimTime,
    },
    /// The node's position is invalid or of a different kind than the others'.
    #[error("invalid position {0:?}: not finite, out of range, or mixing x/y with lat/lon")]
    BadPosition(SimPosition),
    /// A parameter of a transmission is out of range.
    #[error("invalid transmission: {0}")]
    BadTransmission(String),
}

struct Link {
    to: NodeId,
    rssi_dbm: f64,
    audible: bool,
}

struct Flight {
    id: TxId,
    from: NodeId,
    start: SimTime,
    end: SimTime,
    frame: Transmission,
    links: Vec<Link>,
    done: bool,
}

/// The shared medium. Deterministic for a given seed and sequence of calls.
pub struct Air {
    model: AirModel,
    rng: ChaCha8Rng,
    nodes: BTreeMap<NodeId, NodeConfig>,
    next_node: u32,
    next_tx: u64,
    flights: Vec<Flight>,
    last_time: SimTime,
    stats: AirStats,
}

impl Air {
    /// An empty air with a model and an RNG seed (for shadowing).
    pub fn new(model: AirModel, seed: u64) -> Air {
        Air {
            model,
            rng: ChaCha8Rng::seed_from_u64(seed),
            nodes: BTreeMap::new(),
            next_node: 0,
            next_tx: 0,
            flights: Vec::new(),
            last_time: 0,
            stats: AirStats::default(),
        }
    }

    /// The model in use.
    pub fn model(&self) -> &AirModel {
        &self.model
    }

    /// Add a radio; ids are given in order from 0.
    pub fn add_node(&mut self, config: NodeConfig) -> Result<NodeId, AirError> {
        let kind_ok = self
            .nodes
            .values()
            .next()
            .is_none_or(|n| n.position.same_kind(&config.position));
        if !config.position.is_valid() || !kind_ok || !config.antenna_gain_dbi.is_finite() {
            return Err(AirError::BadPosition(config.position));
        }
        let id = NodeId(self.next_node);
        self.next_node += 1;
        self.nodes.insert(id, config);
        Ok(id)
    }

    /// Remove a radio; frames in flight no longer reach it.
    pub fn remove_node(&mut self, id: NodeId) -> bool {
        self.nodes.remove(&id).is_some()
    }

    /// A node's configuration.
    pub fn node(&self, id: NodeId) -> Option<&NodeConfig> {
        self.nodes.get(&id)
    }

    /// Counters so far.
    pub fn stats(&self) -> &AirStats {
        &self.stats
    }

    /// The end time of the earliest frame still in flight, when [`Air::advance`] has
    /// something to report.
    pub fn next_event(&self) -> Option<SimTime> {
        self.flights.iter().filter(|f| !f.done).map(|f| f.end).min()
    }

    fn check_time(&mut self, now: SimTime) -> Result<(), AirError> {
        if now < self.last_time {
            return Err(AirError::TimeWentBackwards {
                now,
                last: self.last_time,
            });
        }
        self.last_time = now;
        Ok(())
    }

    /// Start a transmission from `from` at `now`; returns its id and end time. The received
    /// power at every other node is drawn now, in node order (one shadowing sample each).
    pub fn transmit(
        &mut self,
        now: SimTime,
        from: NodeId,
        frame: Transmission,
    ) -> Result<(TxId, SimTime), AirError> {
        let sender = self.nodes.get(&from).ok_or(AirError::UnknownNode(from))?;
        if frame.payload.len() > 255 {
            return Err(AirError::BadTransmission(format!(
                "payload of {} bytes (at most 255)",
                frame.payload.len()
            )));
        }
        if !frame.power_dbm.is_finite() {
            return Err(AirError::BadTransmission("power is not finite".into()));
        }
        if let Modulation::Lora { sf, bw_hz, .. } = frame.modulation {
            if !(5..=12).contains(&sf) || bw_hz == 0 {
                return Err(AirError::BadTransmission(format!(
                    "SF{sf} BW {bw_hz} Hz is not a LoRa data rate"
                )));
            }
        }
        let (sender_pos, sender_gain) = (sender.position, sender.antenna_gain_dbi);
        self.check_time(now)?;
        let sens = sensitivity_dbm(&frame.modulation);
        let mut links = Vec::with_capacity(self.nodes.len());
        for (&id, node) in &self.nodes {
            if id == from {
                continue;
            }
            let d = sender_pos
                .distance_m(&node.position)
                .unwrap_or(f64::INFINITY);
            let rssi = self.model.mean_rx_power_dbm(
                frame.power_dbm,
                sender_gain,
                node.antenna_gain_dbi,
                d,
            ) + self.model.shadowing_db(&mut self.rng);
            let listens = node
                .listen
                .matches(frame.freq_hz, &frame.modulation, frame.invert_iq);
            let audible = listens && rssi >= sens;
            if listens && !audible {
                self.stats.below_sensitivity += 1;
            }
            links.push(Link {
                to: id,
                rssi_dbm: rssi,
                audible,
            });
        }
        let id = TxId(self.next_tx);
        self.next_tx += 1;
        let end = now + frame.airtime_us().max(1);
        self.stats.transmissions += 1;
        self.flights.push(Flight {
            id,
            from,
            start: now,
            end,
            frame,
            links,
            done: false,
        });
        Ok((id, end))
    }

    /// Report every frame that ended at or before `now`, in (end, id) order.
    pub fn advance(&mut self, now: SimTime) -> Result<Vec<Reception>, AirError> {
        self.check_time(now)?;
        let mut ending: Vec<usize> = (0..self.flights.len())
            .filter(|&i| !self.flights[i].done && self.flights[i].end <= now)
            .collect();
        ending.sort_by_key(|&i| (self.flights[i].end, self.flights[i].id));
        let mut out = Vec::new();
        for i in ending {
            self.report(i, &mut out);
            self.flights[i].done = true;
        }
        // A finished frame matters only while an unreported frame or a future one (which
        // starts at or after `now`) may overlap it.
        let horizon = self
            .flights
            .iter()
            .filter(|f| !f.done)
            .map(|f| f.start)
            .min()
            .unwrap_or(now)
            .min(now);
        self.flights.retain(|f| !f.done || f.end > horizon);
        Ok(out)
    }

    fn report(&mut self, i: usize, out: &mut Vec<Reception>) {
        let f = &self.flights[i];
        for link in f.links.iter().filter(|l| l.audible) {
            if !self.nodes.contains_key(&link.to) {
                continue;
            }
            let overlapping = self
                .flights
                .iter()
                .filter(|o| o.id != f.id && o.start < f.end && o.end > f.start);
            let mut outcome = Outcome::Delivered;
            for o in overlapping {
                if o.from == link.to {
                    outcome = Outcome::HalfDuplex;
                    break;
                }
                let interferes = o.frame.freq_hz == f.frame.freq_hz
                    && o.frame.invert_iq == f.frame.invert_iq
                    && same_channel_kind(&o.frame.modulation, &f.frame.modulation);
                if !interferes {
                    continue;
                }
                let Some(other) = o.links.iter().find(|l| l.to == link.to) else {
                    continue;
                };
                if other.rssi_dbm < sensitivity_dbm(&o.frame.modulation) {
                    continue;
                }
                let captured = self
                    .model
                    .capture_threshold_db
                    .is_some_and(|c| link.rssi_dbm - other.rssi_dbm >= c);
                if !captured {
                    outcome = Outcome::Collision;
                }
            }
            match outcome {
                Outcome::Delivered => self.stats.delivered += 1,
                Outcome::Collision => self.stats.collisions += 1,
                Outcome::HalfDuplex => self.stats.half_duplex += 1,
            }
            let bw = super::model::bandwidth_hz(&f.frame.modulation);
            out.push(Reception {
                to: link.to,
                from: f.from,
                tx: f.id,
                start: f.start,
                end: f.end,
                rssi_dbm: link.rssi_dbm,
                snr_db: self.model.snr_db(link.rssi_dbm, bw),
                frame: f.frame.clone(),
                outcome,
            });
        }
    }
}

#[cfg(test)]
#[path = "air_tests.rs"]
mod tests;
