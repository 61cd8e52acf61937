//! An MQTT subscriber for tests that collects what it receives (async, reconnecting).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::sync::{watch, Notify};

#[allow(unused_imports)]
pub use crate::broker::{free_port, Mosquitto};

/// Whether gateway `id` has published the ONLINE connection state among `received`.
pub fn online(received: &[Received], id: &str) -> bool {
    use chirpstack_api::gw;
    use chirpstack_api::prost::Message as _;
    received.iter().any(|r| {
        r.topic == format!("eu868/gateway/{id}/state/conn")
            && gw::ConnState::decode(r.payload.as_slice())
                .is_ok_and(|c| c.state() == gw::conn_state::State::Online)
    })
}

/// One message a [`Subscriber`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// The retain flag as delivered (set for retained messages sent on subscribe).
    pub retain: bool,
}

/// An MQTT client subscribed to one filter at QoS 1, collecting every message it receives.
/// It reconnects and resubscribes by itself; its task stops on Drop.
pub struct Subscriber {
    client: AsyncClient,
    received: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
    subscribed: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// Connect with a clean session, subscribe to `filter` and wait (bounded) for the SUBACK.
    pub async fn connect(port: u16, filter: &str) -> Subscriber {
        let id = format!("test-sub-{}", free_port());
        Subscriber::connect_with(port, filter, &id, true).await
    }

    /// Connect with a persistent session under `client_id` (messages are queued by the
    /// broker while it is away), subscribe and wait for the SUBACK.
    pub async fn connect_persistent(port: u16, filter: &str, client_id: &str) -> Subscriber {
        Subscriber::connect_with(port, filter, client_id, false).await
    }

    async fn connect_with(port: u16, filter: &str, id: &str, clean: bool) -> Subscriber {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_clean_session(clean)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let received = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let (sub_tx, subscribed) = watch::channel(0u64);
        let task = {
            let client = client.clone();
            let received = received.clone();
            let arrived = arrived.clone();
            let filter = filter.to_string();
            tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                            let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                        }
                        Ok(Event::Incoming(Incoming::SubAck(_))) => {
                            sub_tx.send_modify(|n| *n += 1);
                        }
                        Ok(Event::Incoming(Incoming::Publish(p))) => {
                            received.lock().unwrap().push(Received {
                                topic: p.topic.clone(),
                                payload: p.payload.to_vec(),
                                retain: p.retain,
                            });
                            arrived.notify_waiters();
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            })
        };
        let mut s = Subscriber {
            client,
            received,
            arrived,
            subscribed,
            task,
        };
        s.wait_subscribed(Duration::from_secs(10)).await;
        s
    }

    /// Wait (bounded; panics on timeout) until the broker has acknowledged the subscription
    /// at least once.
    pub async fn wait_subscribed(&mut self, timeout: Duration) {
        let r = tokio::time::timeout(timeout, self.subscribed.wait_for(|n| *n > 0)).await;
        assert!(
            matches!(r, Ok(Ok(_))),
            "subscriber: no SUBACK within {timeout:?}"
        );
    }

    /// How many SUBACKs it has had (one per (re)connection).
    pub fn subscriptions(&self) -> u64 {
        *self.subscribed.borrow()
    }

    /// Wait until at least `n` messages have arrived or `timeout` passed; returns all
    /// messages received so far (check the length).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.arrived.notified();
            {
                let got = self.received.lock().unwrap();
                if got.len() >= n {
                    return got.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.received();
            }
        }
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Publish with this client (QoS 1).
    pub async fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .expect("subscriber publish");
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}
