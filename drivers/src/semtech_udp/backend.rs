//! The Semtech UDP backend task: owns the UDP socket, turns PUSH_DATA into
//! [`RadioEvent`]s, answers keepalives, sends PULL_RESPs for transmit commands and matches
//! their TX_ACKs. It only moves bytes; decisions live in the codec and `Session`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use log::{debug, info, warn};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::counters::Counters;
use super::error::GwmpError;
use super::packet::{Packet, Version};
use super::push_data::decode_push_data;
use super::session::Session;
use super::txpk::{decode_tx_ack, encode_pull_resp};
use crate::radio::{
    Radio, RadioCapabilities, RadioControl, RadioEvent, RadioHealth, StoreAck, TxCommand, TxStatus,
};
use crate::ratelimit::RateLimiter;

/// How long shutdown waits for PUSH_ACKs of datagrams the daemon is still storing.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// At most one warning line per kind per this interval.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);
/// Depth of the transmit command queue.
const COMMAND_QUEUE: usize = 16;

/// Settings of the Semtech UDP backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemtechUdpConfig {
    /// Address to listen on (the forwarder's `server_address`/`serv_port_up`/`down`).
    pub bind: SocketAddr,
    /// Depth of the event queue towards the daemon; a full queue pauses reception.
    pub event_queue: usize,
    /// How long to wait for a v2 TX_ACK before answering [`TxStatus::InternalError`].
    pub tx_ack_timeout: Duration,
}

impl Default for SemtechUdpConfig {
    /// Loopback port 1680 (the gateway-rs convention), 64 queued events, 2 s TX_ACK timeout.
    fn default() -> Self {
        SemtechUdpConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 1680)),
            event_queue: 64,
            tx_ack_timeout: Duration::from_secs(2),
        }
    }
}

/// What the caller keeps of a running backend besides its [`Radio`].
#[derive(Debug)]
pub struct SemtechUdpHandle {
    counters: Arc<Counters>,
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SemtechUdpHandle {
    /// The live counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// The address the socket is bound to (the real port when the config asked for 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Wait until the task has ended (after shutdown, or once the [`Radio`] is dropped).
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            warn!("semtech_udp: backend task ended abnormally: {e}");
        }
    }
}

/// Receive buffer asked of the kernel: bursts of PUSH_DATA (a concentrator flushing after a
/// stall, a benchmark) must not overflow the default ~208 KiB while the loop is busy. The
/// kernel caps it at `net.core.rmem_max`.
pub const RECV_BUFFER: usize = 4 * 1024 * 1024;

fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if let Err(e) = sock.set_recv_buffer_size(RECV_BUFFER) {
        log::debug!("semtech_udp: cannot raise the receive buffer: {e}");
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

/// Bind the socket and start the backend. Emits [`RadioHealth::Up`] once bound. The task
/// ends when `shutdown` is cancelled (after sending the PUSH_ACKs of frames already
/// stored, for up to [`SHUTDOWN_GRACE`]) or when the [`Radio`]'s event receiver is dropped.
pub async fn spawn(
    config: SemtechUdpConfig,
    shutdown: CancellationToken,
) -> Result<(Radio, SemtechUdpHandle), GwmpError> {
    let socket = bind(config.bind).map_err(|source| GwmpError::Bind {
        addr: config.bind,
        source,
    })?;
    let local_addr = socket.local_addr().map_err(|source| GwmpError::Bind {
        addr: config.bind,
        source,
    })?;
    info!("semtech_udp: listening on {local_addr}");
    let (events_tx, events) = mpsc::channel(config.event_queue.max(1));
    // The channel is new and has room: this cannot fail.
    let _ = events_tx.try_send(RadioEvent::Health(RadioHealth::Up));
    let (control, commands) = RadioControl::channel(COMMAND_QUEUE);
    let counters = Arc::new(Counters::default());
    let backend = Backend {
        socket,
        events: events_tx,
        commands,
        counters: counters.clone(),
        session: Session::new(),
        limiter: RateLimiter::new(WARN_INTERVAL),
        acks: JoinSet::new(),
        tx_ack_timeout: config.tx_ack_timeout,
        shutdown,
    };
    let task = tokio::spawn(backend.run());
    let radio = Radio {
        events,
        control,
        capabilities: RadioCapabilities {
            lbt: false,
            gps_timed_tx: true,
            rx_channels: 8,
            // The packet forwarder's board is unknown here.
            max_tx_power_dbm: None,
        },
        counters: crate::radio::RadioCounters::new(counters.clone()),
    };
    Ok((
        radio,
        SemtechUdpHandle {
            counters,
            local_addr,
            task,
        },
    ))
}

/// Whether the loop goes on.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// A PUSH_ACK to send once the daemon has stored the frames, or `None` when it did not.
type AckResult = Option<(SocketAddr, [u8; 4])>;

struct Backend {
    socket: UdpSocket,
    events: mpsc::Sender<RadioEvent>,
    commands: mpsc::Receiver<TxCommand>,
    counters: Arc<Counters>,
    session: Session<oneshot::Sender<TxStatus>>,
    limiter: RateLimiter,
    acks: JoinSet<AckResult>,
    tx_ack_timeout: Duration,
    shutdown: CancellationToken,
}

impl Backend {
    async fn run(mut self) {
        let mut buf = vec![0u8; 65_536];
        let mut commands_open = true;
        loop {
            let deadline = self.session.next_deadline().map(Instant::from_std);
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                Some(done) = self.acks.join_next(), if !self.acks.is_empty() => {
                    self.ack_done(done).await;
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                    if deadline.is_some() => self.expire(),
                cmd = self.commands.recv(), if commands_open => match cmd {
                    Some(cmd) => self.transmit(cmd).await,
                    None => commands_open = false,
                },
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        if self.datagram(&buf[..n], from).await == Flow::Stop {
                            break;
                        }
                    }
                    Err(e) => {
                        Counters::inc(&self.counters.socket_errors);
                        self.warn("recv", format!("receive error: {e}"));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
            }
        }
        self.finish().await;
    }

    /// Stop: fail pending transmissions, send the PUSH_ACKs of frames being stored.
    async fn finish(mut self) {
        for reply in self.session.drain() {
            let _ = reply.send(TxStatus::InternalError);
        }
        let grace = Instant::now() + SHUTDOWN_GRACE;
        while !self.acks.is_empty() {
            match tokio::time::timeout_at(grace, self.acks.join_next()).await {
                Ok(Some(done)) => self.ack_done(done).await,
                Ok(None) => break,
                Err(_) => {
                    warn!(
                        "semtech_udp: {} PUSH_ACKs still unresolved at shutdown",
                        self.acks.len()
                    );
                    break;
                }
            }
        }
        info!("semtech_udp: stopped");
    }

    /// Log a warning of `kind`, rate-limited; suppressed ones go to debug.
    fn warn(&mut self, kind: &'static str, msg: String) {
        match self.limiter.check(kind, std::time::Instant::now()) {
            Some(0) => warn!("semtech_udp: {msg}"),
            Some(n) => warn!("semtech_udp: {msg} ({n} similar suppressed)"),
            None => debug!("semtech_udp: {msg}"),
        }
    }

    async fn send(&mut self, bytes: &[u8], to: SocketAddr) -> bool {
        match self.socket.send_to(bytes, to).await {
            Ok(_) => true,
            Err(e) => {
                Counters::inc(&self.counters.socket_errors);
                self.warn("send", format!("cannot send to {to}: {e}"));
                false
            }
        }
    }

    /// Hand an event to the daemon; waits while its queue is full.
    async fn emit(&mut self, event: RadioEvent) -> Flow {
        tokio::select! {
            biased;
            r = self.events.send(event) => match r {
                Ok(()) => Flow::Continue,
                Err(_) => {
                    info!("semtech_udp: the daemon dropped the radio; stopping");
                    Flow::Stop
                }
            },
            _ = self.shutdown.cancelled() => Flow::Stop,
        }
    }

    async fn ack_done(&mut self, done: Result<AckResult, JoinError>) {
        match done {
            Ok(Some((to, bytes))) => {
                if self.send(&bytes, to).await {
                    Counters::inc(&self.counters.push_ack_sent);
                }
            }
            Ok(None) | Err(_) => Counters::inc(&self.counters.push_ack_withheld),
        }
    }

    fn expire(&mut self) {
        for reply in self.session.expire(Instant::now().into_std()) {
            Counters::inc(&self.counters.tx_ack_timeouts);
            self.warn(
                "tx_ack_timeout",
                format!("no TX_ACK within {:?}", self.tx_ack_timeout),
            );
            let _ = reply.send(TxStatus::InternalError);
        }
    }

    async fn datagram(&mut self, buf: &[u8], from: SocketAddr) -> Flow {
        Counters::inc(&self.counters.datagrams);
        let packet = match Packet::parse(buf) {
            Ok(p) => p,
            Err(e) => {
                self.counters.malformed(&e);
                self.warn(e.kind(), format!("rejected datagram from {from}: {e}"));
                return Flow::Continue;
            }
        };
        debug!("semtech_udp: {} from {from}", packet.name());
        match packet {
            Packet::PushData {
                version,
                token,
                gateway,
                json,
            } => self.push_data(version, token, gateway, &json, from).await,
            Packet::PullData {
                version,
                token,
                gateway,
            } => {
                Counters::inc(&self.counters.pull_data);
                if self
                    .send(&Packet::PullAck { version, token }.to_bytes(), from)
                    .await
                {
                    Counters::inc(&self.counters.pull_ack_sent);
                }
                if self.session.pull_data(from, version, gateway) {
                    info!("semtech_udp: gateway {gateway} at {from}");
                    return self.emit(RadioEvent::Announce(gateway)).await;
                }
                Flow::Continue
            }
            Packet::TxAck { token, json, .. } => {
                Counters::inc(&self.counters.tx_ack);
                let status = decode_tx_ack(&json).unwrap_or_else(|e| {
                    self.counters.malformed(&e);
                    self.warn(e.kind(), format!("bad TX_ACK from {from}: {e}"));
                    TxStatus::InternalError
                });
                match self.session.take_pending(token) {
                    Some(reply) => {
                        let _ = reply.send(status);
                    }
                    None => {
                        Counters::inc(&self.counters.tx_ack_unmatched);
                        debug!("semtech_udp: TX_ACK with unknown token {token:#06x}");
                    }
                }
                Flow::Continue
            }
            other => {
                Counters::inc(&self.counters.unexpected_packets);
                let msg = format!("ignored {} from {from}: not sent by gateways", other.name());
                self.warn("unexpected_packet", msg);
                Flow::Continue
            }
        }
    }

    async fn push_data(
        &mut self,
        version: Version,
        token: u16,
        gateway: crate::radio::Eui64,
        json: &[u8],
        from: SocketAddr,
    ) -> Flow {
        Counters::inc(&self.counters.push_data);
        let body = match decode_push_data(json) {
            Ok(b) => b,
            Err(e) => {
                self.counters.malformed(&e);
                self.warn(e.kind(), format!("rejected PUSH_DATA from {from}: {e}"));
                return Flow::Continue;
            }
        };
        let c = self.counters.clone();
        let mut rxpk_rejected = 0;
        for e in &body.rejected {
            if matches!(e, GwmpError::BadStat { .. }) {
                Counters::inc(&c.stat_rejected);
            } else {
                rxpk_rejected += 1;
                Counters::inc(&c.rxpk_rejected);
            }
            self.warn(
                "entry",
                format!("rejected part of PUSH_DATA from {from}: {e}"),
            );
        }
        Counters::add(
            &c.rxpk_received,
            body.rxpk_count.saturating_sub(rxpk_rejected),
        );
        if self.session.saw_gateway(gateway) {
            info!("semtech_udp: gateway {gateway} at {from}");
            if self.emit(RadioEvent::Announce(gateway)).await == Flow::Stop {
                return Flow::Stop;
            }
        }
        let ack = Packet::PushAck { version, token }.to_bytes();
        let ack: [u8; 4] = [ack[0], ack[1], ack[2], ack[3]];
        if body.frames.is_empty() {
            // Nothing to store: acknowledge at once.
            if self.send(&ack, from).await {
                Counters::inc(&c.push_ack_sent);
            }
        } else {
            Counters::add(&c.frames, body.frames.len());
            let (store_ack, stored) = StoreAck::pair();
            let event = RadioEvent::Uplinks {
                gateway: Some(gateway),
                frames: body.frames,
                ack: store_ack,
            };
            if self.emit(event).await == Flow::Stop {
                return Flow::Stop;
            }
            self.acks.spawn(async move {
                match stored.await {
                    Ok(true) => Some((from, ack)),
                    _ => None,
                }
            });
        }
        if let Some(stats) = body.stats {
            Counters::inc(&c.stat_received);
            return self
                .emit(RadioEvent::Stats {
                    gateway: Some(gateway),
                    stats,
                })
                .await;
        }
        Flow::Continue
    }

    async fn transmit(&mut self, cmd: TxCommand) {
        let Some(route) = self.session.route() else {
            Counters::inc(&self.counters.tx_no_route);
            self.warn(
                "no_route",
                "cannot transmit: no PULL_DATA received from a packet forwarder yet".into(),
            );
            let _ = cmd.reply.send(TxStatus::InternalError);
            return;
        };
        let token = match route.version {
            Version::V1 => 0,
            Version::V2 => self.session.new_token(rand::random),
        };
        let bytes = match encode_pull_resp(route.version, token, &cmd.request) {
            Ok(b) => b,
            Err(e) => {
                Counters::inc(&self.counters.tx_unencodable);
                self.warn("unencodable", format!("cannot transmit: {e}"));
                let _ = cmd.reply.send(TxStatus::InternalError);
                return;
            }
        };
        if !self.send(&bytes, route.addr).await {
            let _ = cmd.reply.send(TxStatus::InternalError);
            return;
        }
        Counters::inc(&self.counters.pull_resp_sent);
        debug!("semtech_udp: PULL_RESP {token:#06x} to {}", route.addr);
        match route.version {
            // v1 forwarders never answer: sent is all we can know.
            Version::V1 => {
                let _ = cmd.reply.send(TxStatus::Ok);
            }
            Version::V2 => {
                let deadline = Instant::now() + self.tx_ack_timeout;
                self.session
                    .add_pending(token, deadline.into_std(), cmd.reply);
            }
        }
    }
}
