//! The pure downlink scheduler: turns the items of a `gw.DownlinkFrame` into
//! [`TxRequest`]s and walks them as alternatives in order (RX1, then RX2, …) until one is
//! sent, producing the per-item statuses of the `gw.DownlinkTxAck`.
//!
//! No I/O and no clock: the caller feeds each backend answer back with
//! [`Attempt::report`] and asks for the next [`Step`]. The regulatory decision is not made
//! here (the [`TxGate`](crate::guard::TxGate) does it); this only translates the network's
//! request faithfully: EIRP is converted to conducted power with the caller's function
//! (the guard's `conducted_for_eirp`), Class A delays are added to the uplink's counter with
//! the u32 wrap of the concentrator counter.

use std::time::Duration;

use chirpstack_api::gw;
use chirpstack_api::pbjson_types;
use drivers::radio::{CodeRate, Modulation, TxRequest, TxStatus, TxTiming};

use crate::chirpstack::counter_from_context;

/// Why one item of a downlink cannot be turned into a transmit request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    /// The item has no `tx_info`.
    #[error("no tx_info")]
    NoTxInfo,
    /// The item has an empty `phy_payload`.
    #[error("empty phy_payload")]
    EmptyPayload,
    /// `tx_info.modulation` is missing.
    #[error("no modulation")]
    NoModulation,
    /// The LoRa parameters cannot be transmitted (SF, bandwidth or coding rate).
    #[error("LoRa SF{sf} BW {bw_hz} Hz coding rate {code_rate}: not a LoRa downlink")]
    BadLora {
        /// Spreading factor asked.
        sf: u32,
        /// Bandwidth asked.
        bw_hz: u32,
        /// Coding rate asked (`gw.CodeRate` name).
        code_rate: String,
    },
    /// FSK with a zero data rate.
    #[error("FSK with datarate 0")]
    BadFsk,
    /// `tx_info.timing` is missing.
    #[error("no timing")]
    NoTiming,
    /// A `delay` timing without a context carrying the uplink's counter.
    #[error("delay timing needs a 4-byte context (the uplink's counter), got {len} bytes")]
    NoContext {
        /// Length of the context given.
        len: usize,
    },
    /// A duration that is negative, missing or too long for the counter.
    #[error("{what}: {seconds} s {nanos} ns is not a usable duration")]
    BadDuration {
        /// Which timing.
        what: &'static str,
        /// Seconds given.
        seconds: i64,
        /// Nanoseconds given.
        nanos: i32,
    },
}

fn duration(what: &'static str, d: Option<&pbjson_types::Duration>) -> Result<Duration, ItemError> {
    let d = d.copied().unwrap_or_default();
    let bad = ItemError::BadDuration {
        what,
        seconds: d.seconds,
        nanos: d.nanos,
    };
    let secs = u64::try_from(d.seconds).map_err(|_| bad.clone())?;
    let nanos = u32::try_from(d.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or(bad)?;
    Ok(Duration::new(secs, nanos))
}

fn code_rate(cr: gw::CodeRate) -> Option<Option<CodeRate>> {
    match cr {
        gw::CodeRate::CrUndefined => Some(None),
        gw::CodeRate::Cr45 => Some(Some(CodeRate::Cr45)),
        gw::CodeRate::Cr46 => Some(Some(CodeRate::Cr46)),
        gw::CodeRate::Cr47 => Some(Some(CodeRate::Cr47)),
        gw::CodeRate::Cr48 => Some(Some(CodeRate::Cr48)),
        _ => None,
    }
}

/// Modulation, inverted IQ, preamble and CRC of a `gw.Modulation`.
fn modulation(m: &gw::Modulation) -> Result<(Modulation, bool, Option<u16>, bool), ItemError> {
    use gw::modulation::Parameters;
    match m.parameters.as_ref().ok_or(ItemError::NoModulation)? {
        Parameters::Lora(l) => {
            let bad = || ItemError::BadLora {
                sf: l.spreading_factor,
                bw_hz: l.bandwidth,
                code_rate: gw::CodeRate::try_from(l.code_rate)
                    .map_or_else(|_| l.code_rate.to_string(), |c| c.as_str_name().into()),
            };
            let sf = u8::try_from(l.spreading_factor)
                .ok()
                .filter(|sf| (5..=12).contains(sf))
                .ok_or_else(bad)?;
            if l.bandwidth == 0 {
                return Err(bad());
            }
            let cr = gw::CodeRate::try_from(l.code_rate)
                .ok()
                .and_then(code_rate)
                .ok_or_else(bad)?;
            let preamble = u16::try_from(l.preamble).ok().filter(|p| *p != 0);
            let lora = Modulation::Lora {
                sf,
                bw_hz: l.bandwidth,
                cr,
            };
            Ok((lora, l.polarization_inversion, preamble, !l.no_crc))
        }
        Parameters::Fsk(f) => {
            if f.datarate == 0 {
                return Err(ItemError::BadFsk);
            }
            let fsk = Modulation::Fsk {
                bitrate: f.datarate,
            };
            Ok((fsk, false, None, true))
        }
        Parameters::LrFhss(l) => {
            // No region has an LR-FHSS downlink data rate: the guard refuses it by name.
            let cr = gw::CodeRate::try_from(l.code_rate).unwrap_or(gw::CodeRate::CrUndefined);
            let cr = match cr {
                gw::CodeRate::Cr26 => CodeRate::Cr13,
                gw::CodeRate::Cr48 => CodeRate::Cr48,
                _ => CodeRate::Cr23,
            };
            let m = Modulation::LrFhss {
                ocw_hz: l.operating_channel_width,
                cr,
                grid_steps: l.grid_steps,
            };
            Ok((m, false, None, true))
        }
    }
}

fn timing(t: Option<&gw::Timing>, context: &[u8]) -> Result<TxTiming, ItemError> {
    use gw::timing::Parameters;
    match t.and_then(|t| t.parameters.as_ref()) {
        None => Err(ItemError::NoTiming),
        Some(Parameters::Immediately(_)) => Ok(TxTiming::Immediate),
        Some(Parameters::Delay(d)) => {
            let counter =
                counter_from_context(context).ok_or(ItemError::NoContext { len: context.len() })?;
            let delay = duration("delay", d.delay.as_ref())?;
            let us = u32::try_from(delay.as_micros()).map_err(|_| ItemError::BadDuration {
                what: "delay",
                seconds: delay.as_secs() as i64,
                nanos: delay.subsec_nanos() as i32,
            })?;
            // The concentrator counter wraps every 2^32 µs (about 71.6 minutes).
            Ok(TxTiming::AtCounter(counter.wrapping_add(us)))
        }
        Some(Parameters::GpsEpoch(g)) => Ok(TxTiming::AtGpsTime(duration(
            "gps_epoch",
            g.time_since_gps_epoch.as_ref(),
        )?)),
    }
}

/// The transmit request for one downlink item. `power_for_eirp` converts the EIRP ChirpStack
/// asks for (dBm) into conducted power (the guard's `conducted_for_eirp`).
pub fn build_request(
    item: &gw::DownlinkFrameItem,
    power_for_eirp: impl Fn(f32) -> i8,
) -> Result<TxRequest, ItemError> {
    let tx = item.tx_info.as_ref().ok_or(ItemError::NoTxInfo)?;
    if item.phy_payload.is_empty() {
        return Err(ItemError::EmptyPayload);
    }
    let m = tx.modulation.as_ref().ok_or(ItemError::NoModulation)?;
    let (modulation, invert_iq, preamble, crc) = modulation(m)?;
    let timing = timing(tx.timing.as_ref(), &tx.context)?;
    // i32 → f32 is exact for every plausible power; absurd values are clamped by the guard.
    let eirp = tx.power.clamp(-1000, 1000) as f32;
    Ok(TxRequest {
        freq_hz: u64::from(tx.frequency),
        power_dbm: power_for_eirp(eirp),
        modulation,
        invert_iq,
        preamble,
        crc,
        timing,
        rf_chain: 0,
        board: tx.board,
        antenna: tx.antenna,
        payload: item.phy_payload.clone(),
    })
}

/// The `gw.TxAckStatus` reported for a backend's or the guard's [`TxStatus`].
pub fn ack_status(status: TxStatus) -> gw::TxAckStatus {
    match status {
        TxStatus::Ok => gw::TxAckStatus::Ok,
        TxStatus::TooLate => gw::TxAckStatus::TooLate,
        TxStatus::TooEarly => gw::TxAckStatus::TooEarly,
        TxStatus::CollisionPacket => gw::TxAckStatus::CollisionPacket,
        TxStatus::CollisionBeacon => gw::TxAckStatus::CollisionBeacon,
        TxStatus::TxFreq => gw::TxAckStatus::TxFreq,
        TxStatus::TxPower => gw::TxAckStatus::TxPower,
        TxStatus::GpsUnlocked => gw::TxAckStatus::GpsUnlocked,
        TxStatus::QueueFull => gw::TxAckStatus::QueueFull,
        // ChirpStack has no "channel busy" status.
        TxStatus::LbtBusy | TxStatus::InternalError => gw::TxAckStatus::InternalError,
        TxStatus::DutyCycleOverflow => gw::TxAckStatus::DutyCycleOverflow,
    }
}

/// What the caller should do next for a downlink.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Hand `request` (item `index`) to the gate, then [`Attempt::report`] its status.
    Send {
        /// Item index.
        index: usize,
        /// The request.
        request: TxRequest,
    },
    /// Item `index` cannot be sent as given (recorded as `INTERNAL_ERROR`); ask again.
    Skipped {
        /// Item index.
        index: usize,
        /// Why.
        error: ItemError,
    },
    /// Finished: one status per item, to publish as the `gw.DownlinkTxAck`.
    Done(Vec<gw::TxAckStatus>),
}

/// One downlink being worked through: items are alternatives, tried in order until one
/// is sent; items after it stay `IGNORED`.
#[derive(Debug, Clone)]
pub struct Attempt {
    items: Vec<Result<TxRequest, ItemError>>,
    statuses: Vec<gw::TxAckStatus>,
    next: usize,
    awaiting: Option<usize>,
    sent: bool,
}

impl Attempt {
    /// Translate every item of `frame` (see [`build_request`]).
    pub fn new(frame: &gw::DownlinkFrame, power_for_eirp: impl Fn(f32) -> i8) -> Attempt {
        let items: Vec<_> = frame
            .items
            .iter()
            .map(|i| build_request(i, &power_for_eirp))
            .collect();
        Attempt {
            statuses: vec![gw::TxAckStatus::Ignored; items.len()],
            items,
            next: 0,
            awaiting: None,
            sent: false,
        }
    }

    /// The next step. While a [`Step::Send`] awaits its report, this returns the same
    /// request again.
    pub fn step(&mut self) -> Step {
        if let Some(index) = self.awaiting {
            if let Some(Ok(request)) = self.items.get(index) {
                return Step::Send {
                    index,
                    request: request.clone(),
                };
            }
        }
        if self.sent || self.next >= self.items.len() {
            return Step::Done(self.statuses.clone());
        }
        let index = self.next;
        self.next += 1;
        match &self.items[index] {
            Ok(request) => {
                self.awaiting = Some(index);
                Step::Send {
                    index,
                    request: request.clone(),
                }
            }
            Err(error) => {
                self.statuses[index] = gw::TxAckStatus::InternalError;
                Step::Skipped {
                    index,
                    error: error.clone(),
                }
            }
        }
    }

    /// The outcome of the [`Step::Send`] for item `index`. Reports for any other item are
    /// ignored.
    pub fn report(&mut self, index: usize, status: TxStatus) {
        if self.awaiting != Some(index) {
            return;
        }
        self.awaiting = None;
        self.statuses[index] = ack_status(status);
        self.sent = status == TxStatus::Ok;
    }

    /// The statuses so far (`IGNORED` for items not tried yet).
    pub fn statuses(&self) -> &[gw::TxAckStatus] {
        &self.statuses
    }
}
