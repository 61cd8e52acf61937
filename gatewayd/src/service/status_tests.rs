//! Tests of the status socket (real Unix sockets in temp dirs) and its rendering.

use super::*;

pub(crate) fn sample() -> StatusSnapshot {
    StatusSnapshot {
        version: "0.1.0".into(),
        gateway_id: Some("0016c001f153a14c".into()),
        uptime_seconds: 93_784,
        radio: Some(RadioStatus {
            backend: "semtech_udp".into(),
            running: true,
            detail: Some("127.0.0.1:1700".into()),
        }),
        mqtt: Some(MqttStatus {
            connected: false,
            broker: "broker.example:8883".into(),
            since_seconds: Some(75),
            last_error: Some("connection refused".into()),
            connections_total: 3,
            resent_total: 2,
            commands_total: 11,
            commands_dropped: [("oversized".to_string(), 1), ("unknown".to_string(), 4)]
                .into_iter()
                .collect(),
        }),
        outbox_messages: Some(42),
        outbox_oldest_age_seconds: Some(75),
        uplinks_received_total: Some(1234),
        uplinks_last_hour: Some(17),
        beacons_sent_total: Some(3),
        last_beacon_age_seconds: Some(3600),
        beacons_skipped: [("no_entropy".to_string(), 2), ("refused".to_string(), 0)]
            .into_iter()
            .collect(),
        witnesses_total: Some(5),
        last_witness_age_seconds: None,
        duty_cycle: vec![
            DutyCycleUse {
                band: "g1".into(),
                used_ratio: 0.125,
                used_seconds: 4.5,
                budget_seconds: 36.0,
            },
            DutyCycleUse {
                band: "K".into(),
                used_ratio: 0.5,
                used_seconds: 1.8,
                budget_seconds: 3.6,
            },
        ],
        gps: Some(GpsStatus {
            fix: true,
            state: "fix".into(),
            satellites: Some(7),
            position_source: "gps".into(),
        }),
        downlinks: Some(DownlinkStatus {
            received: 11,
            rejected: 2,
            scheduled: 8,
            sent: 6,
            failed: 3,
            acks: [
                ("OK", 6),
                ("TOO_LATE", 2),
                ("DUTY_CYCLE_OVERFLOW", 1),
                ("IGNORED", 0),
                ("TX_FREQ", 0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        }),
        guard: Some(GuardStatus {
            approved: 8,
            released: 1,
            power_clamped: 4,
            refusals: [("duty_cycle", 1), ("frequency", 2), ("dwell_time", 0)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }),
        receipts_total: Some(4),
        receipt_uplinks_total: Some(321),
        last_receipt_age_seconds: Some(120),
        receipt_gaps_total: Some(3),
        receipt_failures_total: Some(1),
        outbox_expired: vec![
            ClassCount {
                class: "poc".into(),
                count: 2,
            },
            ClassCount {
                class: "uplink".into(),
                count: 0,
            },
        ],
        outbox_evicted: vec![ClassCount {
            class: "stats".into(),
            count: 9,
        }],
        radio_counters: vec![
            backend_counter("gwmp_datagrams", None, 40),
            backend_counter("gwmp_rejected", Some("bad_json"), 2),
            backend_counter("gwmp_rejected", Some("too_short"), 1),
            backend_counter("gwmp_rejected", Some("bad_stat"), 0),
        ],
        time_source: Some("unsynchronized".into()),
        witnesses_skipped: [("clock_unsynchronized".to_string(), 4)]
            .into_iter()
            .collect(),
        receipts_held_total: Some(2),
        storage: None,
    }
}

/// A backend counter as the daemon state makes it (the help text is not part of the JSON).
pub(crate) fn backend_counter(family: &str, reason: Option<&str>, value: u64) -> BackendCounter {
    BackendCounter {
        family: family.into(),
        reason: reason.map(Into::into),
        value,
        help: String::new(),
    }
}

#[test]
fn socket_path_follows_runtime_directory() {
    assert_eq!(
        socket_path_for(None),
        PathBuf::from("/run/gatewayd/status.sock")
    );
    assert_eq!(
        socket_path_for(Some("/run/x")),
        PathBuf::from("/run/x/status.sock")
    );
    assert_eq!(
        socket_path_for(Some("/run/a:/run/b")),
        PathBuf::from("/run/a/status.sock")
    );
    assert_eq!(
        socket_path_for(Some("")),
        PathBuf::from("/run/gatewayd/status.sock")
    );
}

#[test]
fn human_view_shows_every_figure() {
    let text = render(&sample());
    for want in [
        "0.1.0 (gateway 0016c001f153a14c)",
        "uptime          1d 2h",
        "semtech_udp running (127.0.0.1:1700)",
        "DISCONNECTED from broker.example:8883 for 1m 15s: connection refused; 3 sessions \
         since start, 2 messages resent; commands dropped: oversized 1, unknown 4",
        "42 messages, oldest 1m 15s ago",
        "17 in the last hour, 1234 since start",
        "last beacon     1h 0m ago",
        "beacons         3 sent, skipped: no_entropy 2",
        "last witness    never",
        "g1 12.5% (4.5 of 36 s), K 50.0% (1.8 of 3.6 s)",
        "fix, 7 satellites, position from gps",
        "downlinks       11 received, 6 sent, 3 failed, 2 rejected; \
         acks DUTY_CYCLE_OVERFLOW 1, OK 6, TOO_LATE 2",
        "tx guard        8 approved, 3 refused (duty_cycle 1, frequency 2), \
         4 power clamped, 1 released",
        "receipts        4 (321 uplinks), last 2m 0s ago; 3 ids given up, 1 failed",
        "expired unsent  2 poc",
        "gwmp rejected   bad_json 2, too_short 1",
        "report time     unsynchronized (no GPS fix",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn the_status_line_is_one_line_with_transmissions() {
    let line = render_line(&sample());
    assert_eq!(
        line,
        "radio up, mqtt down (connection refused), 17 uplinks in the last hour, outbox 42, \
         tx 6 ok, 3 refused"
    );
    let line = render_line(&StatusSnapshot::default());
    assert_eq!(
        line,
        "radio down, mqtt waiting for the gateway id, 0 uplinks in the last hour, outbox ?, \
         tx 0 ok, 0 refused"
    );
    assert!(!line.contains('\n'));
}

#[test]
fn unknown_fields_render_as_unknown() {
    let text = render(&StatusSnapshot::default());
    assert!(text.contains("downlinks       unknown"), "{text}");
    assert!(text.contains("tx guard        unknown"), "{text}");
    assert!(text.contains("radio           unknown"), "{text}");
    assert!(text.contains("mqtt            unknown"), "{text}");
    assert!(text.contains("outbox          unknown"), "{text}");
}

#[test]
fn durations() {
    assert_eq!(human_duration(0), "0s");
    assert_eq!(human_duration(59), "59s");
    assert_eq!(human_duration(61), "1m 1s");
    assert_eq!(human_duration(3_661), "1h 1m");
    assert_eq!(human_duration(90_000), "1d 1h");
}

#[test]
fn json_round_trips_and_tolerates_missing_fields() {
    let s = sample();
    let back: StatusSnapshot = serde_json::from_str(&render_json(&s)).unwrap();
    assert_eq!(back, s);
    let v: serde_json::Value = serde_json::from_str(&render_json(&s)).unwrap();
    assert_eq!(
        v["radio_counters"][1],
        serde_json::json!({"family": "gwmp_rejected", "reason": "bad_json", "value": 2})
    );
    assert_eq!(
        v["radio_counters"][0],
        serde_json::json!({"family": "gwmp_datagrams", "value": 40})
    );
    let partial: StatusSnapshot = serde_json::from_str(r#"{"uptime_seconds": 5}"#).unwrap();
    assert_eq!(partial.uptime_seconds, 5);
    assert_eq!(partial.mqtt, None);
}

#[tokio::test]
async fn query_gets_the_live_snapshot_and_the_socket_goes_away_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SOCKET_NAME);
    let shutdown = CancellationToken::new();
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c = counter.clone();
    let server = StatusServer::bind(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let task = tokio::spawn(server.serve(
        move || StatusSnapshot {
            uptime_seconds: c.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
            ..sample()
        },
        shutdown.clone(),
    ));
    let p = path.clone();
    let (a, b) = tokio::task::spawn_blocking(move || (query(&p), query(&p)))
        .await
        .unwrap();
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.gateway_id.as_deref(), Some("0016c001f153a14c"));
    assert_eq!(
        (a.uptime_seconds, b.uptime_seconds),
        (0, 1),
        "asked afresh each time"
    );
    assert_eq!(b.outbox_messages, Some(42));
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert!(!path.exists(), "socket removed on shutdown");
}

#[test]
fn no_daemon_is_a_clear_message_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SOCKET_NAME);
    let e = query(&path).unwrap_err();
    assert!(matches!(e, StatusError::NotRunning(_)), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("not running"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    // A stale socket file with nobody listening: also "not running".
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(matches!(query(&path), Err(StatusError::NotRunning(_))));
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SOCKET_NAME);
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let live = StatusServer::bind(&path).expect("stale socket replaced");
    let e = StatusServer::bind(&path).unwrap_err();
    assert!(matches!(e, StatusError::AlreadyRunning(_)), "{e}");
    drop(live);
}

#[tokio::test]
async fn a_garbled_answer_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SOCKET_NAME);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let srv = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
    });
    let p = path.clone();
    let e = tokio::task::spawn_blocking(move || query(&p))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, StatusError::BadAnswer(..)), "{e}");
    assert!(e.to_string().contains(SOCKET_NAME));
    srv.await.unwrap();
}

#[test]
fn gps_states_are_spelled_out_for_operators() {
    let mut s = sample();
    for (state, shown) in [
        ("no_device", "no device (reopening)"),
        ("no_fix", "no fix"),
        ("stale", "stale (no valid sentence lately)"),
    ] {
        s.gps = Some(GpsStatus {
            fix: false,
            state: state.into(),
            satellites: None,
            position_source: "config".into(),
        });
        let text = render(&s);
        assert!(
            text.contains(&format!("{shown}, position from config")),
            "{state}: {text}"
        );
    }
}
