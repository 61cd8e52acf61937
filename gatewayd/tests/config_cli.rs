//! `gatewayd check-config` through the real binary: 0 for a valid file, non-zero with a message
//! naming the file, the line and the key for each kind of error.

use std::process::Command;

fn check(text: impl AsRef<[u8]>) -> (bool, String) {
    check_at(text).1
}

/// Run check-config on `text`; returns the file's path and (success, output).
fn check_at(text: impl AsRef<[u8]>) -> (String, (bool, String)) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatewayd.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatewayd"))
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(&path.display().to_string()),
        "message names the file: {text}"
    );
    (path.display().to_string(), (out.status.success(), text))
}

#[test]
fn valid_config_exits_zero() {
    let (ok, text) = check("[gateway]\nregion = \"US915\"\n[mqtt]\ntopic_prefix = \"us915\"\n");
    assert!(ok, "{text}");
    assert!(text.contains("valid"), "{text}");
}

#[test]
fn each_kind_of_error_exits_non_zero_naming_the_key() {
    for (text, key) in [
        ("[mqtt]\nsever = \"tcp://x:1\"\n", "mqtt.sever"),
        ("[gateway]\nregion = 868\n", "gateway.region"),
        ("[gateway]\nregion = \"EU999\"\n", "gateway.region"),
        ("[radio]\nkind = \"sx9999\"\n", "radio.kind"),
        ("[mqtt]\nserver = \"http://broker\"\n", "mqtt.server"),
        ("[mqtt\n", ""),
    ] {
        let (ok, out) = check(text);
        assert!(!ok, "{text:?} accepted: {out}");
        assert!(out.contains(key), "{text:?}: {out}");
    }
}

#[test]
fn each_kind_of_error_names_the_file_the_line_and_the_key() {
    for (text, line, key) in [
        // unknown key
        (
            &b"[mqtt]\nserver = \"tcp://x:1\"\nsever = 1\n"[..],
            3,
            "mqtt.sever",
        ),
        // type error
        (b"[gateway]\nregion = 868\n", 2, "gateway.region"),
        // out of range
        (
            b"[gateway]\nregion = \"EU868\"\n\n[mqtt]\nqos = 2\n",
            5,
            "mqtt.qos",
        ),
        // invalid value
        (
            b"[gateway]\nid = \"0102030405060708\"\nregion = \"EU999\"\n",
            3,
            "gateway.region",
        ),
        // missing required key: the table that lacks it
        (
            b"[outbox]\n[gateway.location]\nlatitude = 1.0\n",
            2,
            "gateway.location",
        ),
        // non-UTF-8 byte in a value
        (b"[log]\nlevel = \"inf\xf6\"\n", 2, "log.level"),
    ] {
        let (file, (ok, out)) = check_at(text);
        assert!(!ok, "{text:?} accepted: {out}");
        assert!(
            out.contains(&format!("{file}:{line}:")),
            "{text:?}: want line {line}: {out}"
        );
        assert!(out.contains(&format!("key `{key}`")), "{text:?}: {out}");
    }
}

#[test]
fn missing_file_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_gatewayd"))
        .args(["--config", "/nonexistent/gatewayd.toml", "check-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/gatewayd.toml"));
}

#[test]
fn shipped_config_passes_check_config() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/gatewayd.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_gatewayd"))
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
