//! The verifier's record of each hotspot's receipt chain (docs/proof-of-coverage.md §6.4.3,
//! §7): the latest head, every head seen, the end of the last claimed period and the last
//! claimed uplink id. A receipt either links to the latest head, or starts a new segment
//! (its `prev_head` unknown, or the genesis again) that lies strictly after everything the
//! key already claimed; a receipt continuing an earlier head is a fork, and one whose period
//! or uplink ids reach back into what was claimed is an overlap. Pure, in memory.

use std::collections::{HashMap, HashSet};

use super::identity::PublicKey;
use super::receipt::{genesis, TransferReceipt};
use super::verify::Reason;

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

#[derive(Debug, Clone)]
struct KeyChain {
    head: [u8; 32],
    heads: HashSet<[u8; 32]>,
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
            period_end_ms: 0,
            last_id: None,
        });
        k.heads.insert(t.prev_head);
        k.heads.insert(t.head);
        k.head = t.head;
        k.period_end_ms = k.period_end_ms.max(t.period_end_ms);
        if t.count > 0 {
            k.last_id = Some(t.last_uplink_id);
        }
    }
}
