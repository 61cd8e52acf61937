//! `[poc]`: proof-of-coverage beaconing, data-transfer receipts and report validity
//! (docs/proof-of-coverage.md §4, §6, §8) — raw values as written, validated into [`PocConfig`].

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::poc::beacon::{BeaconWindow, DEFAULT_WINDOW_S, MIN_WINDOW_S};

/// `[poc]` as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct RawPoc {
    pub enabled: bool,
    pub window_secs: u32,
    pub radio_max_power_dbm: Option<i8>,
    pub report_validity_secs: u64,
    pub receipt_interval_secs: u64,
    pub clock: String,
}

impl Default for RawPoc {
    fn default() -> Self {
        RawPoc {
            enabled: true,
            window_secs: DEFAULT_WINDOW_S,
            radio_max_power_dbm: None,
            report_validity_secs: 3600,
            receipt_interval_secs: 3600,
            clock: "kernel".into(),
        }
    }
}

/// `[poc]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PocConfig {
    /// Beacon (one per window, when the network sent the window's entropy).
    pub enabled: bool,
    /// Window length in seconds: ≥ 10, divides 86400.
    pub window_secs: u32,
    /// The radio's maximum conducted power as configured, dBm (the guard's limit applies on
    /// top); `None`: the radio backend's own maximum (see [`PocConfig::beacon_max_power_dbm`]).
    pub radio_max_power_dbm: Option<i8>,
    /// How long a beacon or witness report or a receipt is valid (its deadline; the outbox
    /// drops it unsent after that).
    pub report_validity: Duration,
    /// Period of data-transfer receipts.
    pub receipt_interval: Duration,
    /// `clock = "trusted"`: sign with the local clock without GPS even when the kernel does
    /// not report it synchronized (`"kernel"`, the default: only when it does).
    pub trust_local_clock: bool,
}

/// Beacon power cap when neither `[poc] radio_max_power_dbm` nor the radio backend gives
/// one, dBm (every common LoRa chip reaches it).
pub const FALLBACK_RADIO_MAX_POWER_DBM: i8 = 14;

impl PocConfig {
    /// The beacon's conducted power cap, dBm: the configured `radio_max_power_dbm`, else the
    /// backend's own maximum (`backend_max_dbm`, from `RadioCapabilities::max_tx_power_dbm`),
    /// else [`FALLBACK_RADIO_MAX_POWER_DBM`]. A configured value above what the backend can do
    /// is lowered to the backend's maximum (a beacon report never claims more than was sent).
    pub fn beacon_max_power_dbm(&self, backend_max_dbm: Option<i8>) -> i8 {
        match (self.radio_max_power_dbm, backend_max_dbm) {
            (Some(configured), Some(backend)) => configured.min(backend),
            (Some(configured), None) => configured,
            (None, Some(backend)) => backend,
            (None, None) => FALLBACK_RADIO_MAX_POWER_DBM,
        }
    }
}

/// Validate `[poc]`; errors name `file` and the key.
pub fn build(raw: &RawPoc, file: &std::path::Path) -> Result<PocConfig, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        file: file.to_path_buf(),
        line: 0,
        key: key.to_string(),
        message,
    };
    if !BeaconWindow::valid_len(raw.window_secs) {
        return Err(invalid(
            "poc.window_secs",
            format!(
                "{} s: must be at least {MIN_WINDOW_S} and divide 86400 (a day), e.g. 3600, 21600",
                raw.window_secs
            ),
        ));
    }
    if let Some(dbm) = raw.radio_max_power_dbm.filter(|d| !(-10..=30).contains(d)) {
        return Err(invalid(
            "poc.radio_max_power_dbm",
            format!("{dbm} dBm: must be within -10..=30 (or unset: the radio's own maximum)"),
        ));
    }
    if !(1..=3600).contains(&raw.report_validity_secs) {
        return Err(invalid(
            "poc.report_validity_secs",
            format!(
                "{} s: must be within 1..=3600 (the verifier rejects longer deadlines)",
                raw.report_validity_secs
            ),
        ));
    }
    if !(1..=86_400).contains(&raw.receipt_interval_secs) {
        return Err(invalid(
            "poc.receipt_interval_secs",
            format!("{} s: must be within 1..=86400", raw.receipt_interval_secs),
        ));
    }
    let trust_local_clock = match raw.clock.as_str() {
        "kernel" => false,
        "trusted" => true,
        other => {
            return Err(invalid(
                "poc.clock",
                format!("{other:?}: must be \"kernel\" (trust it when NTP has synchronized it) or \"trusted\""),
            ))
        }
    };
    Ok(PocConfig {
        trust_local_clock,
        enabled: raw.enabled,
        window_secs: raw.window_secs,
        radio_max_power_dbm: raw.radio_max_power_dbm,
        report_validity: Duration::from_secs(raw.report_validity_secs),
        receipt_interval: Duration::from_secs(raw.receipt_interval_secs),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/gatewayd/gatewayd.toml"))
    }

    #[test]
    fn defaults_and_values() {
        let c = load("").unwrap();
        assert!(c.poc.enabled);
        assert_eq!(c.poc.window_secs, 21_600);
        assert_eq!(c.poc.radio_max_power_dbm, None, "unset: the radio's own");
        assert_eq!(c.poc.report_validity.as_secs(), 3600);
        assert_eq!(c.poc.receipt_interval.as_secs(), 3600);
        assert!(!c.poc.trust_local_clock, "the kernel decides by default");
        assert!(
            load("[poc]\nclock = \"trusted\"\n")
                .unwrap()
                .poc
                .trust_local_clock
        );
        let c = load("[poc]\nreceipt_interval_secs = 60\nreport_validity_secs = 5\n").unwrap();
        assert_eq!(c.poc.receipt_interval.as_secs(), 60);
        assert_eq!(c.poc.report_validity.as_secs(), 5);
        let c = load(
            "[poc]\nenabled = false\nwindow_secs = 10\nradio_max_power_dbm = 20\nreport_validity_secs = 600\n",
        )
        .unwrap();
        assert!(!c.poc.enabled);
        assert_eq!(
            (c.poc.window_secs, c.poc.radio_max_power_dbm),
            (10, Some(20))
        );
        assert_eq!(c.poc.report_validity.as_secs(), 600);
    }

    #[test]
    fn errors_name_file_and_key() {
        for (text, key, what) in [
            (
                "[poc]\nwindow_secs = 7000\n",
                "poc.window_secs",
                "divide 86400",
            ),
            ("[poc]\nwindow_secs = 5\n", "poc.window_secs", "at least 10"),
            (
                "[poc]\nradio_max_power_dbm = 31\n",
                "poc.radio_max_power_dbm",
                "-10..=30",
            ),
            (
                "[poc]\nreport_validity_secs = 7200\n",
                "poc.report_validity_secs",
                "1..=3600",
            ),
            (
                "[poc]\nreceipt_interval_secs = 0\n",
                "poc.receipt_interval_secs",
                "1..=86400",
            ),
            ("[poc]\nclock = \"ntp\"\n", "poc.clock", "\"kernel\""),
        ] {
            let e = load(text).unwrap_err().to_string();
            assert!(
                e.contains("/etc/gatewayd/gatewayd.toml") && e.contains(key) && e.contains(what),
                "{text}: {e}"
            );
        }
        let e = load("[poc]\nwindow = 60\n").unwrap_err().to_string();
        assert!(e.contains("poc.window"), "unknown key named: {e}");
        let e = load("[poc]\nradio_max_power_dbm = 300\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("poc.radio_max_power_dbm"), "{e}");
        let e = load("[poc]\nradio_max_power_dbm = \"max\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/gatewayd/gatewayd.toml") && e.contains("poc.radio_max_power_dbm"),
            "{e}"
        );
    }

    #[test]
    fn beacon_power_cap_from_config_backend_or_fallback() {
        let unset = load("").unwrap().poc;
        // Unset: the backend's maximum (an SX1262 board: 22; a PA_BOOST SX127x: 20), else 14.
        assert_eq!(unset.beacon_max_power_dbm(Some(22)), 22);
        assert_eq!(unset.beacon_max_power_dbm(Some(20)), 20);
        assert_eq!(unset.beacon_max_power_dbm(None), 14);
        let set = load("[poc]\nradio_max_power_dbm = 17\n").unwrap().poc;
        assert_eq!(
            set.beacon_max_power_dbm(None),
            17,
            "packet forwarder: as configured"
        );
        assert_eq!(
            set.beacon_max_power_dbm(Some(22)),
            17,
            "configured below the chip"
        );
        assert_eq!(
            set.beacon_max_power_dbm(Some(15)),
            15,
            "never above the chip (SX1261)"
        );
    }
}
