//! The outbox and the MQTT link against a real Mosquitto on 127.0.0.1.

use testkit as support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use drivers::radio::Eui64;
use gatewayd::config::{MqttConfig, OutboxConfig};
use gatewayd::mqtt::{self, Command, LinkCounters, LinkState};
use gatewayd::outbox::{Class, NewMessage, OutboxHandle};
use support::mosquitto::{Mosquitto, Subscriber};
use support::proxy::{Cut, Proxy};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const GW: Eui64 = Eui64([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0xab]);
const WAIT: Duration = Duration::from_secs(15);

fn mqtt_config(port: u16) -> MqttConfig {
    let text = format!(
        "[mqtt]\nserver = \"tcp://127.0.0.1:{port}\"\nkeep_alive_secs = 5\ninflight = 16\n\
         reconnect_min_ms = 100\nreconnect_max_ms = 500\n"
    );
    gatewayd::config::Config::from_toml(&text, Path::new("/etc/gatewayd/test.toml"))
        .expect("valid test config")
        .mqtt
}

fn outbox_config(dir: &Path) -> OutboxConfig {
    OutboxConfig {
        path: dir.join("outbox.sqlite"),
        max_bytes: 64 * 1024 * 1024,
        uplink_expiry: None,
        stats_expiry: None,
        commit_delay: Duration::from_millis(1),
    }
}

fn event(class: Class, suffix: &str, n: usize) -> NewMessage {
    // Binary payloads: every byte value appears somewhere.
    let mut payload: Vec<u8> = (0..=255u8)
        .cycle()
        .skip(n % 256)
        .take(40 + n % 60)
        .collect();
    payload.extend_from_slice(format!("#{n}").as_bytes());
    NewMessage::new(class, mqtt::topic("eu868", GW, suffix), payload)
}

struct Running {
    task: tokio::task::JoinHandle<()>,
    commands: mpsc::Receiver<Command>,
    state: watch::Receiver<LinkState>,
    counters: Arc<LinkCounters>,
    shutdown: CancellationToken,
}

fn start(config: MqttConfig, outbox: &OutboxHandle) -> Running {
    let shutdown = CancellationToken::new();
    let link = mqtt::spawn(config, GW, outbox.clone(), shutdown.clone());
    Running {
        task: link.task,
        commands: link.commands,
        state: link.state,
        counters: link.counters,
        shutdown,
    }
}

/// Wait (bounded by [`WAIT`]) until `cond` holds; panics naming `what` otherwise.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn dropped(counters: &LinkCounters, reason: &str) -> u64 {
    counters
        .dropped_by_reason()
        .into_iter()
        .find(|(r, _)| *r == reason)
        .map_or(0, |(_, n)| n)
}

impl Running {
    async fn wait_disconnected(&mut self, within: Duration) {
        let r = tokio::time::timeout(
            within,
            self.state
                .wait_for(|s| matches!(s, LinkState::Disconnected { .. })),
        )
        .await
        .map(|r| r.is_ok());
        assert_eq!(
            r,
            Ok(true),
            "the link did not notice: {:?}",
            *self.state.borrow()
        );
    }

    async fn wait_connected(&mut self) {
        let r = tokio::time::timeout(WAIT, self.state.wait_for(|s| *s == LinkState::Connected))
            .await
            .map(|r| r.is_ok());
        assert_eq!(
            r,
            Ok(true),
            "link not connected: {:?}",
            *self.state.borrow()
        );
    }

    async fn stop(self) -> watch::Receiver<LinkState> {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("link did not stop in time")
            .expect("link task panicked");
        self.state
    }
}

/// The link subscribes right after connecting: publish `probe` commands on `down` until the
/// first one arrives (bounded), and return it.
async fn first_probe(network: &Subscriber, link: &mut Running, down: &str) -> Command {
    for _ in 0..50 {
        network.publish(down, b"probe".to_vec(), false).await;
        if let Ok(Some(cmd)) =
            tokio::time::timeout(Duration::from_millis(200), link.commands.recv()).await
        {
            return cmd;
        }
    }
    panic!("no command arrived on {down}");
}

async fn wait_empty(outbox: &OutboxHandle) -> gatewayd::outbox::OutboxStats {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = outbox.stats().await.unwrap();
        if s.messages() == 0 || tokio::time::Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn stored_messages_arrive_exactly_as_stored_and_leave_the_outbox() {
    let broker = Mosquitto::start();
    let sub = Subscriber::connect(broker.port(), "eu868/gateway/+/event/#").await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = OutboxHandle::open(&outbox_config(dir.path())).unwrap();
    let sent: Vec<NewMessage> = (0..100)
        .map(|n| event(Class::Uplink, "event/up", n))
        .collect();
    outbox.store(sent.clone()).await.unwrap();

    let link = start(mqtt_config(broker.port()), &outbox);
    let got = sub.wait_for(100, WAIT).await;
    assert_eq!(got.len(), 100, "{}", broker.log());
    for (m, r) in sent.iter().zip(&got) {
        assert_eq!(r.topic, "eu868/gateway/01020304050607ab/event/up");
        assert_eq!(r.payload, m.payload);
    }
    let s = wait_empty(&outbox).await;
    assert_eq!(
        (s.messages(), s.acked(), s.in_flight()),
        (0, 100, 0),
        "{s:?}"
    );
    link.stop().await;
    outbox.close().await.unwrap();
}

#[tokio::test]
async fn qos0_messages_are_acked_once_written() {
    let broker = Mosquitto::start();
    let sub = Subscriber::connect(broker.port(), "eu868/gateway/+/event/#").await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = OutboxHandle::open(&outbox_config(dir.path())).unwrap();
    outbox
        .store(
            (0..30)
                .map(|n| event(Class::Stats, "event/stats", n))
                .collect(),
        )
        .await
        .unwrap();
    let link = start(
        MqttConfig {
            qos: 0,
            ..mqtt_config(broker.port())
        },
        &outbox,
    );
    assert_eq!(sub.wait_for(30, WAIT).await.len(), 30);
    let s = wait_empty(&outbox).await;
    assert_eq!((s.messages(), s.acked()), (0, 30));
    link.stop().await;
    outbox.close().await.unwrap();
}

#[tokio::test]
async fn conn_state_is_online_retained_and_offline_after_a_graceful_stop() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let outbox = OutboxHandle::open(&outbox_config(dir.path())).unwrap();
    let conn_topic = mqtt::topic("eu868", GW, "state/conn");
    let mut link = start(mqtt_config(broker.port()), &outbox);
    link.wait_connected().await;

    let online = mqtt::conn_state_payload(GW, true, false);
    let offline = mqtt::conn_state_payload(GW, false, false);
    // A subscriber arriving later gets the retained ONLINE.
    let sub = Subscriber::connect(broker.port(), &conn_topic).await;
    let got = sub.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, online);
    assert!(got[0].retain);

    let state = link.stop().await;
    assert_eq!(
        *state.borrow(),
        LinkState::Disconnected {
            reason: "shut down".into(),
            retry_in: Duration::ZERO
        }
    );
    let got = sub.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].payload, offline);
    // And OFFLINE is what is retained now.
    let late = Subscriber::connect(broker.port(), &conn_topic).await;
    let got = late.wait_for(1, WAIT).await;
    assert_eq!(got[0].payload, offline);
    assert!(got[0].retain);
    outbox.close().await.unwrap();
}

#[tokio::test]
async fn the_last_will_says_offline_when_the_link_dies() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let outbox = OutboxHandle::open(&outbox_config(dir.path())).unwrap();
    let conn_topic = mqtt::topic("eu868", GW, "state/conn");
    let sub = Subscriber::connect(broker.port(), &conn_topic).await;
    let mut link = start(
        MqttConfig {
            json: true,
            ..mqtt_config(broker.port())
        },
        &outbox,
    );
    link.wait_connected().await;
    let got = sub.wait_for(1, WAIT).await;
    let v: serde_json::Value = serde_json::from_slice(&got[0].payload).unwrap();
    assert_eq!(v["state"], "ONLINE");
    assert_eq!(v["gatewayId"], "01020304050607ab");

    // Killed without a goodbye: the socket closes, the broker publishes the will.
    link.task.abort();
    let got = sub.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2, "no last will: {}", broker.log());
    assert_eq!(got[1].payload, mqtt::conn_state_payload(GW, false, true));
    outbox.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_nothing() {
    let mut broker = Mosquitto::start_persistent();
    // A persistent session: the broker queues for the subscriber across its restart.
    let sub =
        Subscriber::connect_persistent(broker.port(), "eu868/gateway/+/event/#", "restart-sub")
            .await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = OutboxHandle::open(&outbox_config(dir.path())).unwrap();
    let total = 600;
    outbox
        .store(
            (0..200)
                .map(|n| event(Class::Uplink, "event/up", n))
                .collect(),
        )
        .await
        .unwrap();
    let mut link = start(
        MqttConfig {
            inflight: 4,
            ..mqtt_config(broker.port())
        },
        &outbox,
    );
    link.wait_connected().await;
    // Uplinks keep coming while the broker goes away and comes back.
    let producer = {
        let outbox = outbox.clone();
        tokio::spawn(async move {
            for chunk in (200..total).collect::<Vec<_>>().chunks(4) {
                let msgs = chunk.iter().map(|&n| event(Class::Uplink, "event/up", n));
                outbox.store(msgs.collect()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    assert!(sub.wait_for(20, WAIT).await.len() >= 20);
    let mut broker = tokio::task::spawn_blocking(move || {
        broker.stop();
        broker
    })
    .await
    .unwrap();
    let r = tokio::time::timeout(
        WAIT,
        link.state
            .wait_for(|s| matches!(s, LinkState::Disconnected { .. })),
    )
    .await
    .map(|r| r.is_ok());
    assert_eq!(r, Ok(true), "the link did not notice the outage");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let broker = tokio::task::spawn_blocking(move || {
        broker.restart();
        broker
    })
    .await
    .unwrap();
    producer.await.unwrap();

    let expected: HashSet<Vec<u8>> = (0..total)
        .map(|n| event(Class::Uplink, "event/up", n).payload)
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen = HashSet::new();
    while tokio::time::Instant::now() < deadline {
        seen = sub
            .wait_for(total, Duration::from_millis(500))
            .await
            .into_iter()
            .map(|r| r.payload)
            .collect();
        if expected.is_subset(&seen) {
            break;
        }
    }
    let missing = expected.difference(&seen).count();
    assert_eq!(
        missing,
        0,
        "{missing} messages never arrived; broker log: {}",
        broker.log()
    );
    let s = wait_empty(&outbox).await;
    assert_eq!(s.messages(), 0, "{s:?}");
    link.stop().await;
    outbox.close().await.unwrap();
}

#[tokio::test]
async fn commands_arrive_on_the_command_channel_and_a_full_channel_blocks_nothing() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let outbox = OutboxHandle::open(&outbox_config(dir.path())).unwrap();
    let mut link = start(mqtt_config(broker.port()), &outbox);
    link.wait_connected().await;
    let network = Subscriber::connect(broker.port(), "eu868/gateway/+/event/#").await;
    let down = mqtt::topic("eu868", GW, "command/down");

    let first = first_probe(&network, &mut link, &down).await;
    assert_eq!(first.kind, "down");
    assert_eq!(first.payload, b"probe");

    // The broker keeps one publisher's order: once this command is here, every probe before
    // it is too (skip them), and the channel is empty.
    let config = mqtt::topic("eu868", GW, "command/config");
    network.publish(&config, vec![0, 1, 2, 0xff], false).await;
    let cmd = loop {
        let cmd = tokio::time::timeout(WAIT, link.commands.recv())
            .await
            .expect("the config command within WAIT")
            .expect("the link runs");
        if cmd.payload != b"probe" {
            break cmd;
        }
    };
    assert_eq!(
        cmd,
        Command {
            kind: "config".into(),
            payload: vec![0, 1, 2, 0xff]
        }
    );
    // Another gateway's commands are not ours.
    let other = mqtt::topic("eu868", Eui64([9; 8]), "command/down");
    network.publish(&other, b"not for us".to_vec(), false).await;

    // Nobody reads commands for a while: the queue fills, extra commands are dropped (and
    // counted), and uplinks still flow. Wait for the counts, not for time to pass.
    let passed = link.counters.commands.load(Ordering::Relaxed);
    let extra = 20;
    for i in 0..(mqtt::COMMAND_QUEUE + extra) {
        network.publish(&down, vec![i as u8], false).await;
    }
    let counters = link.counters.clone();
    wait_until("every flooded command to reach the link", || {
        counters.commands.load(Ordering::Relaxed) - passed >= mqtt::COMMAND_QUEUE as u64
            && dropped(&counters, "queue_full") >= extra as u64
    })
    .await;
    outbox
        .store(vec![event(Class::Uplink, "event/up", 1)])
        .await
        .unwrap();
    let got = network.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(wait_empty(&outbox).await.messages(), 0);
    let mut queued = Vec::new();
    while let Ok(cmd) = link.commands.try_recv() {
        assert_eq!(cmd.kind, "down");
        queued.extend(cmd.payload);
    }
    // The first COMMAND_QUEUE got in, in order; the rest were dropped.
    let expected: Vec<u8> = (0..mqtt::COMMAND_QUEUE).map(|i| i as u8).collect();
    assert_eq!(queued, expected);
    assert_eq!(dropped(&counters, "queue_full"), extra as u64);
    assert_eq!(dropped(&counters, "topic"), 0, "the broker filters topics");
    link.stop().await;
    outbox.close().await.unwrap();
}

/// An oversized command is discarded and counted; the connection stays up and the next
/// command arrives.
#[tokio::test]
async fn an_oversized_command_is_dropped_and_the_connection_stays_up() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let outbox = OutboxHandle::open(&outbox_config(dir.path())).unwrap();
    let mut link = start(mqtt_config(broker.port()), &outbox);
    link.wait_connected().await;
    let network = Subscriber::connect(broker.port(), "eu868/gateway/+/event/#").await;
    let down = mqtt::topic("eu868", GW, "command/down");
    first_probe(&network, &mut link, &down).await;
    let passed = link.counters.commands.load(Ordering::Relaxed);

    network.publish(&down, vec![7; 1_000_000], false).await;
    network
        .publish(&down, vec![1; mqtt::MAX_COMMAND + 1], false)
        .await;
    let entropy = mqtt::topic("eu868", GW, "command/poc_entropy");
    network.publish(&entropy, vec![2; 500_000], false).await;
    network.publish(&down, b"legal".to_vec(), false).await;
    let cmd = loop {
        let cmd = tokio::time::timeout(WAIT, link.commands.recv())
            .await
            .expect("the legal command within WAIT")
            .expect("the link runs");
        if cmd.payload != b"probe" {
            break cmd;
        }
    };
    assert_eq!(cmd.payload, b"legal", "only the legal command is passed on");
    assert_eq!(dropped(&link.counters, "oversized"), 3);
    assert_eq!(link.counters.connections.load(Ordering::Relaxed), 1);
    assert_eq!(*link.state.borrow(), LinkState::Connected);
    assert!(link.counters.commands.load(Ordering::Relaxed) > passed);
    link.stop().await;
    outbox.close().await.unwrap();
}

/// The connection is lost in every way while messages stream (RST, clean close, a stalled
/// path that only keep-alive detects). While no connection is up the outbox has nothing in
/// flight: the link handed back everything it had taken. After each reconnect messages
/// flow again; at the end every message arrived, and duplicates are no more than the link
/// counted as resent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_and_the_outbox_agree_after_every_lost_connection() {
    let broker = Mosquitto::start();
    let sub = Subscriber::connect(broker.port(), "eu868/gateway/+/event/#").await;
    let proxy = Proxy::start(broker.port());
    let dir = tempfile::tempdir().unwrap();
    let outbox = OutboxHandle::open(&outbox_config(dir.path())).unwrap();
    let mut link = start(
        MqttConfig {
            inflight: 8,
            ..mqtt_config(proxy.port())
        },
        &outbox,
    );
    link.wait_connected().await;
    let total = 800;
    let producer = {
        let outbox = outbox.clone();
        tokio::spawn(async move {
            for chunk in (0..total).collect::<Vec<_>>().chunks(4) {
                let msgs = chunk.iter().map(|&n| event(Class::Uplink, "event/up", n));
                outbox.store(msgs.collect()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let cuts = [Cut::Reset, Cut::Close, Cut::Stall, Cut::Reset, Cut::Close];
    for (i, how) in cuts.into_iter().enumerate() {
        let before = sub.received().len();
        wait_until("messages to flow", || sub.received().len() >= before + 10).await;
        proxy.set_accepting(false);
        assert!(proxy.cut(how) >= 1, "cut {i}: no live connection");
        // A stall is found by keep-alive: two keep-alive periods (5 s) at most.
        link.wait_disconnected(Duration::from_secs(30)).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = outbox.stats().await.unwrap();
            if s.in_flight() == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "cut {i} ({how:?}): {} messages still in flight with no connection: {s:?}",
                s.in_flight()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !matches!(*link.state.borrow(), LinkState::Connected),
            "the proxy refuses connections"
        );
        proxy.cut(Cut::Close); // releases a stalled connection
        proxy.set_accepting(true);
        link.wait_connected().await;
    }
    producer.await.unwrap();
    let expected: HashSet<Vec<u8>> = (0..total)
        .map(|n| event(Class::Uplink, "event/up", n).payload)
        .collect();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        got = sub.wait_for(total, Duration::from_millis(500)).await;
        let seen: HashSet<&Vec<u8>> = got.iter().map(|r| &r.payload).collect();
        if expected.iter().all(|p| seen.contains(p)) {
            break;
        }
    }
    let mut counts: HashMap<&Vec<u8>, usize> = HashMap::new();
    for r in &got {
        *counts.entry(&r.payload).or_default() += 1;
    }
    let missing = expected.iter().filter(|p| !counts.contains_key(p)).count();
    assert_eq!(missing, 0, "{missing} of {total} never arrived");
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    let resent = link.counters.resent.load(Ordering::Relaxed);
    assert!(
        duplicates as u64 <= resent,
        "{duplicates} duplicates but only {resent} counted as resent"
    );
    assert_eq!(
        link.counters.connections.load(Ordering::Relaxed),
        1 + cuts.len() as u64
    );
    let s = wait_empty(&outbox).await;
    assert_eq!((s.messages(), s.in_flight()), (0, 0), "{s:?}");
    link.stop().await;
    outbox.close().await.unwrap();
}

#[tokio::test]
async fn higher_classes_are_published_first() {
    let broker = Mosquitto::start();
    let sub = Subscriber::connect(broker.port(), "eu868/gateway/+/event/#").await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = OutboxHandle::open(&outbox_config(dir.path())).unwrap();
    outbox
        .store(vec![
            event(Class::Stats, "event/stats", 0),
            event(Class::Uplink, "event/up", 1),
            event(Class::Stats, "event/stats", 2),
            event(Class::Poc, "event/poc", 3),
            event(Class::Uplink, "event/up", 4),
            event(Class::Control, "event/ack", 5),
            event(Class::Poc, "event/poc", 6),
        ])
        .await
        .unwrap();
    let link = start(
        MqttConfig {
            inflight: 1,
            ..mqtt_config(broker.port())
        },
        &outbox,
    );
    let got = sub.wait_for(7, WAIT).await;
    let order: Vec<String> = got
        .iter()
        .map(|r| {
            let text = String::from_utf8_lossy(&r.payload);
            let n = text.rsplit('#').next().unwrap_or("?").to_string();
            format!("{}#{n}", r.topic.rsplit('/').next().unwrap_or("?"))
        })
        .collect();
    assert_eq!(
        order,
        ["ack#5", "poc#3", "poc#6", "up#1", "up#4", "stats#0", "stats#2"]
    );
    link.stop().await;
    outbox.close().await.unwrap();
}
