//! Tests of the `[radio.sx126x]` / `[radio.sx127x]` validation.

use super::*;

/// Why a test's section did not load: its TOML shape, or its values.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

fn sx126x(toml_text: &str) -> Result<LoraPhySettings, LoadError> {
    let cfg: Sx126xConfig = toml::from_str(toml_text)?;
    Ok(cfg.validate("radio.sx126x")?)
}

fn sx127x(toml_text: &str) -> Result<LoraPhySettings, LoadError> {
    let cfg: Sx127xConfig = toml::from_str(toml_text)?;
    Ok(cfg.validate("radio.sx127x")?)
}

#[test]
fn waveshare_profile_fills_everything() {
    let s = sx126x("board = \"waveshare-sx1262-hat\"\nfrequency_hz = 868100000\n").unwrap();
    assert_eq!(s.chip, Chip::Sx1262);
    assert_eq!(s.spi_device, PathBuf::from("/dev/spidev0.0"));
    assert_eq!(
        (s.reset_pin, s.busy_pin, s.irq_pin, s.spi_cs_pin),
        (18, Some(20), 16, Some(21))
    );
    assert!(s.dio2_rf_switch);
    assert_eq!(
        s.channel,
        Channel {
            freq_hz: 868_100_000,
            sf: 7,
            bw_hz: 125_000,
            cr: CodeRate::Cr45,
            preamble: 8
        }
    );
    assert!(s.public_network);
    assert_eq!((s.tx_power_min_dbm, s.tx_power_max_dbm), (-9, 22));
}

#[test]
fn overrides_win_over_the_profile() {
    let s = sx126x(
        "board = \"waveshare-sx1262-hat\"\nfrequency_hz = 868300000\nbusy_pin = 5\ntcxo_voltage = 1.8\nsf = 9\ntx_power_max_dbm = 14\nspi_device = \"/dev/spidev1.0\"\n",
    )
    .unwrap();
    assert_eq!(s.busy_pin, Some(5));
    assert_eq!(s.tcxo, Some(TcxoVoltage::V1_8));
    assert_eq!(s.channel.sf, 9);
    assert_eq!(s.tx_power_max_dbm, 14);
    assert_eq!(s.spi_device, PathBuf::from("/dev/spidev1.0"));
}

#[test]
fn rfm95w_bonnet_profile() {
    let s = sx127x("board = \"adafruit-rfm95w-bonnet\"\nfrequency_hz = 915200000\n").unwrap();
    assert_eq!(s.chip, Chip::Sx1276);
    assert_eq!(s.spi_device, PathBuf::from("/dev/spidev0.1"));
    assert_eq!((s.reset_pin, s.irq_pin, s.busy_pin), (25, 22, None));
    assert_eq!(s.tx_power_max_dbm, 20);
}

#[test]
fn unknown_board_is_named() {
    let e = sx126x("board = \"acme-hat\"\nfrequency_hz = 868100000\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("radio.sx126x.board: unknown board \"acme-hat\""),
        "{e}"
    );
    assert!(e.contains("waveshare-sx1262-hat"), "{e}");
}

#[test]
fn wrong_pins_are_named() {
    let e = sx126x("board = \"waveshare-sx1262-hat\"\nfrequency_hz = 868100000\nbusy_pin = 16\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("radio.sx126x.dio1_pin: line 16 is already used by radio.sx126x.busy_pin"),
        "{e}"
    );
    let e = sx126x("chip = \"sx1262\"\nspi_device = \"/dev/spidev0.0\"\nreset_pin = 18\ndio1_pin = 16\nfrequency_hz = 868100000\n").unwrap_err().to_string();
    assert_eq!(
        e,
        "radio.sx126x.busy_pin: required when the board does not define it"
    );
    let e = sx127x("board = \"dragino-lora-hat\"\nfrequency_hz = 868100000\ndio0_pin = 5000\n")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("radio.sx127x.dio0_pin: line 5000"), "{e}");
}

#[test]
fn unknown_keys_are_rejected() {
    let e = sx126x("board = \"waveshare-sx1262-hat\"\nfrequency_hz = 868100000\nbusy_pn = 3\n")
        .unwrap_err();
    assert!(matches!(e, LoadError::Toml(_)), "{e}");
    assert!(e.to_string().contains("unknown field `busy_pn`"), "{e}");
}

#[test]
fn radio_values_are_checked() {
    let base = "board = \"waveshare-sx1262-hat\"\n";
    let e = sx126x(&format!("{base}frequency_hz = 2400000000\n"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("radio.sx126x.frequency_hz:"), "{e}");
    let e = sx126x(&format!("{base}frequency_hz = 868100000\nsf = 13\n"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("radio.sx126x.sf: SF13"), "{e}");
    let e = sx126x(&format!("{base}frequency_hz = 868100000\nbw_hz = 100000\n"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("radio.sx126x.bw_hz:"), "{e}");
    let e = sx126x(&format!(
        "{base}frequency_hz = 868100000\ntcxo_voltage = 2.0\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("radio.sx126x.tcxo_voltage: 2 V"), "{e}");
    let e = sx126x(&format!(
        "{base}frequency_hz = 868100000\ntx_power_max_dbm = 30\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("radio.sx126x.tx_power_max_dbm: 30 dBm"),
        "{e}"
    );
    let e = sx126x(&format!(
        "{base}frequency_hz = 868100000\ncoding_rate = \"4/9\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("radio.sx126x.coding_rate:"), "{e}");
    let e = sx126x(&format!(
        "{base}frequency_hz = 868100000\nchip = \"sx1276\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("radio.sx126x.chip: SX1276 does not belong"),
        "{e}"
    );
    let e = sx127x("board = \"adafruit-rfm95w-bonnet\"\nfrequency_hz = 868100000\nsf = 5\n")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("radio.sx127x.sf: SF5"), "{e}");
}
