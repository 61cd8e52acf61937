//! The config file as written: plain serde structs with defaults, no validation yet.

use std::path::Path;

use serde::Deserialize;

use super::error::ConfigError;
use super::locate;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub gateway: RawGateway,
    pub radio: RawRadio,
    pub mqtt: RawMqtt,
    pub outbox: RawOutbox,
    pub uplink: RawUplink,
    pub gps: RawGps,
    pub service: RawService,
    pub log: RawLog,
    pub poc: super::poc::RawPoc,
}

/// `[service]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawService {
    pub user: Option<String>,
    pub allow_root: bool,
    pub status_socket: Option<String>,
    pub metrics_bind: String,
}

impl Default for RawService {
    fn default() -> Self {
        RawService {
            user: None,
            allow_root: false,
            status_socket: None,
            metrics_bind: "127.0.0.1:9464".into(),
        }
    }
}

/// `[gps]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGps {
    pub device: Option<String>,
    pub baud: u32,
    pub stale_after_secs: u64,
}

impl Default for RawGps {
    fn default() -> Self {
        RawGps {
            device: None,
            baud: 9600,
            stale_after_secs: 5,
        }
    }
}

/// `[gateway]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGateway {
    pub id: Option<String>,
    pub region: String,
    pub state_dir: String,
    pub stats_interval_secs: u64,
    pub location: Option<RawLocation>,
    pub antenna_gain: f32,
    pub cable_loss: f32,
    pub sub_band: Option<u8>,
    pub japan: bool,
    pub downlink_dwell: bool,
}

impl Default for RawGateway {
    fn default() -> Self {
        RawGateway {
            id: None,
            region: "EU868".into(),
            state_dir: "/var/lib/gatewayd".into(),
            stats_interval_secs: 30,
            location: None,
            antenna_gain: 0.0,
            cable_loss: 0.0,
            sub_band: None,
            japan: false,
            downlink_dwell: false,
        }
    }
}

/// `[gateway.location]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocation {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default)]
    pub altitude: f64,
}

/// `[radio]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRadio {
    pub kind: String,
    pub semtech_udp: RawSemtechUdp,
    pub sx126x: Option<drivers::lora_phy::config::Sx126xConfig>,
    pub sx127x: Option<drivers::lora_phy::config::Sx127xConfig>,
    #[cfg(feature = "simulated")]
    pub simulated: Option<sim::radio::SimRadioSettings>,
    /// Without the simulated radio the table is accepted as it is, so that the error is the
    /// one saying how to get that radio (`radio.kind`), not an unknown key.
    #[cfg(not(feature = "simulated"))]
    pub simulated: Option<toml::Table>,
}

impl Default for RawRadio {
    fn default() -> Self {
        RawRadio {
            kind: "semtech_udp".into(),
            semtech_udp: RawSemtechUdp::default(),
            sx126x: None,
            sx127x: None,
            simulated: None,
        }
    }
}

/// `[radio.semtech_udp]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSemtechUdp {
    pub bind: String,
}

impl Default for RawSemtechUdp {
    fn default() -> Self {
        RawSemtechUdp {
            bind: "127.0.0.1:1680".into(),
        }
    }
}

/// `[mqtt]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMqtt {
    pub server: String,
    pub topic_prefix: String,
    pub poc_topic: String,
    pub json: bool,
    pub qos: u8,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_cert: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub keep_alive_secs: u64,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    pub inflight: u16,
}

impl Default for RawMqtt {
    fn default() -> Self {
        RawMqtt {
            server: "tcp://127.0.0.1:1883".into(),
            topic_prefix: "eu868".into(),
            poc_topic: super::poc_topic::DEFAULT_POC_TOPIC.into(),
            json: false,
            qos: 1,
            client_id: None,
            username: None,
            password: None,
            ca_cert: None,
            tls_cert: None,
            tls_key: None,
            keep_alive_secs: 30,
            reconnect_min_ms: 500,
            reconnect_max_ms: 60_000,
            inflight: 512,
        }
    }
}

/// `[outbox]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOutbox {
    pub max_bytes: u64,
    pub uplink_expiry_secs: u64,
    pub stats_expiry_secs: u64,
    pub commit_delay_ms: u64,
}

impl Default for RawOutbox {
    fn default() -> Self {
        RawOutbox {
            max_bytes: 256 * 1024 * 1024,
            uplink_expiry_secs: 0,
            stats_expiry_secs: 3600,
            commit_delay_ms: 0,
        }
    }
}

/// `[uplink]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUplink {
    pub forward_crc_ok: bool,
    pub forward_crc_invalid: bool,
    pub forward_crc_missing: bool,
    pub dedup_window_ms: u64,
    pub dev_addr_prefixes: Vec<String>,
    pub join_eui_prefixes: Vec<String>,
}

impl Default for RawUplink {
    fn default() -> Self {
        RawUplink {
            forward_crc_ok: true,
            forward_crc_invalid: false,
            forward_crc_missing: false,
            dedup_window_ms: 200,
            dev_addr_prefixes: Vec::new(),
            join_eui_prefixes: Vec::new(),
        }
    }
}

/// `[log]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: "info".into(),
        }
    }
}

/// Parse the TOML text of `file` into the raw values, or the error naming the key, file, line
/// and column (syntax errors name the table they are in).
pub(super) fn parse_raw(text: &str, file: &Path) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.message().to_string();
        // serde_path_to_error already ends the path with an unknown key's name.
        let key = match unknown_field(&message) {
            Some(field) if path == "." || path.is_empty() => field.to_string(),
            Some(field) if !path.ends_with(field) => format!("{path}.{field}"),
            None if path == "." => String::new(),
            _ => path,
        };
        let (line, column) = match inner.span() {
            Some(span) => locate::line_col(text, span.start),
            None => (locate::key_line(text, &key).unwrap_or(0), 0),
        };
        // A syntax error has no key: say which table it is in.
        let message = match locate::table_before(text, line) {
            Some(table) if key.is_empty() => format!("{message} (in table [{table}])"),
            _ => message,
        };
        ConfigError::Parse {
            file: file.to_path_buf(),
            line,
            column,
            key,
            message,
        }
    })
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}
