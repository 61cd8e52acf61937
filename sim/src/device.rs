//! One simulated LoRaWAN 1.0.x Class A end device as a pure state machine.
//!
//! The device is polled with the current simulated time ([`Device::poll`]) and returns the
//! frame to put on the air, if any; frames heard on the air are given to
//! [`Device::on_downlink`] with the time they ended. It does OTAA joins (join-request,
//! RX1/RX2 at +5 s/+6 s, join-accept decrypt + MIC check → session) with retry backoff, or
//! runs ABP; then sends data uplinks with RX1/RX2 at +RxDelay/+RxDelay+1 s (RxDelay from the
//! join-accept, 1 s for ABP) and counts the downlinks it decodes. RX1 uses the uplink's
//! channel and data rate (RX1DROffset 0); CFList and MAC commands are not interpreted.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use drivers::radio::{Eui64, Modulation};

use super::air::{SimTime, Transmission};
use super::crypto::{self, DataParams, Key, Session};
use super::model::same_channel_kind;

/// How the device gets its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Over-the-air activation; after `abp_fallback_after` unanswered join attempts (when
    /// set), switch to the ABP session `fallback` so that uplinks flow without a network
    /// server.
    Otaa {
        /// Unanswered join attempts before falling back to ABP (`None` = keep joining).
        abp_fallback_after: Option<u32>,
        /// The ABP session used after the fallback.
        fallback: Session,
    },
    /// Activation by personalisation: the session is provisioned.
    Abp(Session),
}

/// Static configuration of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConfig {
    /// DevEUI.
    pub dev_eui: Eui64,
    /// JoinEUI (AppEUI).
    pub join_eui: Eui64,
    /// AppKey.
    pub app_key: Key,
    /// OTAA or ABP.
    pub activation: Activation,
    /// Mean time between data uplinks, µs (±10 % jitter).
    pub interval_us: u64,
    /// Application payload bytes per uplink.
    pub payload_len: usize,
    /// FPort of data uplinks.
    pub fport: u8,
    /// Uplink data rate (RX1 uses the same, RX1DROffset 0).
    pub modulation: Modulation,
    /// Uplink channels, Hz; one is picked at random per frame.
    pub channels_hz: Vec<u64>,
    /// Conducted transmit power, dBm.
    pub power_dbm: f64,
    /// RX2 frequency, Hz.
    pub rx2_freq_hz: u64,
    /// RX2 data rate.
    pub rx2_modulation: Modulation,
    /// First join retry delay, µs; doubles per attempt up to `join_backoff_max_us`.
    pub join_backoff_us: u64,
    /// Largest join retry delay, µs.
    pub join_backoff_max_us: u64,
    /// How far a downlink's start may be from the window opening, µs.
    pub window_tolerance_us: u64,
}

/// What a device has done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    /// Join-requests sent.
    pub join_requests: u64,
    /// Join-accepts decoded (MIC valid).
    pub joins: u64,
    /// Data uplinks sent.
    pub uplinks: u64,
    /// Data downlinks decoded in a receive window (MIC valid).
    pub downlinks: u64,
    /// Frames heard in a window that were not for this device or failed the MIC.
    pub rejected: u64,
    /// Switches from OTAA to the ABP fallback.
    pub abp_fallbacks: u64,
}

/// What [`Device::on_downlink`] did with a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownlinkOutcome {
    /// Not in an open receive window (wrong time, frequency or data rate).
    OutsideWindow,
    /// A join-accept was decoded; the device now has this session.
    Joined(Session),
    /// A data downlink was decoded.
    Data(crypto::DataFrame),
    /// In a window but not for this device, or the MIC failed.
    Rejected(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowKind {
    Join { dev_nonce: u16 },
    Data,
}

#[derive(Debug, Clone, Copy)]
struct Windows {
    kind: WindowKind,
    rx1_at: SimTime,
    rx1_freq: u64,
    rx1_mod: Modulation,
    rx2_at: SimTime,
}

/// A simulated end device.
pub struct Device {
    cfg: DeviceConfig,
    rng: ChaCha8Rng,
    session: Option<Session>,
    fcnt_up: u32,
    fcnt_down: u32,
    dev_nonce: u16,
    join_attempts: u32,
    next_tx: SimTime,
    windows: Option<Windows>,
    /// The last windows closed: a frame that started in one ends (and is handed over)
    /// after the window's close when it is long (RX2 at SF12 lasts over a second); a real
    /// radio that caught its preamble keeps receiving it to the end.
    closed: Option<Windows>,
    ack_pending: bool,
    rx1_delay_us: u64,
    counters: DeviceCounters,
}

const JOIN_RX1_US: u64 = 5_000_000;
const RX2_AFTER_RX1_US: u64 = 1_000_000;

impl Device {
    /// A device that first transmits at a random time within one interval after `start`.
    pub fn new(cfg: DeviceConfig, seed: u64, start: SimTime) -> Device {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let first = start + rng.random_range(0..cfg.interval_us.max(1));
        let session = match cfg.activation {
            Activation::Abp(s) => Some(s),
            Activation::Otaa { .. } => None,
        };
        let dev_nonce = rng.random();
        Device {
            cfg,
            rng,
            session,
            fcnt_up: 0,
            fcnt_down: 0,
            dev_nonce,
            join_attempts: 0,
            next_tx: first,
            windows: None,
            closed: None,
            ack_pending: false,
            rx1_delay_us: 1_000_000,
            counters: DeviceCounters::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DeviceConfig {
        &self.cfg
    }

    /// The current session, once joined (or ABP).
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Counters so far.
    pub fn counters(&self) -> &DeviceCounters {
        &self.counters
    }

    /// When the device next wants to be polled.
    pub fn next_wake(&self) -> SimTime {
        match &self.windows {
            Some(w) => self.window_close(w),
            None => self.next_tx,
        }
    }

    fn window_close(&self, w: &Windows) -> SimTime {
        w.rx2_at + self.cfg.window_tolerance_us + 1
    }

    fn jitter(&mut self, base: u64) -> u64 {
        let spread = base / 10;
        base - spread + self.rng.random_range(0..=2 * spread)
    }

    fn close_windows(&mut self, now: SimTime) {
        let Some(w) = self.windows else { return };
        if now < self.window_close(&w) {
            return;
        }
        self.windows = None;
        self.closed = Some(w);
        if let WindowKind::Join { .. } = w.kind {
            if self.session.is_none() {
                self.join_attempts += 1;
                if let Activation::Otaa {
                    abp_fallback_after: Some(n),
                    fallback,
                } = self.cfg.activation
                {
                    if self.join_attempts >= n {
                        self.session = Some(fallback);
                        self.counters.abp_fallbacks += 1;
                        self.next_tx = now;
                        return;
                    }
                }
                let shift = self.join_attempts.saturating_sub(1).min(16);
                let backoff = self
                    .cfg
                    .join_backoff_us
                    .saturating_mul(1 << shift)
                    .min(self.cfg.join_backoff_max_us);
                self.next_tx = now + backoff + self.rng.random_range(0..=backoff / 4);
            }
        }
        self.next_tx = self.next_tx.max(now);
    }

    /// Advance to `now`; returns the frame to transmit now, if one is due.
    pub fn poll(&mut self, now: SimTime) -> Option<Transmission> {
        self.close_windows(now);
        if self.windows.is_some() || now < self.next_tx {
            return None;
        }
        let pick = self.rng.random_range(0..self.cfg.channels_hz.len().max(1));
        let freq = (self.cfg.channels_hz.get(pick).copied()).unwrap_or(self.cfg.rx2_freq_hz);
        let (payload, kind, rx1_delay) = match self.session {
            None => {
                self.dev_nonce = self.dev_nonce.wrapping_add(1);
                self.counters.join_requests += 1;
                let phy = crypto::join_request(
                    self.cfg.join_eui,
                    self.cfg.dev_eui,
                    self.dev_nonce,
                    &self.cfg.app_key,
                );
                let kind = WindowKind::Join {
                    dev_nonce: self.dev_nonce,
                };
                (phy, kind, JOIN_RX1_US)
            }
            Some(s) => {
                let mut data = vec![0u8; self.cfg.payload_len];
                self.rng.fill(&mut data[..]);
                let fcnt = self.fcnt_up.to_be_bytes();
                for (d, c) in data.iter_mut().zip(fcnt) {
                    *d = c;
                }
                let params = DataParams {
                    uplink: true,
                    confirmed: false,
                    ack: std::mem::take(&mut self.ack_pending),
                    fcnt: self.fcnt_up,
                    fport: self.cfg.fport,
                };
                let interval = self.jitter(self.cfg.interval_us);
                self.next_tx = now + interval;
                let phy = crypto::data_frame(&s, params, &data).ok()?;
                self.fcnt_up = self.fcnt_up.wrapping_add(1);
                self.counters.uplinks += 1;
                (phy, WindowKind::Data, self.rx1_delay_us)
            }
        };
        let tx = Transmission {
            freq_hz: freq,
            modulation: self.cfg.modulation,
            power_dbm: self.cfg.power_dbm,
            invert_iq: false,
            preamble: 8,
            crc: true,
            payload,
        };
        let end = now + tx.airtime_us();
        self.windows = Some(Windows {
            kind,
            rx1_at: end + rx1_delay,
            rx1_freq: freq,
            rx1_mod: self.cfg.modulation,
            rx2_at: end + rx1_delay + RX2_AFTER_RX1_US,
        });
        self.next_tx = self.next_tx.max(end + rx1_delay + RX2_AFTER_RX1_US);
        Some(tx)
    }

    /// A frame the device's radio heard, ending at `end`.
    pub fn on_downlink(&mut self, end: SimTime, frame: &Transmission) -> DownlinkOutcome {
        let start = end.saturating_sub(frame.airtime_us());
        // The frame must have started in a window: the open ones, or the last closed ones
        // (a long frame that started in time is handed over at its end, after the close).
        let current = self.windows.filter(|w| self.in_window(w, start, frame));
        let Some(w) = current.or(self.closed.filter(|w| self.in_window(w, start, frame))) else {
            return DownlinkOutcome::OutsideWindow;
        };
        if !frame.invert_iq {
            return DownlinkOutcome::OutsideWindow;
        }
        let outcome = match (w.kind, self.session) {
            (WindowKind::Join { dev_nonce }, None) => {
                match crypto::open_join_accept(&frame.payload, &self.cfg.app_key, dev_nonce) {
                    Ok(ja) => {
                        self.session = Some(ja.session);
                        self.fcnt_up = 0;
                        self.fcnt_down = 0;
                        self.join_attempts = 0;
                        self.rx1_delay_us = u64::from(ja.rx_delay.max(1)) * 1_000_000;
                        self.counters.joins += 1;
                        self.next_tx = end + self.jitter(1_000_000);
                        DownlinkOutcome::Joined(ja.session)
                    }
                    Err(e) => DownlinkOutcome::Rejected(e.to_string()),
                }
            }
            (WindowKind::Data, Some(s)) => {
                match crypto::open_data_frame(&frame.payload, &s, self.fcnt_down) {
                    Ok(f) if !f.uplink && f.fcnt >= self.fcnt_down => {
                        self.fcnt_down = f.fcnt.wrapping_add(1);
                        self.ack_pending = f.confirmed;
                        self.counters.downlinks += 1;
                        DownlinkOutcome::Data(f)
                    }
                    Ok(f) => DownlinkOutcome::Rejected(format!("stale FCnt {}", f.fcnt)),
                    Err(e) => DownlinkOutcome::Rejected(e.to_string()),
                }
            }
            _ => DownlinkOutcome::Rejected("unexpected frame kind for the window".into()),
        };
        match outcome {
            DownlinkOutcome::Rejected(_) => self.counters.rejected += 1,
            _ => {
                if current.is_some() {
                    self.windows = None;
                }
                self.closed = None;
            }
        }
        outcome
    }

    /// Whether a frame starting at `start` falls in RX1 or RX2 of `w` (time within the
    /// tolerance, frequency and data rate).
    fn in_window(&self, w: &Windows, start: SimTime, frame: &Transmission) -> bool {
        let tol = self.cfg.window_tolerance_us;
        let near = |at: SimTime| start.abs_diff(at) <= tol;
        let in_rx1 = near(w.rx1_at)
            && frame.freq_hz == w.rx1_freq
            && same_channel_kind(&frame.modulation, &w.rx1_mod);
        let in_rx2 = near(w.rx2_at)
            && frame.freq_hz == self.cfg.rx2_freq_hz
            && same_channel_kind(&frame.modulation, &self.cfg.rx2_modulation);
        in_rx1 || in_rx2
    }
}

#[cfg(test)]
#[path = "device_tests.rs"]
mod tests;
