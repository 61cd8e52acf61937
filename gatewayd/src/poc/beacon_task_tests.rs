//! Tests of the beacon task's steps against the real guard, a real outbox and an in-process
//! fake radio behind the downlink task's gate (reached through a `TxClient`).

use std::time::Duration;

use drivers::gps::{GpsState, GpsTime, ReceiverStatus};
use drivers::radio::{RadioControl, TxRequest, TxStatus};

use super::*;
use crate::config::Location;
use crate::downlink::{DownlinkConfig, DownlinkTask};
use crate::guard::{DutyCycleLedger, Guard, TxGate};
use crate::poc::beacon::parse_frame;
use crate::poc::test_support::SeedSigner;
use crate::poc::verify::{Policy, Verifier};
use crate::poc::wire::TimeSource;
use crate::poc::{Kind, SignedReport};
use crate::position::LocationSource;

const TOPIC: &str = "eu868/gateway/0102030405060708/poc/beacon";

struct Rig {
    task: BeaconTask,
    radio: mpsc::UnboundedReceiver<TxRequest>,
    own: mpsc::Receiver<[u8; BODY_LEN]>,
    outbox: OutboxHandle,
    _dir: tempfile::TempDir,
}

/// A beacon task in `region` (2.15 dBi antenna, radio max `max_dbm`) whose fake radio
/// answers `answer` to every request.
fn rig(region: &str, max_dbm: i8, answer: TxStatus) -> Rig {
    rig_at(
        region,
        max_dbm,
        answer,
        Whereabouts::new(Some(berlin()), None),
    )
}

/// [`rig`] with the hotspot's whereabouts (location and GPS).
fn rig_at(region: &str, max_dbm: i8, answer: TxStatus, whereabouts: Whereabouts) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let region = Region::by_name(region).unwrap();
    let guard_cfg = GuardConfig {
        antenna_gain_dbi: 2.15,
        ..GuardConfig::default()
    };
    let guard = Guard::new(
        region,
        guard_cfg.clone(),
        DutyCycleLedger::in_memory().unwrap(),
    )
    .unwrap();
    let (control, mut commands) = RadioControl::channel(4);
    let (seen_tx, radio) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(cmd) = commands.recv().await {
            let _ = seen_tx.send(cmd.request);
            let _ = cmd.reply.send(answer);
        }
    });
    let outbox = OutboxHandle::open(&crate::config::OutboxConfig {
        path: dir.path().join("outbox.sqlite"),
        max_bytes: 1 << 20,
        uplink_expiry: None,
        stats_expiry: None,
        commit_delay: Duration::from_millis(1),
    })
    .unwrap();
    let mut downlink = DownlinkTask::new(
        TxGate::new(guard, control, Duration::from_secs(1)),
        outbox.clone(),
        DownlinkConfig {
            gateway: drivers::radio::Eui64([1, 2, 3, 4, 5, 6, 7, 8]),
            topic_prefix: "eu868".into(),
            json: false,
        },
    );
    let tx = downlink.tx_client();
    let (_commands_tx, commands_rx) = mpsc::channel(1);
    tokio::spawn(downlink.run(commands_rx));
    let (own_tx, own) = mpsc::channel(4);
    let task = BeaconTask::new(
        BeaconSettings {
            window_len_s: 60,
            radio_max_dbm: max_dbm,
            validity: Duration::from_secs(600),
            region,
            guard: guard_cfg,
            topic: TOPIC.into(),
        },
        Arc::new(SeedSigner::new(3)),
        outbox.clone(),
        tx,
        whereabouts,
        Some(own_tx),
    )
    .unwrap();
    Rig {
        task,
        radio,
        own,
        outbox,
        _dir: dir,
    }
}

fn berlin() -> Location {
    Location {
        latitude: 52.52,
        longitude: 13.405,
        altitude: 40.0,
    }
}

fn location() -> Option<crate::position::SourcedLocation> {
    Some(crate::position::SourcedLocation {
        location: berlin(),
        source: LocationSource::Config,
    })
}

#[tokio::test]
async fn a_beacon_goes_through_the_gate_and_its_signed_report_verifies() {
    let mut r = rig("EU868", 20, TxStatus::Ok);
    let window = BeaconWindow::containing(60, SystemTime::now()).unwrap();
    r.task.beacon(window, [5; 32], location()).await.unwrap();

    // On air: the guard's limit (16.15 dBm EIRP − 2.15 dBi → 14 dBm) below the radio's 20.
    let req = r.radio.recv().await.unwrap();
    assert_eq!(req.power_dbm, 14);
    assert!(!req.invert_iq);
    let body = parse_frame(&req.payload).expect("a v1 beacon frame");
    assert_eq!(
        r.own.try_recv().unwrap(),
        body,
        "the witness task learns our body"
    );
    let c = r.task.counters();
    assert_eq!(c.sent.load(Ordering::Relaxed), 1);
    assert!(c.last_ms.load(Ordering::Relaxed) > 0);

    // In the outbox: class PoC, on poc/beacon, expiring with its deadline.
    let stored = r.outbox.next(10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].class, Class::Poc);
    assert_eq!(stored[0].topic, TOPIC);
    let signed = SignedReport::decode(&stored[0].payload).unwrap();
    assert_eq!(
        stored[0].expires_at.map(unix_ms),
        Some(signed.report.deadline_ms)
    );
    let Body::Beacon(b) = &signed.report.body else {
        panic!("a beacon report");
    };
    assert_eq!(b.power_dbm, 14, "the approved power is reported");
    assert_eq!(b.freq_hz as u64, req.freq_hz);
    assert_eq!(b.antenna_gain_ddbi, 21, "2.15 dBi rounded down");
    assert!(b.location.is_some());
    let mut v = Verifier::new(Policy {
        require_entropy: true,
        min_window_s: 60,
        ..Policy::default()
    });
    v.add_entropy(window, [5; 32]);
    assert_eq!(
        v.verify(&stored[0].payload, unix_ms(SystemTime::now())),
        Ok(Kind::Beacon)
    );
    r.outbox.close().await.unwrap();
}

#[tokio::test]
async fn the_radio_maximum_caps_the_power() {
    let mut r = rig("EU868", 8, TxStatus::Ok);
    let window = BeaconWindow::containing(60, SystemTime::now()).unwrap();
    r.task.beacon(window, [5; 32], location()).await.unwrap();
    assert_eq!(r.radio.recv().await.unwrap().power_dbm, 8);
    r.outbox.close().await.unwrap();
}

#[tokio::test]
async fn a_refused_or_unsent_beacon_is_not_reported() {
    // KR920 needs listen-before-talk, which this backend does not do.
    let mut r = rig("KR920", 14, TxStatus::Ok);
    let window = BeaconWindow::containing(60, SystemTime::now()).unwrap();
    assert_eq!(
        r.task.beacon(window, [5; 32], location()).await,
        Err(SkipReason::Refused)
    );
    assert!(r.radio.try_recv().is_err(), "nothing reached the radio");
    assert_eq!(r.outbox.stats().await.unwrap().messages(), 0);
    r.outbox.close().await.unwrap();

    // The radio answers but does not send.
    let mut r = rig("EU868", 14, TxStatus::CollisionPacket);
    assert_eq!(
        r.task.beacon(window, [5; 32], location()).await,
        Err(SkipReason::NotSent)
    );
    assert_eq!(r.task.counters().sent.load(Ordering::Relaxed), 0);
    assert!(r.own.try_recv().is_err());
    assert_eq!(r.outbox.stats().await.unwrap().messages(), 0);
    r.outbox.close().await.unwrap();
}

#[tokio::test]
async fn malformed_entropy_is_rejected_and_changes_nothing() {
    let mut r = rig("EU868", 14, TxStatus::Ok);
    let window = BeaconWindow { len_s: 60, id: 9 };
    r.task.entropy(&[0u8; 43]);
    let mut bad_len = EntropyCommand {
        window,
        entropy: [1; 32],
    }
    .encode();
    bad_len[..4].copy_from_slice(&61u32.to_be_bytes());
    r.task.entropy(&bad_len);
    let c = r.task.counters();
    assert_eq!(c.entropy_rejected.load(Ordering::Relaxed), 2);
    assert_eq!(c.entropy_accepted.load(Ordering::Relaxed), 0);
    assert_eq!(r.task.book.get(&window), None);
    r.task.entropy(
        &EntropyCommand {
            window,
            entropy: [1; 32],
        }
        .encode(),
    );
    assert_eq!(c.entropy_accepted.load(Ordering::Relaxed), 1);
    assert_eq!(r.task.book.get(&window), Some([1; 32]));
    r.outbox.close().await.unwrap();
}

#[tokio::test]
async fn skips_are_counted_by_reason() {
    let mut r = rig("EU868", 14, TxStatus::Ok);
    let w = BeaconWindow { len_s: 60, id: 1 };
    r.task.skip(w, SkipReason::NoEntropy);
    r.task.skip(w.next(), SkipReason::NoEntropy);
    r.task.skip(w, SkipReason::Refused);
    let c = r.task.counters();
    let by: std::collections::BTreeMap<_, _> = c.skipped_by_reason().into_iter().collect();
    assert_eq!(by["no_entropy"], 2);
    assert_eq!(by["refused"], 1);
    assert_eq!(by["no_position"], 0);
    assert_eq!(by.len(), SkipReason::ALL.len());
    r.outbox.close().await.unwrap();
}

/// A GPS whose clock reads `utc` now, with `status`.
fn gps(status: ReceiverStatus, utc: SystemTime) -> tokio::sync::watch::Receiver<GpsState> {
    let now = Instant::now();
    let state = GpsState {
        status,
        position: Some(drivers::gps::GpsFix {
            latitude: 52.52,
            longitude: 13.405,
            altitude: Some(40.0),
            satellites: Some(9),
            hdop: Some(0.9),
        }),
        time: Some(GpsTime { utc, observed: now }),
        last_sentence: Some(now),
    };
    tokio::sync::watch::channel(state).1
}

/// The beacon report the task stored for one beacon (sent through `r`).
async fn sent_report(r: &mut Rig) -> crate::poc::report::BeaconReport {
    let window = BeaconWindow::containing(60, SystemTime::now()).unwrap();
    r.task.beacon(window, [5; 32], location()).await.unwrap();
    r.radio.recv().await.unwrap();
    let stored = r.outbox.next(10).await.unwrap();
    assert_eq!(stored.len(), 1);
    let signed = SignedReport::decode(&stored[0].payload).unwrap();
    let Body::Beacon(b) = signed.report.body else {
        panic!("a beacon report");
    };
    b
}

#[tokio::test]
async fn with_a_gps_fix_the_report_is_gps_timed() {
    // The GPS clock is a day ahead of the local one, so the two cannot be confused.
    let gps_utc = SystemTime::now() + Duration::from_secs(86_400);
    let mut r = rig_at(
        "EU868",
        14,
        TxStatus::Ok,
        Whereabouts::new(Some(berlin()), Some(gps(ReceiverStatus::Fix, gps_utc))),
    );
    let b = sent_report(&mut r).await;
    assert_eq!(b.time_source, TimeSource::Gps);
    let gps_ms = unix_ms(gps_utc);
    assert!(
        (gps_ms..gps_ms + 10_000).contains(&b.tx_time_ms),
        "send time {} ms from the GPS clock at {} ms",
        b.tx_time_ms,
        gps_ms
    );
    r.outbox.close().await.unwrap();
}

#[tokio::test]
async fn without_a_fix_the_report_is_local_clock_timed() {
    let gps_utc = SystemTime::now() + Duration::from_secs(86_400);
    for whereabouts in [
        Whereabouts::new(Some(berlin()), None),
        Whereabouts::new(Some(berlin()), Some(gps(ReceiverStatus::Stale, gps_utc))),
    ] {
        let mut r = rig_at("EU868", 14, TxStatus::Ok, whereabouts);
        let before = unix_ms(SystemTime::now());
        let b = sent_report(&mut r).await;
        let after = unix_ms(SystemTime::now());
        assert_eq!(b.time_source, TimeSource::Local);
        assert!(
            (before..=after).contains(&b.tx_time_ms),
            "send time {} ms from the local clock [{before}, {after}]",
            b.tx_time_ms
        );
        r.outbox.close().await.unwrap();
    }
}

#[tokio::test]
async fn an_unsynchronized_clock_skips_the_beacon_until_ntp_or_a_gps_fix() {
    use crate::timesync::{ClockStatus, ManualSync};
    let sync = Arc::new(ManualSync::new(false));
    let unsynced = || Whereabouts::new(Some(berlin()), None).with_clock_sync(sync.clone());
    let mut r = rig_at("EU868", 14, TxStatus::Ok, unsynced());
    assert_eq!(unsynced().clock_status(), ClockStatus::Unsynchronized);
    let window = BeaconWindow::containing(60, SystemTime::now()).unwrap();
    assert_eq!(
        r.task.beacon(window, [5; 32], location()).await,
        Err(SkipReason::ClockUnsynchronized)
    );
    r.task.skip(window, SkipReason::ClockUnsynchronized);
    assert_eq!(
        r.task.counters().skipped(SkipReason::ClockUnsynchronized),
        1
    );
    assert!(r.radio.try_recv().is_err(), "nothing on air");
    assert_eq!(
        r.outbox.stats().await.unwrap().messages(),
        0,
        "nothing signed"
    );

    // NTP has synchronized the clock: the next window's beacon goes out, locally timed.
    sync.set(true);
    assert_eq!(unsynced().clock_status(), ClockStatus::NtpSynced);
    assert_eq!(sent_report(&mut r).await.time_source, TimeSource::Local);
    r.outbox.close().await.unwrap();

    // Unsynchronized but with a GPS fix: GPS time.
    sync.set(false);
    let gps_utc = SystemTime::now() + Duration::from_secs(86_400);
    let with_fix = Whereabouts::new(Some(berlin()), Some(gps(ReceiverStatus::Fix, gps_utc)))
        .with_clock_sync(sync.clone());
    assert_eq!(with_fix.clock_status(), ClockStatus::Gps);
    let mut r = rig_at("EU868", 14, TxStatus::Ok, with_fix);
    assert_eq!(sent_report(&mut r).await.time_source, TimeSource::Gps);
    r.outbox.close().await.unwrap();
}
