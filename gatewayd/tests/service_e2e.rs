//! The daemon as a system service, through the real binary: sd_notify on a socket the test
//! binds as NOTIFY_SOCKET (READY, STATUS, WATCHDOG, STOPPING), SIGHUP with a valid and an
//! invalid config, `gatewayd status`, the metrics endpoint, logs on stderr without a journal,
//! dropping root privileges, and the watchdog withheld while a core loop is stuck.

use testkit as support;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use support::daemon::*;
use support::wait_for;

const WAIT: Duration = Duration::from_secs(20);

/// Datagrams received on the notify socket, as text.
fn drain(sock: &UnixDatagram, into: &mut Vec<String>) {
    let mut timed = Vec::new();
    pings(sock, &mut timed);
    into.extend(timed.into_iter().map(|(_, m)| m));
}

/// Datagrams received on the notify socket, as text with the instant each was read.
fn pings(sock: &UnixDatagram, got: &mut Vec<(Instant, String)>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        got.push((
            Instant::now(),
            String::from_utf8_lossy(&buf[..n]).to_string(),
        ));
    }
}

/// The daemon with a notify socket the test bound (non-blocking) and a 2 s watchdog, so it
/// pings every second; the temp dir holds the socket.
fn notified_daemon(broker: &Mosquitto) -> (Daemon, UnixDatagram, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_nonblocking(true).unwrap();
    let daemon = Daemon::start_env(
        broker.port(),
        "id = \"0102030405060708\"",
        "",
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    (daemon, sock, dir)
}

#[test]
fn sd_notify_ready_status_watchdog_stopping() {
    let broker = Mosquitto::start();
    let (mut daemon, sock, _dir) = notified_daemon(&broker);
    let mut got = Vec::new();
    wait_for("READY=1", WAIT, || {
        drain(&sock, &mut got);
        got.iter().any(|m| m.contains("READY=1"))
    });
    assert!(
        got.iter()
            .any(|m| m.starts_with("STATUS=") && m.contains("radio")),
        "{got:?}"
    );
    // WATCHDOG_USEC of 2 s: pings every second while the loops run.
    let before = got.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    wait_for("two watchdog pings", Duration::from_secs(10), || {
        drain(&sock, &mut got);
        got.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= before + 2
    });
    let status = daemon
        .terminate(Duration::from_secs(10))
        .expect("exits within 10 s");
    assert!(status.success(), "{status}");
    drain(&sock, &mut got);
    assert!(got.iter().any(|m| m.contains("STOPPING=1")), "{got:?}");
}

#[test]
fn sighup_applies_a_valid_config_and_rejects_an_invalid_one() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/+/event/up");
    let daemon = Daemon::start(broker.port(), "");
    let mut pf = Forwarder::new(daemon.udp_port);
    let original = std::fs::read_to_string(&daemon.config).unwrap();
    let hup = || {
        Command::new("kill")
            .args(["-HUP", &daemon.pid().unwrap().to_string()])
            .status()
            .unwrap();
    };

    // A DevAddr filter that excludes the test frames, applied live.
    std::fs::write(
        &daemon.config,
        format!("{original}[uplink]\ndev_addr_prefixes = [\"00000000/8\"]\n"),
    )
    .unwrap();
    hup();
    wait_for("reload applied", WAIT, || {
        daemon.log().contains("SIGHUP: applied uplink")
    });
    assert_eq!(pf.push_frames(0..5, 4, WAIT), 5);

    // An invalid file: rejected, the filter stays in force, traffic still acknowledged.
    std::fs::write(&daemon.config, format!("{original}[uplink]\nbogus = 1\n")).unwrap();
    hup();
    wait_for("reload rejected", WAIT, || {
        daemon.log().contains("the new config is rejected")
    });
    assert!(
        daemon.log().contains("uplink.bogus"),
        "the rejection names the key:\n{}",
        daemon.log()
    );
    assert_eq!(pf.push_frames(5..10, 4, WAIT), 5);

    // Back to the original: frames flow again.
    std::fs::write(&daemon.config, &original).unwrap();
    hup();
    wait_for("second reload", WAIT, || {
        daemon.log().matches("SIGHUP: applied uplink").count() >= 2
    });
    assert_eq!(pf.push_frames(10..15, 4, WAIT), 5);
    let ups = sub.wait_uplinks(WAIT, |u| u.len() >= 5);
    std::thread::sleep(Duration::from_millis(300));
    let counts = sub.frame_counts();
    assert!((10..15).all(|n| counts.contains_key(&n)), "{counts:?}");
    assert!(
        (0..10).all(|n| !counts.contains_key(&n)),
        "filtered while the filter was in force: {ups:?}"
    );
}

#[test]
fn status_command_and_metrics_endpoint() {
    let broker = Mosquitto::start();
    let daemon = Daemon::start(broker.port(), "");
    let mut pf = Forwarder::new(daemon.udp_port);
    assert_eq!(pf.push_frames(0..7, 4, WAIT), 7);

    let status = |json: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatewayd"));
        cmd.arg("--config").arg(&daemon.config).arg("status");
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    wait_for("status with uplinks and mqtt", WAIT, || {
        let v: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
        v["uplinks_received_total"] == 7
            && v["mqtt"]["connected"] == true
            && v["outbox_messages"].is_u64()
    });
    let text = status(false);
    assert!(text.contains("0102030405060708"), "{text}");
    assert!(text.to_lowercase().contains("uptime"), "{text}");

    let log = daemon.log();
    let addr = log
        .split("metrics on http://")
        .nth(1)
        .and_then(|r| r.split("/metrics").next())
        .expect("metrics address logged")
        .to_string();
    let body = http_get(&addr, "/metrics");
    assert!(
        body.contains("# TYPE gatewayd_uplinks_received_total counter"),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|l| l == "gatewayd_uplinks_received_total 7"),
        "{body}"
    );
    assert!(body.contains("gatewayd_mqtt_connected 1"), "{body}");

    // Without a daemon the command says which socket it tried.
    drop(daemon);
    let out = Command::new(env!("CARGO_BIN_EXE_gatewayd"))
        .args(["--config", "/nonexistent.toml", "status"])
        .env("RUNTIME_DIRECTORY", "/nonexistent-run")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent-run/status.sock"));
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn logs_go_to_stderr_without_a_journal() {
    let broker = Mosquitto::start();
    let daemon = Daemon::start(broker.port(), "");
    wait_for("startup logged", WAIT, || {
        daemon.log().contains("gatewayd running")
    });
    assert!(daemon.log().contains("outbox"), "{}", daemon.log());
}

#[test]
fn root_drops_to_the_configured_user_and_keeps_working() {
    if !nix::unistd::geteuid().is_root() {
        // Not root: the daemon keeps its identity, which every other test exercises.
        return;
    }
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/+/event/up");
    let daemon = Daemon::start(broker.port(), "[service]\nuser = \"nobody\"\n");
    wait_for("privileges dropped", WAIT, || {
        daemon.log().contains("running as nobody")
    });
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", daemon.pid().unwrap())).unwrap();
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "65534"),
        "{uid_line}"
    );
    let mut pf = Forwarder::new(daemon.udp_port);
    assert_eq!(
        pf.push_frames(0..5, 4, WAIT),
        5,
        "the outbox stays writable:\n{}",
        daemon.log()
    );
    sub.wait_uplinks(WAIT, |u| u.len() >= 5);
    assert_eq!(sub.frame_counts().len(), 5);
}

#[test]
fn root_without_a_user_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gatewayd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nstate_dir = {:?}\n",
            dir.path().join("state").display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatewayd"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to run as root"));
}

#[test]
fn ready_without_a_packet_forwarder_says_what_it_waits_for() {
    // No gateway id in the config and no forwarder yet: systemd must still get READY=1 (else
    // its start timeout kills a daemon that is working), with a STATUS= saying why MQTT waits.
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_nonblocking(true).unwrap();
    let cfg = dir.path().join("gatewayd.toml");
    std::fs::write(
        &cfg,
        config_text(dir.path(), free_port(), free_port(), "", ""),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatewayd"))
        .arg("--config")
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !got.iter().any(|m: &String| m.contains("READY=1")) && Instant::now() < deadline {
        drain(&sock, &mut got);
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(got.iter().any(|m| m.contains("READY=1")), "{got:?}");
    assert!(
        got.iter()
            .any(|m| m.contains("STATUS=waiting for the packet forwarder")),
        "{got:?}"
    );
}

#[test]
fn identity_key_is_created_0600_and_an_unsafe_one_stops_the_daemon() {
    use std::os::unix::fs::PermissionsExt;
    let broker = Mosquitto::start();
    let mut daemon = Daemon::start(broker.port(), "");
    wait_for("identity logged", WAIT, || {
        daemon.log().contains("hotspot identity")
    });
    let key = daemon.dir.join("state/identity.pk8");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", key.display());
    assert_eq!(
        daemon
            .terminate(Duration::from_secs(10))
            .map(|s| s.success()),
        Some(true)
    );

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatewayd"))
        .arg("--config")
        .arg(&daemon.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("identity.pk8"), "{err}");
}

#[test]
fn a_stuck_outbox_stops_the_watchdog_pings_until_it_recovers() {
    let broker = Mosquitto::start();
    let (mut daemon, sock, _dir) = notified_daemon(&broker);
    let mut got: Vec<(Instant, String)> = Vec::new();
    let watchdog_pings = |got: &[(Instant, String)]| {
        got.iter()
            .filter(|(_, m)| m.contains("WATCHDOG=1"))
            .map(|(t, _)| *t)
            .collect::<Vec<Instant>>()
    };
    wait_for("READY=1 and two pings", WAIT, || {
        pings(&sock, &mut got);
        got.iter().any(|(_, m)| m.contains("READY=1")) && watchdog_pings(&got).len() >= 2
    });

    // Another process holds the outbox's write lock (a hung disk looks the same to the
    // daemon): every store waits out SQLite's busy timeout and the outbox loop falls behind.
    let db = rusqlite::Connection::open(daemon.dir.join("state").join("outbox.sqlite")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let locked_at = Instant::now();
    let mut pf = Forwarder::new(daemon.udp_port);
    let mut n = 0u32;
    // The outbox loop must check in every 15 s; with pings every second a silence of 5 s
    // means the gate has closed. Bounded: give up after 60 s.
    let silent = loop {
        pf.push_uplink(&data_frame(n), n);
        n += 1;
        std::thread::sleep(Duration::from_millis(200));
        pings(&sock, &mut got);
        let last = watchdog_pings(&got).last().copied().unwrap_or(locked_at);
        if last.elapsed() > Duration::from_secs(5) {
            break true;
        }
        if locked_at.elapsed() > Duration::from_secs(60) {
            break false;
        }
    };
    assert!(
        silent,
        "WATCHDOG=1 kept coming while the outbox was stuck\n{}",
        daemon.log()
    );
    wait_for("the log naming the late loop", WAIT, || {
        daemon
            .log()
            .lines()
            .any(|l| l.contains("watchdog: loops not responding") && l.contains("outbox"))
    });

    // The lock goes away: the outbox answers again and so do the pings.
    db.execute_batch("ROLLBACK").unwrap();
    let released = Instant::now();
    wait_for("pings after recovery", Duration::from_secs(30), || {
        pings(&sock, &mut got);
        watchdog_pings(&got).iter().any(|t| *t > released)
    });
    // Uplinks still flow after recovery.
    let sub = Subscriber::start(broker.port(), "eu868/gateway/+/event/up");
    assert_eq!(
        pf.push_frames(100_000..100_010, 4, WAIT),
        10,
        "{}",
        daemon.log()
    );
    sub.wait_uplinks(WAIT, |u| u.len() >= 10);
    assert!(sub.uplinks().len() >= 10, "{}", daemon.log());
    let status = daemon
        .terminate(Duration::from_secs(20))
        .expect("exits within 20 s");
    assert!(status.success(), "{status}");
}
