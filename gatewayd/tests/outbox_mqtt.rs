//! The outbox and the MQTT link against a real Mosquitto on 127.0.0.1.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use drivers::radio::Eui64;
use gatewayd::config::{MqttConfig, OutboxConfig};
use gatewayd::mqtt::{self, Command, LinkState};
use gatewayd::outbox::{Class, NewMessage, OutboxHandle};
use support::mosquitto::{Mosquitto, Subscriber};
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
    shutdown: CancellationToken,
}

fn start(config: MqttConfig, outbox: &OutboxHandle) -> Running {
    let shutdown = CancellationToken::new();
    let (task, commands, state) = mqtt::spawn(config, GW, outbox.clone(), shutdown.clone());
    Running {
        task,
        commands,
        state,
        shutdown,
    }
}

impl Running {
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

    // The link subscribes right after connecting: publish until the first command arrives.
    let mut first = None;
    for _ in 0..50 {
        network.publish(&down, b"probe".to_vec(), false).await;
        if let Ok(Some(cmd)) =
            tokio::time::timeout(Duration::from_millis(200), link.commands.recv()).await
        {
            first = Some(cmd);
            break;
        }
    }
    let first = first.expect("no command arrived");
    assert_eq!(first.kind, "down");
    assert_eq!(first.payload, b"probe");
    // Drain extra probes.
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::from_millis(300), link.commands.recv()).await
    {}

    let config = mqtt::topic("eu868", GW, "command/config");
    network.publish(&config, vec![0, 1, 2, 0xff], false).await;
    let cmd = tokio::time::timeout(WAIT, link.commands.recv())
        .await
        .unwrap()
        .unwrap();
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

    // Nobody reads commands for a while: the queue fills, extra commands are dropped, and
    // uplinks still flow.
    for i in 0..(mqtt::COMMAND_QUEUE + 20) {
        network.publish(&down, vec![i as u8], false).await;
    }
    outbox
        .store(vec![event(Class::Uplink, "event/up", 1)])
        .await
        .unwrap();
    let got = network.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(wait_empty(&outbox).await.messages(), 0);
    let mut n = 0;
    while let Ok(Some(cmd)) =
        tokio::time::timeout(Duration::from_millis(500), link.commands.recv()).await
    {
        assert_eq!(cmd.kind, "down");
        n += 1;
    }
    assert_eq!(n, mqtt::COMMAND_QUEUE);
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
