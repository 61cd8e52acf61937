//! SIGHUP: re-read the config file. What can change live is applied (log level, CRC policy,
//! DevAddr/JoinEUI filters, de-duplication window); a change anywhere else is reported as
//! taking effect after a restart. An invalid new file is rejected and the old config stays.

use crate::config::Config;

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Applied live.
    pub applied: Vec<&'static str>,
    /// Changed in the file but only taking effect after a restart.
    pub needs_restart: Vec<&'static str>,
}

/// Compare `old` and `new` section by section.
pub fn diff(old: &Config, new: &Config) -> ReloadOutcome {
    let differs = |a: String, b: String| a != b;
    let mut applied = Vec::new();
    let mut needs_restart = Vec::new();
    if old.log_level != new.log_level {
        applied.push("log.level");
    }
    if differs(format!("{:?}", old.uplink), format!("{:?}", new.uplink)) {
        applied.push("uplink");
    }
    let restart = [
        (
            "gateway",
            differs(format!("{:?}", old.gateway), format!("{:?}", new.gateway)),
        ),
        (
            "radio",
            differs(format!("{:?}", old.radio), format!("{:?}", new.radio)),
        ),
        (
            "mqtt",
            differs(format!("{:?}", old.mqtt), format!("{:?}", new.mqtt)),
        ),
        (
            "outbox",
            differs(format!("{:?}", old.outbox), format!("{:?}", new.outbox)),
        ),
        (
            "gps",
            differs(format!("{:?}", old.gps), format!("{:?}", new.gps)),
        ),
        (
            "poc",
            differs(format!("{:?}", old.poc), format!("{:?}", new.poc)),
        ),
        (
            "service",
            differs(format!("{:?}", old.service), format!("{:?}", new.service)),
        ),
    ];
    needs_restart.extend(
        restart
            .iter()
            .filter(|(_, changed)| *changed)
            .map(|(name, _)| *name),
    );
    ReloadOutcome {
        applied,
        needs_restart,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn cfg(text: &str) -> Config {
        Config::from_toml(text, Path::new("/etc/gatewayd/gatewayd.toml")).unwrap()
    }

    #[test]
    fn live_and_restart_sections() {
        let old = cfg("");
        assert_eq!(
            diff(&old, &cfg("")),
            ReloadOutcome {
                applied: vec![],
                needs_restart: vec![]
            }
        );
        let new = cfg("[log]\nlevel = \"debug\"\n[uplink]\nforward_crc_invalid = true\n[mqtt]\nserver = \"tcp://10.0.0.1:1883\"\n");
        let d = diff(&old, &new);
        assert_eq!(d.applied, vec!["log.level", "uplink"]);
        assert_eq!(d.needs_restart, vec!["mqtt"]);
        let d = diff(&old, &cfg("[poc]\nwindow_secs = 3600\n"));
        assert_eq!(
            d.needs_restart,
            vec!["poc"],
            "[poc] takes effect after a restart"
        );
    }
}
