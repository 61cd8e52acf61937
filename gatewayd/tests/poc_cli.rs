//! `gatewayd keys …` and `gatewayd poc verify` through the real binary.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

fn gatewayd(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatewayd"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn keys_generate_show_onboard_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id.pk8");
    let key_s = key.to_str().unwrap();

    let out = gatewayd(&["keys", "generate", "--out", key_s], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = gatewayd(&["keys", "generate", "--out", key_s], None);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("refusing to overwrite"),
        "{}",
        text(&again.stderr)
    );

    let shown = gatewayd(&["keys", "show", "--key", key_s], None);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let shown = text(&shown.stdout);
    let address = shown
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .unwrap()
        .to_owned();
    assert_eq!(address.len(), 64);
    assert!(shown.contains(&format!("address:    {address}")));

    let onboard = gatewayd(
        &["keys", "onboard", "--owner", "wallet-9", "--key", key_s],
        None,
    );
    assert!(onboard.status.success(), "{}", text(&onboard.stderr));
    let statement = text(&onboard.stdout).trim().to_owned();

    // Valid from stdin; a tampered copy (owner changed, same length) fails on its signature.
    let tampered = statement.replace(&hex_of("wallet-9"), &hex_of("wallet-8"));
    assert_ne!(tampered, statement);
    let verify = gatewayd(
        &["poc", "verify"],
        Some(&format!("{statement}\n{tampered}\n")),
    );
    assert_eq!(verify.status.code(), Some(1));
    let lines = text(&verify.stdout);
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines[0], format!("-:1: valid Onboarding from {address}"));
    assert!(
        lines[1].starts_with("-:2: INVALID: bad signature"),
        "{lines:?}"
    );

    // All valid: exit 0 (file argument).
    let file = dir.path().join("reports.txt");
    std::fs::write(&file, format!("{statement}\n")).unwrap();
    let ok = gatewayd(&["poc", "verify", file.to_str().unwrap()], None);
    assert!(ok.status.success(), "{}", text(&ok.stdout));
}

#[test]
fn world_readable_key_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id.pk8");
    let key_s = key.to_str().unwrap();
    assert!(gatewayd(&["keys", "generate", "--out", key_s], None)
        .status
        .success());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = gatewayd(&["keys", "show", "--key", key_s], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("id.pk8") && err.contains("0644"), "{err}");
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}
