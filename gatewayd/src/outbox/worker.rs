//! The outbox thread: receives requests, groups them into one transaction per round, and
//! answers waiting `next` calls once their messages are committed.

use std::collections::VecDeque;
use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::queue::Queue;
use super::{Message, NewMessage, OutboxError, OutboxStats, SWEEP_INTERVAL};
use crate::config::OutboxConfig;

/// Most requests handled in one round.
const MAX_BATCH: usize = 4096;

/// What the handle asks of the thread.
pub(crate) enum Request {
    /// Store durably, answer after COMMIT.
    Store(Vec<NewMessage>, oneshot::Sender<Result<(), OutboxError>>),
    /// Hand out up to this many messages once at least one is available.
    Next(usize, oneshot::Sender<Result<Vec<Message>, OutboxError>>),
    /// Delete (confirmed by the broker).
    Ack(Vec<i64>),
    /// Hand out again.
    Requeue(Vec<i64>),
    /// A snapshot.
    Stats(oneshot::Sender<OutboxStats>),
    /// Flush and stop.
    Close(oneshot::Sender<Result<(), OutboxError>>),
}

type NextReply = oneshot::Sender<Result<Vec<Message>, OutboxError>>;

/// Load the state and start the thread; returns the request sender.
pub(crate) fn spawn(
    conn: Connection,
    config: OutboxConfig,
    recovery: Option<super::recover::Recovery>,
) -> Result<std_mpsc::Sender<Request>, OutboxError> {
    let mut queue = Queue::load(conn, config.path.clone(), config.max_bytes)?;
    queue.set_recovery(recovery);
    let (tx, rx) = std_mpsc::channel();
    let path = config.path.clone();
    std::thread::Builder::new()
        .name("outbox".into())
        .spawn(move || run(queue, rx, config.commit_delay))
        .map_err(|e| OutboxError::Db {
            path,
            message: format!("cannot start the outbox thread: {e}"),
        })?;
    Ok(tx)
}

fn run(mut queue: Queue, rx: std_mpsc::Receiver<Request>, commit_delay: Duration) {
    let mut waiters: VecDeque<(usize, NextReply)> = VecDeque::new();
    let mut next_sweep = Instant::now() + SWEEP_INTERVAL;
    let mut steps = super::clock::StepDetector::default();
    loop {
        let mut deadline = queue
            .deletes_due()
            .map_or(next_sweep, |t| t.min(next_sweep));
        if let Some(t) = queue.recheck_if_full(Instant::now()) {
            deadline = deadline.min(t);
        }
        let mut batch = Vec::new();
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(r) => batch.push(r),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // Every handle is gone: flush what is pending and stop.
                if let Err(e) = queue.write(&[], SystemTime::now()) {
                    log::error!("{e}");
                }
                return;
            }
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        if !commit_delay.is_zero() && batch.iter().any(|r| matches!(r, Request::Store(..))) {
            let until = Instant::now() + commit_delay;
            while batch.len() < MAX_BATCH {
                match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
        }

        // Before anything compares stored times with the clock.
        if let Some(step_ms) = steps.observe(SystemTime::now(), Instant::now()) {
            queue.rebase(step_ms);
        }
        let mut stores = Vec::new();
        let mut store_replies = Vec::new();
        let mut stats_replies = Vec::new();
        let mut close = None;
        for req in batch {
            match req {
                Request::Store(msgs, reply) => {
                    stores.push(msgs);
                    store_replies.push(reply);
                }
                Request::Next(max, reply) => waiters.push_back((max, reply)),
                Request::Ack(ids) => queue.ack(&ids),
                Request::Requeue(ids) => queue.requeue(&ids),
                Request::Stats(reply) => stats_replies.push(reply),
                Request::Close(reply) => close = Some(reply),
            }
        }

        if !stores.is_empty() {
            let bytes = stores.iter().flatten().map(NewMessage::size).sum();
            if !queue.has_room(bytes, Instant::now()) {
                // Full: refuse without touching the file; deletions below go on.
                queue.refuse(stores.iter().map(|s| s.len() as u64).sum());
                let full = queue.full_error();
                for reply in store_replies.drain(..) {
                    let _ = reply.send(Err(full.copy()));
                }
                stores.clear();
            }
        }
        let flush_due = queue.deletes_due().is_some_and(|t| t <= Instant::now());
        if !stores.is_empty() || flush_due || close.is_some() {
            let result = queue.write(&stores, SystemTime::now());
            for reply in store_replies {
                let r = result.as_ref().map(|_| ()).map_err(OutboxError::copy);
                let _ = reply.send(r);
            }
            if let Some(reply) = close {
                queue.flush_hwm();
                // A full disk is no reason to fail the stop: deletions that could not be
                // committed only mean those messages are sent again after the restart.
                let result = match result {
                    Err(OutboxError::Full { path }) => {
                        log::warn!(
                            "outbox: {}: disk full at stop; deletions of delivered messages that \
                             could not be committed will be sent again after the restart",
                            path.display()
                        );
                        Ok(())
                    }
                    other => other,
                };
                // Waiting `next` calls get `Closed` when their senders drop.
                let _ = reply.send(result);
                return;
            }
        }

        if Instant::now() >= next_sweep {
            if let Err(e) = queue.sweep(SystemTime::now()) {
                log::error!("{e}");
            }
            next_sweep = Instant::now() + SWEEP_INTERVAL;
        }
        serve(&mut queue, &mut waiters);
        if !stats_replies.is_empty() {
            let stats = queue.stats(SystemTime::now());
            for reply in stats_replies {
                let _ = reply.send(stats.clone());
            }
        }
        queue.report(Instant::now());
    }
}

/// Answer waiting `next` calls in arrival order while there are messages.
fn serve(queue: &mut Queue, waiters: &mut VecDeque<(usize, NextReply)>) {
    while let Some((max, reply)) = waiters.front() {
        if reply.is_closed() {
            waiters.pop_front();
            continue;
        }
        let result = queue.take(*max, SystemTime::now());
        if matches!(&result, Ok(msgs) if msgs.is_empty()) {
            return;
        }
        let Some((_, reply)) = waiters.pop_front() else {
            return;
        };
        if let Err(Ok(msgs)) = reply.send(result) {
            // The caller went away (cancelled `next`): the messages wait again.
            let ids: Vec<i64> = msgs.iter().map(|m| m.id).collect();
            queue.requeue(&ids);
        }
    }
}
