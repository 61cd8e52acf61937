//! `[poc]` keys for data-transfer receipts and report validity (docs/proof-of-coverage.md
//! §6, §8): raw values with their defaults and their validation.

use std::time::Duration;

use serde::Deserialize;

/// `[poc]` as written (receipt and report-validity keys).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPoc {
    /// Seconds between data-transfer receipts.
    pub receipt_interval_secs: u64,
    /// Seconds a witness report or receipt stays valid (its deadline; the outbox drops it
    /// unsent after that).
    pub report_validity_secs: u64,
}

impl Default for RawPoc {
    fn default() -> Self {
        RawPoc {
            receipt_interval_secs: 3600,
            report_validity_secs: 3600,
        }
    }
}

/// `[poc]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PocConfig {
    /// Period of data-transfer receipts.
    pub receipt_interval: Duration,
    /// Validity of witness reports and receipts.
    pub report_validity: Duration,
}

/// Validate; `Err((key, message))`.
pub fn build(raw: &RawPoc) -> Result<PocConfig, (&'static str, &'static str)> {
    if !(1..=86_400).contains(&raw.receipt_interval_secs) {
        return Err(("poc.receipt_interval_secs", "must be within 1..=86400"));
    }
    // The verifier's default policy rejects deadlines more than 1 h after the event.
    if !(1..=3600).contains(&raw.report_validity_secs) {
        return Err(("poc.report_validity_secs", "must be within 1..=3600"));
    }
    Ok(PocConfig {
        receipt_interval: Duration::from_secs(raw.receipt_interval_secs),
        report_validity: Duration::from_secs(raw.report_validity_secs),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn load(text: &str) -> Result<Config, String> {
        Config::from_toml(text, Path::new("/etc/gatewayd/g.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_values_and_errors() {
        let c = load("").unwrap();
        assert_eq!(c.poc.receipt_interval.as_secs(), 3600);
        assert_eq!(c.poc.report_validity.as_secs(), 3600);
        let c = load("[poc]\nreceipt_interval_secs = 60\nreport_validity_secs = 5\n").unwrap();
        assert_eq!(c.poc.receipt_interval.as_secs(), 60);
        assert_eq!(c.poc.report_validity.as_secs(), 5);
        let e = load("[poc]\nreport_validity_secs = 7200\n").unwrap_err();
        assert!(
            e.contains("poc.report_validity_secs") && e.contains("1..=3600"),
            "{e}"
        );
        let e = load("[poc]\nreceipt_interval_secs = 0\n").unwrap_err();
        assert!(e.contains("poc.receipt_interval_secs"), "{e}");
    }
}
