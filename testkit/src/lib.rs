//! Shared test harness of gatewayd's integration tests: a real Mosquitto broker (the same
//! launcher the demo uses), MQTT subscribers, the real `gatewayd` binary and a GWMP packet
//! forwarder, a TCP proxy that breaks connections on demand, and bounded waits. A dev-dependency
//! only: the shipped daemon never links it. Use with `use testkit as support;` in a test file.

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub mod broker;
pub mod daemon;
pub mod hotspot;
pub mod mosquitto;
pub mod network;
pub mod observe;
pub mod proxy;
pub mod publisher;
pub mod smallfs;

/// The `gatewayd` binary under test: `$GATEWAYD_BIN`, else `$CARGO_BIN_EXE_gatewayd` (which
/// `cargo test` sets when running gatewayd's integration tests), else `gatewayd` beside the
/// test binary's `deps/` directory (where cargo builds it).
pub fn gatewayd_bin() -> PathBuf {
    for var in ["GATEWAYD_BIN", "CARGO_BIN_EXE_gatewayd"] {
        if let Some(p) = std::env::var_os(var) {
            return PathBuf::from(p);
        }
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("gatewayd")))
        .filter(|p| p.is_file())
        .expect("the gatewayd binary: run through `cargo test -p gatewayd` or set GATEWAYD_BIN")
}

/// Wait (bounded) until `ok` holds, polling every 50 ms; panics naming `what` after `wait`.
pub fn wait_for(what: &str, wait: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + wait;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
