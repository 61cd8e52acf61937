//! Tests for config parsing and validation: every error names the file and the key.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("/etc/gatewayd/test.toml"))
}

fn err(text: &str) -> String {
    parse(text)
        .expect_err("config should be rejected")
        .to_string()
}

#[test]
fn defaults_are_valid() {
    let c = parse("").unwrap();
    assert_eq!(c.gateway.region, "EU868");
    assert!(c.gateway.id.is_none());
    assert_eq!(c.mqtt.port, 1883);
    assert_eq!(c.mqtt.topic_prefix, "eu868");
    assert!(matches!(c.radio, RadioConfig::SemtechUdp(ref u) if u.bind.port() == 1680));
    assert_eq!(
        c.outbox.path,
        PathBuf::from("/var/lib/gatewayd/outbox.sqlite")
    );
    assert!(c.uplink.forward_crc_ok && !c.uplink.forward_crc_invalid);
}

#[test]
fn issue_example_parses() {
    let c = parse(
        r#"
[gateway]
id = "0102030405060708"
region = "EU868"
state_dir = "/var/lib/gatewayd"
[radio]
kind = "semtech_udp"
[radio.semtech_udp]
bind = "127.0.0.1:1680"
[mqtt]
server = "tcp://127.0.0.1:1883"
topic_prefix = "eu868"
json = false
"#,
    )
    .unwrap();
    assert_eq!(c.gateway.id.unwrap().to_string(), "0102030405060708");
}

#[test]
fn unknown_key_names_key_file_and_line() {
    let e = err("[mqtt]\nserver = \"tcp://127.0.0.1:1883\"\nsever = 1\n");
    assert!(e.contains("/etc/gatewayd/test.toml"), "{e}");
    assert!(e.contains("key `mqtt.sever`"), "{e}");
    assert!(e.contains(":3:"), "line 3 expected: {e}");
}

#[test]
fn unknown_table_is_rejected() {
    let e = err("[mqqt]\nserver = \"x\"\n");
    assert!(e.contains("key `mqqt`"), "{e}");
}

#[test]
fn wrong_type_names_key() {
    let e = err("[mqtt]\njson = \"yes\"\n");
    assert!(e.contains("key `mqtt.json`"), "{e}");
}

#[test]
fn syntax_error_names_file() {
    let e = err("[mqtt\n");
    assert!(e.contains("/etc/gatewayd/test.toml:1:"), "{e}");
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        ("[gateway]\nid = \"0102\"", "gateway.id"),
        ("[gateway]\nregion = \"EU999\"", "gateway.region"),
        (
            "[gateway]\nstats_interval_secs = 0",
            "gateway.stats_interval_secs",
        ),
        (
            "[gateway.location]\nlatitude = 91.0\nlongitude = 0.0",
            "gateway.location.latitude",
        ),
        ("[radio]\nkind = \"sx9999\"", "radio.kind"),
        (
            "[radio.semtech_udp]\nbind = \"localhost\"",
            "radio.semtech_udp.bind",
        ),
        ("[mqtt]\nserver = \"http://x:1\"", "mqtt.server"),
        ("[mqtt]\nserver = \"tcp://x:99999\"", "mqtt.server"),
        ("[mqtt]\ntopic_prefix = \"eu/#\"", "mqtt.topic_prefix"),
        ("[mqtt]\nqos = 2", "mqtt.qos"),
        ("[mqtt]\ninflight = 0", "mqtt.inflight"),
        (
            "[mqtt]\nserver = \"ssl://x:8883\"\ntls_cert = \"/nonexistent.pem\"",
            "mqtt.tls_key",
        ),
        (
            "[mqtt]\nserver = \"ssl://x:8883\"\nca_cert = \"/nonexistent.pem\"",
            "mqtt.ca_cert",
        ),
        (
            "[mqtt]\nreconnect_min_ms = 5000\nreconnect_max_ms = 100",
            "mqtt.reconnect_min_ms",
        ),
        ("[outbox]\nmax_bytes = 10", "outbox.max_bytes"),
        (
            "[uplink]\ndev_addr_prefixes = [\"26/7\"]",
            "uplink.dev_addr_prefixes",
        ),
        (
            "[uplink]\njoin_eui_prefixes = [\"0000000000000000/65\"]",
            "uplink.join_eui_prefixes",
        ),
        ("[log]\nlevel = \"loud\"", "log.level"),
    ];
    for (text, key) in cases {
        let key = if key.ends_with("prefixes") {
            format!("{key}[0]")
        } else {
            key.to_string()
        };
        let e = err(text);
        assert!(e.contains(&format!("key `{key}`")), "{text:?} -> {e}");
        assert!(e.contains("test.toml"), "{e}");
    }
}

#[test]
fn missing_file_is_named() {
    let e = Config::load(Path::new("/nonexistent/gatewayd.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/gatewayd.toml"), "{e}");
}

#[test]
fn relative_paths_are_relative_to_the_file() {
    let c = parse("[gateway]\nstate_dir = \"state\"").unwrap();
    assert_eq!(c.gateway.state_dir, PathBuf::from("/etc/gatewayd/state"));
}

#[test]
fn prefixes_match() {
    let p = parse_prefix("26000000/7", 32).unwrap();
    assert!(p.matches(0x2601_2345));
    assert!(p.matches(0x27ff_ffff));
    assert!(!p.matches(0x2801_2345));
    let all = parse_prefix("00000000/0", 32).unwrap();
    assert!(all.matches(0xffff_ffff));
    let j = parse_prefix("70b3d50000000000/24", 64).unwrap();
    assert!(j.matches(0x70b3_d5ff_0000_0001));
    assert!(!j.matches(0x70b3_d600_0000_0001));
}

#[test]
fn shipped_example_config_is_valid_and_documents_every_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/gatewayd.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let c = Config::from_toml(&text, &path).unwrap();
    assert_eq!(c.gateway.region, "EU868");
    // Uncommenting every "# key = value  # example" line must still give a valid config
    // (except TLS files, which must exist).
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if l.contains("# example")
                    && !rest.contains("tls_")
                    && !rest.contains("ca_cert") =>
            {
                rest.split("# example").next().unwrap_or("").to_string()
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = Config::from_toml(&uncommented, &path).unwrap();
    assert_eq!(c.gateway.id.unwrap().to_string(), "0102030405060708");
    assert!(c.gateway.location.is_some());
    assert_eq!(c.mqtt.username.as_deref(), Some("gateway"));
}

#[test]
fn sx126x_radio_with_a_board_profile() {
    let c = parse(
        "[gateway]\nid = \"0102030405060708\"\n[radio]\nkind = \"sx126x\"\n\
         [radio.sx126x]\nboard = \"waveshare-sx1262-hat\"\nfrequency_hz = 868100000\n",
    )
    .unwrap();
    match c.radio {
        RadioConfig::LoraPhy(s) => assert_eq!(s.channel.freq_hz, 868_100_000),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sx126x_errors_name_their_key() {
    let base = "[gateway]\nid = \"0102030405060708\"\n[radio]\nkind = \"sx126x\"\n";
    let e = err(&format!(
        "{base}[radio.sx126x]\nboard = \"no-such-board\"\n"
    ));
    assert!(e.contains("radio.sx126x.board"), "{e}");
    let e = err(&format!(
        "{base}[radio.sx126x]\nboard = \"waveshare-sx1262-hat\"\nbusy_pin = 4000\n"
    ));
    assert!(e.contains("radio.sx126x.busy_pin"), "{e}");
    let e = err(&format!(
        "{base}[radio.sx126x]\nboard = \"waveshare-sx1262-hat\"\nbusy_pn = 4\n"
    ));
    assert!(e.contains("radio.sx126x.busy_pn"), "{e}");
    let e = err(base);
    assert!(e.contains("key `radio.sx126x`"), "{e}");
    let e = err(
        "[radio]\nkind = \"sx126x\"\n[radio.sx126x]\nboard = \"waveshare-sx1262-hat\"\nfrequency_hz = 868100000\n",
    );
    assert!(e.contains("key `gateway.id`"), "{e}");
}

#[test]
fn sx126x_channel_outside_the_region_is_rejected() {
    let e = err(
        "[gateway]\nid = \"0102030405060708\"\n[radio]\nkind = \"sx126x\"\n\
         [radio.sx126x]\nboard = \"waveshare-sx1262-hat\"\nfrequency_hz = 915000000\n",
    );
    assert!(e.contains("key `radio.sx126x.frequency_hz`"), "{e}");
    assert!(e.contains("EU868"), "{e}");
}

#[test]
fn guard_and_gps_keys() {
    let c = parse(
        "[gateway]\nregion = \"US915\"\nantenna_gain = 3.0\ncable_loss = 1.0\nsub_band = 2\n\
         [gps]\ndevice = \"/dev/ttyAMA0\"\nbaud = 9600\n",
    )
    .unwrap();
    assert_eq!(c.gateway.guard.sub_band, Some(2));
    assert_eq!(c.gateway.guard.antenna_gain_dbi, 3.0);
    assert_eq!(c.gps.device, Some(PathBuf::from("/dev/ttyAMA0")));
    for (text, key) in [
        ("[gateway]\nsub_band = 2", "gateway.sub_band"),
        (
            "[gateway]\nregion = \"US915\"\nsub_band = 9",
            "gateway.sub_band",
        ),
        ("[gateway]\njapan = true", "gateway.japan"),
        ("[gateway]\nantenna_gain = 99.0", "gateway.antenna_gain"),
        ("[gateway]\ncable_loss = -1.0", "gateway.cable_loss"),
        ("[gps]\nbaud = 1234", "gps.baud"),
        ("[gps]\nstale_after_secs = 0", "gps.stale_after_secs"),
    ] {
        let e = err(text);
        assert!(e.contains(&format!("key `{key}`")), "{text:?} -> {e}");
    }
}

#[test]
fn service_keys() {
    let c = parse("[service]\nuser = \"gatewayd\"\nmetrics_bind = \"127.0.0.1:9000\"\nstatus_socket = \"run/s.sock\"\n").unwrap();
    assert_eq!(c.service.user.as_deref(), Some("gatewayd"));
    assert_eq!(c.service.metrics_bind.unwrap().port(), 9000);
    assert_eq!(
        c.service.status_socket_path(),
        PathBuf::from("/etc/gatewayd/run/s.sock")
    );
    assert!(parse("[service]\nmetrics_bind = \"\"\n")
        .unwrap()
        .service
        .metrics_bind
        .is_none());
    assert!(err("[service]\nmetrics_bind = \"localhost\"\n").contains("key `service.metrics_bind`"));
    assert!(err("[service]\nuser = \"a b\"\n").contains("key `service.user`"));
}

#[test]
fn simulated_radio() {
    let c = parse(
        "[gateway]\nid = \"0102030405060708\"\n[radio]\nkind = \"simulated\"\n\
         [radio.simulated]\nhub = \"127.0.0.1:1700\"\nx_m = 10.0\ny_m = 20.0\n",
    )
    .unwrap();
    assert!(matches!(c.radio, RadioConfig::Simulated(_)));
    let base = "[gateway]\nid = \"0102030405060708\"\n[radio]\nkind = \"simulated\"\n";
    assert!(err(base).contains("key `radio.simulated`"));
    let e = err(&format!(
        "{base}[radio.simulated]\nhub = \"nowhere\"\nx_m = 1.0\ny_m = 1.0\n"
    ));
    assert!(e.contains("key `radio.simulated.hub`"), "{e}");
    let e = err("[radio]\nkind = \"simulated\"\n[radio.simulated]\nhub = \"127.0.0.1:1700\"\nx_m = 1.0\ny_m = 1.0\n");
    assert!(e.contains("key `gateway.id`"), "{e}");
}

/// A gatewayd built without the `simulated` feature (the `.deb`'s) refuses the simulated radio
/// with this error: the tests build the daemon with the feature, so the refusal is checked here
/// on the function that such a build returns from `radio.kind = "simulated"`.
#[test]
fn a_gatewayd_without_the_simulated_radio_says_how_to_get_it() {
    let file = Path::new("/etc/gatewayd/test.toml");
    let text = "[gateway]\nid = \"0102030405060708\"\n[radio]\nkind = \"simulated\"\n";
    let e = simulated::not_built_in(&Builder { file })
        .located(text)
        .to_string();
    assert!(
        e.starts_with("/etc/gatewayd/test.toml:4: key `radio.kind`"),
        "{e}"
    );
    assert!(e.contains("built without the simulated radio"), "{e}");
    assert!(e.contains("--features simulated"), "{e}");
    assert!(e.contains("scripts/demo"), "{e}");
}

/// Malformed files, each with the line and the key its error must name.
const MALFORMED: &[(&str, usize, &str)] = &[
    // Unknown keys and tables.
    (
        "[mqtt]\nserver = \"tcp://127.0.0.1:1883\"\nsever = 1\n",
        3,
        "mqtt.sever",
    ),
    ("# comment\n[mqqt]\nserver = \"x\"\n", 2, "mqqt"),
    // Type errors.
    ("[mqtt]\njson = \"yes\"\n", 2, "mqtt.json"),
    ("[mqtt]\n\nqos = 300\n", 3, "mqtt.qos"),
    ("[outbox]\nmax_bytes = -1\n", 2, "outbox.max_bytes"),
    (
        "[poc]\nradio_max_power_dbm = 300\n",
        2,
        "poc.radio_max_power_dbm",
    ),
    ("gateway.region = 5\n", 1, "gateway.region"),
    (
        "[uplink]\ndev_addr_prefixes = [\"26000000/7\", 5]\n",
        2,
        "uplink.dev_addr_prefixes[1]",
    ),
    // Missing required keys: the table that lacks them.
    (
        "\n[gateway.location]\nlatitude = 1.0\n",
        2,
        "gateway.location",
    ),
    (
        "[radio]\nkind = \"simulated\"\n\n[radio.simulated]\n",
        4,
        "radio.simulated",
    ),
    (
        "[gateway]\nregion = \"EU868\"\n\n[radio]\nkind = \"sx126x\"\n",
        4,
        "radio.sx126x",
    ),
    (
        "[mqtt]\nserver = \"ssl://x:8883\"\ntls_cert = \"/nonexistent.pem\"\n",
        1,
        "mqtt.tls_key",
    ),
    // Out-of-range and invalid values: the line of the value.
    (
        "[gateway]\nid = \"0102030405060708\"\n\nregion = \"EU999\"\n",
        4,
        "gateway.region",
    ),
    ("[gateway]\nid = \"0102\"\n", 2, "gateway.id"),
    (
        "[gateway]\nregion = \"EU868\"\nstats_interval_secs = 0\n",
        3,
        "gateway.stats_interval_secs",
    ),
    (
        "[gateway.location]\nlongitude = 0.0\nlatitude = 91.0\n",
        3,
        "gateway.location.latitude",
    ),
    (
        "[gateway]\nlocation = { latitude = 91.0, longitude = 0.0 }\n",
        2,
        "gateway.location.latitude",
    ),
    (
        "[gateway]\nantenna_gain = 31.0\n",
        2,
        "gateway.antenna_gain",
    ),
    ("[radio]\n\nkind = \"sx9999\"\n", 3, "radio.kind"),
    (
        "[radio.semtech_udp]\nbind = \"localhost\"\n",
        2,
        "radio.semtech_udp.bind",
    ),
    (
        "[radio]\nkind = \"sx126x\"\n[radio.sx126x]\nboard = \"x\"\n",
        4,
        "radio.sx126x.board",
    ),
    ("[mqtt]\nserver = \"http://x:1\"\n", 2, "mqtt.server"),
    ("\n\n[mqtt]\nserver = \"tcp://x:99999\"\n", 4, "mqtt.server"),
    ("[mqtt]\ntopic_prefix = \"eu/#\"\n", 2, "mqtt.topic_prefix"),
    (
        "[mqtt]\nserver = \"ssl://x:8883\"\nca_cert = \"/nonexistent.pem\"\n",
        3,
        "mqtt.ca_cert",
    ),
    (
        "[mqtt]\nreconnect_min_ms = 5000\nreconnect_max_ms = 100\n",
        2,
        "mqtt.reconnect_min_ms",
    ),
    ("[mqtt]\ninflight = 0\n", 2, "mqtt.inflight"),
    (
        "[mqtt]\n\npoc_topic = \"{prefix}/gateway/{gateway_id}/event/{kind}\"\n",
        3,
        "mqtt.poc_topic",
    ),
    ("[outbox]\nmax_bytes = 10\n", 2, "outbox.max_bytes"),
    (
        "[uplink]\ndev_addr_prefixes = [\n  \"26000000/7\",\n  \"26/7\",\n]\n",
        4,
        "uplink.dev_addr_prefixes[1]",
    ),
    ("[log]\nlevel = \"loud\"\n", 2, "log.level"),
    ("[gps]\nbaud = 1234\n", 2, "gps.baud"),
    (
        "[service]\nallow_root = true\nmetrics_bind = \"nope\"\n",
        3,
        "service.metrics_bind",
    ),
    (
        "[poc]\nenabled = true\nwindow_secs = 7000\n",
        3,
        "poc.window_secs",
    ),
];

#[test]
fn every_error_names_the_file_the_line_and_the_key() {
    assert!(MALFORMED.len() >= 20);
    for (text, line, key) in MALFORMED {
        let e = err(text);
        assert!(
            e.starts_with(&format!("/etc/gatewayd/test.toml:{line}:")),
            "{text:?}: want line {line}: {e}"
        );
        assert!(e.contains(&format!("key `{key}`")), "{text:?}: {e}");
    }
}

#[test]
fn a_syntax_error_names_the_line_and_its_table() {
    let e = err("[mqtt]\nserver = \"tcp://x\"\nbad key = 1\n");
    assert!(e.starts_with("/etc/gatewayd/test.toml:3:"), "{e}");
    assert!(e.contains("[mqtt]"), "{e}");
}

#[test]
fn non_utf8_bytes_name_the_line_and_key_of_the_first_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatewayd.toml");
    let load = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        Config::load(&path).unwrap_err().to_string()
    };
    let file = path.display().to_string();
    let e = load(b"[gateway]\nid = \"0102030405060708\"\nregion = \"EU\xff868\"\n# caf\xe9\n");
    assert!(e.starts_with(&format!("{file}:3:13:")), "{e}");
    assert!(
        e.contains("key `gateway.region`") && e.contains("0xff"),
        "{e}"
    );
    assert!(e.contains("UTF-8"), "{e}");
    // In a comment: the line and column, no key.
    let e = load(b"[mqtt]\n# caf\xe9 au lait\nqos = 1\n");
    assert!(e.starts_with(&format!("{file}:2:6:")), "{e}");
    assert!(!e.contains("key `"), "{e}");
    // Latin-1 saved file in a key name's line of a table.
    let e = load(b"[gps]\ndevice = \"/dev/tty\xc3\"\n");
    assert!(
        e.starts_with(&format!("{file}:2:")) && e.contains("gps.device"),
        "{e}"
    );
}

#[test]
fn poc_reports_go_outside_chirpstacks_event_topics() {
    use crate::config::poc_topic::PocKind;
    let gw = Eui64([1, 2, 3, 4, 5, 6, 7, 8]);
    let c = parse("").unwrap();
    assert_eq!(
        c.mqtt.poc_report_topic(gw, PocKind::Witness),
        "eu868/gateway/0102030405060708/poc/witness"
    );
    let c = parse(
        "[mqtt]\ntopic_prefix = \"us915\"\npoc_topic = \"{prefix}/hotspots/{gateway_id}/{kind}\"\n",
    )
    .unwrap();
    assert_eq!(
        c.mqtt.poc_report_topic(gw, PocKind::Receipt),
        "us915/hotspots/0102030405060708/receipt"
    );
    let e = err("[mqtt]\ntopic_prefix = \"eu868\"\n\npoc_topic = \"{prefix}/gateway/{gateway_id}/event/{kind}\"\n");
    assert!(e.starts_with("/etc/gatewayd/test.toml:4:"), "{e}");
    assert!(e.contains("key `mqtt.poc_topic`"), "{e}");
    assert!(
        e.contains("eu868/gateway/+/event/+"),
        "what ChirpStack subscribes: {e}"
    );
    let e = err("[mqtt]\npoc_topic = \"{prefix}/poc/{kind}\"\n");
    assert!(e.contains("{gateway_id}") && e.contains(":2:"), "{e}");
}
