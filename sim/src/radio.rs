//! The simulated radio backend: a hotspot radio on the virtual air, handed to the daemon as
//! a [`Radio`] exactly like the hardware backends.
//!
//! Frames the air delivers become [`RadioEvent::Uplinks`] (with [`StoreAck::none`]) carrying
//! RSSI, SNR, frequency, modulation and a `tmst` from a microsecond counter (monotonic since
//! the backend started, wrapping at 2^32). Transmit requests go onto the air immediately or
//! when the counter reaches `AtCounter`; GPS-timed requests are refused (no GPS).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use drivers::radio::{
    CrcStatus, Eui64, Radio, RadioCapabilities, RadioControl, RadioEvent, RadioHealth, RadioStats,
    RxFrame, RxMeta, StoreAck, TxCommand, TxRequest, TxStatus, TxTiming,
};

use super::air::{Listen, NodeConfig, Transmission};
use super::hub::{connect_hub, AirHandle, Delivery};
use super::model::SimPosition;
use super::SimError;

/// Where the simulated radio finds its air.
#[derive(Debug, Clone)]
pub enum SimHub {
    /// A `gatewayd-sim` hub on (loopback) UDP.
    Address(SocketAddr),
    /// An air in this process (tests, single-process demos).
    InProcess(AirHandle),
}

/// Runtime configuration of a simulated radio.
#[derive(Debug, Clone)]
pub struct SimRadioConfig {
    /// The air.
    pub hub: SimHub,
    /// Where the hotspot is.
    pub position: SimPosition,
    /// Antenna gain, dBi.
    pub antenna_gain_dbi: f64,
    /// Gateway EUI reported with uplinks and stats, if any.
    pub gateway: Option<Eui64>,
    /// How often to report [`RadioEvent::Stats`].
    pub stats_interval: Duration,
}

/// `[radio.simulated]` in the daemon's TOML configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimRadioSettings {
    /// Hub address, `IP:port` (loopback).
    pub hub: String,
    /// East position in metres (with `y_m`).
    pub x_m: Option<f64>,
    /// North position in metres (with `x_m`).
    pub y_m: Option<f64>,
    /// Latitude in degrees (with `lon`).
    pub lat: Option<f64>,
    /// Longitude in degrees (with `lat`).
    pub lon: Option<f64>,
    /// Antenna gain, dBi (default 0).
    #[serde(default)]
    pub antenna_gain_dbi: f64,
    /// Seconds between radio statistics (default 30).
    pub stats_interval_s: Option<u64>,
}

fn config_err(key: &'static str, message: impl Into<String>) -> SimError {
    SimError::Config {
        key,
        message: message.into(),
    }
}

impl SimRadioSettings {
    /// Validate into a runtime configuration; errors name the key.
    pub fn to_config(&self, gateway: Option<Eui64>) -> Result<SimRadioConfig, SimError> {
        let hub: SocketAddr =
            self.hub.trim().parse().map_err(|_| {
                config_err("hub", format!("{:?} is not an IP:port address", self.hub))
            })?;
        if !hub.ip().is_loopback() {
            return Err(config_err(
                "hub",
                format!("{hub} is not a loopback address"),
            ));
        }
        let position = match (self.x_m, self.y_m, self.lat, self.lon) {
            (Some(x_m), Some(y_m), None, None) => SimPosition::Xy { x_m, y_m },
            (None, None, Some(lat), Some(lon)) => SimPosition::LatLon { lat, lon },
            (Some(_), None, _, _) | (None, Some(_), _, _) => {
                return Err(config_err("x_m", "x_m and y_m go together"))
            }
            (None, None, _, _) => {
                return Err(config_err(
                    "lat",
                    "give a position: x_m and y_m, or lat and lon",
                ))
            }
            _ => return Err(config_err("lat", "give x_m/y_m or lat/lon, not both")),
        };
        if !position.is_valid() {
            let key = match position {
                SimPosition::Xy { .. } => "x_m",
                SimPosition::LatLon { .. } => "lat",
            };
            return Err(config_err(key, format!("{position:?} is out of range")));
        }
        if !self.antenna_gain_dbi.is_finite() || self.antenna_gain_dbi.abs() > 30.0 {
            return Err(config_err("antenna_gain_dbi", "must be within ±30 dBi"));
        }
        let stats = self.stats_interval_s.unwrap_or(30);
        if stats == 0 {
            return Err(config_err("stats_interval_s", "must be at least 1"));
        }
        Ok(SimRadioConfig {
            hub: SimHub::Address(hub),
            position,
            antenna_gain_dbi: self.antenna_gain_dbi,
            gateway,
            stats_interval: Duration::from_secs(stats),
        })
    }
}

/// Earliest a counter-timed transmission may be asked for (programming delay + margin,
/// as the Semtech JIT queue: 1.5 ms + 1 ms).
pub const MIN_LEAD_US: u32 = 2_500;
/// Latest a counter-timed transmission may be asked for ahead of time.
pub const MAX_ADVANCE_US: u32 = 512_000_000;

/// Start a simulated radio; it stops when `shutdown` is cancelled.
pub async fn spawn(config: SimRadioConfig, shutdown: CancellationToken) -> Result<Radio, SimError> {
    let air = match &config.hub {
        SimHub::InProcess(h) => h.clone(),
        SimHub::Address(a) => connect_hub(*a, shutdown.clone()).await?,
    };
    let (dtx, drx) = mpsc::channel(256);
    let node = air
        .attach(
            NodeConfig {
                position: config.position,
                antenna_gain_dbi: config.antenna_gain_dbi,
                listen: Listen::hotspot(),
            },
            dtx,
        )
        .await?;
    let (events_tx, events) = mpsc::channel(256);
    let (control, crx) = RadioControl::channel(64);
    let backend = Backend {
        air,
        node,
        cfg: config,
        t0: Instant::now(),
        events: events_tx,
        scheduled: Vec::new(),
        stats: RadioStats::default(),
    };
    tokio::spawn(backend.run(drx, crx, shutdown));
    Ok(Radio {
        events,
        control,
        capabilities: RadioCapabilities {
            lbt: false,
            gps_timed_tx: false,
            rx_channels: 8,
            max_tx_power_dbm: None,
        },
        counters: drivers::radio::RadioCounters::none(),
    })
}

struct Backend {
    air: AirHandle,
    node: super::air::NodeId,
    cfg: SimRadioConfig,
    t0: Instant,
    events: mpsc::Sender<RadioEvent>,
    scheduled: Vec<(Instant, u64, Transmission)>,
    stats: RadioStats,
}

impl Backend {
    fn counter(&self) -> u32 {
        self.t0.elapsed().as_micros() as u32
    }

    async fn run(
        mut self,
        mut deliveries: mpsc::Receiver<Delivery>,
        mut commands: mpsc::Receiver<TxCommand>,
        shutdown: CancellationToken,
    ) {
        let _ = self.events.send(RadioEvent::Health(RadioHealth::Up)).await;
        let mut stats_tick = tokio::time::interval(self.cfg.stats_interval);
        stats_tick.tick().await;
        loop {
            let next_tx = self
                .scheduled
                .iter()
                .map(|s| s.0)
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                d = deliveries.recv() => {
                    let Some(d) = d else {
                        let _ = self.events.send(RadioEvent::Health(RadioHealth::Down(
                            "the simulated air has stopped".into()))).await;
                        break;
                    };
                    if !self.uplink(d).await {
                        break;
                    }
                }
                c = commands.recv() => {
                    let Some(c) = c else { break };
                    self.stats.tx_requested += 1;
                    let status = self.request(c.request).await;
                    let _ = c.reply.send(status);
                }
                _ = tokio::time::sleep_until(next_tx) => self.send_due().await,
                _ = stats_tick.tick() => {
                    let ev = RadioEvent::Stats { gateway: self.cfg.gateway, stats: self.stats.clone() };
                    if self.events.send(ev).await.is_err() {
                        break;
                    }
                }
            }
        }
        self.air.detach(self.node).await;
    }

    async fn uplink(&mut self, d: Delivery) -> bool {
        self.stats.rx_received += 1;
        self.stats.rx_ok += 1;
        self.stats.rx_forwarded += 1;
        let f = d.frame;
        let frame = RxFrame {
            meta: RxMeta::single_channel(
                f.freq_hz,
                f.modulation,
                self.counter(),
                d.rssi_dbm.round() as i32,
                Some(((d.snr_db * 4.0).round() / 4.0) as f32),
                if f.crc {
                    CrcStatus::Ok
                } else {
                    CrcStatus::Missing
                },
            ),
            payload: f.payload,
        };
        let ev = RadioEvent::Uplinks {
            gateway: self.cfg.gateway,
            frames: vec![frame],
            ack: StoreAck::none(),
        };
        self.events.send(ev).await.is_ok()
    }

    async fn request(&mut self, r: TxRequest) -> TxStatus {
        if r.payload.len() > 255 {
            return TxStatus::InternalError;
        }
        let frame = Transmission {
            freq_hz: r.freq_hz,
            modulation: r.modulation,
            power_dbm: f64::from(r.power_dbm),
            invert_iq: r.invert_iq,
            preamble: r.preamble.unwrap_or(8),
            crc: r.crc,
            payload: r.payload,
        };
        let airtime = frame.airtime_us();
        let now = Instant::now();
        let start = match r.timing {
            TxTiming::AtGpsTime(_) => return TxStatus::GpsUnlocked,
            TxTiming::Immediate => now,
            TxTiming::AtCounter(c) => {
                let ahead = c.wrapping_sub(self.counter());
                if !(MIN_LEAD_US..=u32::MAX / 2).contains(&ahead) {
                    return TxStatus::TooLate;
                }
                if ahead > MAX_ADVANCE_US {
                    return TxStatus::TooEarly;
                }
                now + Duration::from_micros(u64::from(ahead))
            }
        };
        // Reject overlaps with frames already scheduled (airtime + 1 ms margin).
        let end = start + Duration::from_micros(airtime + 1_000);
        let overlaps = self.scheduled.iter().any(|(s, a, _)| {
            let e = *s + Duration::from_micros(*a + 1_000);
            *s < end && start < e
        });
        if overlaps {
            return TxStatus::CollisionPacket;
        }
        if self.scheduled.len() >= 32 {
            return TxStatus::QueueFull;
        }
        self.scheduled.push((start, airtime, frame));
        if r.timing == TxTiming::Immediate {
            self.send_due().await;
        }
        TxStatus::Ok
    }

    async fn send_due(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.scheduled)
            .into_iter()
            .partition(|s| s.0 <= now);
        self.scheduled = later;
        for (_, _, frame) in due {
            match self.air.transmit(self.node, frame).await {
                Ok(()) => self.stats.tx_emitted += 1,
                Err(e) => log::warn!("simulated radio: transmission refused by the air: {e}"),
            }
        }
    }
}

#[cfg(test)]
#[path = "radio_tests.rs"]
mod tests;
