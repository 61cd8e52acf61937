//! Outbox tests on real SQLite files in temporary directories.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;

fn config(dir: &Path) -> OutboxConfig {
    OutboxConfig {
        path: dir.join("state").join("outbox.sqlite"),
        max_bytes: 64 * 1024 * 1024,
        uplink_expiry: None,
        stats_expiry: Some(Duration::from_secs(3600)),
        commit_delay: Duration::from_millis(1),
    }
}

fn msg(class: Class, n: usize) -> NewMessage {
    NewMessage::new(
        class,
        format!("eu868/gateway/0102030405060708/event/{}", class.name()),
        format!("payload-{n}").into_bytes(),
    )
}

/// A message of exactly `size` bytes (topic 10 bytes).
fn sized(class: Class, n: u8, size: usize) -> NewMessage {
    NewMessage::new(class, format!("topic/{n:04}"), vec![n; size - 10])
}

async fn next_now(ob: &OutboxHandle, max: usize) -> Vec<Message> {
    tokio::time::timeout(Duration::from_secs(5), ob.next(max))
        .await
        .expect("next() timed out")
        .expect("next() failed")
}

async fn assert_empty(ob: &OutboxHandle) {
    let r = tokio::time::timeout(Duration::from_millis(150), ob.next(10)).await;
    assert!(r.is_err(), "expected nothing sendable, got {r:?}");
}

fn payloads(msgs: &[Message]) -> Vec<String> {
    msgs.iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

#[tokio::test]
async fn store_next_ack_then_gone_even_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let ob = OutboxHandle::open(&cfg).unwrap();
    ob.store((0..3).map(|i| msg(Class::Uplink, i)).collect())
        .await
        .unwrap();
    let got = next_now(&ob, 10).await;
    assert_eq!(payloads(&got), ["payload-0", "payload-1", "payload-2"]);
    assert_eq!(got[0].topic, "eu868/gateway/0102030405060708/event/uplink");
    assert!(got.windows(2).all(|w| w[0].id < w[1].id));
    // In flight: not handed out again.
    assert_empty(&ob).await;
    let s = ob.stats().await.unwrap();
    assert_eq!((s.messages(), s.in_flight(), s.stored()), (3, 3, 3));
    ob.ack(got.iter().map(|m| m.id).collect());
    let s = ob.stats().await.unwrap();
    assert_eq!((s.messages(), s.bytes(), s.acked()), (0, 0, 3));
    ob.close().await.unwrap();
    assert!(matches!(
        ob.store(vec![msg(Class::Uplink, 9)]).await,
        Err(OutboxError::Closed)
    ));

    let ob = OutboxHandle::open(&cfg).unwrap();
    assert_eq!(ob.stats().await.unwrap().messages(), 0);
    assert_empty(&ob).await;
    ob.close().await.unwrap();
}

#[tokio::test]
async fn unacked_messages_survive_an_abandoned_process() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let ob = OutboxHandle::open(&cfg).unwrap();
    ob.store((0..5).map(|i| msg(Class::Uplink, i)).collect())
        .await
        .unwrap();
    let got = next_now(&ob, 2).await;
    assert_eq!(got.len(), 2);
    // Like kill -9: the thread never gets to flush or close anything after the COMMIT.
    std::mem::forget(ob);

    let ob2 = OutboxHandle::open(&cfg).unwrap();
    let s = ob2.stats().await.unwrap();
    assert_eq!(s.class(Class::Uplink).messages, 5);
    let again = next_now(&ob2, 10).await;
    assert_eq!(
        payloads(&again),
        [
            "payload-0",
            "payload-1",
            "payload-2",
            "payload-3",
            "payload-4"
        ]
    );
    ob2.close().await.unwrap();
}

#[tokio::test]
async fn dropping_every_handle_flushes_acks() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let ob = OutboxHandle::open(&cfg).unwrap();
    ob.store((0..4).map(|i| msg(Class::Stats, i)).collect())
        .await
        .unwrap();
    let got = next_now(&ob, 2).await;
    ob.ack(got.iter().map(|m| m.id).collect());
    drop(ob);
    // The thread flushes on disconnect; poll the file (bounded) until it has.
    let mut left = u64::MAX;
    for _ in 0..50 {
        let ob = OutboxHandle::open(&cfg).unwrap();
        left = ob.stats().await.unwrap().messages();
        std::mem::forget(ob);
        if left == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left, 2);
}

#[tokio::test]
async fn highest_class_first_then_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let ob = OutboxHandle::open(&config(dir.path())).unwrap();
    ob.store(vec![
        msg(Class::Stats, 0),
        msg(Class::Uplink, 1),
        msg(Class::Poc, 2),
        msg(Class::Uplink, 3),
        msg(Class::Control, 4),
        msg(Class::Poc, 5),
    ])
    .await
    .unwrap();
    let got = next_now(&ob, 4).await;
    let classes: Vec<Class> = got.iter().map(|m| m.class).collect();
    assert_eq!(
        classes,
        [Class::Control, Class::Poc, Class::Poc, Class::Uplink]
    );
    assert_eq!(
        payloads(&got),
        ["payload-4", "payload-2", "payload-5", "payload-1"]
    );
    // A new Control message overtakes what is still waiting.
    ob.store(vec![msg(Class::Control, 6)]).await.unwrap();
    let got = next_now(&ob, 10).await;
    assert_eq!(payloads(&got), ["payload-6", "payload-3", "payload-0"]);
    ob.close().await.unwrap();
}

#[tokio::test]
async fn requeued_messages_go_to_the_front_of_their_class() {
    let dir = tempfile::tempdir().unwrap();
    let ob = OutboxHandle::open(&config(dir.path())).unwrap();
    ob.store((0..5).map(|i| msg(Class::Uplink, i)).collect())
        .await
        .unwrap();
    let first = next_now(&ob, 3).await;
    // Connection lost: 1 and 2 unconfirmed, 0 confirmed.
    ob.ack(vec![first[0].id]);
    ob.requeue(vec![first[2].id, first[1].id]);
    let got = next_now(&ob, 10).await;
    assert_eq!(
        payloads(&got),
        ["payload-1", "payload-2", "payload-3", "payload-4"]
    );
    // Requeue of an unknown / acked id changes nothing.
    ob.requeue(vec![first[0].id, 999_999]);
    ob.ack(got.iter().map(|m| m.id).collect());
    assert_empty(&ob).await;
    assert_eq!(ob.stats().await.unwrap().messages(), 0);
    ob.close().await.unwrap();
}

#[tokio::test]
async fn eviction_takes_the_oldest_of_the_lowest_class_first() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = OutboxConfig {
        max_bytes: 1000,
        ..config(dir.path())
    };
    let ob = OutboxHandle::open(&cfg).unwrap();
    // 10 × 100 bytes: exactly full.
    let mut full = Vec::new();
    for (n, class) in [
        Class::Control,
        Class::Control,
        Class::Poc,
        Class::Poc,
        Class::Uplink,
        Class::Uplink,
        Class::Uplink,
        Class::Stats,
        Class::Stats,
        Class::Control,
    ]
    .into_iter()
    .enumerate()
    {
        full.push(sized(class, n as u8, 100));
    }
    ob.store(full).await.unwrap();
    assert_eq!(ob.stats().await.unwrap().bytes(), 1000);

    // An uplink evicts one stats message, the oldest.
    ob.store(vec![sized(Class::Uplink, 10, 100)]).await.unwrap();
    // A 250-byte Poc message evicts the other stats and two oldest uplinks.
    ob.store(vec![sized(Class::Poc, 11, 250)]).await.unwrap();
    let s = ob.stats().await.unwrap();
    assert_eq!(s.class(Class::Stats).evicted, 2);
    assert_eq!(s.class(Class::Uplink).evicted, 2);
    assert_eq!(s.class(Class::Poc).evicted, 0);
    assert!(s.bytes() <= 1000, "{s:?}");

    // A stats message may not displace higher classes: it is refused.
    ob.store(vec![sized(Class::Stats, 12, 100)]).await.unwrap();
    let s = ob.stats().await.unwrap();
    assert_eq!(s.class(Class::Stats).evicted, 3);
    assert_eq!(s.class(Class::Stats).messages, 0);

    // Control evicts everything else before any Control: the two uplinks left, then all
    // three Poc messages (950 + 500 must come down to 1000).
    ob.store(vec![sized(Class::Control, 13, 500)])
        .await
        .unwrap();
    let s = ob.stats().await.unwrap();
    assert_eq!(s.class(Class::Uplink).evicted, 4);
    assert_eq!(s.class(Class::Poc).evicted, 3);
    assert_eq!(s.class(Class::Control).evicted, 0);
    assert_eq!(s.class(Class::Control).messages, 4);
    assert_eq!(s.bytes(), 800);
    assert_eq!(s.evicted(), 10);

    let left = next_now(&ob, 100).await;
    let names: Vec<&str> = left.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(
        names,
        ["topic/0000", "topic/0001", "topic/0009", "topic/0013"]
    );
    ob.close().await.unwrap();
}

#[tokio::test]
async fn a_message_larger_than_the_bound_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = OutboxConfig {
        max_bytes: 1000,
        ..config(dir.path())
    };
    let ob = OutboxHandle::open(&cfg).unwrap();
    let err = ob
        .store(vec![sized(Class::Uplink, 1, 1001)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1001 bytes"), "{err}");
    assert_eq!(ob.stats().await.unwrap().messages(), 0);
    ob.close().await.unwrap();
}

#[tokio::test]
async fn expired_messages_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let ob = OutboxHandle::open(&cfg).unwrap();
    let now = SystemTime::now();
    let mut old = msg(Class::Uplink, 0);
    old.expires_at = Some(now - Duration::from_secs(1));
    let live =
        NewMessage::with_default_expiry(Class::Stats, "t/stats".into(), b"s".to_vec(), &cfg, now);
    assert_eq!(live.expires_at, Some(now + Duration::from_secs(3600)));
    assert_eq!(default_expiry(&cfg, Class::Uplink, now), None);
    assert_eq!(default_expiry(&cfg, Class::Control, now), None);
    ob.store(vec![old, msg(Class::Uplink, 1), live])
        .await
        .unwrap();
    let got = next_now(&ob, 10).await;
    assert_eq!(payloads(&got), ["payload-1", "s"]);
    let s = ob.stats().await.unwrap();
    assert_eq!(s.class(Class::Uplink).expired, 1);
    assert_eq!(s.class(Class::Uplink).messages, 1);
    ob.close().await.unwrap();
    // The expired row is deleted from the file too.
    let ob = OutboxHandle::open(&cfg).unwrap();
    assert_eq!(ob.stats().await.unwrap().messages(), 2);
    ob.close().await.unwrap();
}

#[test]
fn sweep_drops_expired_messages_in_memory_and_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let conn = db::open(&cfg.path).unwrap();
    let mut q = queue::Queue::load(conn, cfg.path.clone(), cfg.max_bytes).unwrap();
    let now = SystemTime::now();
    let n = HEAD_CAP + 500;
    let batch: Vec<NewMessage> = (0..n)
        .map(|i| NewMessage {
            expires_at: Some(now + Duration::from_secs(if i % 2 == 0 { 10 } else { 1000 })),
            ..msg(Class::Uplink, i)
        })
        .collect();
    q.write(&[batch], now).unwrap();
    q.sweep(now + Duration::from_secs(20)).unwrap();
    let s = q.stats(now);
    assert_eq!(s.class(Class::Uplink).expired, (n / 2) as u64);
    assert_eq!(s.class(Class::Uplink).messages, (n / 2) as u64);
    let got = q.take(usize::MAX, now).unwrap();
    assert_eq!(got.len(), n / 2);
    // Only the odd ones (long expiry) are left.
    assert!(got.iter().all(|m| {
        let text = String::from_utf8_lossy(&m.payload);
        text["payload-".len()..].parse::<usize>().unwrap() % 2 == 1
    }));
}

#[tokio::test]
async fn a_backlog_larger_than_memory_drains_in_order_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let ob = OutboxHandle::open(&cfg).unwrap();
    let n = HEAD_CAP * 3 + 17;
    ob.store((0..n).map(|i| msg(Class::Uplink, i)).collect())
        .await
        .unwrap();
    ob.store(vec![msg(Class::Control, n)]).await.unwrap();
    // Drain half, then reopen (the file is the only source), then drain the rest.
    let mut seen = Vec::new();
    while seen.len() < n / 2 {
        let got = next_now(&ob, 500).await;
        ob.ack(got.iter().map(|m| m.id).collect());
        seen.extend(got);
    }
    ob.close().await.unwrap();
    let ob = OutboxHandle::open(&cfg).unwrap();
    loop {
        let got = match tokio::time::timeout(Duration::from_millis(200), ob.next(500)).await {
            Ok(r) => r.unwrap(),
            Err(_) => break,
        };
        ob.ack(got.iter().map(|m| m.id).collect());
        seen.extend(got);
    }
    assert_eq!(seen.len(), n + 1);
    assert_eq!(seen[0].class, Class::Control);
    let uplinks: Vec<String> = payloads(&seen[1..]);
    let expected: Vec<String> = (0..n).map(|i| format!("payload-{i}")).collect();
    assert_eq!(uplinks, expected);
    assert_eq!(ob.stats().await.unwrap().messages(), 0);
    ob.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_stores_are_grouped_into_few_commits() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = OutboxConfig {
        commit_delay: Duration::from_millis(50),
        ..config(dir.path())
    };
    let ob = OutboxHandle::open(&cfg).unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let ob = ob.clone();
            tokio::spawn(async move { ob.store(vec![msg(Class::Uplink, i)]).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let s = ob.stats().await.unwrap();
    assert_eq!(s.stored(), 200);
    assert!(s.commits < 100, "200 stores took {} commits", s.commits);
    assert!(s.commits >= 1);
    ob.close().await.unwrap();
}

#[tokio::test]
async fn a_cancelled_next_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ob = OutboxHandle::open(&config(dir.path())).unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(50), ob.next(10))
        .await
        .is_err());
    ob.store(vec![msg(Class::Uplink, 0)]).await.unwrap();
    let got = next_now(&ob, 10).await;
    assert_eq!(payloads(&got), ["payload-0"]);
    ob.close().await.unwrap();
}

/// The thread answered a `next` call but the caller dropped it before polling again (the
/// MQTT link does this when its connection dies): the messages must not stay in flight.
#[tokio::test]
async fn a_next_dropped_after_its_answer_puts_the_messages_back() {
    let dir = tempfile::tempdir().unwrap();
    let ob = OutboxHandle::open(&config(dir.path())).unwrap();
    let mut call = Box::pin(ob.next(10));
    // Poll once on an empty outbox: the request waits on the outbox thread ...
    assert!(futures_poll_once(call.as_mut()).await.is_none());
    // ... which answers it as soon as messages are stored.
    ob.store((0..3).map(|i| msg(Class::Uplink, i)).collect())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = ob.stats().await.unwrap();
        if s.in_flight() == 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never answered: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(call);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = ob.stats().await.unwrap();
        if s.in_flight() == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still in flight: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = next_now(&ob, 10).await;
    assert_eq!(payloads(&got), ["payload-0", "payload-1", "payload-2"]);
    ob.close().await.unwrap();
}

/// Poll `f` once; `Some` if it completed.
async fn futures_poll_once<F: std::future::Future + Unpin>(mut f: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test]
async fn open_migrates_an_empty_file_and_a_v0_database() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    std::fs::create_dir_all(cfg.path.parent().unwrap()).unwrap();
    std::fs::write(&cfg.path, b"").unwrap();
    let ob = OutboxHandle::open(&cfg).unwrap();
    ob.store(vec![msg(Class::Poc, 0)]).await.unwrap();
    ob.close().await.unwrap();
    let conn = rusqlite::Connection::open(&cfg.path).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, db::MIGRATIONS.len() as i64);
    drop(conn);

    // A v0 database that already has something else in it.
    let other = OutboxConfig {
        path: dir.path().join("v0.sqlite"),
        ..cfg.clone()
    };
    let conn = rusqlite::Connection::open(&other.path).unwrap();
    conn.execute_batch("CREATE TABLE unrelated (x INTEGER); INSERT INTO unrelated VALUES (7);")
        .unwrap();
    drop(conn);
    let ob = OutboxHandle::open(&other).unwrap();
    ob.store(vec![msg(Class::Uplink, 1)]).await.unwrap();
    ob.close().await.unwrap();
    let conn = rusqlite::Connection::open(&other.path).unwrap();
    let x: i64 = conn
        .query_row("SELECT x FROM unrelated", [], |r| r.get(0))
        .unwrap();
    assert_eq!(x, 7);
    drop(conn);

    // Reopening an up-to-date database keeps its data.
    let ob = OutboxHandle::open(&cfg).unwrap();
    assert_eq!(payloads(&next_now(&ob, 10).await), ["payload-0"]);
    ob.close().await.unwrap();
}

#[test]
fn an_unopenable_or_newer_file_is_a_clear_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    std::fs::create_dir_all(cfg.path.parent().unwrap()).unwrap();
    std::fs::write(&cfg.path, vec![0x5a; 8192]).unwrap();
    // A corrupt file is moved aside (recover_tests.rs); the error is for what cannot be
    // helped: a directory where the file should be.
    let blocked = dir.path().join("blocked.sqlite");
    std::fs::create_dir_all(&blocked).unwrap();
    let err = OutboxHandle::open(&OutboxConfig {
        path: blocked.clone(),
        ..cfg.clone()
    })
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, OutboxError::Open { .. }), "{err:?}");
    assert!(text.contains(&blocked.display().to_string()), "{text}");

    let newer = dir.path().join("newer.sqlite");
    let conn = rusqlite::Connection::open(&newer).unwrap();
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(conn);
    let err = OutboxHandle::open(&OutboxConfig {
        path: newer.clone(),
        ..cfg
    })
    .unwrap_err();
    assert!(
        matches!(err, OutboxError::SchemaTooNew { found: 99, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&newer.display().to_string()));
}

#[test]
fn classes_round_trip_their_stored_index() {
    for c in Class::ALL {
        assert_eq!(Class::from_index(c.index() as i64), Some(c));
    }
    assert_eq!(Class::from_index(4), None);
    assert_eq!(Class::from_index(-1), None);
    assert!(Class::Control < Class::Poc && Class::Uplink < Class::Stats);
}
