//! GPS through the real daemon: a u-blox-style NMEA stream on a real pseudo-terminal (the
//! configured `[gps] device`) gives uplinks the GPS location and time; without GPS they carry
//! the configured location and no time.

use testkit as support;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chirpstack_api::common::LocationSource;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use support::daemon::*;

const WAIT: Duration = Duration::from_secs(20);

/// One second of a u-blox NEO-6M with a 3D fix (1994-03-23 12:35:19 UTC, 48.1173 N 11.5167 E).
const FIX_EPOCH: &[u8] = b"$GPRMC,123519.00,A,4807.03800,N,01131.00000,E,0.022,,230394,,,A*70\r\n\
$GPGGA,123519.00,4807.03800,N,01131.00000,E,1,08,0.94,545.4,M,46.9,M,,*5D\r\n";
const FIX_UTC_SECS: i64 = 764_426_119;

/// An rxpk as a forwarder without its own GPS sends it: no `time`, no `tmms`.
fn rxpk_without_time(phy: &[u8]) -> String {
    format!(
        "{{\"rxpk\":[{{\"tmst\":1000,\"chan\":0,\"rfch\":0,\"freq\":868.1,\"stat\":1,\"modu\":\"LORA\",\
         \"datr\":\"SF7BW125\",\"codr\":\"4/5\",\"rssi\":-60,\"lsnr\":9.0,\"size\":{},\"data\":\"{}\"}}]}}",
        phy.len(),
        base64::engine::general_purpose::STANDARD.encode(phy)
    )
}

#[test]
fn uplinks_carry_gps_location_and_time_while_the_gps_has_a_fix() {
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut t = tcgetattr(&pty.slave).unwrap();
    cfmakeraw(&mut t);
    tcsetattr(&pty.slave, SetArg::TCSANOW, &t).unwrap();
    let slave_path = nix::unistd::ttyname(&pty.slave).unwrap();
    let mut master = std::fs::File::from(pty.master);
    // Keep the module talking for the whole test (stale after 5 s of silence).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = master.write_all(FIX_EPOCH);
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };

    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/+/event/up");
    let daemon = Daemon::start(
        broker.port(),
        &format!(
            "[gateway.location]\nlatitude = 1.0\nlongitude = 2.0\n[gps]\ndevice = {:?}\n",
            slave_path.display().to_string()
        ),
    );
    let deadline = std::time::Instant::now() + WAIT;
    while !daemon.log().contains("fix") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut pf = Forwarder::new(daemon.udp_port);
    pf.push_json(&rxpk_without_time(&data_frame(1)));
    let ups = sub.wait_uplinks(WAIT, |u| !u.is_empty());
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    let rx = ups
        .first()
        .and_then(|u| u.rx_info.clone())
        .unwrap_or_else(|| panic!("no uplink:\n{}", daemon.log()));
    let loc = rx.location.expect("a location");
    assert_eq!(
        loc.source(),
        LocationSource::Gps,
        "{loc:?}; daemon log:\n{}",
        daemon.log()
    );
    assert!(
        (loc.latitude - 48.1173).abs() < 1e-4 && (loc.longitude - 11.516_667).abs() < 1e-4,
        "{loc:?}"
    );
    let time = rx.gw_time.expect("GPS time");
    assert!(
        (FIX_UTC_SECS..FIX_UTC_SECS + 30).contains(&time.seconds),
        "{time:?}"
    );
    assert!(rx.time_since_gps_epoch.is_some());
    drop(pty.slave);
}

#[test]
fn without_gps_uplinks_carry_the_configured_location_and_no_time() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/+/event/up");
    let daemon = Daemon::start(
        broker.port(),
        "[gateway.location]\nlatitude = 1.5\nlongitude = 2.5\naltitude = 3.0\n",
    );
    let mut pf = Forwarder::new(daemon.udp_port);
    pf.push_json(&rxpk_without_time(&data_frame(2)));
    let ups = sub.wait_uplinks(WAIT, |u| !u.is_empty());
    let rx = ups.first().and_then(|u| u.rx_info.clone()).expect("uplink");
    let loc = rx.location.expect("configured location");
    assert_eq!(loc.source(), LocationSource::Config);
    assert_eq!((loc.latitude, loc.longitude, loc.altitude), (1.5, 2.5, 3.0));
    assert!(rx.gw_time.is_none(), "no GPS, no time: {:?}", rx.gw_time);
    assert!(rx.time_since_gps_epoch.is_none());
}
