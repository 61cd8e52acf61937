//! End to end: the daemon's wall clock steps (libfaketime, file-driven, the monotonic clock
//! left real) +10 years and then back one hour while uplinks are stored with the broker
//! down, with a `kill -9` and restart in between; with `uplink_expiry_secs = 3600` none of
//! them expires, and all arrive once the broker is back. A step is not age.
//!
//! libfaketime comes from Debian's `faketime` package (scripts/setup installs it).

use testkit as support;

use std::path::PathBuf;
use std::time::Duration;

use support::daemon::*;
use support::observe::{status_json, wait_until};

const WAIT: Duration = Duration::from_secs(30);
const TEN_YEARS_S: i64 = 10 * 365 * 86_400;

/// libfaketime's multi-threaded library (the daemon runs threads), of the architecture the
/// daemon is built for (under qemu, an arm64 daemon needs `libfaketime:arm64`).
fn libfaketime() -> PathBuf {
    let multiarch = match std::env::consts::ARCH {
        "aarch64" => "aarch64-linux-gnu",
        "arm" => "arm-linux-gnueabihf",
        _ => "x86_64-linux-gnu",
    };
    let path = PathBuf::from(format!("/usr/lib/{multiarch}/faketime/libfaketimeMT.so.1"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup (Debian package faketime), or for another \
         architecture scripts/cross's set-up (libfaketime:ARCH)",
        path.display()
    );
    path
}

/// Set the daemon's wall-clock offset from real time, in seconds.
fn set_offset(file: &std::path::Path, seconds: i64) {
    std::fs::write(file, format!("{seconds:+}\n")).expect("write the faketime file");
}

fn expired_uplinks(s: &serde_json::Value) -> Option<u64> {
    s["outbox_expired"]
        .as_array()?
        .iter()
        .find(|c| c["class"] == "uplink")?["count"]
        .as_u64()
}

#[test]
fn stored_uplinks_survive_wall_clock_steps_of_ten_years_and_minus_one_hour() {
    let mut broker = Mosquitto::start_persistent();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/+/event/up");
    broker.stop();

    let clock_dir = tempfile::tempdir().unwrap();
    let offset = clock_dir.path().join("faketime");
    set_offset(&offset, 0);
    let lib = libfaketime().display().to_string();
    let offset_path = offset.display().to_string();
    let env = [
        ("LD_PRELOAD", lib.as_str()),
        ("FAKETIME_TIMESTAMP_FILE", offset_path.as_str()),
        ("FAKETIME_NO_CACHE", "1"),
        ("DONT_FAKE_MONOTONIC", "1"),
    ];
    let mut daemon = Daemon::start_env(
        broker.port(),
        "",
        "[outbox]\nuplink_expiry_secs = 3600\n",
        &env,
    );
    let mut pf = Forwarder::new(daemon.udp_port);
    assert_eq!(pf.push_frames(0..70, 16, WAIT), 70, "{}", daemon.log());

    // NTP finds the clock ten years behind.
    set_offset(&offset, TEN_YEARS_S);
    assert_eq!(pf.push_frames(70..140, 16, WAIT), 70, "{}", daemon.log());
    wait_until("the step noticed", WAIT, || {
        let log = daemon.log();
        log.contains("wall clock stepped")
            .then_some(())
            .ok_or_else(|| log.lines().rev().take(5).collect::<Vec<_>>().join("\n"))
    });

    // A crash while the clock is ten years ahead, then a step back of one hour.
    daemon.kill9();
    daemon.spawn();
    set_offset(&offset, TEN_YEARS_S - 3600);
    let mut pf = Forwarder::new(daemon.udp_port);
    assert_eq!(pf.push_frames(140..210, 16, WAIT), 70, "{}", daemon.log());

    // Every uplink was PUSH_ACKed, so stored; the outbox may also hold the daemon's own
    // messages (stats, receipts) by now, whose timing depends on how busy the machine is.
    wait_until("210 stored, none expired", WAIT, || {
        let s = status_json(&daemon);
        match (s["outbox_messages"].as_u64(), expired_uplinks(&s)) {
            (Some(n), Some(0)) if n >= 210 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    broker.restart();
    let missing = sub.missing_frames(0..210, Duration::from_secs(60));
    assert!(
        missing.is_empty(),
        "lost across the clock steps: {missing:?}\n{}",
        daemon.log()
    );
    let s = status_json(&daemon);
    assert_eq!(expired_uplinks(&s), Some(0), "{s}");
}
