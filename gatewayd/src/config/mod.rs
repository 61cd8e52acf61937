//! Configuration: the TOML file is parsed into raw values ([`raw`]), validated, and built into
//! the runtime [`Config`]. Every error names the file, the line and the key.

mod error;
mod locate;
mod mqtt;
pub mod poc;
pub mod poc_topic;
// Raw fields mirror the keys documented in the example config.
#[allow(missing_docs)]
pub mod raw;
pub mod simulated;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drivers::radio::Eui64;

use error::utf8;
pub use error::ConfigError;
pub use mqtt::{MqttConfig, MqttScheme};
use raw::parse_raw;

/// The default config file path.
pub const DEFAULT_PATH: &str = "/etc/gatewayd/gatewayd.toml";

/// Region names gatewayd knows (see `shared/reference/regions.toml`).
pub const REGIONS: &[&str] = &[
    "EU868", "US915", "AU915", "AS923-1", "AS923-2", "AS923-3", "AS923-4", "IN865", "KR920",
    "CN470", "RU864", "EU433",
];

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from (for messages and reloads).
    pub source: PathBuf,
    /// `[gateway]`
    pub gateway: GatewayConfig,
    /// `[radio]`
    pub radio: RadioConfig,
    /// `[mqtt]`
    pub mqtt: MqttConfig,
    /// `[outbox]`
    pub outbox: OutboxConfig,
    /// `[uplink]`
    pub uplink: UplinkConfig,
    /// `[gps]`
    pub gps: GpsSettings,
    /// `[service]`
    pub service: ServiceConfig,
    /// `[log] level`
    pub log_level: log::LevelFilter,
    /// `[poc]`: beacons, receipts and report validity.
    pub poc: poc::PocConfig,
}

/// A fixed location.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    /// Degrees, + = north.
    pub latitude: f64,
    /// Degrees, + = east.
    pub longitude: f64,
    /// Metres above sea level.
    pub altitude: f64,
}

/// `[gateway]`
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Gateway id; `None` to take the EUI the radio announces.
    pub id: Option<Eui64>,
    /// Region name, one of [`REGIONS`].
    pub region: String,
    /// Directory for the outbox database and other state.
    pub state_dir: PathBuf,
    /// How often gateway stats are published.
    pub stats_interval: Duration,
    /// Fixed location, used when there is no GPS fix.
    pub location: Option<Location>,
    /// The regulatory guard's settings: antenna gain, cable loss, sub-band, Japan rules.
    pub guard: crate::guard::GuardConfig,
}

/// `[service]`: how gatewayd runs as a system service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Started as root: drop to this user once devices and sockets are open.
    pub user: Option<String>,
    /// Allow running as root without a `user` (not recommended).
    pub allow_root: bool,
    /// The status socket `gatewayd status` asks; `None`: `$RUNTIME_DIRECTORY/status.sock`
    /// or `/run/gatewayd/status.sock`.
    pub status_socket: Option<PathBuf>,
    /// Prometheus `/metrics` address; `None` when set to `""` (disabled).
    pub metrics_bind: Option<SocketAddr>,
}

impl ServiceConfig {
    /// The status socket path in force.
    pub fn status_socket_path(&self) -> PathBuf {
        self.status_socket
            .clone()
            .unwrap_or_else(crate::service::status::default_socket_path)
    }
}

/// `[gps]`
#[derive(Debug, Clone)]
pub struct GpsSettings {
    /// Serial device of the GNSS module; `None`: no GPS, the configured location is used.
    pub device: Option<PathBuf>,
    /// Baud rate.
    pub baud: u32,
    /// No valid sentence for this long: the GPS is stale.
    pub stale_after: Duration,
}

/// `[radio]`: which backend and its settings.
#[derive(Debug, Clone)]
pub enum RadioConfig {
    /// A concentrator's packet forwarder over Semtech UDP (`[radio.semtech_udp]`: the bind
    /// address; queue depth and TX_ACK timeout are the backend's defaults).
    SemtechUdp(drivers::semtech_udp::SemtechUdpConfig),
    /// A single-channel SX126x/SX127x transceiver on SPI + GPIO, driven through lora-phy.
    LoraPhy(Box<drivers::lora_phy::config::LoraPhySettings>),
    /// A radio on the simulated air (a `gatewayd-sim` hub on loopback); only in a gatewayd
    /// built with the `simulated` feature.
    #[cfg(feature = "simulated")]
    Simulated(Box<sim::radio::SimRadioConfig>),
}

/// `[outbox]`
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Database file.
    pub path: PathBuf,
    /// Bound on stored bytes (topics + payloads).
    pub max_bytes: u64,
    /// Uplinks older than this are dropped unsent (`None`: never).
    pub uplink_expiry: Option<Duration>,
    /// Stats older than this are dropped unsent (`None`: never).
    pub stats_expiry: Option<Duration>,
    /// Longest time a write waits to be grouped with others before commit.
    pub commit_delay: Duration,
}

/// A prefix filter over a 32- or 64-bit identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// The prefix value, left-aligned in the identifier.
    pub value: u64,
    /// Number of significant leading bits.
    pub bits: u8,
    /// Width of the identifier in bits (32 for DevAddr, 64 for JoinEUI).
    pub width: u8,
}

impl Prefix {
    /// Whether `id` starts with this prefix.
    pub fn matches(&self, id: u64) -> bool {
        if self.bits == 0 {
            return true;
        }
        let shift = u32::from(self.width - self.bits);
        (id >> shift) == (self.value >> shift)
    }
}

/// `[uplink]`
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    /// Forward frames with a correct CRC.
    pub forward_crc_ok: bool,
    /// Forward frames with a wrong CRC.
    pub forward_crc_invalid: bool,
    /// Forward frames without CRC.
    pub forward_crc_missing: bool,
    /// Same payload heard again within this window is a duplicate.
    pub dedup_window: Duration,
    /// Forward data frames only from these DevAddr prefixes (empty: all).
    pub dev_addr_prefixes: Vec<Prefix>,
    /// Forward join requests only for these JoinEUI prefixes (empty: all).
    pub join_eui_prefixes: Vec<Prefix>,
}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let text = utf8(bytes, path)?;
        Config::from_toml(&text, path)
    }

    /// Parse and validate config text; `file` is used in messages and for relative paths.
    pub fn from_toml(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let raw = parse_raw(text, file)?;
        build(raw, file).map_err(|e| e.located(text))
    }
}

/// The file's text, or where its first byte that is not UTF-8 is.
struct Builder<'a> {
    file: &'a Path,
}

impl Builder<'_> {
    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line: 0,
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn path(&self, key: &str, value: &str) -> Result<PathBuf, ConfigError> {
        if value.is_empty() {
            return Err(self.invalid(key, "must not be empty"));
        }
        let p = PathBuf::from(value);
        Ok(if p.is_relative() {
            self.file.parent().unwrap_or(Path::new(".")).join(p)
        } else {
            p
        })
    }

    fn opt_path(&self, key: &str, value: &Option<String>) -> Result<Option<PathBuf>, ConfigError> {
        value.as_deref().map(|v| self.path(key, v)).transpose()
    }

    fn prefixes(
        &self,
        key: &str,
        values: &[String],
        width: u8,
    ) -> Result<Vec<Prefix>, ConfigError> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                parse_prefix(v, width)
                    .map_err(|e| self.invalid(&format!("{key}[{i}]"), format!("{v:?}: {e}")))
            })
            .collect()
    }
}

/// Why a `HEX/BITS` prefix is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// No `/` between value and length.
    #[error("expected HEX/BITS, e.g. \"26000000/7\"")]
    NoSlash,
    /// The value has the wrong number of digits for the identifier.
    #[error("the value must be {0} hex digits")]
    Digits(usize),
    /// The value is not hexadecimal.
    #[error("the value is not hexadecimal")]
    NotHex(#[source] std::num::ParseIntError),
    /// The length is not a number.
    #[error("the length is not a number")]
    BadLength(#[source] std::num::ParseIntError),
    /// The length is longer than the identifier.
    #[error("the length must be 0..={0}")]
    TooLong(u8),
}

/// Parse `"26000000/7"` (hex value, prefix length in bits) for an identifier of `width` bits.
pub fn parse_prefix(text: &str, width: u8) -> Result<Prefix, PrefixError> {
    let (hex, bits) = text.split_once('/').ok_or(PrefixError::NoSlash)?;
    let digits = usize::from(width / 4);
    if hex.len() != digits {
        return Err(PrefixError::Digits(digits));
    }
    let value = u64::from_str_radix(hex, 16).map_err(PrefixError::NotHex)?;
    let bits: u8 = bits.parse().map_err(PrefixError::BadLength)?;
    if bits > width {
        return Err(PrefixError::TooLong(width));
    }
    Ok(Prefix { value, bits, width })
}

fn build(raw: raw::RawConfig, file: &Path) -> Result<Config, ConfigError> {
    let b = Builder { file };

    let g = &raw.gateway;
    let id =
        g.id.as_deref()
            .map(|s| s.parse::<Eui64>().map_err(|m| b.invalid("gateway.id", m)))
            .transpose()?;
    let Some(region) = crate::region::Region::by_name(&g.region) else {
        return Err(b.invalid(
            "gateway.region",
            format!(
                "unknown region {:?}; one of {}",
                g.region,
                REGIONS.join(", ")
            ),
        ));
    };
    if !(-10.0..=30.0).contains(&g.antenna_gain) {
        return Err(b.invalid("gateway.antenna_gain", "must be within -10..=30 dBi"));
    }
    if !(0.0..=30.0).contains(&g.cable_loss) {
        return Err(b.invalid("gateway.cable_loss", "must be within 0..=30 dB"));
    }
    match g.sub_band {
        Some(_) if !region.has_sub_bands() => {
            return Err(b.invalid("gateway.sub_band", format!("{} has no sub-bands", g.region)))
        }
        Some(sb) if !(1..=8).contains(&sb) => {
            return Err(b.invalid("gateway.sub_band", "must be 1..=8"))
        }
        _ => {}
    }
    if g.japan && g.region != "AS923-1" {
        return Err(b.invalid(
            "gateway.japan",
            "Japan's rules apply only with region AS923-1",
        ));
    }
    if g.stats_interval_secs == 0 {
        return Err(b.invalid("gateway.stats_interval_secs", "must be at least 1"));
    }
    let location = match &g.location {
        None => None,
        Some(l) => {
            if !(-90.0..=90.0).contains(&l.latitude) {
                return Err(b.invalid("gateway.location.latitude", "must be within -90..=90"));
            }
            if !(-180.0..=180.0).contains(&l.longitude) {
                return Err(b.invalid("gateway.location.longitude", "must be within -180..=180"));
            }
            Some(Location {
                latitude: l.latitude,
                longitude: l.longitude,
                altitude: l.altitude,
            })
        }
    };
    let state_dir = b.path("gateway.state_dir", &g.state_dir)?;
    let gateway = GatewayConfig {
        id,
        region: g.region.clone(),
        state_dir: state_dir.clone(),
        stats_interval: Duration::from_secs(g.stats_interval_secs),
        location,
        guard: crate::guard::GuardConfig {
            antenna_gain_dbi: g.antenna_gain,
            cable_loss_db: g.cable_loss,
            sub_band: g.sub_band,
            japan: g.japan,
            downlink_dwell: g.downlink_dwell,
            ..Default::default()
        },
    };

    let radio = match raw.radio.kind.as_str() {
        "semtech_udp" => {
            let bind = raw
                .radio
                .semtech_udp
                .bind
                .parse::<SocketAddr>()
                .map_err(|_| {
                    b.invalid(
                        "radio.semtech_udp.bind",
                        format!("{:?} is not an IP:port address", raw.radio.semtech_udp.bind),
                    )
                })?;
            RadioConfig::SemtechUdp(drivers::semtech_udp::SemtechUdpConfig {
                bind,
                ..Default::default()
            })
        }
        "sx126x" | "sx127x" => {
            let section = format!("radio.{}", raw.radio.kind);
            let settings = match (
                raw.radio.kind.as_str(),
                &raw.radio.sx126x,
                &raw.radio.sx127x,
            ) {
                ("sx126x", Some(c), _) => c.validate(&section),
                ("sx127x", _, Some(c)) => c.validate(&section),
                _ => {
                    return Err(b.invalid(
                        &section,
                        format!(
                            "radio.kind = {:?} needs a [{section}] table",
                            raw.radio.kind
                        ),
                    ))
                }
            }
            .map_err(|e| b.invalid(&e.key, e.message))?;
            let ch = &settings.channel;
            let uplink = crate::region::Direction::Uplink;
            if !region.is_channel_allowed(u64::from(ch.freq_hz), ch.bw_hz, uplink, g.sub_band) {
                return Err(b.invalid(
                    &format!("{section}.frequency_hz"),
                    format!(
                        "{} Hz with {} kHz bandwidth is not an uplink channel of {}",
                        ch.freq_hz,
                        ch.bw_hz / 1000,
                        g.region
                    ),
                ));
            }
            if id.is_none() {
                return Err(b.invalid(
                    "gateway.id",
                    format!(
                        "required with radio.kind = {:?} (only a packet forwarder announces one)",
                        raw.radio.kind
                    ),
                ));
            }
            RadioConfig::LoraPhy(Box::new(settings))
        }
        "simulated" => simulated::radio(&b, &raw.radio, id)?,
        other => {
            return Err(b.invalid(
                "radio.kind",
                format!(
                    "unknown radio kind {other:?}; supported: \"semtech_udp\", \"sx126x\", \"sx127x\", \"simulated\""
                ),
            ))
        }
    };

    let mqtt = mqtt::build_mqtt(&b, &raw.mqtt)?;

    let o = &raw.outbox;
    if o.max_bytes < 1024 * 1024 {
        return Err(b.invalid("outbox.max_bytes", "must be at least 1048576 (1 MiB)"));
    }
    if o.commit_delay_ms > 1000 {
        return Err(b.invalid("outbox.commit_delay_ms", "must be at most 1000"));
    }
    let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
    let outbox = OutboxConfig {
        path: state_dir.join("outbox.sqlite"),
        max_bytes: o.max_bytes,
        uplink_expiry: secs(o.uplink_expiry_secs),
        stats_expiry: secs(o.stats_expiry_secs),
        commit_delay: Duration::from_millis(o.commit_delay_ms),
    };

    let u = &raw.uplink;
    if u.dedup_window_ms > 60_000 {
        return Err(b.invalid("uplink.dedup_window_ms", "must be at most 60000"));
    }
    let uplink = UplinkConfig {
        forward_crc_ok: u.forward_crc_ok,
        forward_crc_invalid: u.forward_crc_invalid,
        forward_crc_missing: u.forward_crc_missing,
        dedup_window: Duration::from_millis(u.dedup_window_ms),
        dev_addr_prefixes: b.prefixes("uplink.dev_addr_prefixes", &u.dev_addr_prefixes, 32)?,
        join_eui_prefixes: b.prefixes("uplink.join_eui_prefixes", &u.join_eui_prefixes, 64)?,
    };

    let log_level = raw.log.level.parse::<log::LevelFilter>().map_err(|_| {
        b.invalid(
            "log.level",
            format!(
                "{:?} is not one of off, error, warn, info, debug, trace",
                raw.log.level
            ),
        )
    })?;

    let gps = GpsSettings {
        device: b.opt_path("gps.device", &raw.gps.device)?,
        baud: match raw.gps.baud {
            4800 | 9600 | 19200 | 38400 | 57600 | 115200 | 230400 | 460800 => raw.gps.baud,
            other => {
                return Err(b.invalid("gps.baud", format!("{other} is not a standard baud rate")))
            }
        },
        stale_after: match raw.gps.stale_after_secs {
            1..=600 => Duration::from_secs(raw.gps.stale_after_secs),
            _ => return Err(b.invalid("gps.stale_after_secs", "must be within 1..=600")),
        },
    };

    let sv = &raw.service;
    if let Some(u) = &sv.user {
        if u.is_empty() || u.contains([':', '/', ' ']) {
            return Err(b.invalid("service.user", format!("{u:?} is not a user name")));
        }
    }
    let metrics_bind = match sv.metrics_bind.as_str() {
        "" => None,
        text => Some(text.parse::<SocketAddr>().map_err(|_| {
            b.invalid(
                "service.metrics_bind",
                format!("{text:?} is not an IP:port address (\"\" disables)"),
            )
        })?),
    };
    let service = ServiceConfig {
        user: sv.user.clone(),
        allow_root: sv.allow_root,
        status_socket: b.opt_path("service.status_socket", &sv.status_socket)?,
        metrics_bind,
    };

    Ok(Config {
        source: file.to_path_buf(),
        gateway,
        radio,
        mqtt,
        outbox,
        uplink,
        gps,
        service,
        log_level,
        poc: poc::build(&raw.poc, file)?,
    })
}

#[cfg(test)]
mod tests;
