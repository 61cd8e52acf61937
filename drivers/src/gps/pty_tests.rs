//! End-to-end tests of the reader through real pseudo-terminals: recorded u-blox-style
//! streams are written to the master side while the reader opens the slave through a
//! symlink (the configured device path), which the tests re-point to simulate re-plugging.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{spawn, CountersSnapshot, GpsConfig, GpsHandle, GpsState, ReceiverStatus};

/// A u-blox NEO-6M after a cold start: no fix, one second of output.
const NO_FIX_EPOCH: &[u8] = b"$GPTXT,01,01,02,u-blox ag - www.u-blox.com*50\r\n\
$GPTXT,01,01,02,ANTSTATUS=OK*3B\r\n\
$GPRMC,,V,,,,,,,,,,N*53\r\n\
$GPVTG,,,,,,,,,N*30\r\n\
$GPGGA,,,,,,0,00,99.99,,,,,,*48\r\n\
$GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99*30\r\n\
$GPGSV,1,1,00*79\r\n\
$GPGLL,,,,,,V,N*64\r\n";
const NO_FIX_LINES: u64 = 8;

/// The same module with a 3D fix: one second of output.
const FIX_EPOCH: &[u8] = b"$GPRMC,123519.00,A,4807.03800,N,01131.00000,E,0.022,,230394,,,A*70\r\n\
$GPVTG,,T,,M,0.022,N,0.041,K,A*26\r\n\
$GPGGA,123519.00,4807.03800,N,01131.00000,E,1,08,0.94,545.4,M,46.9,M,,*5D\r\n\
$GPGSA,A,3,10,07,05,02,29,04,08,13,,,,,1.72,0.94,1.44*0E\r\n\
$GPGSV,2,1,08,02,74,042,45,04,18,190,36,05,65,281,42,07,39,286,40*7A\r\n\
$GPGSV,2,2,08,08,16,045,33,10,42,097,44,13,36,149,42,29,10,324,32*75\r\n\
$GPGLL,4807.03800,N,01131.00000,E,123519.00,A,A*66\r\n";
const FIX_LINES: u64 = 7;
/// 1994-03-23 12:35:19 UTC.
const FIX_UTC_SECS: u64 = 764_426_119;

/// A multi-GNSS (u-blox M8, NMEA 4.1) fix, used after re-plugging.
const GN_FIX: &[u8] = b"$GNRMC,081500.00,A,5130.00000,N,00007.50000,W,0.010,,150625,,,A,V*0B\r\n\
$GNGGA,081500.00,5130.00000,N,00007.50000,W,1,11,0.80,35.0,M,45.7,M,,*61\r\n";

const WAIT: Duration = Duration::from_secs(10);

/// One pseudo-terminal; dropping it closes both sides (the "unplug").
struct Pty {
    master: File,
    _slave: OwnedFd,
    path: PathBuf,
}

impl Pty {
    fn open() -> Pty {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let mut t = tcgetattr(&pty.slave).expect("tcgetattr");
        cfmakeraw(&mut t);
        tcsetattr(&pty.slave, SetArg::TCSANOW, &t).expect("tcsetattr");
        let path = nix::unistd::ttyname(&pty.slave).expect("ttyname");
        Pty {
            master: File::from(pty.master),
            _slave: pty.slave,
            path,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("write to pty master");
        self.master.flush().expect("flush");
    }
}

/// Points `link` at `target`, atomically replacing any previous link.
fn point(link: &Path, target: &Path) {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).expect("symlink");
    std::fs::rename(&tmp, link).expect("rename symlink");
}

async fn wait_state(
    rx: &mut watch::Receiver<GpsState>,
    what: &str,
    f: impl Fn(&GpsState) -> bool,
) -> GpsState {
    let result = tokio::time::timeout(WAIT, rx.wait_for(|s| f(s)))
        .await
        .map(|r| r.map(|s| s.clone()));
    match result {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => panic!("reader ended while waiting for {what}"),
        Err(_) => panic!(
            "timed out waiting for {what}; last state {:?}",
            *rx.borrow()
        ),
    }
}

async fn wait_counters(
    handle: &GpsHandle,
    what: &str,
    f: impl Fn(&CountersSnapshot) -> bool,
) -> CountersSnapshot {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let c = handle.counters.snapshot();
        if f(&c) {
            return c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; counters {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn stop(handle: GpsHandle, shutdown: CancellationToken) -> GpsState {
    shutdown.cancel();
    tokio::time::timeout(WAIT, handle.task)
        .await
        .expect("reader stops within the bound")
        .expect("reader task panicked");
    let last = handle.state.borrow().clone();
    assert_eq!(
        last.status,
        ReceiverStatus::NoDevice,
        "stopped reader reports no device"
    );
    last
}

fn config(link: &Path, stale_after: Duration) -> GpsConfig {
    GpsConfig {
        device: link.to_path_buf(),
        baud: 9600,
        stale_after,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fix_then_fix_stream() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("gps0");
    let mut pty = Pty::open();
    point(&link, &pty.path);
    let shutdown = CancellationToken::new();
    let mut gps = spawn(config(&link, Duration::from_secs(5)), shutdown.clone());

    wait_state(&mut gps.state, "device opened", |s| {
        s.status == ReceiverStatus::NoFix
    })
    .await;
    pty.write(NO_FIX_EPOCH);
    wait_counters(&gps, "no-fix epoch parsed", |c| c.lines_ok == NO_FIX_LINES).await;
    // Counters move before the snapshot of the same read is published.
    let st = wait_state(&mut gps.state, "sentences seen", |s| {
        s.last_sentence.is_some()
    })
    .await;
    assert_eq!(st.status, ReceiverStatus::NoFix);
    assert_eq!((st.position, st.time), (None, None));

    pty.write(FIX_EPOCH);
    let st = wait_state(&mut gps.state, "fix", |s| {
        s.status == ReceiverStatus::Fix && s.position.is_some_and(|p| p.altitude.is_some())
    })
    .await;
    let p = st.position.unwrap();
    assert!(
        (p.latitude - (48.0 + 7.038 / 60.0)).abs() < 1e-9,
        "{}",
        p.latitude
    );
    assert!(
        (p.longitude - (11.0 + 31.0 / 60.0)).abs() < 1e-9,
        "{}",
        p.longitude
    );
    assert_eq!(
        (p.altitude, p.satellites, p.hdop),
        (Some(545.4), Some(8), Some(0.94))
    );
    let t = st.time.expect("time with a fix");
    assert_eq!(t.utc, UNIX_EPOCH + Duration::from_secs(FIX_UTC_SECS));
    assert!(t.observed <= std::time::Instant::now());

    let c = wait_counters(&gps, "fix epoch parsed", |c| {
        c.lines_ok == NO_FIX_LINES + FIX_LINES
    })
    .await;
    assert_eq!(
        c,
        CountersSnapshot {
            lines_ok: NO_FIX_LINES + FIX_LINES,
            ..Default::default()
        }
    );
    stop(gps, shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_bad_lines_are_counted_and_good_ones_used() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("gps0");
    let mut pty = Pty::open();
    point(&link, &pty.path);
    let shutdown = CancellationToken::new();
    let mut gps = spawn(config(&link, Duration::from_secs(5)), shutdown.clone());
    wait_state(&mut gps.state, "device opened", |s| {
        s.status == ReceiverStatus::NoFix
    })
    .await;

    let mut stream = Vec::new();
    // UBX binary frame and line noise before anything: skipped, not counted.
    stream.extend_from_slice(b"\xb5\x62\x01\x07\x5c\x00\x00\xff\x00\r\n\x00\x01noise");
    // Good RMC with a fix.
    stream.extend_from_slice(&FIX_EPOCH[..FIX_EPOCH.iter().position(|&b| b == b'\n').unwrap() + 1]);
    // Corrupted GGA (one digit flipped): checksum mismatch.
    stream.extend_from_slice(
        b"$GPGGA,123519.00,4807.03800,N,01131.00000,E,1,08,0.94,945.4,M,46.9,M,,*5D\r\n",
    );
    // No checksum at all.
    stream.extend_from_slice(
        b"$GPGGA,123519.00,4807.03800,N,01131.00000,E,1,08,0.94,545.4,M,46.9,M,,\r\n",
    );
    // Over-long line (300 bytes), then a line cut short by the next '$'.
    stream.push(b'$');
    stream.extend(std::iter::repeat_n(b'A', 300));
    stream.extend_from_slice(b"\r\n$GPGSV,2,1,08,02,74");
    // Good GGA, right after the cut line.
    stream.extend_from_slice(
        b"$GPGGA,123519.00,4807.03800,N,01131.00000,E,1,08,0.94,545.4,M,46.9,M,,*5D\r\n",
    );
    // Correct checksum but a malformed field (61 minutes of latitude): syntax.
    stream.extend_from_slice(
        b"$GPGGA,123519.00,4861.03800,N,01131.00000,E,1,08,0.94,545.4,M,46.9,M,,*5D\r\n",
    );
    pty.write(&stream);

    let c = wait_counters(&gps, "all lines handled", |c| {
        c.lines_ok + c.rejected_checksum + c.rejected_syntax + c.rejected_too_long >= 7
    })
    .await;
    assert_eq!(
        c,
        CountersSnapshot {
            lines_ok: 2,
            rejected_checksum: 2,
            rejected_syntax: 2,
            rejected_too_long: 1,
            reopens: 0
        }
    );
    let st = wait_state(&mut gps.state, "fix from the good lines", |s| {
        s.status == ReceiverStatus::Fix
    })
    .await;
    let p = st.position.unwrap();
    assert_eq!(
        p.altitude,
        Some(545.4),
        "the corrupted altitude 945.4 was not used"
    );

    // Memory stays bounded whatever arrives: 64 KiB of noise without a line end.
    pty.write(&[b'x'; 4096].repeat(16));
    pty.write(b"$");
    pty.write(&[b'7'; 4096].repeat(4));
    pty.write(b"\r\n");
    pty.write(GN_FIX);
    wait_counters(&gps, "too-long counted", |c| {
        c.rejected_too_long == 2 && c.lines_ok == 4
    })
    .await;
    assert_eq!(gps.state.borrow().status, ReceiverStatus::Fix);
    stop(gps, shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplug_goes_no_device_and_replug_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ttyACM0");
    let mut first = Pty::open();
    point(&link, &first.path);
    let shutdown = CancellationToken::new();
    let mut gps = spawn(config(&link, Duration::from_millis(500)), shutdown.clone());
    wait_state(&mut gps.state, "device opened", |s| {
        s.status == ReceiverStatus::NoFix
    })
    .await;
    first.write(FIX_EPOCH);
    wait_state(&mut gps.state, "fix", |s| s.status == ReceiverStatus::Fix).await;
    // Silence: the fix goes stale while the device stays open.
    let st = wait_state(&mut gps.state, "stale", |s| {
        s.status == ReceiverStatus::Stale
    })
    .await;
    assert_eq!((st.position, st.time), (None, None));

    // Unplug: the master side goes away, reads fail.
    drop(first);
    let st = wait_state(&mut gps.state, "no device after unplug", |s| {
        s.status == ReceiverStatus::NoDevice
    })
    .await;
    assert_eq!((st.position, st.time), (None, None));

    // Re-plug as a different pty at the same configured path.
    let mut second = Pty::open();
    point(&link, &second.path);
    wait_state(&mut gps.state, "reopened", |s| {
        s.status == ReceiverStatus::NoFix
    })
    .await;
    second.write(GN_FIX);
    let st = wait_state(&mut gps.state, "fix after replug", |s| {
        s.status == ReceiverStatus::Fix && s.time.is_some()
    })
    .await;
    assert_eq!(
        st.time.unwrap().utc,
        UNIX_EPOCH + Duration::from_secs(1_749_975_300)
    );
    assert!((st.position.unwrap().longitude + 7.5 / 60.0).abs() < 1e-9);
    let c = gps.counters.snapshot();
    assert_eq!(c.reopens, 1);
    assert_eq!(c.lines_ok, FIX_LINES + 2);
    stop(gps, shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_device_at_start_is_opened_when_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("serial0");
    let shutdown = CancellationToken::new();
    let mut gps = spawn(config(&link, Duration::from_secs(5)), shutdown.clone());
    // Let a few open attempts fail.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(gps.state.borrow().status, ReceiverStatus::NoDevice);
    assert!(
        !gps.state.has_changed().unwrap(),
        "nothing published while the device is missing"
    );

    let mut pty = Pty::open();
    point(&link, &pty.path);
    wait_state(&mut gps.state, "opened once present", |s| {
        s.status == ReceiverStatus::NoFix
    })
    .await;
    pty.write(FIX_EPOCH);
    wait_state(&mut gps.state, "fix", |s| s.status == ReceiverStatus::Fix).await;
    assert_eq!(
        gps.counters.snapshot().reopens,
        0,
        "the first successful open is not a reopen"
    );
    stop(gps, shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_device_missing_ends_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let gps = spawn(
        config(&dir.path().join("absent"), Duration::from_secs(5)),
        shutdown.clone(),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop(gps, shutdown).await;
}
