//! `gatewayd-sim` as a separate process: a simulated radio in this process joins its air
//! over the loopback UDP hub and receives the fleet's valid LoRaWAN uplinks.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use drivers::radio::RadioEvent;
use sim::crypto::{data_dev_addr, open_data_frame};
use sim::fleet::device_keys;
use sim::model::SimPosition;
use sim::radio::{spawn, SimHub, SimRadioConfig};
use tokio_util::sync::CancellationToken;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_radio_in_another_process_hears_the_fleet() {
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_gatewayd-sim"))
            .args(["--hub", "127.0.0.1:0", "--devices", "8", "--seed", "4"])
            .args(["--interval-s", "3", "--sf", "7", "--radius-m", "300"])
            .args(["--summary-s", "1", "--duration-s", "30"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start gatewayd-sim"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, lines) = std_mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines.recv_timeout(Duration::from_secs(20)).expect("banner");
    let addr = first
        .split_whitespace()
        .find_map(|w| w.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));

    let stop = CancellationToken::new();
    let cfg = SimRadioConfig {
        hub: SimHub::Address(addr),
        position: SimPosition::xy(0.0, 0.0),
        antenna_gain_dbi: 2.0,
        gateway: None,
        stats_interval: Duration::from_secs(3600),
    };
    let mut radio = spawn(cfg, stop.clone()).await.expect("join the hub");
    let mut valid = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while valid.len() < 4 {
        let ev = tokio::time::timeout_at(deadline, radio.events.recv())
            .await
            .expect("uplinks from at least 4 devices within 20 s")
            .expect("radio running");
        if let RadioEvent::Uplinks { frames, .. } = ev {
            for f in frames {
                let addr = data_dev_addr(&f.payload).unwrap();
                let keys = device_keys(4, addr - 0x2600_0000);
                open_data_frame(&f.payload, &keys.abp, 0).expect("valid MIC");
                assert!(f.meta.rssi < 0 && f.meta.snr.is_some());
                valid.insert(addr);
            }
        }
    }
    let summary = (0..10)
        .filter_map(|_| lines.recv_timeout(Duration::from_secs(3)).ok())
        .find(|l| l.starts_with("fleet:"))
        .expect("a summary line");
    assert!(
        summary.contains("uplinks") && summary.contains("collisions"),
        "{summary}"
    );
    stop.cancel();
}
