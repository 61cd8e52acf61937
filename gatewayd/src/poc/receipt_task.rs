//! The receipt task: takes the pipeline's (uplink id, store outcome) pairs, advances the
//! chain in uplink-id order ([`ReceiptSequencer`]), keeps the chain state file current, and
//! every interval signs a data-transfer receipt into the outbox (class PoC, expiring at its
//! deadline) for `poc/receipt`. A restart ends the open period (docs §6.4).
//!
//! Receipts are signed only with a trusted time (GPS, or a local clock the kernel reports
//! synchronized: [`crate::timesync`]). While there is none, the period is held open (the
//! chain goes on, nothing is lost) and closed at the first period tick with a trusted time;
//! a period opened under an untrusted clock then starts no earlier than the monotonic clock
//! says it opened. Held ticks are counted.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use super::identity::{PublicKey, Signer};
use super::receipt::{ReceiptChain, TransferReceipt};
use super::receipt_order::ReceiptSequencer;
use super::receipt_state::{self, ReceiptState};
use super::report::{Body, Report};
use crate::outbox::{Class, NewMessage, OutboxHandle};
use crate::pipeline::outcome::UplinkOutcome;
use drivers::time::{from_unix_ms, unix_ms};

/// Ids skipped after a restart: more than can be assigned but not yet persisted, so an id
/// published before a crash is never given to another uplink.
pub const RESTART_SKIP: u32 = 1 << 20;
/// How often held-back outcomes are checked and a changed state is written.
pub const TICK: Duration = Duration::from_secs(1);
/// At most one "cannot save" warning this often (a full disk fails every save).
const SAVE_WARN_EVERY: Duration = Duration::from_secs(60);

/// Counters of the receipt task, for status and metrics.
#[derive(Debug, Default)]
pub struct ReceiptCounters {
    /// Receipts stored in the outbox.
    pub receipts: AtomicU64,
    /// Uplinks chained (forwarded and covered by receipts).
    pub uplinks: AtomicU64,
    /// Uplink ids given up (an outcome that never came back).
    pub gaps: AtomicU64,
    /// Receipts that could not be signed or stored.
    pub failures: AtomicU64,
    /// Unix ms of the last receipt (0: none yet).
    pub last_ms: AtomicU64,
    /// Period ends (and restarts) at which the receipt was held: no trusted time.
    pub held: AtomicU64,
}

/// Where and how receipts go.
#[derive(Debug, Clone)]
pub struct ReceiptSettings {
    /// Period length.
    pub interval: Duration,
    /// Deadline after the period end (also the outbox expiry).
    pub validity: Duration,
    /// `…/poc/receipt` by default (`[mqtt] poc_topic`).
    pub topic: String,
    /// The chain state file.
    pub state_path: PathBuf,
    /// Where the time comes from, and whether it can be trusted.
    pub clock: crate::position::Whereabouts,
}

/// The chain as found at startup.
#[derive(Debug)]
pub struct ReceiptStart {
    sequencer: ReceiptSequencer,
    period_start_ms: u64,
    /// A period the previous run left with uplinks in it: (start, end) to close it with
    /// when the task starts, before any new outcome (still open in the saved state until
    /// then, so a run that stops before the task starts closes it next time).
    close_first: Option<(u64, u64)>,
}

impl ReceiptStart {
    /// The first uplink id the pipeline must assign.
    pub fn first_id(&self) -> u32 {
        self.sequencer.next_id()
    }
}

/// Load the chain state of `key` and note a period the previous run left with uplinks in
/// it (the task closes it first); save the new next uplink id before any is assigned.
/// A missing or damaged file falls back on the previous generation
/// ([`receipt_state::prev_path`]): its open period is dropped (it may already be in a
/// receipt), ids continue [`RESTART_SKIP`] above its next id, and the chain restarts from
/// the genesis — a new segment for the network (§6.4.3). Without a usable file of this key
/// a new chain starts from the genesis at id 1.
pub fn prepare(path: &std::path::Path, key: PublicKey, now_ms: u64) -> ReceiptStart {
    let state = match receipt_state::load(path) {
        Ok(Some(s)) if s.key == key => Loaded::Current(s),
        Ok(Some(_)) => {
            log::warn!(
                "poc: {} belongs to another key; starting a new receipt chain",
                path.display()
            );
            Loaded::Nothing
        }
        Ok(None) => previous(path, &key),
        Err(e) => {
            log::error!("poc: {e}; the receipt chain restarts (the network sees a gap)");
            let _ = std::fs::rename(path, path.with_extension("state.bad"));
            previous(path, &key)
        }
    };
    let genesis = super::receipt::genesis(&key);
    let (chain, next, mut period_start_ms, close_first) = match state {
        Loaded::Nothing => (ReceiptChain::from_head(genesis), 1, now_ms, None),
        Loaded::Previous(next_id) => (
            ReceiptChain::from_head(genesis),
            next_id.wrapping_add(RESTART_SKIP),
            now_ms,
            None,
        ),
        Loaded::Current(s) => {
            let next = s.next_id.wrapping_add(RESTART_SKIP);
            let chain = ReceiptChain::resume(&s.open);
            if s.open.count > 0 {
                let start = s.open.period_start_ms;
                (chain, next, start, Some((start, now_ms.max(start))))
            } else {
                (chain, next, s.open.period_start_ms, None)
            }
        }
    };
    if close_first.is_none() && period_start_ms > now_ms {
        period_start_ms = now_ms;
    }
    let start = ReceiptStart {
        sequencer: ReceiptSequencer::new(chain, next),
        period_start_ms,
        close_first,
    };
    if let Err(e) = receipt_state::save(
        path,
        &snapshot(&key, &start.sequencer, period_start_ms),
        true,
    ) {
        log::error!("poc: cannot save the receipt chain: {e}");
    }
    start
}

/// What [`prepare`] found.
enum Loaded {
    /// The current state of this key.
    Current(ReceiptState),
    /// Only the previous generation's next uplink id.
    Previous(u32),
    /// Nothing usable.
    Nothing,
}

/// The previous generation of the state at `path`, if it is this key's.
fn previous(path: &std::path::Path, key: &PublicKey) -> Loaded {
    match receipt_state::load(&receipt_state::prev_path(path)) {
        Ok(Some(p)) if p.key == *key => {
            log::warn!(
                "poc: continuing uplink ids from {}; receipts restart from the genesis as a new segment",
                receipt_state::prev_path(path).display()
            );
            Loaded::Previous(p.next_id)
        }
        Ok(_) => Loaded::Nothing,
        Err(e) => {
            log::error!("poc: {e}; starting a new receipt chain");
            Loaded::Nothing
        }
    }
}

fn snapshot(key: &PublicKey, seq: &ReceiptSequencer, period_start_ms: u64) -> ReceiptState {
    ReceiptState {
        key: *key,
        next_id: seq.next_id(),
        open: seq.chain().snapshot(period_start_ms, period_start_ms),
    }
}

/// Run until the outcome channel closes (the pipeline has stopped), then save the state.
pub async fn run_receipts(
    start: ReceiptStart,
    mut outcomes: mpsc::Receiver<UplinkOutcome>,
    signer: Arc<dyn Signer + Send + Sync>,
    outbox: OutboxHandle,
    settings: ReceiptSettings,
    counters: Arc<ReceiptCounters>,
) {
    let key = signer.public_key();
    let ReceiptStart {
        mut sequencer,
        mut period_start_ms,
        close_first,
    } = start;
    // Saving fails every tick while the disk is full: one line a minute is enough.
    let warn = std::sync::Mutex::new(drivers::ratelimit::RateLimiter::new(SAVE_WARN_EVERY));
    let save = |seq: &ReceiptSequencer, start_ms: u64, sync: bool| {
        if let Err(e) =
            receipt_state::save(&settings.state_path, &snapshot(&key, seq, start_ms), sync)
        {
            if let Ok(mut w) = warn.lock() {
                w.warn("save", &format!("poc: cannot save the receipt chain: {e}"));
            }
        }
    };
    let trusted = || settings.clock.clock_status().trusted();
    // When the open period began, by the monotonic clock, and whether the wall clock could
    // be trusted then.
    let mut opened = Instant::now();
    let mut opened_trusted = trusted();
    if let Some((start_ms, end_ms)) = close_first {
        if opened_trusted {
            let r = sequencer.close(start_ms, end_ms);
            period_start_ms = end_ms;
            save(&sequencer, period_start_ms, true);
            publish(r, signer.as_ref(), &outbox, &settings, &counters).await;
        } else {
            // Held: the period before the restart stays open until the time can be trusted.
            counters.held.fetch_add(1, Ordering::Relaxed);
            log::warn!("poc: receipts held until the clock is synchronized (GPS fix or NTP)");
            period_start_ms = start_ms;
        }
    }
    let mut period = tokio::time::interval(settings.interval);
    period.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    period.tick().await;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty = false;
    loop {
        tokio::select! {
            got = outcomes.recv() => match got {
                Some((id, outcome)) => {
                    let n = sequencer.record(id, outcome, unix_ms(SystemTime::now()));
                    counters.uplinks.fetch_add(u64::from(n), Ordering::Relaxed);
                    dirty = true;
                }
                None => break,
            },
            _ = tick.tick() => {
                let n = sequencer.tick(unix_ms(SystemTime::now()));
                counters.uplinks.fetch_add(u64::from(n), Ordering::Relaxed);
                counters.gaps.store(sequencer.gaps(), Ordering::Relaxed);
                if dirty {
                    save(&sequencer, period_start_ms, false);
                    dirty = false;
                }
            }
            _ = period.tick() => {
                if !trusted() {
                    if counters.held.fetch_add(1, Ordering::Relaxed) == 0 {
                        log::warn!("poc: receipts held until the clock is synchronized (GPS fix or NTP)");
                    }
                    continue;
                }
                let end_ms = unix_ms(SystemTime::now()).max(period_start_ms);
                let start_ms = if opened_trusted {
                    period_start_ms
                } else {
                    let age = u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX);
                    end_ms.saturating_sub(age).max(period_start_ms)
                };
                let r = sequencer.close(start_ms, end_ms);
                period_start_ms = end_ms;
                (opened, opened_trusted) = (Instant::now(), true);
                // The state moves on before the receipt is stored: a crash in between loses
                // this receipt (a visible break), never signs two receipts for one period.
                save(&sequencer, period_start_ms, true);
                dirty = false;
                publish(r, signer.as_ref(), &outbox, &settings, &counters).await;
            }
        }
    }
    save(&sequencer, period_start_ms, true);
}

async fn publish(
    receipt: TransferReceipt,
    signer: &(dyn Signer + Send + Sync),
    outbox: &OutboxHandle,
    settings: &ReceiptSettings,
    counters: &ReceiptCounters,
) {
    let created_ms = unix_ms(SystemTime::now());
    let deadline_ms = receipt.period_end_ms + settings.validity.as_millis() as u64;
    let (count, first, last) = (
        receipt.count,
        receipt.first_uplink_id,
        receipt.last_uplink_id,
    );
    let report = Report {
        key: signer.public_key(),
        created_ms,
        deadline_ms,
        body: Body::Receipt(receipt),
    };
    let signed = match report.sign(signer) {
        Ok(s) => s,
        Err(e) => {
            counters.failures.fetch_add(1, Ordering::Relaxed);
            log::error!("poc: cannot sign a receipt: {e}");
            return;
        }
    };
    let msg = NewMessage {
        class: Class::Poc,
        topic: settings.topic.clone(),
        payload: signed.bytes().to_vec(),
        expires_at: Some(from_unix_ms(deadline_ms)),
    };
    match outbox.store(vec![msg]).await {
        Ok(()) => {
            counters.receipts.fetch_add(1, Ordering::Relaxed);
            counters.last_ms.store(created_ms, Ordering::Relaxed);
            // Once per period: info is fine.
            log::info!("poc: receipt for {count} uplinks (ids {first}..={last}) stored");
        }
        Err(e) => {
            counters.failures.fetch_add(1, Ordering::Relaxed);
            log::error!("poc: cannot store a receipt: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::outcome::Outcome;
    use crate::poc::receipt::genesis;

    #[test]
    fn a_restart_ends_the_open_period_and_skips_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(receipt_state::STATE_FILE_NAME);
        let key = PublicKey([4; 32]);
        let first = prepare(&path, key, 1_000);
        assert_eq!(first.first_id(), 1);
        assert!(first.close_first.is_none());
        // The run chains two uplinks and is killed.
        let mut seq = first.sequencer;
        seq.record(1, Outcome::Stored(vec![1, 2]), 1_500);
        seq.record(2, Outcome::Stored(vec![3]), 1_500);
        receipt_state::save(&path, &snapshot(&key, &seq, 1_000), false).unwrap();
        let head = seq.chain().head();

        let second = prepare(&path, key, 5_000);
        assert_eq!(second.close_first, Some((1_000, 5_000)));
        assert_eq!(second.first_id(), 3 + RESTART_SKIP);
        // The new next id is on disk before any is assigned; the old period is still open
        // there (a run that stops before closing it closes it next time).
        let saved = receipt_state::load(&path).unwrap().unwrap();
        assert_eq!(saved.next_id, 3 + RESTART_SKIP);
        assert_eq!((saved.open.count, saved.open.head), (2, head));
        let mut seq = second.sequencer;
        let r = seq.close(1_000, 5_000);
        assert_eq!(
            (r.count, r.bytes, r.first_uplink_id, r.last_uplink_id),
            (2, 3, 1, 2)
        );
        assert_eq!(r.prev_head, genesis(&key));
        assert_eq!(r.head, head);
        // Uplinks of the new run follow in the next period.
        seq.record(3 + RESTART_SKIP, Outcome::Stored(vec![7]), 6_000);
        let next = seq.close(5_000, 7_000);
        assert_eq!((next.prev_head, next.count), (head, 1));

        // Another key's file starts a new chain.
        let other = prepare(&path, PublicKey([8; 32]), 6_000);
        assert_eq!(other.first_id(), 1);
        assert_eq!(other.sequencer.chain().head(), genesis(&PublicKey([8; 32])));
    }

    #[test]
    fn a_damaged_state_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(receipt_state::STATE_FILE_NAME);
        std::fs::write(&path, b"not a state file").unwrap();
        let s = prepare(&path, PublicKey([4; 32]), 1);
        assert_eq!(s.first_id(), 1);
        assert!(path.with_extension("state.bad").exists());
        assert!(receipt_state::load(&path).unwrap().is_some());
    }

    #[test]
    fn a_damaged_state_file_falls_back_on_the_previous_generation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(receipt_state::STATE_FILE_NAME);
        let key = PublicKey([4; 32]);
        let mut seq = prepare(&path, key, 1_000).sequencer;
        for id in 1..=5 {
            seq.record(id, Outcome::Stored(vec![id as u8]), 1_500);
        }
        receipt_state::save(&path, &snapshot(&key, &seq, 1_000), false).unwrap();
        // The period closes into a receipt, then the file is damaged.
        let closed = seq.close(1_000, 2_000);
        receipt_state::save(&path, &snapshot(&key, &seq, 2_000), true).unwrap();
        std::fs::write(&path, b"damaged").unwrap();

        let s = prepare(&path, key, 3_000);
        // Ids continue above the previous generation's, the open period there (already in
        // the receipt) is not closed again, and the chain restarts from the genesis.
        assert_eq!(s.first_id(), 6 + RESTART_SKIP);
        assert!(s.close_first.is_none());
        assert_eq!(s.sequencer.chain().head(), genesis(&key));
        assert_eq!(s.period_start_ms, 3_000);
        let mut seq = s.sequencer;
        seq.record(6 + RESTART_SKIP, Outcome::Stored(vec![9]), 3_500);
        let next = seq.close(3_000, 4_000);
        // The network accepts it as a new segment after the receipt it has.
        let mut ledger = crate::poc::receipt_verify::ReceiptLedger::default();
        ledger.record(key, &closed);
        assert_eq!(
            ledger.check(&key, &next),
            Ok(crate::poc::receipt_verify::Link::NewSegment)
        );
        // Both copies unusable: a new chain from id 1, which overlaps the claimed ids.
        std::fs::write(&path, b"damaged").unwrap();
        std::fs::write(receipt_state::prev_path(&path), b"damaged").unwrap();
        assert_eq!(prepare(&path, key, 5_000).first_id(), 1);
    }

    /// Wait (bounded, 10 s) until `f` holds.
    async fn wait_for(what: &str, f: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn receipts_are_held_while_the_clock_is_unsynchronized() {
        use crate::timesync::ManualSync;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(receipt_state::STATE_FILE_NAME);
        let signer = Arc::new(crate::poc::test_support::SeedSigner::new(5));
        // The task starts at a 1970 clock (a Pi without RTC).
        let start = prepare(&path, signer.public_key(), 1_000);
        let first = start.first_id();
        let outbox = OutboxHandle::open(&crate::config::OutboxConfig {
            path: dir.path().join("outbox.sqlite"),
            max_bytes: 1 << 20,
            uplink_expiry: None,
            stats_expiry: None,
            commit_delay: Duration::from_millis(1),
        })
        .unwrap();
        let sync = Arc::new(ManualSync::new(false));
        let settings = ReceiptSettings {
            interval: Duration::from_millis(100),
            validity: Duration::from_secs(600),
            topic: "eu868/gateway/0102030405060708/poc/receipt".into(),
            state_path: path.clone(),
            clock: crate::position::Whereabouts::new(None, None).with_clock_sync(sync.clone()),
        };
        let counters = Arc::new(ReceiptCounters::default());
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(run_receipts(
            start,
            rx,
            signer,
            outbox.clone(),
            settings,
            counters.clone(),
        ));
        tx.send((first, Outcome::Stored(vec![1, 2, 3])))
            .await
            .unwrap();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        wait_for("held periods", || load(&counters.held) >= 3).await;
        assert_eq!(load(&counters.receipts), 0);
        assert_eq!(
            outbox.stats().await.unwrap().messages(),
            0,
            "nothing signed"
        );

        // NTP synchronizes the clock: the held period closes, covering the uplink, and
        // starts when it opened by the monotonic clock, not in 1970.
        sync.set(true);
        wait_for("a receipt", || load(&counters.receipts) >= 1).await;
        let stored = outbox.next(10).await.unwrap();
        let signed = crate::poc::SignedReport::decode(&stored[0].payload).unwrap();
        let Body::Receipt(r) = signed.report.body else {
            panic!("a receipt");
        };
        assert_eq!((r.count, r.first_uplink_id), (1, first));
        let now = unix_ms(SystemTime::now());
        assert!(r.period_start_ms > now - 60_000, "restamped: {r:?}");
        assert!(r.period_start_ms <= r.period_end_ms && r.period_end_ms <= now);
        drop(tx);
        task.await.unwrap();
    }
}
