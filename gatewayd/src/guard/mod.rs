//! The regulatory guard: the one place every transmission passes (downlinks, and
//! proof-of-coverage beacons), so that nothing leaves the antenna outside the region's
//! channels, data rates, EIRP, dwell time, duty cycle or listen-before-talk rules.
//!
//! [`Guard::approve`] is pure decision logic over the current time given as an argument; it
//! clamps the power, reserves the frame's airtime in the [`DutyCycleLedger`] and returns an
//! [`Approved`] transmission, or a [`Refusal`]. If the backend then does not send it,
//! [`Guard::release`] refunds the airtime. [`TxGate`] owns the guard and the radio's
//! control handle together so that the daemon's only way to transmit goes through both.
//!
//! Time: by default the guard charges airtime at the `now` its callers give. The daemon
//! gives it a [`LedgerClock`] ([`Guard::with_ledger_clock`]): airtime is then charged on the
//! ledger's own timeline, which wall-clock steps do not move ([`clock`]); the callers' wall
//! `now` only says how far ahead a GPS-timed transmission is.
//!
//! Direction: a request with inverted IQ is a downlink (downlink channels and DRs); one
//! without is heard by other gateways as an uplink (a beacon) and obeys the uplink rules.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use drivers::airtime::{time_on_air, FrameShape};
use drivers::radio::{CodeRate, Modulation, TxRequest, TxTiming};

use crate::region::{
    occupied_bandwidth_hz, Band, Direction, LbtParams, LbtRule, Region, DWELL_TIME_LIMIT,
};

pub mod clock;
#[cfg(test)]
mod clock_proptests;
mod gate;
mod ledger;
pub mod ledger_check;
#[cfg(test)]
mod proptests;
mod refusal;
#[cfg(test)]
mod tests;

pub use clock::{KernelClock, LedgerClock, Monotonic, Resumed, TimelineMark};
pub use gate::{SendError, TxGate};
pub use ledger::{Charge, DutyCycleLedger, LedgerError};
pub use refusal::{Counters, CountersSnapshot, Refusal};

/// One hour: the duty-cycle observation window.
pub const DUTY_CYCLE_WINDOW: Duration = Duration::from_secs(3600);

/// How much later than its approval a transmission may leave the antenna (Class A RX2 of a
/// join-accept is 6 s after the uplink). The duty-cycle window is widened by this much on
/// both sides so the budget holds in every hour of actual transmissions.
pub const SCHEDULE_SLACK: Duration = Duration::from_secs(10);

/// Installation settings the guard needs besides the region.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardConfig {
    /// Antenna gain in dBi (may be negative).
    pub antenna_gain_dbi: f32,
    /// Loss of the cable between radio and antenna in dB (≥ 0).
    pub cable_loss_db: f32,
    /// US915/AU915 sub-band 1..=8: uplink-like transmissions (beacons) stay in its channels.
    pub sub_band: Option<u8>,
    /// The radio backend performs listen-before-talk itself.
    pub backend_can_lbt: bool,
    /// The hotspot operates under Japanese rules (AS923-1 only): LBT, EIRP ≤ 13 dBm, DR ≤ 5.
    pub japan: bool,
    /// Apply the 400 ms dwell limit to downlinks too (AS923 countries whose rules need it).
    pub downlink_dwell: bool,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            antenna_gain_dbi: 0.0,
            cable_loss_db: 0.0,
            sub_band: None,
            backend_can_lbt: false,
            japan: false,
            downlink_dwell: false,
        }
    }
}

/// The guard's settings are inconsistent with each other or the region.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GuardError {
    /// Antenna gain or cable loss is not a finite number, or the loss is negative.
    #[error(
        "antenna_gain_dbi = {gain}, cable_loss_db = {loss}: both must be finite and the loss ≥ 0"
    )]
    BadGainOrLoss {
        /// Antenna gain.
        gain: f32,
        /// Cable loss.
        loss: f32,
    },
    /// A sub-band was given for a region without sub-bands, or outside 1..=8.
    #[error("sub_band {sub_band}: {region} {why}")]
    BadSubBand {
        /// Region name.
        region: &'static str,
        /// The sub-band.
        sub_band: u8,
        /// What is wrong.
        why: &'static str,
    },
    /// Japanese rules asked for a region other than AS923-1.
    #[error("Japanese rules apply to AS923-1 only, not {region}")]
    JapanOutsideAs923 {
        /// Region name.
        region: &'static str,
    },
}

/// What the guard decided for an acceptable request (without reserving anything).
#[derive(Debug, Clone, PartialEq)]
pub struct GuardVerdict {
    /// Conducted power the radio may use (the request's, lowered to the limit).
    pub power_dbm: i8,
    /// Whether the request's power was lowered.
    pub clamped: bool,
    /// The data rate.
    pub dr: u8,
    /// Direction the request counts as.
    pub direction: Direction,
    /// The frame's airtime.
    pub airtime: Duration,
    /// The band the frame lies in.
    pub band: &'static Band,
    /// When the transmission is expected to start, on the duty-cycle timeline (the callers'
    /// `now` unless the guard has a [`LedgerClock`]).
    pub start: SystemTime,
    /// LBT the backend must perform, if the region requires it.
    pub lbt: Option<LbtParams>,
}

/// Duty-cycle use of one band (for status and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BandUse {
    /// Band name, as in refusals and the ledger.
    pub band: &'static str,
    /// Airtime charged in the window the guard checks.
    pub used: Duration,
    /// The band's airtime budget per sliding hour.
    pub budget: Duration,
}

/// An approved transmission. Only [`Guard::approve`] makes one; send it with
/// [`Approved::into_parts`], and hand the [`Receipt`] back to [`Guard::release`] if the
/// backend did not transmit.
#[derive(Debug, PartialEq)]
pub struct Approved {
    request: TxRequest,
    verdict: GuardVerdict,
    receipt: Receipt,
}

/// Proof of the airtime an approval reserved; consumed by [`Guard::release`].
#[derive(Debug, PartialEq, Eq)]
pub struct Receipt {
    charge: Option<i64>,
}

impl Approved {
    /// The request as approved (power clamped).
    pub fn request(&self) -> &TxRequest {
        &self.request
    }

    /// The decision details (DR, airtime, band, LBT).
    pub fn verdict(&self) -> &GuardVerdict {
        &self.verdict
    }

    /// The request to hand to the radio, and the receipt to release the airtime with.
    pub fn into_parts(self) -> (TxRequest, Receipt) {
        (self.request, self.receipt)
    }
}

/// The regulatory guard of one region and installation.
#[derive(Debug)]
pub struct Guard {
    region: &'static Region,
    config: GuardConfig,
    ledger: DutyCycleLedger,
    counters: Arc<Counters>,
    /// The duty-cycle timeline; `None`: the callers' `now`.
    clock: Option<LedgerClock>,
}

/// Conducted power (dBm) that radiates `eirp_dbm` through the antenna and cable, rounded
/// down to whole dB. A 0.0001 dB tolerance absorbs `f32` representation error, so that
/// 16.15 − 2.15 gives 14, not 13 (it never lets a real fraction of a dB through).
fn conducted_floor(eirp_dbm: f32, gain: f32, loss: f32) -> i8 {
    let x = f64::from(eirp_dbm) - f64::from(gain) + f64::from(loss);
    let x = (x + 1e-4).floor();
    x.clamp(f64::from(i8::MIN), f64::from(i8::MAX)) as i8
}

/// When a request leaves the antenna, as far as the guard can tell.
fn start_time(now: SystemTime, timing: &TxTiming) -> SystemTime {
    match *timing {
        TxTiming::Immediate | TxTiming::AtCounter(_) => now,
        TxTiming::AtGpsTime(d) => {
            let utc = drivers::time::from_gps_epoch(d);
            utc.filter(|t| *t > now).unwrap_or(now)
        }
    }
}

impl Guard {
    /// A guard for `region` with the installation `config`, charging airtime to `ledger`.
    pub fn new(
        region: &'static Region,
        config: GuardConfig,
        ledger: DutyCycleLedger,
    ) -> Result<Guard, GuardError> {
        let (gain, loss) = (config.antenna_gain_dbi, config.cable_loss_db);
        if !gain.is_finite() || !loss.is_finite() || loss < 0.0 {
            return Err(GuardError::BadGainOrLoss { gain, loss });
        }
        if let Some(sb) = config.sub_band {
            let why = if !region.has_sub_bands() {
                Some("has no sub-bands")
            } else if !(1..=8).contains(&sb) {
                Some("sub-bands are 1..=8")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(GuardError::BadSubBand {
                    region: region.name,
                    sub_band: sb,
                    why,
                });
            }
        }
        if config.japan && !matches!(region.lbt, LbtRule::Japan { .. }) {
            return Err(GuardError::JapanOutsideAs923 {
                region: region.name,
            });
        }
        Ok(Guard {
            region,
            config,
            ledger,
            counters: Arc::new(Counters::default()),
            clock: None,
        })
    }

    /// Charge airtime on the ledger's own timeline, advancing with `source` and resumed
    /// from the ledger file at wall time `wall_now` (see [`clock`]); says how it resumed.
    pub fn with_ledger_clock(
        mut self,
        source: Arc<dyn Monotonic>,
        wall_now: SystemTime,
    ) -> Result<(Guard, Resumed), LedgerError> {
        let mark = self.ledger.timeline_mark()?;
        let latest = self.ledger.latest_start()?;
        let (clock, resumed) = LedgerClock::resume(source, mark.as_ref(), latest, wall_now);
        self.clock = Some(clock);
        Ok((self, resumed))
    }

    /// `wall` (a time relative to the callers' `now`) on the duty-cycle timeline. A time
    /// more than a window ahead (a GPS time against an unsynchronized wall clock) counts one
    /// window ahead, where every check of the next hour still sees it.
    fn on_timeline(&self, now: SystemTime, wall: SystemTime) -> SystemTime {
        match &self.clock {
            None => wall,
            Some(c) => {
                c.now()
                    + wall
                        .duration_since(now)
                        .unwrap_or_default()
                        .min(DUTY_CYCLE_WINDOW)
            }
        }
    }

    /// The guard's region.
    pub fn region(&self) -> &'static Region {
        self.region
    }

    /// The installation settings.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// The counters, shared with whoever reports metrics.
    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// Max EIRP at `freq_hz` under this guard's rules (band limit, Japan cap).
    pub fn max_eirp_dbm(&self, freq_hz: u64) -> Option<f32> {
        self.region
            .max_eirp_dbm(freq_hz)
            .map(|band| self.cap_eirp(band))
    }

    /// A band's EIRP limit, lowered by the Japanese cap where it applies.
    fn cap_eirp(&self, band_eirp_dbm: f32) -> f32 {
        match self.region.lbt {
            LbtRule::Japan { max_eirp_dbm, .. } if self.config.japan => {
                band_eirp_dbm.min(max_eirp_dbm)
            }
            _ => band_eirp_dbm,
        }
    }

    /// The highest conducted power allowed at `freq_hz`: max EIRP − antenna gain + cable loss.
    pub fn conducted_limit_dbm(&self, freq_hz: u64) -> Option<i8> {
        self.max_eirp_dbm(freq_hz).map(|eirp| {
            conducted_floor(
                eirp,
                self.config.antenna_gain_dbi,
                self.config.cable_loss_db,
            )
        })
    }

    /// The conducted power that radiates `eirp_dbm` (ChirpStack asks for EIRP), rounded down.
    pub fn conducted_for_eirp(&self, eirp_dbm: f32) -> i8 {
        conducted_floor(
            eirp_dbm,
            self.config.antenna_gain_dbi,
            self.config.cable_loss_db,
        )
    }

    /// Evaluate `req` at `now` against every rule without reserving airtime.
    pub fn check(&self, now: SystemTime, req: &TxRequest) -> Result<GuardVerdict, Refusal> {
        let region = self.region;
        let direction = if req.invert_iq {
            Direction::Downlink
        } else {
            Direction::Uplink
        };
        let bw_hz = occupied_bandwidth_hz(&req.modulation);
        let band = region
            .band_for(req.freq_hz, bw_hz)
            .filter(|_| {
                region.is_channel_allowed(req.freq_hz, bw_hz, direction, self.config.sub_band)
            })
            .ok_or(Refusal::FrequencyNotAllowed {
                region: region.name,
                freq_hz: req.freq_hz,
                bw_hz,
                direction,
            })?;

        let dr_refusal = |why| Refusal::DataRateNotAllowed {
            region: region.name,
            modulation: req.modulation,
            direction,
            why,
        };
        if let Modulation::Lora { cr, .. } = req.modulation {
            if matches!(cr, Some(CodeRate::Off | CodeRate::Cr13)) {
                return Err(dr_refusal(" (coding rate is not a LoRa one)"));
            }
        }
        let dr = region
            .dr_for_direction(&req.modulation, direction)
            .ok_or(dr_refusal(""))?;
        let japan = match region.lbt {
            LbtRule::Japan { params, max_dr, .. } if self.config.japan => Some((params, max_dr)),
            _ => None,
        };
        if let Some((_, max_dr)) = japan {
            if dr > max_dr {
                return Err(dr_refusal(" (Japanese rules: DR5 at most)"));
            }
        }

        let dwell = region.dwell.applies(direction)
            || (direction == Direction::Downlink && self.config.downlink_dwell);
        let max = region
            .max_payload(dr, dwell)
            .map(|m| usize::from(m) + 5)
            .ok_or(dr_refusal(" (not allowed under the 400 ms dwell limit)"))?;
        if req.payload.len() > max {
            return Err(Refusal::PayloadTooLong {
                region: region.name,
                len: req.payload.len(),
                dr,
                max,
            });
        }

        let shape = FrameShape {
            payload_len: req.payload.len(),
            preamble: req.preamble.unwrap_or(8),
            crc: req.crc,
            implicit_header: false,
        };
        let airtime = time_on_air(&req.modulation, &shape);
        if dwell && airtime > DWELL_TIME_LIMIT {
            return Err(Refusal::DwellTimeExceeded {
                airtime,
                limit: DWELL_TIME_LIMIT,
            });
        }

        let lbt = match (region.lbt, japan) {
            (LbtRule::Required(p), _) | (_, Some((p, _))) => Some(p),
            _ => None,
        };
        if lbt.is_some() && !self.config.backend_can_lbt {
            return Err(Refusal::LbtRequiredButUnsupported {
                region: region.name,
            });
        }

        let start = self.on_timeline(now, start_time(now, &req.timing));
        if let Some(budget) = band.budget_per_hour() {
            self.check_duty_cycle(band, budget, start, airtime)?;
        }

        let limit = self.conducted_for_eirp(self.cap_eirp(band.max_eirp_dbm));
        Ok(GuardVerdict {
            power_dbm: req.power_dbm.min(limit),
            clamped: req.power_dbm > limit,
            dr,
            direction,
            airtime,
            band,
            start,
            lbt,
        })
    }

    fn check_duty_cycle(
        &self,
        band: &'static Band,
        budget: Duration,
        start: SystemTime,
        airtime: Duration,
    ) -> Result<(), Refusal> {
        let reach = DUTY_CYCLE_WINDOW + SCHEDULE_SLACK;
        let after = start.checked_sub(reach).unwrap_or(UNIX_EPOCH);
        let before = start + reach;
        let unavailable = |e: LedgerError| Refusal::LedgerUnavailable(e.to_string());
        let used = self
            .ledger
            .used(self.region.name, band.name, after, before)
            .map_err(unavailable)?;
        if used + airtime <= budget {
            return Ok(());
        }
        // Estimate when enough older charges have left the window.
        let retry_after = if airtime > budget {
            None
        } else {
            let charges = self
                .ledger
                .charges(self.region.name, band.name, after, before)
                .map_err(unavailable)?;
            let mut remaining = used;
            charges.iter().find_map(|c| {
                remaining = remaining.saturating_sub(c.airtime);
                (remaining + airtime <= budget).then(|| {
                    (c.start + reach + Duration::from_micros(1))
                        .duration_since(start)
                        .unwrap_or_default()
                })
            })
        };
        Err(Refusal::DutyCycleExceeded {
            band: band.name,
            used,
            budget,
            airtime,
            retry_after,
        })
    }

    /// Approve `req` at `now`: every rule of [`Guard::check`], then the airtime is charged
    /// to the band (persisted) and the power-clamped request returned. Refusals are counted.
    pub fn approve(&mut self, now: SystemTime, req: TxRequest) -> Result<Approved, Refusal> {
        let result = self.check(now, &req).and_then(|verdict| {
            let mark = self.clock.as_ref().map(LedgerClock::mark);
            let charge = match verdict.band.budget_per_hour() {
                Some(_) => Some(
                    self.ledger
                        .charge_marked(
                            self.region.name,
                            verdict.band.name,
                            verdict.start,
                            verdict.airtime,
                            mark.as_ref(),
                        )
                        .map_err(|e| Refusal::LedgerUnavailable(e.to_string()))?,
                ),
                None => None,
            };
            Ok(Approved {
                request: TxRequest {
                    power_dbm: verdict.power_dbm,
                    ..req
                },
                verdict,
                receipt: Receipt { charge },
            })
        });
        match &result {
            Ok(a) => self.counters.count_approved(a.verdict.clamped),
            Err(r) => {
                log::debug!("guard refused a transmission: {r}");
                self.counters.count_refusal(r);
            }
        }
        result
    }

    /// The backend did not transmit an approved request: give its airtime back.
    pub fn release(&mut self, receipt: Receipt) -> Result<(), LedgerError> {
        self.counters.count_released();
        if let Some(id) = receipt.charge {
            self.ledger.refund(id)?;
        }
        Ok(())
    }

    /// Airtime used and budget of every duty-cycled band of the region, as the guard sees
    /// them at `now` (the same window [`Guard::approve`] checks), in the region's band order.
    pub fn duty_cycle_use(&self, now: SystemTime) -> Result<Vec<BandUse>, LedgerError> {
        self.region
            .bands
            .iter()
            .filter_map(|band| band.budget_per_hour().map(|budget| (band, budget)))
            .map(|(band, budget)| {
                Ok(BandUse {
                    band: band.name,
                    used: self.duty_cycle_used(now, band.name)?,
                    budget,
                })
            })
            .collect()
    }

    /// Airtime charged to `band` in the duty-cycle window around `now`.
    pub fn duty_cycle_used(&self, now: SystemTime, band: &str) -> Result<Duration, LedgerError> {
        let now = self.on_timeline(now, now);
        let reach = DUTY_CYCLE_WINDOW + SCHEDULE_SLACK;
        self.ledger.used(
            self.region.name,
            band,
            now.checked_sub(reach).unwrap_or(UNIX_EPOCH),
            now + reach,
        )
    }
}
