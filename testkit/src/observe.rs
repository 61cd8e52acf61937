//! What the operator sees of a running daemon: `gatewayd status --json` and `/metrics`, read
//! through the real binary and the real HTTP endpoint, with bounded waits.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::daemon::Daemon;

/// `gatewayd status --json` (Null when the daemon does not answer).
pub fn status_json(daemon: &Daemon) -> serde_json::Value {
    let out = Command::new(crate::gatewayd_bin())
        .arg("--config")
        .arg(&daemon.config)
        .args(["status", "--json"])
        .output()
        .expect("run gatewayd status");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// The body of GET /metrics from the endpoint the daemon logged last (port 0 picks a new one
/// per start); empty when it does not answer.
pub fn metrics(daemon: &Daemon) -> String {
    use std::io::{Read, Write};
    let log = daemon.log();
    let Some(addr) = log
        .rsplit("metrics on http://")
        .next()
        .and_then(|r| r.split("/metrics").next())
        .filter(|_| log.contains("metrics on http://"))
    else {
        return String::new();
    };
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// The value of one series (`name{labels}` exactly as exposed) in a metrics body.
pub fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Wait (bounded) until `f` holds; panics naming `what` (and the last `detail`) after `wait`.
pub fn wait_until(what: &str, wait: Duration, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + wait;
    loop {
        match f() {
            Ok(()) => return,
            Err(detail) if Instant::now() > deadline => {
                panic!("timed out waiting for {what}: {detail}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
