//! The air as a running task, reached through a cloneable [`AirHandle`], and the loopback
//! UDP hub that lets several processes share it.
//!
//! [`spawn_air`] starts the task that owns an [`Air`] and drives it with a real (tokio)
//! clock in microseconds since the task started. [`serve_hub`] exposes an air on a UDP
//! socket ([`super::wire`] format); [`connect_hub`] gives a remote process an
//! [`AirHandle`] that relays over that socket. Radios and fleets only ever see
//! [`AirHandle`], so in-process tests and multi-process demos run the same code.
//! [`AirHandle::observe`] taps an in-process air: every attach, transmission and reception
//! (with its outcome) as an [`AirEvent`], so tests can compare what hotspots report with
//! what the air decided.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::air::{
    Air, AirStats, NodeConfig, NodeId, Outcome, Reception, SimTime, Transmission, TxId,
};
use super::model::AirModel;
use super::wire::{self, Message};
use super::SimError;

/// A frame delivered to a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The receiving node.
    pub node: NodeId,
    /// Received power, dBm.
    pub rssi_dbm: f64,
    /// SNR, dB.
    pub snr_db: f64,
    /// The frame.
    pub frame: Transmission,
}

/// What an observer of an in-process air sees ([`AirHandle::observe`]), in the order the
/// air task handled it. Times are the air's microseconds since the task started.
#[derive(Debug, Clone, PartialEq)]
pub enum AirEvent {
    /// A radio was attached.
    Attached {
        /// Its id.
        node: NodeId,
        /// Its position, gain and listener.
        config: NodeConfig,
    },
    /// A frame went on the air.
    Transmitted {
        /// The sender.
        node: NodeId,
        /// The transmission's id (as in [`Reception::tx`]).
        tx: TxId,
        /// When it started.
        start: SimTime,
        /// When it ends.
        end: SimTime,
        /// The frame.
        frame: Transmission,
    },
    /// A frame ended at a receiver that could hear it (listener matched, power at or above
    /// sensitivity), with its outcome. Delivered ones were also handed to the receiver's
    /// channel (unless it was full: see the air's warning). A receiver that matched but got
    /// no [`AirEvent::Received`] for a transmission had it below sensitivity.
    Received(Reception),
}

enum Command {
    Attach {
        config: NodeConfig,
        deliveries: mpsc::Sender<Delivery>,
        reply: oneshot::Sender<Result<NodeId, SimError>>,
    },
    Transmit {
        node: NodeId,
        frame: Transmission,
        reply: oneshot::Sender<Result<(), SimError>>,
    },
    Detach {
        node: NodeId,
    },
    Stats {
        reply: oneshot::Sender<Result<AirStats, SimError>>,
    },
    Observe {
        events: mpsc::UnboundedSender<AirEvent>,
        reply: oneshot::Sender<Result<(), SimError>>,
    },
}

const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// Cloneable handle to a running air (in this process, or a hub in another).
#[derive(Debug, Clone)]
pub struct AirHandle {
    tx: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("air command")
    }
}

impl AirHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SimError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| SimError::Stopped)?;
        match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(SimError::Stopped),
            Err(_) => Err(SimError::Timeout(ANSWER_TIMEOUT)),
        }
    }

    /// Add a radio; frames it receives are sent to `deliveries` (dropped when it is full).
    pub async fn attach(
        &self,
        config: NodeConfig,
        deliveries: mpsc::Sender<Delivery>,
    ) -> Result<NodeId, SimError> {
        self.ask(|reply| Command::Attach {
            config,
            deliveries,
            reply,
        })
        .await?
    }

    /// Put a frame on the air now.
    pub async fn transmit(&self, node: NodeId, frame: Transmission) -> Result<(), SimError> {
        self.ask(|reply| Command::Transmit { node, frame, reply })
            .await?
    }

    /// Remove a radio.
    pub async fn detach(&self, node: NodeId) {
        let _ = self.tx.send(Command::Detach { node }).await;
    }

    /// The air's counters (in-process air only).
    pub async fn stats(&self) -> Result<AirStats, SimError> {
        self.ask(|reply| Command::Stats { reply }).await?
    }

    /// Tap the air (in-process air only): from now on every attach, transmission and
    /// reception is also sent as an [`AirEvent`] to the returned receiver. Meant for tests and
    /// diagnostics: the channel is unbounded, so drain it (or drop it, which ends the tap).
    pub async fn observe(&self) -> Result<mpsc::UnboundedReceiver<AirEvent>, SimError> {
        let (events, rx) = mpsc::unbounded_channel();
        self.ask(|reply| Command::Observe { events, reply })
            .await??;
        Ok(rx)
    }
}

/// Start an air task with a model and seed; it stops when `shutdown` is cancelled.
pub fn spawn_air(model: AirModel, seed: u64, shutdown: CancellationToken) -> AirHandle {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(air_task(Air::new(model, seed), rx, shutdown));
    AirHandle { tx }
}

/// Send an event to every observer, forgetting those that went away.
fn notify(observers: &mut Vec<mpsc::UnboundedSender<AirEvent>>, event: impl Fn() -> AirEvent) {
    observers.retain(|o| o.send(event()).is_ok());
}

async fn air_task(mut air: Air, mut rx: mpsc::Receiver<Command>, shutdown: CancellationToken) {
    let t0 = Instant::now();
    let now_us = || t0.elapsed().as_micros() as u64;
    let mut sinks: HashMap<NodeId, mpsc::Sender<Delivery>> = HashMap::new();
    let mut observers: Vec<mpsc::UnboundedSender<AirEvent>> = Vec::new();
    let mut dropped = 0u64;
    loop {
        let wake = air
            .next_event()
            .map(|t| t0 + Duration::from_micros(t))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                match cmd {
                    Command::Attach { config, deliveries, reply } => {
                        let r = air.add_node(config.clone()).map_err(SimError::from);
                        if let Ok(id) = r {
                            sinks.insert(id, deliveries);
                            notify(&mut observers, || AirEvent::Attached {
                                node: id,
                                config: config.clone(),
                            });
                        }
                        let _ = reply.send(r);
                    }
                    Command::Transmit { node, frame, reply } => {
                        let start = now_us();
                        let r = if observers.is_empty() {
                            air.transmit(start, node, frame).map(|_| ())
                        } else {
                            air.transmit(start, node, frame.clone()).map(|(tx, end)| {
                                notify(&mut observers, || AirEvent::Transmitted {
                                    node,
                                    tx,
                                    start,
                                    end,
                                    frame: frame.clone(),
                                });
                            })
                        };
                        let _ = reply.send(r.map_err(SimError::from));
                    }
                    Command::Detach { node } => {
                        air.remove_node(node);
                        sinks.remove(&node);
                    }
                    Command::Stats { reply } => {
                        let _ = reply.send(Ok(air.stats().clone()));
                    }
                    Command::Observe { events, reply } => {
                        observers.push(events);
                        let _ = reply.send(Ok(()));
                    }
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        let Ok(receptions) = air.advance(now_us()) else {
            continue;
        };
        for r in receptions {
            notify(&mut observers, || AirEvent::Received(r.clone()));
            if r.outcome != Outcome::Delivered {
                continue;
            }
            let Some(sink) = sinks.get(&r.to) else {
                continue;
            };
            let d = Delivery {
                node: r.to,
                rssi_dbm: r.rssi_dbm,
                snr_db: r.snr_db,
                frame: r.frame,
            };
            match sink.try_send(d) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    dropped += 1;
                    if dropped.is_power_of_two() {
                        log::warn!("simulated air: {dropped} deliveries dropped (receiver busy)");
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    air.remove_node(r.to);
                    sinks.remove(&r.to);
                }
            }
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SimError {
    let what = what.into();
    move |source| SimError::Io { what, source }
}

/// Serve `air` on a UDP socket bound to `bind` (use a loopback address); returns the bound
/// address. Malformed datagrams are answered with an `Error` message and otherwise ignored.
pub async fn serve_hub(
    bind: SocketAddr,
    air: AirHandle,
    shutdown: CancellationToken,
) -> Result<SocketAddr, SimError> {
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(io(format!("binding the air hub to {bind}")))?;
    let local = sock.local_addr().map_err(io("reading the hub address"))?;
    tokio::spawn(hub_task(sock, air, shutdown));
    Ok(local)
}

async fn hub_task(sock: UdpSocket, air: AirHandle, shutdown: CancellationToken) {
    let (dtx, mut drx) = mpsc::channel::<Delivery>(4096);
    let mut peers: HashMap<NodeId, SocketAddr> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    let mut bad = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(d) = drx.recv() => {
                if let Some(peer) = peers.get(&d.node) {
                    let msg = Message::Deliver {
                        node: d.node, rssi_dbm: d.rssi_dbm, snr_db: d.snr_db, frame: d.frame,
                    };
                    let _ = sock.send_to(&wire::encode(&msg), peer).await;
                }
            }
            r = sock.recv_from(&mut buf) => {
                let Ok((n, peer)) = r else { continue };
                let answer = match wire::decode(&buf[..n]) {
                    Err(e) => {
                        bad += 1;
                        if bad.is_power_of_two() {
                            log::warn!("air hub: bad datagram from {peer} ({bad} so far): {e}");
                        }
                        Some(Message::Error { cookie: 0, message: e.to_string() })
                    }
                    Ok(Message::Attach { cookie, config }) => {
                        match air.attach(config, dtx.clone()).await {
                            Ok(node) => {
                                peers.insert(node, peer);
                                Some(Message::Attached { cookie, node })
                            }
                            Err(e) => Some(Message::Error { cookie, message: e.to_string() }),
                        }
                    }
                    Ok(Message::Transmit { node, frame }) => {
                        if peers.get(&node) != Some(&peer) {
                            Some(Message::Error {
                                cookie: node.0,
                                message: format!("node {} is not attached from {peer}", node.0),
                            })
                        } else {
                            match air.transmit(node, frame).await {
                                Ok(()) => None,
                                Err(e) => Some(Message::Error { cookie: node.0, message: e.to_string() }),
                            }
                        }
                    }
                    Ok(Message::Detach { node }) => {
                        if peers.get(&node) == Some(&peer) {
                            peers.remove(&node);
                            air.detach(node).await;
                        }
                        None
                    }
                    Ok(other) => Some(Message::Error {
                        cookie: 0,
                        message: format!("unexpected message from a client: {other:?}"),
                    }),
                };
                if let Some(a) = answer {
                    let _ = sock.send_to(&wire::encode(&a), peer).await;
                }
            }
        }
    }
}

/// Connect to a hub at `hub`; the returned handle relays over UDP from a loopback socket.
/// Transmissions are fire-and-forget (the hub's refusals are logged); `stats` is not
/// available remotely.
pub async fn connect_hub(
    hub: SocketAddr,
    shutdown: CancellationToken,
) -> Result<AirHandle, SimError> {
    let local: SocketAddr = if hub.is_ipv6() {
        "[::1]:0".parse()
    } else {
        "127.0.0.1:0".parse()
    }
    .map_err(|_| SimError::Stopped)?;
    let sock = UdpSocket::bind(local)
        .await
        .map_err(io("binding the hub client socket"))?;
    sock.connect(hub)
        .await
        .map_err(io(format!("connecting to the air hub at {hub}")))?;
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(client_task(sock, rx, shutdown));
    Ok(AirHandle { tx })
}

type PendingAttach = (
    mpsc::Sender<Delivery>,
    oneshot::Sender<Result<NodeId, SimError>>,
);

async fn client_task(
    sock: UdpSocket,
    mut rx: mpsc::Receiver<Command>,
    shutdown: CancellationToken,
) {
    let mut pending: HashMap<u32, PendingAttach> = HashMap::new();
    let mut sinks: HashMap<NodeId, mpsc::Sender<Delivery>> = HashMap::new();
    let mut cookie = 0u32;
    let mut buf = vec![0u8; 2048];
    let mut errors = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                let msg = match cmd {
                    Command::Attach { config, deliveries, reply } => {
                        cookie = cookie.wrapping_add(1);
                        pending.insert(cookie, (deliveries, reply));
                        Message::Attach { cookie, config }
                    }
                    Command::Transmit { node, frame, reply } => {
                        let _ = reply.send(Ok(()));
                        Message::Transmit { node, frame }
                    }
                    Command::Detach { node } => {
                        sinks.remove(&node);
                        Message::Detach { node }
                    }
                    Command::Stats { reply } => {
                        let _ = reply.send(Err(SimError::Unsupported("air statistics")));
                        continue;
                    }
                    Command::Observe { reply, .. } => {
                        let _ = reply.send(Err(SimError::Unsupported("observing the air")));
                        continue;
                    }
                };
                let _ = sock.send(&wire::encode(&msg)).await;
            }
            r = sock.recv(&mut buf) => {
                let Ok(n) = r else { continue };
                match wire::decode(&buf[..n]) {
                    Ok(Message::Attached { cookie, node }) => {
                        if let Some((sink, reply)) = pending.remove(&cookie) {
                            sinks.insert(node, sink);
                            let _ = reply.send(Ok(node));
                        }
                    }
                    Ok(Message::Deliver { node, rssi_dbm, snr_db, frame }) => {
                        if let Some(sink) = sinks.get(&node) {
                            let _ = sink.try_send(Delivery { node, rssi_dbm, snr_db, frame });
                        }
                    }
                    Ok(Message::Error { cookie, message }) => {
                        if let Some((_, reply)) = pending.remove(&cookie) {
                            let _ = reply.send(Err(SimError::Hub(message)));
                        } else {
                            errors += 1;
                            if errors.is_power_of_two() {
                                log::warn!("air hub refused a request ({errors} so far): {message}");
                            }
                        }
                    }
                    Ok(_) | Err(_) => {
                        errors += 1;
                        if errors.is_power_of_two() {
                            log::warn!("unexpected datagram from the air hub ({errors} so far)");
                        }
                    }
                }
            }
        }
    }
    for node in sinks.keys() {
        let _ = sock
            .send(&wire::encode(&Message::Detach { node: *node }))
            .await;
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
