//! Routing of the MQTT link's commands (`{prefix}/gateway/{id}/command/{kind}`): `down` to
//! the downlink task, `poc_entropy` to the beacon task; anything else is logged
//! (rate-limited) and dropped. The router only moves payloads; each receiver decodes and
//! rejects what is malformed.

use std::sync::Arc;
use std::time::Duration;

use drivers::ratelimit::RateLimiter;
use tokio::sync::mpsc;

use crate::mqtt::{Command, CommandDrop, LinkCounters};

/// Entropy payloads waiting for the beacon task at most (it may be busy transmitting; the
/// router never waits for it, so downlinks are not held up).
pub const ENTROPY_QUEUE: usize = 16;
/// At most one warning of each kind per this interval.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Where a command goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `command/down`: the downlink task.
    Downlink,
    /// `command/poc_entropy`: the beacon task's entropy book.
    PocEntropy,
    /// Anything else: ignored.
    Unknown,
}

/// The route of a command kind (the topic's last level).
pub fn route(kind: &str) -> Route {
    match kind {
        "down" => Route::Downlink,
        "poc_entropy" => Route::PocEntropy,
        _ => Route::Unknown,
    }
}

/// Move commands to their tasks until the link's channel closes. `entropy` is `None` when
/// proof of coverage is disabled (entropy is then ignored, with a rate-limited note). What
/// is not passed on is counted in `counters` (`unknown` or `busy`).
pub async fn run_router(
    mut commands: mpsc::Receiver<Command>,
    down: mpsc::Sender<Command>,
    entropy: Option<mpsc::Sender<Vec<u8>>>,
    counters: Arc<LinkCounters>,
) {
    let mut limiter = RateLimiter::new(WARN_INTERVAL);
    let mut warn = |kind: &'static str, why: CommandDrop, msg: String| {
        counters.dropped(why);
        limiter.warn(kind, &msg);
    };
    while let Some(cmd) = commands.recv().await {
        match route(&cmd.kind) {
            Route::Downlink => {
                if down.send(cmd).await.is_err() {
                    warn(
                        "down_closed",
                        CommandDrop::Busy,
                        "command/down dropped: the downlink task stopped".into(),
                    );
                }
            }
            Route::PocEntropy => match &entropy {
                Some(tx) => {
                    if let Err(e) = tx.try_send(cmd.payload) {
                        warn(
                            "entropy_busy",
                            CommandDrop::Busy,
                            format!("command/poc_entropy dropped: the beacon task is busy or stopped ({e})"),
                        );
                    }
                }
                None => warn(
                    "entropy_disabled",
                    CommandDrop::Unknown,
                    "command/poc_entropy ignored: proof of coverage is disabled ([poc] enabled = false)"
                        .into(),
                ),
            },
            Route::Unknown => warn(
                "unknown_command",
                CommandDrop::Unknown,
                format!(
                    "command/{} ignored: unknown command ({} bytes)",
                    cmd.kind,
                    cmd.payload.len()
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(kind: &str, payload: &[u8]) -> Command {
        Command {
            kind: kind.into(),
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn routes_by_kind() {
        assert_eq!(route("down"), Route::Downlink);
        assert_eq!(route("poc_entropy"), Route::PocEntropy);
        assert_eq!(route("config"), Route::Unknown);
        assert_eq!(route(""), Route::Unknown);
        assert_eq!(route("poc_entropy/x"), Route::Unknown);
    }

    #[tokio::test]
    async fn each_command_reaches_its_task_and_unknown_ones_none() {
        let counters = Arc::new(LinkCounters::default());
        let (cmd_tx, cmd_rx) = mpsc::channel(8);
        let (down_tx, mut down_rx) = mpsc::channel(8);
        let (ent_tx, mut ent_rx) = mpsc::channel(ENTROPY_QUEUE);
        let router = tokio::spawn(run_router(cmd_rx, down_tx, Some(ent_tx), counters.clone()));
        cmd_tx.send(cmd("exec", b"x")).await.unwrap();
        cmd_tx.send(cmd("down", b"d1")).await.unwrap();
        cmd_tx.send(cmd("poc_entropy", b"e1")).await.unwrap();
        cmd_tx.send(cmd("config", b"y")).await.unwrap();
        cmd_tx.send(cmd("down", b"d2")).await.unwrap();
        drop(cmd_tx);
        router.await.unwrap();
        let mut downs = Vec::new();
        while let Ok(c) = down_rx.try_recv() {
            downs.push(c);
        }
        assert_eq!(downs, vec![cmd("down", b"d1"), cmd("down", b"d2")]);
        assert_eq!(ent_rx.try_recv().unwrap(), b"e1".to_vec());
        assert!(ent_rx.try_recv().is_err(), "only the entropy command");
        assert_eq!(
            dropped(&counters, "unknown"),
            2,
            "exec and config are counted"
        );
        assert_eq!(dropped(&counters, "busy"), 0);
    }

    fn dropped(counters: &LinkCounters, reason: &str) -> u64 {
        counters
            .dropped_by_reason()
            .into_iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| n)
    }

    #[tokio::test]
    async fn a_full_entropy_queue_does_not_hold_up_downlinks() {
        let counters = Arc::new(LinkCounters::default());
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (down_tx, mut down_rx) = mpsc::channel(8);
        let (ent_tx, _ent_rx) = mpsc::channel(1);
        let router = tokio::spawn(run_router(cmd_rx, down_tx, Some(ent_tx), counters.clone()));
        for _ in 0..10 {
            cmd_tx.send(cmd("poc_entropy", b"e")).await.unwrap();
        }
        cmd_tx.send(cmd("down", b"d")).await.unwrap();
        drop(cmd_tx);
        tokio::time::timeout(Duration::from_secs(5), router)
            .await
            .expect("the router is not blocked by the entropy queue")
            .unwrap();
        assert_eq!(down_rx.try_recv().unwrap(), cmd("down", b"d"));
        assert_eq!(dropped(&counters, "busy"), 9, "one fits the entropy queue");
    }

    #[tokio::test]
    async fn entropy_without_poc_is_dropped() {
        let counters = Arc::new(LinkCounters::default());
        let (cmd_tx, cmd_rx) = mpsc::channel(8);
        let (down_tx, mut down_rx) = mpsc::channel(8);
        let router = tokio::spawn(run_router(cmd_rx, down_tx, None, counters.clone()));
        cmd_tx.send(cmd("poc_entropy", b"e")).await.unwrap();
        drop(cmd_tx);
        router.await.unwrap();
        assert!(down_rx.try_recv().is_err());
        assert_eq!(dropped(&counters, "unknown"), 1);
    }
}
