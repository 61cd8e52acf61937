//! The async MQTT link task. It only moves bytes: rumqttc's event loop runs in its own task
//! (its `poll` is not cancel-safe) and forwards events here; the [`InflightWindow`] decides what is
//! done; the outbox is asked for more whenever the window has room.
//!
//! After a lost connection the window's unconfirmed messages go back to the outbox, and so
//! do messages of a pending `next` call (the outbox takes them back when the call is
//! dropped): the outbox has nothing in flight while no connection is up.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use drivers::radio::Eui64;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, Outgoing, Publish, QoS,
    SubscribeReasonCode,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::state::{Backoff, InflightWindow};
use super::{
    conn_state_payload, options, topic, Command, CommandDrop, LinkCounters, LinkState, MAX_COMMAND,
};
use crate::config::MqttConfig;
use crate::outbox::{Message, OutboxError, OutboxHandle};
use drivers::ratelimit::RateLimiter;

/// Longest wait for in-flight PUBACKs at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for the OFFLINE message's PUBACK and the DISCONNECT at shutdown.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);
/// Events buffered between the rumqttc task and the link.
const EVENT_QUEUE: usize = 1024;
/// Events handled before acks are passed to the outbox.
const EVENTS_PER_ROUND: usize = 512;

type NextFuture = Pin<Box<dyn Future<Output = Result<Vec<Message>, OutboxError>> + Send>>;
type EventRx = mpsc::Receiver<Polled>;

/// What the rumqttc task passes on.
enum Polled {
    /// An event.
    Event(Event),
    /// A publish from the broker whose payload exceeded [`MAX_COMMAND`]; the payload was
    /// dropped in the rumqttc task (rumqttc has already acknowledged it to the broker).
    Oversized {
        /// Its topic.
        topic: String,
        /// Its payload length.
        len: usize,
    },
    /// The connection failed.
    Failed(ConnectionError),
}

impl Polled {
    /// An event, with an oversized command's payload dropped at once (bounded memory even
    /// while the link is busy and events queue up).
    fn screen(event: Event) -> Polled {
        match event {
            Event::Incoming(Incoming::Publish(p)) if p.payload.len() > MAX_COMMAND => {
                Polled::Oversized {
                    len: p.payload.len(),
                    topic: p.topic,
                }
            }
            event => Polled::Event(event),
        }
    }
}

/// Aborts the rumqttc task (closing its socket) when the connection ends or the link task is
/// dropped or aborted.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum Ended {
    Shutdown,
    Lost(LinkError),
}

/// Why one connection ended (logged, and shown in status as the reason for the retry).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// The connection's options could not be built (TLS files).
    #[error(transparent)]
    Options(#[from] options::OptionsError),
    /// The rumqttc task stopped without an error.
    #[error("the MQTT event loop stopped")]
    EventLoopStopped,
    /// The connection failed.
    #[error("{0}")]
    Connection(#[source] Box<ConnectionError>),
    /// The command subscription could not be queued.
    #[error("cannot subscribe to commands: {0}")]
    Subscribe(#[source] rumqttc::ClientError),
    /// The ONLINE connection state could not be queued.
    #[error("cannot publish the connection state: {0}")]
    ConnState(#[source] rumqttc::ClientError),
}

struct Link {
    config: MqttConfig,
    gateway: Eui64,
    outbox: OutboxHandle,
    shutdown: CancellationToken,
    commands: mpsc::Sender<Command>,
    state: watch::Sender<LinkState>,
    conn_topic: String,
    command_prefix: String,
    command_warn: RateLimiter,
    counters: Arc<LinkCounters>,
}

/// One connection attempt's state.
struct Session {
    client: AsyncClient,
    window: InflightWindow,
    acks: Vec<i64>,
    connected: bool,
}

pub(crate) async fn run(
    config: MqttConfig,
    gateway: Eui64,
    outbox: OutboxHandle,
    shutdown: CancellationToken,
    commands: mpsc::Sender<Command>,
    state: watch::Sender<LinkState>,
    counters: Arc<LinkCounters>,
) {
    let mut backoff = Backoff::new(config.reconnect_min, config.reconnect_max);
    let mut link = Link {
        conn_topic: topic(&config.topic_prefix, gateway, "state/conn"),
        command_prefix: topic(&config.topic_prefix, gateway, "command/"),
        config,
        gateway,
        outbox,
        shutdown,
        commands,
        state,
        command_warn: RateLimiter::new(Duration::from_secs(10)),
        counters,
    };
    // During an outage every failed attempt is logged at debug; a warning says so once a
    // minute (with how many attempts failed), so the journal is not flooded.
    let mut retry_warn = RateLimiter::new(Duration::from_secs(60));
    loop {
        if link.shutdown.is_cancelled() {
            break;
        }
        link.state.send_replace(LinkState::Connecting);
        match link.connection(&mut backoff).await {
            Ended::Shutdown => break,
            Ended::Lost(reason) => {
                let retry_in = backoff.next_delay(rand::random::<f64>());
                let (host, port, secs) =
                    (&link.config.host, link.config.port, retry_in.as_secs_f64());
                match retry_warn.check("retry", Instant::now()) {
                    Some(0) => log::warn!("mqtt: {host}:{port}: {reason}; retrying in {secs:.1} s"),
                    Some(n) => log::warn!(
                        "mqtt: {host}:{port}: {reason}; {n} more attempts failed in the last minute; \
                         retrying in {secs:.1} s (messages are kept in the outbox)"
                    ),
                    None => log::debug!("mqtt: {host}:{port}: {reason}; retrying in {secs:.1} s"),
                }
                link.state.send_replace(LinkState::Disconnected {
                    reason: reason.to_string(),
                    retry_in,
                });
                tokio::select! {
                    _ = tokio::time::sleep(retry_in) => {}
                    _ = link.shutdown.cancelled() => break,
                }
            }
        }
    }
    link.state.send_replace(LinkState::Disconnected {
        reason: "shut down".into(),
        retry_in: Duration::ZERO,
    });
}

/// Runs rumqttc's event loop until it fails or the link stops listening.
async fn poll(mut eventloop: EventLoop, events: mpsc::Sender<Polled>) {
    loop {
        let polled = match eventloop.poll().await {
            Ok(event) => Polled::screen(event),
            Err(e) => {
                // Events rumqttc handled before the failure (PUBACKs read in the same batch)
                // are still buffered: pass them on, so only messages whose PUBACK really
                // never came are resent.
                let buffered: Vec<Event> = eventloop.state.events.drain(..).collect();
                for event in buffered {
                    if events.send(Polled::screen(event)).await.is_err() {
                        return;
                    }
                }
                let _ = events.send(Polled::Failed(e)).await;
                return;
            }
        };
        if events.send(polled).await.is_err() {
            return;
        }
    }
}

impl Link {
    /// One connection: connect, publish until it fails or shutdown.
    async fn connection(&mut self, backoff: &mut Backoff) -> Ended {
        let options = match options::build(&self.config, self.gateway) {
            Ok(o) => o,
            Err(e) => return Ended::Lost(e.into()),
        };
        let window = usize::from(self.config.inflight);
        // A fresh client and event loop per attempt: nothing stale is replayed.
        let (client, mut eventloop) = AsyncClient::new(options, window + 16);
        // Without TCP_NODELAY, Nagle's algorithm holds small publishes back waiting for the
        // broker's delayed ACK: milliseconds of latency per uplink for nothing.
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        eventloop.set_network_options(net);
        let (events_tx, mut events) = mpsc::channel(EVENT_QUEUE);
        let _poller = AbortOnDrop(tokio::spawn(poll(eventloop, events_tx)));
        let mut s = Session {
            client,
            window: InflightWindow::new(window),
            acks: Vec::new(),
            connected: false,
        };
        let mut next: Option<NextFuture> = None;
        loop {
            if s.connected && next.is_none() && s.window.room() > 0 {
                let outbox = self.outbox.clone();
                let room = s.window.room();
                next = Some(Box::pin(async move { outbox.next(room).await }));
            }
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    // `next` is cancel-safe: what it had taken goes back to the outbox.
                    drop(next.take());
                    self.goodbye(&mut s, &mut events).await;
                    return Ended::Shutdown;
                }
                event = events.recv() => {
                    let mut event = event;
                    let mut handled = 0;
                    loop {
                        if let Err(reason) = self.polled(&mut s, event, backoff) {
                            return self.lost(&mut s, reason);
                        }
                        handled += 1;
                        if handled >= EVENTS_PER_ROUND {
                            break;
                        }
                        match events.try_recv() {
                            Ok(e) => event = Some(e),
                            Err(_) => break,
                        }
                    }
                    self.flush_acks(&mut s);
                }
                result = async { next.as_mut().expect("guarded by the select condition").await },
                    if next.is_some() =>
                {
                    next = None;
                    match result {
                        Ok(msgs) => self.publish_all(&mut s, msgs),
                        Err(OutboxError::Closed) => {
                            log::error!("mqtt: the outbox is closed; stopping the link");
                            self.goodbye(&mut s, &mut events).await;
                            return Ended::Shutdown;
                        }
                        Err(e) => {
                            log::error!("mqtt: cannot read the outbox: {e}");
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                _ = self.shutdown.cancelled() => {}
                            }
                        }
                    }
                }
            }
        }
    }

    /// Handle what the rumqttc task passed on (`None`: it stopped); `Err` ends the
    /// connection.
    fn polled(
        &mut self,
        s: &mut Session,
        polled: Option<Polled>,
        backoff: &mut Backoff,
    ) -> Result<(), LinkError> {
        match polled {
            None => Err(LinkError::EventLoopStopped),
            Some(Polled::Failed(e)) => Err(LinkError::Connection(Box::new(e))),
            Some(Polled::Event(ev)) => self.handle(s, ev, backoff),
            Some(Polled::Oversized { topic, len }) => {
                self.counters.dropped(CommandDrop::Oversized);
                if let Some(n) = self.command_warn.check("oversized", Instant::now()) {
                    log::warn!(
                        "mqtt: discarded a {len}-byte message on {topic}: commands are limited \
                         to {MAX_COMMAND} bytes ({n} other warnings suppressed)"
                    );
                }
                Ok(())
            }
        }
    }

    /// Handle one rumqttc event; `Err` ends the connection.
    fn handle(
        &mut self,
        s: &mut Session,
        event: Event,
        backoff: &mut Backoff,
    ) -> Result<(), LinkError> {
        match event {
            Event::Incoming(Incoming::ConnAck(_)) => {
                s.connected = true;
                backoff.reset();
                self.counters.connections.fetch_add(1, Ordering::Relaxed);
                log::info!(
                    "mqtt: connected to {}:{} as {}",
                    self.config.host,
                    self.config.port,
                    options::client_id(&self.config, self.gateway)
                );
                s.client
                    .try_subscribe(format!("{}+", self.command_prefix), QoS::AtLeastOnce)
                    .map_err(LinkError::Subscribe)?;
                let online = conn_state_payload(self.gateway, true, self.config.json);
                s.client
                    .try_publish(&self.conn_topic, QoS::AtLeastOnce, true, online)
                    .map_err(LinkError::ConnState)?;
                s.window.issued(None);
                self.state.send_replace(LinkState::Connected);
            }
            Event::Incoming(Incoming::PubAck(ack)) => {
                if let Some(id) = s.window.puback(ack.pkid) {
                    s.acks.push(id);
                }
            }
            Event::Incoming(Incoming::Publish(p)) => self.command(p),
            Event::Incoming(Incoming::SubAck(ack))
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure)) =>
            {
                log::warn!(
                    "mqtt: the broker refused the subscription to {}+; no commands will arrive",
                    self.command_prefix
                );
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                if let Some(id) = s.window.written(pkid) {
                    s.acks.push(id);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn command(&mut self, p: Publish) {
        let kind = p
            .topic
            .strip_prefix(&self.command_prefix)
            .filter(|k| !k.is_empty() && !k.contains('/'));
        let Some(kind) = kind else {
            self.counters.dropped(CommandDrop::Topic);
            if self.command_warn.check("topic", Instant::now()).is_some() {
                log::warn!("mqtt: ignored a message on unexpected topic {:?}", p.topic);
            }
            return;
        };
        log::debug!("mqtt: command {kind} ({} bytes)", p.payload.len());
        let cmd = Command {
            kind: kind.to_string(),
            payload: p.payload.to_vec(),
        };
        match self.commands.try_send(cmd) {
            Ok(()) => {
                self.counters.commands.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                self.counters.dropped(CommandDrop::QueueFull);
                if let Some(n) = self.command_warn.check("queue_full", Instant::now()) {
                    log::warn!(
                        "mqtt: command queue full: dropped a {} command ({n} other warnings suppressed)",
                        cmd.kind
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(cmd)) => {
                self.counters.dropped(CommandDrop::Busy);
                log::debug!(
                    "mqtt: nobody takes commands; dropped a {} command",
                    cmd.kind
                );
            }
        }
    }

    fn publish_all(&mut self, s: &mut Session, msgs: Vec<Message>) {
        let qos = if self.config.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        for m in msgs {
            log::debug!(
                "mqtt: publish {} ({} bytes, outbox id {})",
                m.topic,
                m.payload.len(),
                m.id
            );
            match s.client.try_publish(m.topic, qos, false, m.payload) {
                Ok(()) => s.window.issued(Some(m.id)),
                Err(e) => {
                    // The event loop is gone; its error ends the connection next.
                    if let Some(n) = self.command_warn.check("publish", Instant::now()) {
                        log::warn!(
                            "mqtt: cannot queue a publish ({e}); it will be retried \
                             ({n} other warnings suppressed)"
                        );
                    }
                    self.outbox.requeue(vec![m.id]);
                }
            }
        }
    }

    fn flush_acks(&self, s: &mut Session) {
        if !s.acks.is_empty() {
            self.outbox.ack(std::mem::take(&mut s.acks));
        }
    }

    /// The connection failed: confirmed ids are acked, the others go back to the outbox.
    fn lost(&mut self, s: &mut Session, reason: LinkError) -> Ended {
        self.flush_acks(s);
        let unconfirmed = s.window.disconnected();
        if s.connected {
            log::warn!(
                "mqtt: connection to {}:{} lost ({reason}); {} unconfirmed messages will be resent \
                 ({} of them were written, so the broker may get them twice)",
                self.config.host,
                self.config.port,
                unconfirmed.ids.len(),
                unconfirmed.written
            );
        }
        self.requeue(unconfirmed);
        Ended::Lost(reason)
    }

    /// Hand unconfirmed messages back to the outbox; count those that may be duplicates.
    fn requeue(&self, unconfirmed: super::state::Unconfirmed) {
        self.counters
            .resent
            .fetch_add(unconfirmed.written as u64, Ordering::Relaxed);
        self.outbox.requeue(unconfirmed.ids);
    }

    /// Graceful stop: wait (bounded) for in-flight PUBACKs, publish OFFLINE, disconnect.
    async fn goodbye(&mut self, s: &mut Session, events: &mut EventRx) {
        if s.connected {
            let mut backoff = Backoff::new(Duration::ZERO, Duration::ZERO);
            self.drain(s, events, Instant::now() + DRAIN_TIMEOUT, &mut backoff)
                .await;
            let offline = conn_state_payload(self.gateway, false, self.config.json);
            if s.client
                .try_publish(&self.conn_topic, QoS::AtLeastOnce, true, offline)
                .is_ok()
            {
                s.window.issued(None);
            }
            let deadline = Instant::now() + GOODBYE_TIMEOUT;
            self.drain(s, events, deadline, &mut backoff).await;
            if s.client.try_disconnect().is_ok() {
                while let Ok(Some(Polled::Event(ev))) =
                    tokio::time::timeout_at(deadline.into(), events.recv()).await
                {
                    if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                        break;
                    }
                }
            }
            log::info!(
                "mqtt: disconnected from {}:{} (shutdown)",
                self.config.host,
                self.config.port
            );
        }
        self.flush_acks(s);
        let unconfirmed = s.window.disconnected();
        self.requeue(unconfirmed);
    }

    /// Handle events until the window is empty or `deadline`.
    async fn drain(
        &mut self,
        s: &mut Session,
        events: &mut EventRx,
        deadline: Instant,
        backoff: &mut Backoff,
    ) {
        while !s.window.is_idle() {
            match tokio::time::timeout_at(deadline.into(), events.recv()).await {
                Ok(polled) => {
                    if self.polled(s, polled, backoff).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        self.flush_acks(s);
    }
}
