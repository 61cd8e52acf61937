//! The README's first command: `gatewayd-demo` starts (its own Mosquitto, the simulated air and
//! device fleet, the daemon), uplinks are seen arriving over MQTT, and it stops by itself and cleanly.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn demo_shows_uplinks_flowing_to_mqtt_and_stops() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_gatewayd-demo"))
        .args(["--duration", "6", "--rate", "10"])
        .output()
        .expect("run gatewayd-demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "demo did not stop by itself"
    );
    let uplinks = stdout.lines().filter(|l| l.contains("uplink #")).count();
    assert!(
        uplinks >= 10,
        "expected uplinks in the demo output, got {uplinks}:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("DevAddr 2600"), "{stdout}");
    assert!(
        stdout.contains("Online"),
        "ConnState ONLINE shown: {stdout}"
    );
    let sent: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("demo: the simulated devices sent "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("summary line");
    assert!(
        uplinks as u64 <= sent,
        "more uplinks shown ({uplinks}) than sent ({sent})"
    );
}
