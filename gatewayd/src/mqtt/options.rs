//! Builds the rumqttc options of one connection: client id, keep-alive, window, credentials,
//! TLS (native-tls) and the OFFLINE last will.

use std::path::{Path, PathBuf};

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

/// Why the options of a TLS connection could not be built; names the key and the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OptionsError {
    /// A certificate or key file could not be read.
    #[error("{key} {}: {source}", path.display())]
    Read {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `mqtt.ca_cert` is not a PEM certificate.
    #[error("mqtt.ca_cert {}: not a PEM certificate: {source}", path.display())]
    CaCert {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: native_tls::Error,
    },
    /// `mqtt.tls_cert` and `mqtt.tls_key` are not a certificate and its key.
    #[error(
        "mqtt.tls_cert {} / mqtt.tls_key {}: not a PEM certificate and PKCS#8 key: {source}",
        cert.display(),
        key.display()
    )]
    Identity {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        #[source]
        source: native_tls::Error,
    },
    /// The TLS connector could not be built.
    #[error("mqtt: cannot set up TLS: {0}")]
    Tls(#[source] native_tls::Error),
}

/// Options for one connection attempt; an error names the file or setting at fault.
pub(crate) fn build(config: &MqttConfig, gateway: Eui64) -> Result<MqttOptions, OptionsError> {
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

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, OptionsError> {
    std::fs::read(path).map_err(|source| OptionsError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

fn tls_connector(config: &MqttConfig) -> Result<native_tls::TlsConnector, OptionsError> {
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(ca) = &config.ca_cert {
        let pem = read("mqtt.ca_cert", ca)?;
        let cert =
            native_tls::Certificate::from_pem(&pem).map_err(|source| OptionsError::CaCert {
                path: ca.clone(),
                source,
            })?;
        builder.add_root_certificate(cert);
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        let cert_pem = read("mqtt.tls_cert", cert)?;
        let key_pem = read("mqtt.tls_key", key)?;
        let identity = native_tls::Identity::from_pkcs8(&cert_pem, &key_pem).map_err(|source| {
            OptionsError::Identity {
                cert: cert.clone(),
                key: key.clone(),
                source,
            }
        })?;
        builder.identity(identity);
    }
    builder.build().map_err(OptionsError::Tls)
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
        let err = build(&c, Eui64::default()).unwrap_err().to_string();
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
        let err = build(&c, Eui64::default()).unwrap_err().to_string();
        assert!(
            err.contains("bad.pem") && err.contains("not a PEM"),
            "{err}"
        );
    }
}
