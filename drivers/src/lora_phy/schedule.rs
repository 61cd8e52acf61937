//! Transmit scheduling as pure logic: the microsecond counter (`tmst`), request checks,
//! and a small queue of timed transmissions. Time is passed in; nothing here sleeps.

use std::time::{Duration, Instant};

use super::config::LoraPhySettings;
use crate::airtime::{time_on_air, FrameShape};
use crate::radio::{Modulation, TxRequest, TxStatus, TxTiming};

/// Receive is interrupted this long before a timed transmission to program the chip.
pub const PREP_LEAD: Duration = Duration::from_millis(30);
/// A timed frame whose programming finishes later than this after its instant is not sent.
pub const LATE_TOLERANCE: Duration = Duration::from_millis(5);
/// A timed transmission further ahead than this is refused (`TooEarly`).
pub const MAX_AHEAD: Duration = Duration::from_secs(20);
/// Transmissions waiting at once.
pub const QUEUE_CAPACITY: usize = 16;

/// The backend's microsecond counter: time since the backend started, wrapping at 2^32
/// (about 71.6 minutes), like a concentrator's `tmst`.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A counter starting at zero at `start`.
    pub fn new(start: Instant) -> Clock {
        Clock { start }
    }

    /// The counter at `t` (instants before the start read as 0).
    pub fn counter_at(&self, t: Instant) -> u32 {
        t.saturating_duration_since(self.start).as_micros() as u64 as u32
    }

    /// Signed microseconds from `now` to the counter value `target` (the nearest
    /// interpretation across the wrap).
    pub fn until(&self, target: u32, now: Instant) -> i64 {
        i64::from(target.wrapping_sub(self.counter_at(now)) as i32)
    }
}

/// The request as this radio sends it, or why it cannot (the status the daemon reports).
///
/// Power: the guard approved `power_dbm` as an upper bound, so a power beyond the chip's
/// `tx_power_max_dbm` is lowered to it (less is always legal), as a concentrator picks the
/// highest power of its table not above the one asked. Without this, ChirpStack's default
/// RX2 power in EU868 (29 dBm EIRP at 869.525 MHz) would be refused on every SPI radio.
/// A power below `tx_power_min_dbm` is refused (`TxPower`): raising it would exceed what
/// the guard approved.
pub fn check_request(mut req: TxRequest, s: &LoraPhySettings) -> Result<TxRequest, TxStatus> {
    let freq_ok = u32::try_from(req.freq_hz).is_ok_and(|f| s.chip.freq_range_hz().contains(&f));
    if !freq_ok {
        return Err(TxStatus::TxFreq);
    }
    if req.power_dbm < s.tx_power_min_dbm {
        return Err(TxStatus::TxPower);
    }
    req.power_dbm = req.power_dbm.min(s.tx_power_max_dbm);
    match req.modulation {
        Modulation::Lora { sf, bw_hz, .. } => {
            if !s.chip.sf_range().contains(&sf) || !matches!(bw_hz, 125_000 | 250_000 | 500_000) {
                return Err(TxStatus::TxFreq);
            }
            if bw_hz > 125_000 && req.freq_hz < 400_000_000 && s.chip.is_sx126x() {
                return Err(TxStatus::TxFreq);
            }
        }
        // FSK and LR-FHSS are not driven through lora-phy here.
        _ => return Err(TxStatus::TxFreq),
    }
    if req.payload.len() > 255 {
        return Err(TxStatus::InternalError);
    }
    Ok(req)
}

/// Time on air of a request.
pub fn airtime(req: &TxRequest) -> Duration {
    let shape = FrameShape {
        payload_len: req.payload.len(),
        preamble: req.preamble.unwrap_or(8),
        crc: req.crc,
        implicit_header: false,
    };
    time_on_air(&req.modulation, &shape)
}

/// A transmission with its slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    /// When the frame must leave the antenna.
    pub start: Instant,
    /// When it has left.
    pub end: Instant,
    /// What to send.
    pub request: TxRequest,
}

impl Scheduled {
    /// How late the frame would leave if the chip is started at `now`, when that is more
    /// than [`LATE_TOLERANCE`] past an instant it must keep (`AtCounter`): such a frame is
    /// dropped, never sent late. An `Immediate` frame has no instant to miss (`start` is
    /// only when it was accepted): it goes as soon as the chip is programmed, however long
    /// that takes (a slow SPI bus, a loaded CPU, a transmission still on air), so it is
    /// never late.
    pub fn late_by(&self, now: Instant) -> Option<Duration> {
        if self.request.timing == TxTiming::Immediate {
            return None;
        }
        let late = now.saturating_duration_since(self.start);
        (late > LATE_TOLERANCE).then_some(late)
    }
}

/// Transmissions waiting for their time, earliest first.
#[derive(Debug, Default)]
pub struct TxQueue {
    items: Vec<Scheduled>,
}

impl TxQueue {
    /// Place a checked request (see [`check_request`]) in the queue at `now`.
    pub fn schedule(
        &mut self,
        request: TxRequest,
        now: Instant,
        clock: &Clock,
    ) -> Result<(), TxStatus> {
        let start = match request.timing {
            TxTiming::Immediate => now,
            TxTiming::AtGpsTime(_) => return Err(TxStatus::GpsUnlocked),
            TxTiming::AtCounter(t) => {
                let us = clock.until(t, now);
                if us < PREP_LEAD.as_micros() as i64 {
                    return Err(TxStatus::TooLate);
                }
                if us > MAX_AHEAD.as_micros() as i64 {
                    return Err(TxStatus::TooEarly);
                }
                now + Duration::from_micros(us as u64)
            }
        };
        if self.items.len() >= QUEUE_CAPACITY {
            return Err(TxStatus::QueueFull);
        }
        let end = start + airtime(&request);
        if self.items.iter().any(|s| start < s.end && s.start < end) {
            return Err(TxStatus::CollisionPacket);
        }
        let at = self.items.partition_point(|s| s.start <= start);
        self.items.insert(
            at,
            Scheduled {
                start,
                end,
                request,
            },
        );
        Ok(())
    }

    /// When receive must be interrupted for the next transmission.
    pub fn next_prep_at(&self) -> Option<Instant> {
        self.items
            .first()
            .map(|s| s.start.checked_sub(PREP_LEAD).unwrap_or(s.start))
    }

    /// The next transmission if its preparation time has come.
    pub fn pop_due(&mut self, now: Instant) -> Option<Scheduled> {
        match self.next_prep_at() {
            Some(at) if at <= now => Some(self.items.remove(0)),
            _ => None,
        }
    }

    /// Remove everything (the chip failed); returns how many were dropped.
    pub fn clear(&mut self) -> usize {
        let n = self.items.len();
        self.items.clear();
        n
    }

    /// Number waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radio::CodeRate;

    fn req(timing: TxTiming) -> TxRequest {
        TxRequest {
            freq_hz: 869_525_000,
            power_dbm: 14,
            modulation: Modulation::Lora {
                sf: 9,
                bw_hz: 125_000,
                cr: Some(CodeRate::Cr45),
            },
            invert_iq: true,
            preamble: None,
            crc: false,
            timing,
            rf_chain: 0,
            board: 0,
            antenna: 0,
            payload: vec![0; 20],
        }
    }

    #[test]
    fn counter_wraps_and_signs() {
        let t0 = Instant::now();
        let c = Clock::new(t0);
        assert_eq!(c.counter_at(t0 + Duration::from_micros(1_500)), 1_500);
        let later = t0 + Duration::from_micros((1u64 << 32) + 10);
        assert_eq!(c.counter_at(later), 10);
        assert_eq!(c.until(5, later), -5);
        assert_eq!(c.until(1_000_010, later), 1_000_000);
        assert_eq!(c.until(u32::MAX, t0 + Duration::from_micros(2)), -3);
    }

    #[test]
    fn timing_limits_and_collisions() {
        let t0 = Instant::now();
        let c = Clock::new(t0);
        let now = t0 + Duration::from_secs(1);
        let n = c.counter_at(now);
        let mut q = TxQueue::default();
        assert_eq!(
            q.schedule(req(TxTiming::AtCounter(n.wrapping_add(1_000))), now, &c),
            Err(TxStatus::TooLate)
        );
        assert_eq!(
            q.schedule(req(TxTiming::AtCounter(n.wrapping_sub(1_000))), now, &c),
            Err(TxStatus::TooLate)
        );
        assert_eq!(
            q.schedule(
                req(TxTiming::AtCounter(n.wrapping_add(25_000_000))),
                now,
                &c
            ),
            Err(TxStatus::TooEarly)
        );
        assert_eq!(
            q.schedule(req(TxTiming::AtGpsTime(Duration::from_secs(1))), now, &c),
            Err(TxStatus::GpsUnlocked)
        );
        assert_eq!(
            q.schedule(req(TxTiming::AtCounter(n + 2_000_000)), now, &c),
            Ok(())
        );
        assert_eq!(
            q.schedule(req(TxTiming::AtCounter(n + 1_000_000)), now, &c),
            Ok(())
        );
        // SF9 20 bytes lasts ~185 ms: 100 ms after the second start overlaps it.
        assert_eq!(
            q.schedule(req(TxTiming::AtCounter(n + 2_100_000)), now, &c),
            Err(TxStatus::CollisionPacket)
        );
        assert_eq!(q.len(), 2);
        let first = now + Duration::from_secs(1);
        assert_eq!(q.next_prep_at(), Some(first - PREP_LEAD));
        assert!(q
            .pop_due(first - PREP_LEAD - Duration::from_millis(1))
            .is_none());
        let s = q.pop_due(first - PREP_LEAD).unwrap();
        assert_eq!(s.start, first);
        assert_eq!(s.end - s.start, airtime(&s.request));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn only_frames_with_an_instant_can_be_late() {
        let t0 = Instant::now();
        let c = Clock::new(t0);
        let mut q = TxQueue::default();
        assert_eq!(q.schedule(req(TxTiming::Immediate), t0, &c), Ok(()));
        let immediate = q.pop_due(t0).unwrap();
        assert_eq!(immediate.start, t0);
        // Programmed long after it was accepted (slow bus, or behind another frame on
        // air): still sent, since nothing asked for it to leave at a given instant.
        assert_eq!(immediate.late_by(t0 + LATE_TOLERANCE * 2), None);
        assert_eq!(immediate.late_by(t0 + Duration::from_secs(2)), None);

        let at = c.counter_at(t0) + 1_000_000;
        assert_eq!(q.schedule(req(TxTiming::AtCounter(at)), t0, &c), Ok(()));
        let timed = q.pop_due(t0 + Duration::from_secs(1)).unwrap();
        let instant = t0 + Duration::from_secs(1);
        assert_eq!(timed.start, instant);
        assert_eq!(timed.late_by(instant - PREP_LEAD), None);
        assert_eq!(timed.late_by(instant + LATE_TOLERANCE), None);
        let late = LATE_TOLERANCE + Duration::from_micros(1);
        assert_eq!(timed.late_by(instant + late), Some(late));
    }

    #[test]
    fn requests_outside_the_chip_are_refused() {
        let cfg: crate::lora_phy::Sx126xConfig = toml::from_str(
            "board = \"waveshare-sx1262-hat\"\nfrequency_hz = 868100000\ntx_power_max_dbm = 16\n",
        )
        .unwrap();
        let s = cfg.validate("radio.sx126x").unwrap();
        assert_eq!(
            check_request(req(TxTiming::Immediate), &s),
            Ok(req(TxTiming::Immediate))
        );
        // Above the chip's maximum: sent at the maximum (below the guard's approval).
        let mut r = req(TxTiming::Immediate);
        r.power_dbm = 20;
        let fitted = check_request(r.clone(), &s).unwrap();
        assert_eq!(fitted.power_dbm, 16);
        assert_eq!(fitted, TxRequest { power_dbm: 16, ..r });
        // Below the chip's minimum: raising it would exceed the approval.
        let mut r = req(TxTiming::Immediate);
        r.power_dbm = s.tx_power_min_dbm - 1;
        assert_eq!(check_request(r, &s), Err(TxStatus::TxPower));
        let mut r = req(TxTiming::Immediate);
        r.freq_hz = 2_400_000_000;
        assert_eq!(check_request(r, &s), Err(TxStatus::TxFreq));
        let mut r = req(TxTiming::Immediate);
        r.modulation = Modulation::Fsk { bitrate: 50_000 };
        assert_eq!(check_request(r, &s), Err(TxStatus::TxFreq));
    }
}
