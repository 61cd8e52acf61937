//! The radio propagation and receiver model of the simulated air: positions, log-distance
//! path loss with seeded Gaussian shadowing, SX1262-like sensitivity, noise floor and SNR.
//!
//! Pure functions and plain data; the randomness comes from the caller's seeded RNG.

use rand::Rng;

use drivers::radio::Modulation;

/// Where a radio is: plane coordinates in metres, or WGS-84 latitude/longitude in degrees.
/// All radios on one air use the same kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SimPosition {
    /// Metres on a flat plane.
    Xy {
        /// East, metres.
        x_m: f64,
        /// North, metres.
        y_m: f64,
    },
    /// Degrees latitude and longitude.
    LatLon {
        /// Latitude, degrees.
        lat: f64,
        /// Longitude, degrees.
        lon: f64,
    },
}

impl SimPosition {
    /// A position on the plane, in metres.
    pub fn xy(x_m: f64, y_m: f64) -> SimPosition {
        SimPosition::Xy { x_m, y_m }
    }

    /// Whether two positions can be compared (same kind).
    pub fn same_kind(&self, other: &SimPosition) -> bool {
        matches!(
            (self, other),
            (SimPosition::Xy { .. }, SimPosition::Xy { .. })
                | (SimPosition::LatLon { .. }, SimPosition::LatLon { .. })
        )
    }

    /// Distance in metres (haversine for lat/lon); `None` when the kinds differ.
    pub fn distance_m(&self, other: &SimPosition) -> Option<f64> {
        match (*self, *other) {
            (SimPosition::Xy { x_m: x1, y_m: y1 }, SimPosition::Xy { x_m: x2, y_m: y2 }) => {
                Some(((x1 - x2).powi(2) + (y1 - y2).powi(2)).sqrt())
            }
            (
                SimPosition::LatLon { lat: la1, lon: lo1 },
                SimPosition::LatLon { lat: la2, lon: lo2 },
            ) => {
                const R: f64 = 6_371_008.8;
                let (p1, p2) = (la1.to_radians(), la2.to_radians());
                let dp = p2 - p1;
                let dl = (lo2 - lo1).to_radians();
                let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
                Some(2.0 * R * a.sqrt().min(1.0).asin())
            }
            _ => None,
        }
    }

    /// Whether the coordinates are finite (and in range for lat/lon).
    pub fn is_valid(&self) -> bool {
        match *self {
            SimPosition::Xy { x_m, y_m } => x_m.is_finite() && y_m.is_finite(),
            SimPosition::LatLon { lat, lon } => {
                lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0
            }
        }
    }
}

/// Parameters of the propagation and receiver model.
#[derive(Debug, Clone, PartialEq)]
pub struct AirModel {
    /// Path loss at the 1 m reference distance, dB.
    pub reference_loss_db: f64,
    /// Path-loss exponent (2 free space, 2.7–3.5 urban).
    pub exponent: f64,
    /// Standard deviation of log-normal shadowing, dB (0 = none).
    pub shadowing_sigma_db: f64,
    /// Receiver noise figure, dB.
    pub noise_figure_db: f64,
    /// Capture effect: a frame survives overlapping frames that are at least this many dB
    /// weaker. `None` = every overlap destroys both.
    pub capture_threshold_db: Option<f64>,
}

impl Default for AirModel {
    /// 40 dB at 1 m, exponent 2.7, 4 dB shadowing, NF 6 dB, capture at 6 dB.
    fn default() -> Self {
        AirModel {
            reference_loss_db: 40.0,
            exponent: 2.7,
            shadowing_sigma_db: 4.0,
            noise_figure_db: 6.0,
            capture_threshold_db: Some(6.0),
        }
    }
}

impl AirModel {
    /// Mean path loss (no shadowing) over `distance_m` (distances under 1 m count as 1 m).
    pub fn mean_path_loss_db(&self, distance_m: f64) -> f64 {
        self.reference_loss_db + 10.0 * self.exponent * distance_m.max(1.0).log10()
    }

    /// Received power without shadowing.
    pub fn mean_rx_power_dbm(
        &self,
        tx_power_dbm: f64,
        tx_gain_dbi: f64,
        rx_gain_dbi: f64,
        distance_m: f64,
    ) -> f64 {
        tx_power_dbm + tx_gain_dbi + rx_gain_dbi - self.mean_path_loss_db(distance_m)
    }

    /// One shadowing sample, N(0, σ²) by Box–Muller from `rng` (always draws two numbers,
    /// so the RNG stream does not depend on σ).
    pub fn shadowing_db<R: Rng>(&self, rng: &mut R) -> f64 {
        let u1: f64 = rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        z * self.shadowing_sigma_db
    }

    /// Noise floor in dBm for a bandwidth: -174 + 10·log10(BW) + NF.
    pub fn noise_floor_dbm(&self, bw_hz: u32) -> f64 {
        -174.0 + 10.0 * f64::from(bw_hz.max(1)).log10() + self.noise_figure_db
    }

    /// The SNR a LoRa receiver reports for a signal at `rssi_dbm`: signal over the noise
    /// floor, saturating at [`MAX_REPORTED_SNR_DB`] as real SX126x/SX130x estimates do.
    pub fn snr_db(&self, rssi_dbm: f64, bw_hz: u32) -> f64 {
        (rssi_dbm - self.noise_floor_dbm(bw_hz)).min(MAX_REPORTED_SNR_DB)
    }
}

/// Highest SNR a LoRa demodulator reports, dB: the estimate saturates near +13 dB on SX126x
/// and SX130x, however strong the signal.
pub const MAX_REPORTED_SNR_DB: f64 = 13.5;

/// Bandwidth of a modulation in Hz (FSK: 2 × bitrate as a rough occupied bandwidth).
pub fn bandwidth_hz(modulation: &Modulation) -> u32 {
    match *modulation {
        Modulation::Lora { bw_hz, .. } => bw_hz,
        Modulation::Fsk { bitrate } => bitrate.saturating_mul(2),
        Modulation::LrFhss { ocw_hz, .. } => ocw_hz,
    }
}

/// SX1262-like sensitivity in dBm: SF7 -124 … SF12 -137 at 125 kHz, +10·log10(BW/125 kHz)
/// for wider bandwidths; FSK -104 dBm (50 kbit/s); LR-FHSS -137 dBm.
pub fn sensitivity_dbm(modulation: &Modulation) -> f64 {
    match *modulation {
        Modulation::Lora { sf, bw_hz, .. } => {
            let at_125k = match sf {
                0..=5 => -118.0,
                6 => -121.0,
                7 => -124.0,
                8 => -127.0,
                9 => -130.0,
                10 => -133.0,
                11 => -135.5,
                _ => -137.0,
            };
            at_125k + 10.0 * (f64::from(bw_hz.max(1)) / 125_000.0).log10()
        }
        Modulation::Fsk { .. } => -104.0,
        Modulation::LrFhss { .. } => -137.0,
    }
}

/// Whether two modulations share a demodulator (same SF and bandwidth for LoRa; coding rate
/// is read from the header, so it does not matter).
pub fn same_channel_kind(a: &Modulation, b: &Modulation) -> bool {
    match (*a, *b) {
        (
            Modulation::Lora {
                sf: sa, bw_hz: ba, ..
            },
            Modulation::Lora {
                sf: sb, bw_hz: bb, ..
            },
        ) => sa == sb && ba == bb,
        (Modulation::Fsk { bitrate: x }, Modulation::Fsk { bitrate: y }) => x == y,
        (Modulation::LrFhss { ocw_hz: x, .. }, Modulation::LrFhss { ocw_hz: y, .. }) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn lora(sf: u8, bw_hz: u32) -> Modulation {
        Modulation::Lora {
            sf,
            bw_hz,
            cr: None,
        }
    }

    #[test]
    fn sensitivity_table_and_bandwidth_scaling() {
        assert_eq!(sensitivity_dbm(&lora(7, 125_000)), -124.0);
        assert_eq!(sensitivity_dbm(&lora(12, 125_000)), -137.0);
        assert!((sensitivity_dbm(&lora(7, 250_000)) - (-124.0 + 3.0103)).abs() < 1e-3);
        assert!((sensitivity_dbm(&lora(8, 500_000)) - (-127.0 + 6.0206)).abs() < 1e-3);
    }

    #[test]
    fn reported_snr_saturates() {
        let m = AirModel::default();
        let floor = m.noise_floor_dbm(125_000);
        assert!((m.snr_db(floor - 5.0, 125_000) + 5.0).abs() < 1e-9);
        assert_eq!(m.snr_db(-40.0, 125_000), MAX_REPORTED_SNR_DB);
    }

    #[test]
    fn noise_floor_and_path_loss() {
        let m = AirModel::default();
        assert!((m.noise_floor_dbm(125_000) - (-174.0 + 50.969 + 6.0)).abs() < 1e-3);
        assert_eq!(m.mean_path_loss_db(0.1), 40.0);
        assert!((m.mean_path_loss_db(1000.0) - (40.0 + 81.0)).abs() < 1e-9);
        assert!((m.mean_rx_power_dbm(14.0, 2.0, 3.0, 1000.0) - (19.0 - 121.0)).abs() < 1e-9);
    }

    #[test]
    fn shadowing_is_seeded_and_scaled() {
        let m = AirModel {
            shadowing_sigma_db: 8.0,
            ..AirModel::default()
        };
        let draw = |seed| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            (0..2000)
                .map(|_| m.shadowing_db(&mut rng))
                .collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert_ne!(a, draw(8));
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        let sd = (a.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / a.len() as f64).sqrt();
        assert!(mean.abs() < 0.6, "mean {mean}");
        assert!((sd - 8.0).abs() < 0.6, "sd {sd}");
    }

    #[test]
    fn distances() {
        let a = SimPosition::xy(0.0, 0.0);
        assert_eq!(a.distance_m(&SimPosition::xy(3.0, 4.0)), Some(5.0));
        let p = SimPosition::LatLon {
            lat: 52.0,
            lon: 5.0,
        };
        let q = SimPosition::LatLon {
            lat: 52.0 + 1.0 / 60.0,
            lon: 5.0,
        };
        let d = p.distance_m(&q).unwrap();
        assert!((d - 1853.2).abs() < 2.0, "{d}");
        assert_eq!(a.distance_m(&p), None);
        assert!(!SimPosition::LatLon {
            lat: 91.0,
            lon: 0.0
        }
        .is_valid());
    }
}
