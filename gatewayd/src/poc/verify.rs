//! The verifier (docs/proof-of-coverage.md §7): checks signed reports and gives each a
//! verdict, valid or the first rule it breaks. Pure and in-memory: the caller gives the
//! receive time and, when it has them, the network's entropy and the uplinks it received.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ring::digest::{digest, SHA256};

use super::beacon::{self, BeaconWindow};
use super::identity::PublicKey;
use super::receipt_verify::{Link, ReceiptLedger};
use super::report::{BeaconReport, Body, Kind, SignedReport, WitnessReport};
use super::wire::WirePosition;
use crate::region::Region;

/// Speed of light, m/s.
const C: f64 = 299_792_458.0;

/// Shortest beacon window a production verifier accepts, s (docs/proof-of-coverage.md §4:
/// shorter windows are for test networks).
pub const PRODUCTION_MIN_WINDOW_S: u32 = 3600;

/// The verifier's thresholds (defaults as in the protocol document).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Longest allowed gap between the event and the report's deadline.
    pub max_validity: Duration,
    /// Smallest beaconer–witness distance, m.
    pub min_distance_m: f64,
    /// Largest beaconer–witness distance, m.
    pub max_distance_m: f64,
    /// Allowance above free space for the RSSI bound, dB.
    pub rssi_margin_db: f64,
    /// Witness antenna gain counted at most, dBi.
    pub max_witness_gain_dbi: f64,
    /// Largest witness frequency error, Hz.
    pub freq_tolerance_hz: u64,
    /// GPS-timed witness: largest |rx − tx| beyond the airtime.
    pub gps_time_tolerance: Duration,
    /// How far after the report's arrival the event it reports may lie (the hotspot's and
    /// the network's clocks differ). Not applied to a witness's receive time, which must
    /// lie inside the beacon's window whatever its time source (docs §7).
    pub arrival_slack: Duration,
    /// Reject beacons whose window's entropy the verifier was not given.
    pub require_entropy: bool,
    /// Shortest beacon window accepted, s (default [`PRODUCTION_MIN_WINDOW_S`]; test
    /// networks with shorter windows set it lower, down to `beacon::MIN_WINDOW_S`).
    pub min_window_s: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_validity: Duration::from_secs(3600),
            min_distance_m: 300.0,
            max_distance_m: 100_000.0,
            rssi_margin_db: 6.0,
            max_witness_gain_dbi: 9.0,
            freq_tolerance_hz: 25_000,
            gps_time_tolerance: Duration::from_secs(2),
            arrival_slack: Duration::from_secs(60),
            require_entropy: false,
            min_window_s: PRODUCTION_MIN_WINDOW_S,
        }
    }
}

pub use super::reason::Reason;

/// A forwarded uplink as the network received it: (uplink id, PHYPayload).
pub type Uplink = (u32, Vec<u8>);

/// A verdict: the report's kind when valid, else the reason.
pub type ReportVerdict = Result<Kind, Reason>;

#[derive(Debug, Clone)]
struct KnownBeacon {
    key: PublicKey,
    report: BeaconReport,
    sf: u8,
    bw_hz: u32,
    airtime: Duration,
}

/// Verifies reports; remembers what it has seen (replays, beacons, witnesses, chains).
#[derive(Debug, Default)]
pub struct Verifier {
    policy: Policy,
    entropy: HashMap<BeaconWindow, [u8; 32]>,
    uplinks: HashMap<(PublicKey, [u8; 32]), Vec<Uplink>>,
    received: HashMap<PublicKey, Vec<Uplink>>,
    seen: HashSet<[u8; 32]>,
    beacons: HashMap<[u8; 32], KnownBeacon>,
    last_window: HashMap<PublicKey, u64>,
    witnessed: HashSet<([u8; 32], PublicKey)>,
    owners: HashMap<PublicKey, String>,
    receipts: ReceiptLedger,
}

impl Verifier {
    /// A verifier with `policy`.
    pub fn new(policy: Policy) -> Verifier {
        Verifier {
            policy,
            ..Verifier::default()
        }
    }

    /// The network's entropy for `window`.
    pub fn add_entropy(&mut self, window: BeaconWindow, entropy: [u8; 32]) {
        self.entropy.insert(window, entropy);
    }

    /// The uplinks the network received from `key` after chain head `prev_head` (checked
    /// against the receipt that starts there).
    pub fn add_uplinks(&mut self, key: PublicKey, prev_head: [u8; 32], uplinks: Vec<Uplink>) {
        self.uplinks.insert((key, prev_head), uplinks);
    }

    /// All the uplinks the network received from `key`, in any order, repeats allowed: each
    /// receipt of the key is checked against those it covers
    /// ([`select_uplinks`](super::receipt_order::select_uplinks)), unless
    /// [`Verifier::add_uplinks`] gave its own list for the receipt's `prev_head`.
    pub fn add_received(&mut self, key: PublicKey, uplinks: Vec<Uplink>) {
        self.received.entry(key).or_default().extend(uplinks);
    }

    /// The owner the key's valid onboarding statement named, if seen.
    pub fn owner(&self, key: &PublicKey) -> Option<&str> {
        self.owners.get(key).map(String::as_str)
    }

    /// Verify a batch: onboarding statements, then beacons (by window), receipts (by period
    /// end, so a key's chain is placed in order), then witnesses, so that witnesses find
    /// their beacon whatever the input order. Verdicts come back in input order.
    pub fn verify_batch(&mut self, reports: &[Vec<u8>], received_ms: u64) -> Vec<ReportVerdict> {
        let rank = |b: &[u8]| match SignedReport::decode(b).map(|r| r.report) {
            Ok(r) => match r.body {
                Body::Onboarding(_) => (0, 0),
                Body::Beacon(b) => (1, b.window.id),
                Body::Receipt(t) => (2, t.period_end_ms),
                Body::Witness(_) => (3, 0),
            },
            Err(_) => (4, 0),
        };
        let mut order: Vec<usize> = (0..reports.len()).collect();
        order.sort_by_key(|&i| rank(&reports[i]));
        let mut out = vec![Err(Reason::Replayed); reports.len()];
        for i in order {
            out[i] = self.verify(&reports[i], received_ms);
        }
        out
    }

    /// Verify one report received at Unix ms `received_ms`.
    pub fn verify(&mut self, bytes: &[u8], received_ms: u64) -> ReportVerdict {
        let signed = SignedReport::decode(bytes).map_err(Reason::Malformed)?;
        let r = &signed.report;
        if !signed.signature_valid() {
            return Err(Reason::BadSignature(r.key));
        }
        let id: [u8; 32] = digest(&SHA256, bytes)
            .as_ref()
            .try_into()
            .unwrap_or([0; 32]);
        if !self.seen.insert(id) {
            return Err(Reason::Replayed);
        }
        if received_ms > r.deadline_ms {
            return Err(Reason::Late {
                received_ms,
                deadline_ms: r.deadline_ms,
            });
        }
        let event_ms = match &r.body {
            Body::Beacon(b) => b.tx_time_ms,
            Body::Witness(w) => w.rx_time_ms,
            Body::Receipt(t) => t.period_end_ms,
            Body::Onboarding(_) => r.created_ms,
        };
        let slack = self.policy.arrival_slack.as_millis() as u64;
        if event_ms > received_ms.saturating_add(slack) {
            return Err(Reason::TimeMismatch(format!(
                "the event at {event_ms} ms is after the report was received at {received_ms} ms"
            )));
        }
        let max = self.policy.max_validity.as_millis() as u64;
        if r.deadline_ms > event_ms.saturating_add(max) {
            return Err(Reason::DeadlineTooFar {
                deadline_ms: r.deadline_ms,
                event_ms,
                max_s: max / 1000,
            });
        }
        let key = r.key;
        match &r.body {
            Body::Beacon(b) => self.beacon(key, b),
            Body::Witness(w) => self.witness(key, w),
            Body::Receipt(t) => {
                t.check_consistent().map_err(Reason::Receipt)?;
                let link = self.receipts.check(&key, t)?;
                // Accepted into the chain: it moves on from this head even when the uplinks
                // do not match (some were evicted or expired unsent), so one uncreditable
                // period does not hold up the receipts after it (§6.4).
                self.receipts.record(key, t);
                let selected = match self.uplinks.get(&(key, t.prev_head)) {
                    Some(ups) => Some(ups.clone()),
                    None => self
                        .received
                        .get(&key)
                        .map(|r| super::receipt_order::select_uplinks(t, r)),
                };
                if let Some(ups) = selected {
                    t.check_uplinks(&ups).map_err(Reason::Receipt)?;
                }
                Ok(match link {
                    Link::NewSegment => Kind::ReceiptNewSegment,
                    Link::First | Link::Linked => Kind::Receipt,
                })
            }
            Body::Onboarding(o) => {
                self.owners.entry(key).or_insert_with(|| o.owner.clone());
                Ok(Kind::Onboarding)
            }
        }
    }

    fn beacon(&mut self, key: PublicKey, b: &BeaconReport) -> ReportVerdict {
        let w = b.window;
        if !BeaconWindow::valid_len(w.len_s) {
            return Err(Reason::WindowMismatch(format!(
                "length {} s is not valid",
                w.len_s
            )));
        }
        if w.len_s < self.policy.min_window_s {
            return Err(Reason::WindowTooShort {
                len_s: w.len_s,
                min_s: self.policy.min_window_s,
            });
        }
        if !w.contains_ms(b.tx_time_ms) {
            return Err(Reason::WindowMismatch(format!(
                "tx time {} ms is outside window {} [{}, {})",
                b.tx_time_ms,
                w.id,
                w.start_ms(),
                w.end_ms()
            )));
        }
        match self.entropy.get(&w) {
            Some(e) if *e != b.network_entropy => return Err(Reason::EntropyMismatch(w.id)),
            None if self.policy.require_entropy => return Err(Reason::EntropyUnknown(w.id)),
            _ => {}
        }
        if let Some(&previous) = self.last_window.get(&key) {
            if w.id <= previous {
                return Err(Reason::IrregularInterval {
                    window: w.id,
                    previous,
                });
            }
        }
        let plan = beacon::plan(
            b.region,
            b.sub_band,
            &b.network_entropy,
            &w,
            &b.local_entropy,
            &key,
        )
        .map_err(|e| Reason::Unplannable(e.to_string()))?;
        if u64::from(b.freq_hz) != plan.freq_hz {
            return Err(Reason::FrequencyMismatch {
                reported: u64::from(b.freq_hz),
                expected: plan.freq_hz,
            });
        }
        if b.dr != plan.dr {
            return Err(Reason::DataRateMismatch {
                reported: b.dr,
                expected: plan.dr,
            });
        }
        let eirp = claimed_eirp_cdb(b);
        match eirp_limit_cdb(b.region, plan.freq_hz) {
            Some(limit) if eirp <= limit => {}
            limit => {
                return Err(Reason::PowerAboveLimit {
                    eirp_dbm: f64::from(eirp) / 100.0,
                    limit_dbm: limit.map_or(f64::NEG_INFINITY, |l| f64::from(l) / 100.0),
                })
            }
        }
        if b.location.is_none() {
            return Err(Reason::NoLocation);
        }
        let (sf, bw_hz) = match plan.modulation {
            drivers::radio::Modulation::Lora { sf, bw_hz, .. } => (sf, bw_hz),
            _ => (0, 0),
        };
        self.last_window.insert(key, w.id);
        self.beacons.insert(
            plan.body,
            KnownBeacon {
                key,
                report: b.clone(),
                sf,
                bw_hz,
                airtime: plan.airtime,
            },
        );
        Ok(Kind::Beacon)
    }

    fn witness(&mut self, key: PublicKey, w: &WitnessReport) -> ReportVerdict {
        let body =
            beacon::parse_frame(&w.frame).ok_or(Reason::NoBeacon("not a v1 beacon frame"))?;
        let known = self
            .beacons
            .get(&body)
            .ok_or(Reason::NoBeacon("no valid beacon report has this payload"))?;
        let b = &known.report;
        if known.key == key {
            return Err(Reason::SelfWitness);
        }
        if let (Some(ow), Some(ob)) = (self.owners.get(&key), self.owners.get(&known.key)) {
            if ow == ob {
                return Err(Reason::SameOwner(ow.clone()));
            }
        }
        if !self.witnessed.insert((body, key)) {
            return Err(Reason::DuplicateWitness);
        }
        if w.region.name != b.region.name {
            return Err(Reason::RegionMismatch {
                witness: w.region.name,
                beacon: b.region.name,
            });
        }
        let tolerance = self.policy.freq_tolerance_hz;
        if u64::from(w.freq_hz.abs_diff(b.freq_hz)) > tolerance {
            return Err(Reason::WitnessFrequencyMismatch {
                witness: u64::from(w.freq_hz),
                beacon: u64::from(b.freq_hz),
                tolerance,
            });
        }
        if (w.sf, w.bw_hz) != (known.sf, known.bw_hz) {
            return Err(Reason::WitnessDataRateMismatch {
                sf: w.sf,
                bw_hz: w.bw_hz,
                dr: b.dr,
            });
        }
        self.witness_time(w, known)?;
        let (Some(wl), Some(bl)) = (w.location, b.location) else {
            return Err(Reason::NoLocation);
        };
        let d = bl.distance_m(&wl);
        if d < self.policy.min_distance_m {
            return Err(Reason::BelowMinDistance {
                distance_m: d,
                min_m: self.policy.min_distance_m,
            });
        }
        if d > self.policy.max_distance_m {
            return Err(Reason::AboveMaxDistance {
                distance_m: d,
                max_m: self.policy.max_distance_m,
            });
        }
        let max = self.max_rssi_dbm(b, w, &bl, &wl);
        let rssi = f64::from(w.rssi_ddbm) / 10.0;
        if rssi > max {
            return Err(Reason::RssiTooHigh {
                rssi_dbm: rssi,
                max_dbm: max,
                distance_m: d,
            });
        }
        Ok(Kind::Witness)
    }

    /// The receive time lies inside the beacon's window `[start, end)`, whatever its source
    /// (no slack: the beacon instant keeps 1 s from both edges, §4, which absorbs an honest
    /// witness's clock error and delivery delay); a GPS time also lies within
    /// ±(`gps_time_tolerance` + airtime) of the beacon's `tx_time`.
    fn witness_time(&self, w: &WitnessReport, known: &KnownBeacon) -> Result<(), Reason> {
        let win = known.report.window;
        if !win.contains_ms(w.rx_time_ms) {
            return Err(Reason::TimeMismatch(format!(
                "rx time {} ms is outside the beacon's window {} [{}, {})",
                w.rx_time_ms,
                win.id,
                win.start_ms(),
                win.end_ms()
            )));
        }
        let tx = known.report.tx_time_ms;
        if w.time_source == super::wire::TimeSource::Gps {
            let tol = (self.policy.gps_time_tolerance + known.airtime).as_millis() as u64;
            if w.rx_time_ms.abs_diff(tx) > tol {
                return Err(Reason::TimeMismatch(format!(
                    "GPS rx time {} ms is more than {tol} ms from the beacon's {tx} ms",
                    w.rx_time_ms
                )));
            }
        }
        Ok(())
    }

    /// The free-space bound (§7): capped EIRP + capped witness gain − FSPL + margin.
    fn max_rssi_dbm(
        &self,
        b: &BeaconReport,
        w: &WitnessReport,
        bl: &WirePosition,
        wl: &WirePosition,
    ) -> f64 {
        let limit = eirp_limit_cdb(b.region, u64::from(b.freq_hz)).unwrap_or(0);
        let eirp = f64::from(claimed_eirp_cdb(b).min(limit)) / 100.0;
        let gain = (f64::from(w.antenna_gain_ddbi) / 10.0).min(self.policy.max_witness_gain_dbi);
        eirp + gain - fspl_db(bl.distance_m(wl), f64::from(b.freq_hz)) + self.policy.rssi_margin_db
    }
}

/// The beaconer's claimed EIRP: conducted power + antenna gain − cable loss, dBm.
pub fn claimed_eirp(b: &BeaconReport) -> f64 {
    f64::from(claimed_eirp_cdb(b)) / 100.0
}

/// The claimed EIRP in 0.01 dB, exactly: 100·power + 10·gain − 10·loss (§7.3).
pub fn claimed_eirp_cdb(b: &BeaconReport) -> i32 {
    100 * i32::from(b.power_dbm) + 10 * i32::from(b.antenna_gain_ddbi)
        - 10 * i32::from(b.cable_loss_ddb)
}

/// The region's EIRP limit at `freq_hz` in 0.01 dB (the table of §7.3: every limit has at
/// most two decimals), from the first band that contains `freq_hz`; `None` outside them.
pub fn eirp_limit_cdb(region: &Region, freq_hz: u64) -> Option<i32> {
    region
        .max_eirp_dbm(freq_hz)
        .map(|dbm| (f64::from(dbm) * 100.0).round() as i32)
}

/// Free-space path loss in dB at `distance_m` and `freq_hz` (distance floored at 1 m).
pub fn fspl_db(distance_m: f64, freq_hz: f64) -> f64 {
    20.0 * (4.0 * std::f64::consts::PI * distance_m.max(1.0) * freq_hz / C).log10()
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
