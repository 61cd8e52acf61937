//! Builds the rumqttc options of one connection: client id, keep-alive, window, credentials,
//! TLS (native-tls) and the OFFLINE last will.

use std::path::Path;

use drivers::radio::Eui64;
use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};

use super::{conn_state_payload, topic};
use crate::config::{MqttConfig, MqttScheme};

/// Largest packet sent (events are far smaller).
const MAX_OUTGOING_PACKET: usize = 256 * 1024;

/// The client id: configured, or `gatewayd-{gateway id}` (unique per gateway).
pub(crate) fn client_id(config: &MqttConfig, gateway: Eui64) -> String {
    config
        .client_id
        .clone()
        .unwrap_or_else(|| format!("gatewayd-{gateway}"))
}

/// Options for one connection attempt; an error names the file or setting at fault.
pub(crate) fn build(config: &MqttConfig, gateway: Eui64) -> Result<MqttOptions, String> {
    let mut o = MqttOptions::new(client_id(config, gateway), &config.host, config.port);
    o.set_keep_alive(config.keep_alive)
        .set_clean_session(true)
        .set_inflight(config.inflight)
        .set_max_packet_size(super::MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET)
        .set_last_will(LastWill::new(
            topic(&config.topic_prefix, gateway, "state/conn"),
            conn_state_payload(gateway, false, config.json),
            QoS::AtLeastOnce,
            true,
        ));
    if let Some(user) = &config.username {
        o.set_credentials(user, config.password.clone().unwrap_or_default());
    }
    if config.scheme == MqttScheme::Ssl {
        let connector = tls_connector(config)?;
        o.set_transport(Transport::tls_with_config(
            TlsConfiguration::NativeConnector(connector),
        ));
    }
    Ok(o)
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key} {}: {e}", path.display()))
}

fn tls_connector(config: &MqttConfig) -> Result<native_tls::TlsConnector, String> {
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(ca) = &config.ca_cert {
        let pem = read("mqtt.ca_cert", ca)?;
        let cert = native_tls::Certificate::from_pem(&pem)
            .map_err(|e| format!("mqtt.ca_cert {}: not a PEM certificate: {e}", ca.display()))?;
        builder.add_root_certificate(cert);
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        let cert_pem = read("mqtt.tls_cert", cert)?;
        let key_pem = read("mqtt.tls_key", key)?;
        let identity = native_tls::Identity::from_pkcs8(&cert_pem, &key_pem).map_err(|e| {
            format!(
                "mqtt.tls_cert {} / mqtt.tls_key {}: not a PEM certificate and PKCS#8 key: {e}",
                cert.display(),
                key.display()
            )
        })?;
        builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| format!("mqtt: cannot set up TLS: {e}"))
}

#[cfg(test)]
mod tests {

    use super::*;

    /// The defaults of an empty config file, with a small window.
    pub(crate) fn config() -> MqttConfig {
        let text = "[mqtt]\ninflight = 16\nreconnect_min_ms = 100\nreconnect_max_ms = 5000\n";
        crate::config::Config::from_toml(text, std::path::Path::new("/etc/gatewayd/test.toml"))
            .expect("valid test config")
            .mqtt
    }

    #[test]
    fn client_id_defaults_to_the_gateway_id() {
        let gw = Eui64([0xaa, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(client_id(&config(), gw), "gatewayd-aa00000000000001");
        let c = MqttConfig {
            client_id: Some("mine".into()),
            ..config()
        };
        assert_eq!(client_id(&c, gw), "mine");
        let o = build(&config(), gw).unwrap();
        assert_eq!(o.client_id(), "gatewayd-aa00000000000001");
        let will = o.last_will().unwrap();
        assert_eq!(will.topic, "eu868/gateway/aa00000000000001/state/conn");
        assert!(will.retain);
        assert_eq!(o.inflight(), 16);
    }

    #[test]
    fn tls_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing-ca.pem");
        let c = MqttConfig {
            scheme: MqttScheme::Ssl,
            ca_cert: Some(missing.clone()),
            ..config()
        };
        let err = build(&c, Eui64::default()).unwrap_err();
        assert!(
            err.contains("mqtt.ca_cert") && err.contains("missing-ca.pem"),
            "{err}"
        );

        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, b"not a certificate").unwrap();
        let c = MqttConfig {
            scheme: MqttScheme::Ssl,
            ca_cert: Some(bad),
            ..config()
        };
        let err = build(&c, Eui64::default()).unwrap_err();
        assert!(
            err.contains("bad.pem") && err.contains("not a PEM"),
            "{err}"
        );
    }
}
