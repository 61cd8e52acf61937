//! `[mqtt]`: the broker address, TLS files, credentials and link tuning, validated into
//! [`MqttConfig`].

use std::path::PathBuf;
use std::time::Duration;

use drivers::radio::Eui64;

use super::poc_topic::{PocKind, PocTopic};
use super::{raw, Builder, ConfigError};

/// MQTT transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttScheme {
    /// Plain TCP.
    Tcp,
    /// TLS.
    Ssl,
}

/// `[mqtt]`
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// TCP or TLS.
    pub scheme: MqttScheme,
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Topic prefix, e.g. `eu868`.
    pub topic_prefix: String,
    /// Where proof-of-coverage reports go (outside the ChirpStack gateway protocol's topics).
    pub poc_topic: PocTopic,
    /// Publish the protobuf JSON mapping instead of binary protobuf.
    pub json: bool,
    /// QoS for events: 0 or 1.
    pub qos: u8,
    /// Client id; `None` for `gatewayd-{gateway id}`.
    pub client_id: Option<String>,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// CA certificate (PEM) for TLS.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM) for TLS.
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM) for TLS.
    pub tls_key: Option<PathBuf>,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Publishes awaiting PUBACK at most.
    pub inflight: u16,
}

pub(super) fn build_mqtt(b: &Builder<'_>, m: &raw::RawMqtt) -> Result<MqttConfig, ConfigError> {
    let (scheme, rest) = if let Some(rest) = m.server.strip_prefix("tcp://") {
        (MqttScheme::Tcp, rest)
    } else if let Some(rest) = m.server.strip_prefix("ssl://") {
        (MqttScheme::Ssl, rest)
    } else {
        return Err(b.invalid(
            "mqtt.server",
            format!(
                "{:?}: expected tcp://HOST:PORT or ssl://HOST:PORT",
                m.server
            ),
        ));
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => {
            let port = p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| b.invalid("mqtt.server", format!("{p:?} is not a port")))?;
            (
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                port,
            )
        }
        _ if !rest.is_empty() && !rest.contains(':') => (
            rest.to_string(),
            if scheme == MqttScheme::Tcp {
                1883
            } else {
                8883
            },
        ),
        _ => return Err(b.invalid("mqtt.server", format!("{:?}: no host", m.server))),
    };
    if m.topic_prefix.is_empty()
        || m.topic_prefix.contains(['#', '+'])
        || m.topic_prefix.starts_with('/')
        || m.topic_prefix.ends_with('/')
    {
        return Err(b.invalid(
            "mqtt.topic_prefix",
            format!(
                "{:?}: must be non-empty, without wildcards or leading/trailing '/'",
                m.topic_prefix
            ),
        ));
    }
    let poc_topic = PocTopic::parse(&m.poc_topic, &m.topic_prefix)
        .map_err(|e| b.invalid("mqtt.poc_topic", e.to_string()))?;
    if m.qos > 1 {
        return Err(b.invalid("mqtt.qos", "must be 0 or 1"));
    }
    if m.keep_alive_secs < 5 || m.keep_alive_secs > 3600 {
        return Err(b.invalid("mqtt.keep_alive_secs", "must be within 5..=3600"));
    }
    if m.reconnect_min_ms == 0 || m.reconnect_min_ms > m.reconnect_max_ms {
        return Err(b.invalid(
            "mqtt.reconnect_min_ms",
            "must be at least 1 and not above mqtt.reconnect_max_ms",
        ));
    }
    if m.inflight == 0 {
        return Err(b.invalid("mqtt.inflight", "must be at least 1"));
    }
    if m.tls_cert.is_some() != m.tls_key.is_some() {
        return Err(b.invalid(
            if m.tls_cert.is_some() {
                "mqtt.tls_key"
            } else {
                "mqtt.tls_cert"
            },
            "mqtt.tls_cert and mqtt.tls_key go together",
        ));
    }
    if scheme == MqttScheme::Tcp && (m.ca_cert.is_some() || m.tls_cert.is_some()) {
        return Err(b.invalid(
            "mqtt.server",
            "TLS files are set but the server is tcp://; use ssl://",
        ));
    }
    if let Some(id) = &m.client_id {
        if id.is_empty() || id.len() > 128 {
            return Err(b.invalid("mqtt.client_id", "must be 1..=128 characters"));
        }
    }
    let ca_cert = b.opt_path("mqtt.ca_cert", &m.ca_cert)?;
    let tls_cert = b.opt_path("mqtt.tls_cert", &m.tls_cert)?;
    let tls_key = b.opt_path("mqtt.tls_key", &m.tls_key)?;
    for (key, p) in [
        ("mqtt.ca_cert", &ca_cert),
        ("mqtt.tls_cert", &tls_cert),
        ("mqtt.tls_key", &tls_key),
    ] {
        if let Some(p) = p {
            if !p.is_file() {
                return Err(b.invalid(
                    key,
                    format!("{} does not exist or is not a file", p.display()),
                ));
            }
        }
    }
    Ok(MqttConfig {
        scheme,
        host,
        port,
        topic_prefix: m.topic_prefix.clone(),
        poc_topic,
        json: m.json,
        qos: m.qos,
        client_id: m.client_id.clone(),
        username: m.username.clone(),
        password: m.password.clone(),
        ca_cert,
        tls_cert,
        tls_key,
        keep_alive: Duration::from_secs(m.keep_alive_secs),
        reconnect_min: Duration::from_millis(m.reconnect_min_ms),
        reconnect_max: Duration::from_millis(m.reconnect_max_ms),
        inflight: m.inflight,
    })
}

impl MqttConfig {
    /// The topic of `gateway`'s `kind` reports (`poc_topic` under `topic_prefix`).
    pub fn poc_report_topic(&self, gateway: Eui64, kind: PocKind) -> String {
        self.poc_topic.render(&self.topic_prefix, gateway, kind)
    }
}
