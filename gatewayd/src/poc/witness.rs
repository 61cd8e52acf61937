//! Turning radio events into PoC reports, for the daemon wiring: witness detection over
//! received frames ([`WitnessDetector`]), and the beacon report of a sent beacon
//! ([`beacon_report`]). Pure: the caller passes time, location and the guard's verdict.

use std::collections::{HashSet, VecDeque};
use std::time::SystemTime;

use drivers::time::unix_ms;

use drivers::radio::{Modulation, RxFrame};

use super::beacon::{self, BeaconPlan, BODY_LEN};
use super::report::{BeaconReport, WitnessReport};
use super::wire::{PositionSource, TimeSource, WirePosition};
use crate::guard::GuardConfig;
use crate::position::{LocationSource, SourcedLocation};
use crate::region::Region;

/// How many recently seen beacon bodies are remembered (own and witnessed).
pub const SEEN_CAPACITY: usize = 64;

impl From<SourcedLocation> for WirePosition {
    fn from(l: SourcedLocation) -> WirePosition {
        let source = match l.source {
            LocationSource::Gps => PositionSource::Gps,
            LocationSource::Config => PositionSource::Config,
        };
        WirePosition::from_degrees(
            source,
            l.location.latitude,
            l.location.longitude,
            l.location.altitude,
        )
    }
}

/// The time of an event and its source: the GPS time when there is one (the hotspot has a
/// fix, or the radio stamped the frame with GPS time), else the local clock's `local`.
/// Beacon and witness reports both take their time from here.
pub fn stamp(gps: Option<SystemTime>, local: SystemTime) -> (SystemTime, TimeSource) {
    match gps {
        Some(t) => (t, TimeSource::Gps),
        None => (local, TimeSource::Local),
    }
}

/// dB × 10, rounded and clamped to `i16`.
fn deci(x: f64) -> i16 {
    (x * 10.0)
        .round()
        .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
}

/// dB × 10, rounded down (a 0.0001 dB tolerance absorbs `f32` error: 2.1 stays 21) and
/// clamped to `i16`.
fn deci_floor(x: f64) -> i16 {
    (x * 10.0 + 1e-3)
        .floor()
        .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
}

/// The beacon report of a beacon the guard approved and the radio sent.
#[allow(clippy::too_many_arguments)]
pub fn beacon_report(
    plan: &BeaconPlan,
    region: &'static Region,
    guard: &GuardConfig,
    network_entropy: [u8; 32],
    local_entropy: [u8; 32],
    tx_time: SystemTime,
    time_source: TimeSource,
    approved_power_dbm: i8,
    location: Option<SourcedLocation>,
) -> BeaconReport {
    BeaconReport {
        window: plan.window,
        network_entropy,
        local_entropy,
        region,
        sub_band: guard.sub_band.filter(|_| region.has_sub_bands()),
        tx_time_ms: unix_ms(tx_time),
        time_source,
        freq_hz: u32::try_from(plan.freq_hz).unwrap_or(u32::MAX),
        dr: plan.dr,
        power_dbm: approved_power_dbm,
        // Gain rounded down and loss up (to 0.1 dB): the claimed EIRP never exceeds what the
        // guard let out, so it stays within the legal limit the verifier checks.
        antenna_gain_ddbi: deci_floor(f64::from(guard.antenna_gain_dbi)),
        cable_loss_ddb: (-deci_floor(-f64::from(guard.cable_loss_db))).max(0) as u16,
        location: location.map(WirePosition::from),
    }
}

/// Remembers own and already witnessed beacon bodies; turns the first reception of another
/// hotspot's beacon into a witness report.
#[derive(Debug)]
pub struct WitnessDetector {
    region: &'static Region,
    antenna_gain_dbi: f32,
    order: VecDeque<[u8; BODY_LEN]>,
    seen: HashSet<[u8; BODY_LEN]>,
}

impl WitnessDetector {
    /// A detector for a hotspot in `region` with this antenna gain.
    pub fn new(region: &'static Region, antenna_gain_dbi: f32) -> WitnessDetector {
        WitnessDetector {
            region,
            antenna_gain_dbi,
            order: VecDeque::with_capacity(SEEN_CAPACITY),
            seen: HashSet::with_capacity(SEEN_CAPACITY),
        }
    }

    fn remember(&mut self, body: [u8; BODY_LEN]) -> bool {
        if !self.seen.insert(body) {
            return false;
        }
        if self.order.len() == SEEN_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(body);
        true
    }

    /// Our own beacon went out: never witness it.
    pub fn own_beacon(&mut self, plan: &BeaconPlan) {
        self.own_body(plan.body);
    }

    /// Our own beacon's body (as the beacon task reports it): never witness it.
    pub fn own_body(&mut self, body: [u8; BODY_LEN]) {
        self.remember(body);
    }

    /// Whether `frame` is a PoC beacon at all (the pipeline keeps it out of the uplinks).
    pub fn is_beacon(frame: &RxFrame) -> bool {
        beacon::parse_frame(&frame.payload).is_some()
    }

    /// The witness report for `frame` received at `now`, if it is another hotspot's beacon
    /// not witnessed before. GPS time when the radio gives it, else `now` (local clock).
    pub fn observe(
        &mut self,
        frame: &RxFrame,
        now: SystemTime,
        location: Option<SourcedLocation>,
    ) -> Option<WitnessReport> {
        let body = beacon::parse_frame(&frame.payload)?;
        let Modulation::Lora { sf, bw_hz, .. } = frame.meta.modulation else {
            return None;
        };
        if !self.remember(body) {
            return None;
        }
        let m = &frame.meta;
        let (rx_time, time_source) = stamp(m.time.filter(|_| m.gps_time.is_some()), now);
        Some(WitnessReport {
            frame: frame.payload.clone(),
            region: self.region,
            freq_hz: u32::try_from(m.freq_hz).unwrap_or(u32::MAX),
            sf,
            bw_hz,
            rssi_ddbm: deci(f64::from(m.signal_rssi.unwrap_or(m.rssi))),
            snr_ddb: deci(f64::from(m.snr.unwrap_or(0.0))),
            rx_time_ms: unix_ms(rx_time),
            time_source,
            antenna_gain_ddbi: deci(f64::from(self.antenna_gain_dbi)),
            location: location.map(WirePosition::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Location;
    use crate::poc::test_support::*;
    use crate::poc::verify::{Policy, Verifier};
    use crate::poc::{Body, Kind, Signer};
    use drivers::radio::{CrcStatus, RxMeta};
    use std::time::Duration;

    fn rx(payload: Vec<u8>, freq_hz: u64, gps: Option<SystemTime>) -> RxFrame {
        RxFrame {
            payload,
            meta: RxMeta {
                freq_hz,
                modulation: beacon::modulation(9, 125_000),
                tmst: 1,
                time: gps,
                gps_time: gps.map(|_| Duration::from_secs(1)),
                fine_time_ns: None,
                channel: 0,
                rf_chain: 0,
                board: 0,
                antenna: 0,
                rssi: -112,
                signal_rssi: None,
                snr: Some(-4.5),
                freq_offset_hz: None,
                crc: CrcStatus::Ok,
            },
        }
    }

    fn at(lat: f64, source: LocationSource) -> SourcedLocation {
        SourcedLocation {
            location: Location {
                latitude: lat,
                longitude: 13.405,
                altitude: 30.0,
            },
            source,
        }
    }

    /// From the beacon plan to a sent beacon's report and a witness's report, both valid.
    #[test]
    fn reports_built_from_radio_events_verify() {
        let b = SeedSigner::new(1);
        let plan = beacon::plan(eu868(), None, &ENTROPY, &WINDOW, &LOCAL, &b.public_key()).unwrap();
        let guard = GuardConfig {
            antenna_gain_dbi: 2.15,
            cable_loss_db: 0.5,
            ..GuardConfig::default()
        };
        let tx = drivers::time::from_unix_ms(tx_time_ms());
        let br = beacon_report(
            &plan,
            eu868(),
            &guard,
            ENTROPY,
            LOCAL,
            tx,
            TimeSource::Gps,
            14,
            Some(at(52.52, LocationSource::Gps)),
        );
        assert_eq!(
            (br.antenna_gain_ddbi, br.cable_loss_ddb),
            (21, 5),
            "2.15 dBi claimed as 2.1, 0.5 dB loss as 0.5"
        );
        let mut own = WitnessDetector::new(eu868(), 2.15);
        own.own_beacon(&plan);
        let heard = rx(
            plan.frame.clone(),
            plan.freq_hz,
            Some(tx + Duration::from_millis(250)),
        );
        assert_eq!(
            own.observe(&heard, tx, None),
            None,
            "own beacon is not witnessed"
        );

        let w = SeedSigner::new(2);
        let mut det = WitnessDetector::new(eu868(), 3.0);
        assert!(WitnessDetector::is_beacon(&heard));
        let wr = det
            .observe(&heard, tx, Some(at(52.56, LocationSource::Config)))
            .unwrap();
        assert_eq!(
            (wr.rssi_ddbm, wr.snr_ddb, wr.time_source),
            (-1120, -45, TimeSource::Gps)
        );
        assert_eq!(det.observe(&heard, tx, None), None, "witnessed once");
        let uplink = rx(vec![0x40, 1, 2, 3, 4, 0, 0, 0], plan.freq_hz, None);
        assert!(!WitnessDetector::is_beacon(&uplink));
        assert_eq!(det.observe(&uplink, tx, None), None);

        let mut v = Verifier::new(Policy::default());
        let now = tx_time_ms() + 5_000;
        let bs = signed(&b, Body::Beacon(br), tx_time_ms() + 1_000);
        assert_eq!(v.verify(bs.bytes(), now), Ok(Kind::Beacon));
        let ws = signed(&w, Body::Witness(wr), tx_time_ms() + 1_000);
        assert_eq!(v.verify(ws.bytes(), now), Ok(Kind::Witness));
    }

    #[test]
    fn detector_forgets_the_oldest_beyond_capacity() {
        let mut det = WitnessDetector::new(eu868(), 0.0);
        let t = SystemTime::now();
        let frame_of = |i: u8| beacon::frame(&[i; BODY_LEN]);
        for i in 0..=SEEN_CAPACITY as u8 {
            assert!(det
                .observe(&rx(frame_of(i), 868_100_000, None), t, None)
                .is_some());
        }
        // Body 0 was evicted, body 1 is still remembered.
        assert!(det
            .observe(&rx(frame_of(0), 868_100_000, None), t, None)
            .is_some());
        assert!(det
            .observe(&rx(frame_of(2), 868_100_000, None), t, None)
            .is_none());
    }
}
