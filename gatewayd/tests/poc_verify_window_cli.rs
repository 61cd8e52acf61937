//! `gatewayd poc verify --min-window-secs` through the real binary: a beacon report from a
//! test network's short window is rejected by default (production minimum) with the reason,
//! and accepted when the verifier is told the test network's minimum.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use gatewayd::poc::beacon::{plan, BeaconWindow};
use gatewayd::poc::identity::{KeyFileSigner, Signer};
use gatewayd::poc::report::BeaconReport;
use gatewayd::poc::wire::{PositionSource, TimeSource, WirePosition};
use gatewayd::poc::{Body, Report};
use gatewayd::region::Region;

const ENTROPY: [u8; 32] = [7; 32];
/// 2026-11-26T00:00:00Z, s.
const T0_S: u64 = 1_795_651_200;

fn verify(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatewayd"))
        .args(["poc", "verify"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A signed beacon report in the window of `len_s` starting at `T0_S`.
fn report(dir: &std::path::Path, len_s: u32) -> (BeaconWindow, String) {
    let key = KeyFileSigner::generate(&dir.join(format!("{len_s}.pk8"))).unwrap();
    let region = Region::by_name("EU868").unwrap();
    let window = BeaconWindow {
        len_s,
        id: T0_S / u64::from(len_s),
    };
    let p = plan(region, None, &ENTROPY, &window, &[9; 32], &key.public_key()).unwrap();
    let tx_ms = window.start_ms() + 2_000;
    let body = BeaconReport {
        window,
        network_entropy: ENTROPY,
        local_entropy: [9; 32],
        region,
        sub_band: None,
        tx_time_ms: tx_ms,
        time_source: TimeSource::Gps,
        freq_hz: p.freq_hz as u32,
        dr: p.dr,
        power_dbm: 14,
        antenna_gain_ddbi: 20,
        cable_loss_ddb: 5,
        location: Some(WirePosition::from_degrees(
            PositionSource::Gps,
            52.0,
            4.0,
            10.0,
        )),
    };
    let signed = Report {
        key: key.public_key(),
        created_ms: tx_ms,
        deadline_ms: tx_ms + 600_000,
        body: Body::Beacon(body),
    }
    .sign(&key)
    .unwrap();
    (window, signed.to_hex())
}

fn entropy_arg(w: &BeaconWindow) -> String {
    let hex: String = ENTROPY.iter().map(|b| format!("{b:02x}")).collect();
    format!("--entropy={}:{}:{hex}", w.len_s, w.id)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn short_windows_need_the_test_network_minimum() {
    let dir = tempfile::tempdir().unwrap();
    let (w, short) = report(dir.path(), 10);
    let at = format!("--at-ms={}", w.start_ms() + 5_000);
    let e = entropy_arg(&w);

    // Default: the production minimum (3600 s) rejects a 10 s window, saying why.
    let out = verify(&[&e, &at], &format!("{short}\n"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(
            "-:1: INVALID: WindowTooShort: window of 10 s is shorter than this verifier's minimum of 3600 s"
        ),
        "{stdout}"
    );

    // A test network's verifier accepts it.
    let out = verify(&[&e, &at, "--min-window-secs", "10"], &format!("{short}\n"));
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).starts_with("-:1: valid Beacon from "));

    // An hour passes by default.
    let (w, hour) = report(dir.path(), 3600);
    let out = verify(
        &[
            &entropy_arg(&w),
            &format!("--at-ms={}", w.start_ms() + 5_000),
        ],
        &format!("{hour}\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stdout));

    // Below the protocol's own minimum the flag itself is refused.
    let out = verify(&["--min-window-secs", "5"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--min-window-secs"),
        "{}",
        text(&out.stderr)
    );
}
