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
        duty_cycle: vec![DutyCycleUse {
            band: "g1".into(),
            used_ratio: 0.125,
        }],
        gps: Some(GpsStatus {
            fix: true,
            state: "fix".into(),
            satellites: Some(7),
            position_source: "gps".into(),
        }),
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
        "DISCONNECTED from broker.example:8883 for 1m 15s: connection refused",
        "42 messages, oldest 1m 15s ago",
        "17 in the last hour, 1234 since start",
        "last beacon     1h 0m ago",
        "beacons         3 sent, skipped: no_entropy 2",
        "last witness    never",
        "g1 12.5%",
        "fix, 7 satellites, position from gps",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn unknown_fields_render_as_unknown() {
    let text = render(&StatusSnapshot::default());
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
