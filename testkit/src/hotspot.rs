//! A `gatewayd` process on the simulated air: the real binary with `radio.kind =
//! "simulated"`, joined to an air hub, publishing to a test broker.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One hotspot process with its config, state and log in a temp dir; killed on drop.
pub struct Hotspot {
    /// Its gateway id.
    pub id: &'static str,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Hotspot {
    /// Start gateway `id` on the air hub at `hub`, publishing to the broker on `mqtt`.
    /// `position` goes into `[radio.simulated]` (`x_m`/`y_m` or `lat`/`lon`); `extra` is
    /// appended to the config (whole sections, e.g. `[gateway.location]`, `[poc]`).
    pub fn start(
        id: &'static str,
        position: &str,
        hub: std::net::SocketAddr,
        mqtt: u16,
        extra: &str,
    ) -> Hotspot {
        Hotspot::start_with(id, position, hub, mqtt, 3600, extra)
    }

    /// [`Hotspot::start`] publishing gateway stats every `stats_interval_secs`.
    pub fn start_with(
        id: &'static str,
        position: &str,
        hub: std::net::SocketAddr,
        mqtt: u16,
        stats_interval_secs: u64,
        extra: &str,
    ) -> Hotspot {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("gatewayd.toml");
        let text = format!(
            "[gateway]\nid = \"{id}\"\nregion = \"EU868\"\nstate_dir = {state:?}\n\
             stats_interval_secs = {stats_interval_secs}\n\
             [radio]\nkind = \"simulated\"\n\
             [radio.simulated]\nhub = \"{hub}\"\n{position}\nantenna_gain_dbi = 0.0\n\
             [mqtt]\nserver = \"tcp://127.0.0.1:{mqtt}\"\ntopic_prefix = \"eu868\"\n\
             reconnect_min_ms = 100\nreconnect_max_ms = 1000\n\
             [service]\nallow_root = true\nstatus_socket = {sock:?}\nmetrics_bind = \"\"\n{extra}",
            state = dir.path().join("state").display().to_string(),
            sock = dir.path().join("status.sock").display().to_string(),
            extra = crate::daemon::trusted_clock(extra),
        );
        std::fs::write(&config, text).expect("write config");
        let log = std::fs::File::create(dir.path().join("gatewayd.log")).expect("log file");
        let child = Command::new(crate::gatewayd_bin())
            .arg("--config")
            .arg(&config)
            .arg("--log-level")
            .arg("debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start gatewayd");
        Hotspot {
            id,
            child: Some(child),
            dir,
        }
    }

    /// The config file.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("gatewayd.toml")
    }

    /// The log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("gatewayd.log")
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `gatewayd status --json` of this hotspot.
    pub fn status(&self) -> serde_json::Value {
        crate::daemon::status_json(&self.config())
    }

    /// SIGTERM and wait (bounded); the exit status, or `None` if it had to be killed.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        crate::daemon::terminate_child(self.child.take()?, within)
    }
}
