//! The verifier's record of each hotspot's receipt chain (docs/proof-of-coverage.md §6.4.3,
//! §7): the latest head, the most recent heads seen, the end of the last claimed period and the last
//! claimed uplink id. A receipt either links to the latest head, or starts a new segment
//! (its `prev_head` unknown, or the genesis again) that lies strictly after everything the
//! key already claimed; a receipt continuing an earlier head is a fork, and one whose period
//! or uplink ids reach back into what was claimed is an overlap. Pure, in memory.

use std::collections::{HashMap, HashSet, VecDeque};

use super::identity::PublicKey;
use super::reason::Reason;
use super::receipt::{genesis, TransferReceipt};

/// How a receipt that passed the order rules relates to its key's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The first receipt the verifier sees from this key.
    First,
    /// `prev_head` is the head of the key's previous receipt.
    Linked,
    /// `prev_head` is unknown (or the genesis again): receipts between are missing and the
    /// chain continues as a new segment.
    NewSegment,
}

/// Heads remembered per key for fork detection (about six weeks of hourly receipts). A fork
/// from an older head counts as a new segment, which the order rules still confine to after
/// everything the key claimed: forgetting costs the diagnosis, never a double claim.
pub const HEADS_PER_KEY: usize = 1024;

#[derive(Debug, Clone)]
struct KeyChain {
    head: [u8; 32],
    heads: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
    period_end_ms: u64,
    last_id: Option<u32>,
}

/// Every key's chain as far as the verifier has accepted it.
#[derive(Debug, Clone, Default)]
pub struct ReceiptLedger {
    keys: HashMap<PublicKey, KeyChain>,
}

impl ReceiptLedger {
    /// Where receipt `t` of `key` fits, or why it does not (`ReceiptFork`, `ReceiptOverlap`).
    /// Changes nothing: [`ReceiptLedger::record`] does.
    pub fn check(&self, key: &PublicKey, t: &TransferReceipt) -> Result<Link, Reason> {
        let Some(k) = self.keys.get(key) else {
            return Ok(Link::First);
        };
        let link = if t.prev_head == k.head {
            Link::Linked
        } else if t.prev_head != genesis(key) && k.heads.contains(&t.prev_head) {
            return Err(Reason::ReceiptFork);
        } else {
            Link::NewSegment
        };
        if t.period_start_ms < k.period_end_ms {
            return Err(Reason::ReceiptOverlap(format!(
                "period starts at {} ms, before the end {} ms of the last claimed period",
                t.period_start_ms, k.period_end_ms
            )));
        }
        if let (Some(last), true) = (k.last_id, t.count > 0) {
            let offset = t.first_uplink_id.wrapping_sub(last);
            if offset == 0 || offset >= 1 << 31 {
                return Err(Reason::ReceiptOverlap(format!(
                    "uplink ids {}..={} do not lie after the last claimed id {last}",
                    t.first_uplink_id, t.last_uplink_id
                )));
            }
        }
        Ok(link)
    }

    /// Record an accepted receipt: its head becomes the key's latest.
    pub fn record(&mut self, key: PublicKey, t: &TransferReceipt) {
        let k = self.keys.entry(key).or_insert_with(|| KeyChain {
            head: t.head,
            heads: HashSet::new(),
            order: VecDeque::new(),
            period_end_ms: 0,
            last_id: None,
        });
        for h in [t.prev_head, t.head] {
            if k.heads.insert(h) {
                k.order.push_back(h);
            }
        }
        while k.order.len() > HEADS_PER_KEY {
            if let Some(old) = k.order.pop_front() {
                k.heads.remove(&old);
            }
        }
        k.head = t.head;
        k.period_end_ms = k.period_end_ms.max(t.period_end_ms);
        if t.count > 0 {
            k.last_id = Some(t.last_uplink_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poc::receipt::ReceiptChain;

    fn key() -> PublicKey {
        PublicKey([7; 32])
    }

    #[test]
    fn fork_detection_remembers_a_bounded_number_of_heads() {
        let mut ledger = ReceiptLedger::default();
        let mut chain = ReceiptChain::from_head(genesis(&key()));
        let mut receipts = Vec::new();
        for k in 0..(HEADS_PER_KEY as u64 + 10) {
            chain.push(k as u32 + 1, b"\x40abcd");
            let t = chain.close(k * 1000, (k + 1) * 1000);
            assert!(ledger.check(&key(), &t).is_ok(), "receipt {k}");
            ledger.record(key(), &t);
            receipts.push(t);
        }
        let k = &ledger.keys[&key()];
        assert_eq!(k.heads.len(), HEADS_PER_KEY);
        assert_eq!(k.order.len(), HEADS_PER_KEY);
        let later = |from: &TransferReceipt| TransferReceipt {
            prev_head: from.head,
            period_start_ms: 10_000_000,
            period_end_ms: 10_001_000,
            first_uplink_id: 5_000,
            last_uplink_id: 5_000,
            ..from.clone()
        };
        // A recent head is remembered: continuing it is a fork.
        let recent = &receipts[receipts.len() - 5];
        assert_eq!(
            ledger.check(&key(), &later(recent)),
            Err(Reason::ReceiptFork)
        );
        // The oldest head is forgotten: the same continuation is a new segment, accepted only
        // because it lies after everything claimed ...
        assert_eq!(
            ledger.check(&key(), &later(&receipts[0])),
            Ok(Link::NewSegment)
        );
        // ... and an old claim re-made from a forgotten head is still an overlap.
        assert!(matches!(
            ledger.check(&key(), &receipts[1]),
            Err(Reason::ReceiptOverlap(_))
        ));
    }
}
