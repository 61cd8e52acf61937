//! End to end, a full or damaged SD card: the real `gatewayd` binary, a real Mosquitto and a
//! GWMP packet forwarder on loopback.
//! - Disk full (state directory on a 4 MiB tmpfs; root only, else skipped with the reason
//!   printed): with the broker down, uplinks until the daemon withholds PUSH_ACK; another
//!   program then takes the last bytes; the broker comes back and the filler files go: every
//!   PUSH_ACKed uplink arrives exactly once (also after a restart), new uplinks are accepted
//!   again, the episode logs fewer than 20 lines, SIGTERM exits 0, also while full.
//! - A damaged outbox at start (truncated, random bytes, WAL deleted after kill -9): the
//!   daemon runs, the bad file is moved aside, the loss is in the log and in status.

use testkit as support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::broker::Mosquitto;
use support::daemon::*;
use support::smallfs::SmallFs;

const WAIT: Duration = Duration::from_secs(30);
const TOPIC_UP: &str = "eu868/gateway/+/event/up";
/// Room left on the 4 MiB file system by the first filler file: a few thousand uplinks.
const FILLER: u64 = 1536 * 1024;
/// Bounds the fill loop (far more than fit).
const MAX_UPLINKS: u32 = 40_000;

/// Push frame `n` and wait for its PUSH_ACK (one outstanding at a time, like a forwarder
/// waiting for its ack); whether it came.
fn push_acked(pf: &mut Forwarder, n: u32, wait: Duration) -> bool {
    let token = pf.push_uplink(&data_frame(n), n);
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if pf.acks(1, Duration::from_millis(100)).contains(&token) {
            return true;
        }
    }
    false
}

/// Push uplinks from `first` until one gets no PUSH_ACK; the numbers acknowledged.
fn fill(pf: &mut Forwarder, first: u32) -> Vec<u32> {
    let mut acked = Vec::new();
    for n in first..first + MAX_UPLINKS {
        if !push_acked(pf, n, Duration::from_secs(2)) {
            return acked;
        }
        acked.push(n);
    }
    panic!("{MAX_UPLINKS} uplinks stored on a 4 MiB file system: the outbox never filled");
}

fn wait_for(what: &str, d: &Daemon, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {WAIT:?}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn storage(d: &Daemon) -> serde_json::Value {
    d.status_json()["storage"].clone()
}

/// Info-and-above lines of the log from the first line containing `from` to the first
/// later line containing `to` (both included).
fn episode_lines(log: &str, from: &str, to: &str) -> Vec<String> {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE "))
        .collect();
    let Some(start) = lines.iter().position(|l| l.contains(from)) else {
        return Vec::new();
    };
    let end = lines[start..]
        .iter()
        .position(|l| l.contains(to))
        .map_or(lines.len(), |i| start + i + 1);
    lines[start..end].iter().map(|s| s.to_string()).collect()
}

/// The daemon with its state directory on a fresh 4 MiB tmpfs, not started yet.
fn on_small_fs(port: u16, test: &str) -> Option<(SmallFs, Daemon)> {
    let d = Daemon::create(port, "", "", &[]);
    let fs = SmallFs::mount(&d.state_dir(), 4096, test)?;
    Some((fs, d))
}

fn exactly_once(sub: &Subscriber, acked: &[u32]) -> Result<(), String> {
    let counts: HashMap<u32, usize> = sub.frame_counts();
    let missing: Vec<u32> = acked
        .iter()
        .copied()
        .filter(|n| !counts.contains_key(n))
        .collect();
    let twice: Vec<(u32, usize)> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, c)| (*n, *c))
        .collect();
    if missing.is_empty() && twice.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} acked uplinks missing (first {:?}), {} published more than once (e.g. {:?})",
            missing.len(),
            acked.len(),
            missing.first(),
            twice.len(),
            twice.first()
        ))
    }
}

#[test]
fn a_full_disk_refuses_uplinks_delivers_the_backlog_once_and_recovers_by_itself() {
    let mut broker = Mosquitto::start_persistent();
    let sub = Subscriber::start(broker.port(), TOPIC_UP);
    broker.stop();
    let Some((fs, mut d)) = on_small_fs(broker.port(), "disk full e2e") else {
        return;
    };
    fs.fill("filler", FILLER);
    d.spawn();
    let mut pf = Forwarder::new(d.udp_port);

    let acked = fill(&mut pf, 0);
    eprintln!(
        "disk full after {} acked uplinks; {} KiB left on the file system",
        acked.len(),
        fs.available() / 1024
    );
    assert!(
        acked.len() > 100,
        "some uplinks fit: {}\n{}",
        acked.len(),
        d.log()
    );
    wait_for("status says full", &d, || {
        storage(&d)["outbox_state"] == "full"
    });
    // Refused, not wedged: more uplinks get no PUSH_ACK, the daemon answers.
    let next = *acked.last().unwrap() + 1;
    assert!(!push_acked(&mut pf, next + 1, Duration::from_secs(1)));
    assert!(storage(&d)["refused_total"].as_u64().unwrap() >= 1);
    // Another program takes every byte left; then the broker comes back.
    fs.fill_up("filler2");
    broker.restart();
    wait_for("every acked uplink delivered", &d, || {
        let c = sub.frame_counts();
        acked.iter().all(|n| c.contains_key(n))
    });
    // The deletions committed although the file system had no byte left.
    wait_for("the outbox empties", &d, || {
        d.status_json()["outbox_messages"] == 0
    });
    // Space returns: new uplinks are accepted again.
    fs.free("filler2");
    fs.free("filler");
    let freed = Instant::now();
    let mut n = next + 10;
    loop {
        if push_acked(&mut pf, n, Duration::from_millis(500)) {
            break;
        }
        n += 1;
        assert!(freed.elapsed() < WAIT, "never accepted again\n{}", d.log());
    }
    eprintln!(
        "new uplinks accepted {:?} after space returned",
        freed.elapsed()
    );
    let mut acked = acked;
    acked.push(n);
    wait_for("the new uplink delivered", &d, || {
        sub.frame_counts().contains_key(&n)
    });
    wait_for("status says ok", &d, || storage(&d)["outbox_state"] == "ok");

    let log = d.log();
    let episode = episode_lines(&log, "disk full", "space is back");
    assert!(
        episode.last().is_some_and(|l| l.contains("space is back")),
        "transition logs:\n{log}"
    );
    assert!(
        episode.len() < 20,
        "{} log lines for the episode:\n{}",
        episode.len(),
        episode.join("\n")
    );
    eprintln!(
        "{} log lines for the episode:\n{}",
        episode.len(),
        episode.join("\n")
    );

    // Stop and start again: nothing delivered is published a second time.
    assert_eq!(
        d.terminate(WAIT).and_then(|s| s.code()),
        Some(0),
        "{}",
        d.log()
    );
    d.spawn();
    let mut pf = Forwarder::new(d.udp_port);
    let last = n + 1;
    assert!(push_acked(&mut pf, last, WAIT), "{}", d.log());
    acked.push(last);
    wait_for("the uplink after the restart", &d, || {
        sub.frame_counts().contains_key(&last)
    });
    if let Err(e) = exactly_once(&sub, &acked) {
        panic!("{e}\n{}", d.log());
    }
    assert_eq!(d.terminate(WAIT).and_then(|s| s.code()), Some(0));
    drop(d);
    drop(fs);
}

#[test]
fn sigterm_while_full_exits_0_and_the_restart_refuses_until_space_returns() {
    let mut broker = Mosquitto::start_persistent();
    let sub = Subscriber::start(broker.port(), TOPIC_UP);
    broker.stop();
    let Some((fs, mut d)) = on_small_fs(broker.port(), "SIGTERM while full e2e") else {
        return;
    };
    fs.fill("filler", FILLER);
    d.spawn();
    let mut pf = Forwarder::new(d.udp_port);
    let acked = fill(&mut pf, 0);
    assert_eq!(
        d.terminate(WAIT).and_then(|s| s.code()),
        Some(0),
        "{}",
        d.log()
    );

    // The restart runs on the full disk (the clean stop folded the WAL into the database,
    // so a few more may fit), fills up again and says so.
    d.spawn();
    let mut pf = Forwarder::new(d.udp_port);
    let mut acked = acked;
    let more = fill(&mut pf, acked.last().unwrap() + 1);
    let n = more.last().map_or(acked.last().unwrap() + 1, |m| m + 1);
    acked.extend(more);
    wait_for("status says full", &d, || {
        storage(&d)["outbox_state"] == "full"
    });
    assert!(!push_acked(&mut pf, n + 100, Duration::from_secs(1)));
    // SIGTERM while full, again, exits 0; the next start comes up too.
    assert_eq!(
        d.terminate(WAIT).and_then(|s| s.code()),
        Some(0),
        "{}",
        d.log()
    );
    d.spawn();
    let mut pf = Forwarder::new(d.udp_port);
    let n = n + 200;
    fs.free("filler");
    let mut m = n + 1;
    let freed = Instant::now();
    while !push_acked(&mut pf, m, Duration::from_millis(500)) {
        m += 1;
        assert!(freed.elapsed() < WAIT, "never accepted again\n{}", d.log());
    }
    broker.restart();
    let mut all = acked.clone();
    all.push(m);
    wait_for("everything delivered", &d, || {
        let c = sub.frame_counts();
        all.iter().all(|n| c.contains_key(n))
    });
    if let Err(e) = exactly_once(&sub, &all) {
        panic!("{e}\n{}", d.log());
    }
    assert_eq!(d.terminate(WAIT).and_then(|s| s.code()), Some(0));
    drop(d);
    drop(fs);
}

/// Start a daemon, store `n` uplinks with the broker down, stop it as `stop` says, damage
/// the outbox with `damage`, start again: the daemon must run; returns it and its status.
fn damaged_start(
    n: u32,
    kill: bool,
    damage: impl FnOnce(&std::path::Path),
) -> (Daemon, serde_json::Value) {
    let port = free_port();
    let mut d = Daemon::start(port, "");
    let mut pf = Forwarder::new(d.udp_port);
    for i in 0..n {
        assert!(push_acked(&mut pf, i, WAIT), "{}", d.log());
    }
    if kill {
        d.kill9();
    } else {
        let status = d.terminate(WAIT);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{status:?}\n{}",
            d.log()
        );
    }
    damage(&d.state_dir().join("outbox.sqlite"));
    // spawn() waits for PULL_ACK (and fails the test if the daemon exits).
    d.spawn();
    wait_for("status with the outbox figures", &d, || {
        !d.status_json()["outbox_messages"].is_null()
    });
    let status = d.status_json();
    (d, status)
}

fn corrupt_files(d: &Daemon) -> Vec<String> {
    std::fs::read_dir(d.state_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("outbox.sqlite.corrupt-"))
        .collect()
}

#[test]
fn a_damaged_outbox_is_moved_aside_and_the_daemon_runs_saying_what_was_lost() {
    // Random bytes.
    let (d, status) = damaged_start(20, false, |p| {
        let junk: Vec<u8> = (0..50_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        std::fs::write(p, junk).unwrap();
    });
    let s = &status["storage"];
    assert_eq!(s["outbox_corrupt_total"], 1, "{status}");
    assert!(
        s["problems"][0].as_str().unwrap().contains("moved it to"),
        "{s}"
    );
    assert_eq!(corrupt_files(&d).len(), 1);
    assert_eq!(
        d.log().matches("the file was damaged").count(),
        1,
        "one error line"
    );

    // Truncated: what is left is salvaged.
    let (d, status) = damaged_start(300, false, |p| {
        let len = std::fs::metadata(p).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(len * 2 / 3)
            .unwrap();
    });
    let s = &status["storage"];
    assert_eq!(s["outbox_corrupt_total"], 1, "{status}\n{}", d.log());
    let salvaged = s["outbox_salvaged_total"].as_u64().unwrap();
    assert!(salvaged > 0 && salvaged < 300, "{s}");
    assert_eq!(
        status["outbox_messages"].as_u64(),
        Some(salvaged),
        "{status}"
    );
    assert_eq!(corrupt_files(&d).len(), 1);

    // WAL deleted after a kill -9: the loss is detected and reported.
    let (d, status) = damaged_start(30, true, |p| {
        let wal = std::path::PathBuf::from(format!("{}-wal", p.display()));
        std::fs::remove_file(&wal).unwrap();
    });
    let s = &status["storage"];
    assert!(
        s["outbox_lost_total"].as_u64().unwrap() > 0,
        "{status}\n{}",
        d.log()
    );
    assert!(s["problems"][0].as_str().unwrap().contains("-wal"), "{s}");
    assert!(d.log().contains("ERROR"), "an error line:\n{}", d.log());
}
