//! Putting forwarded uplinks into the receipt chain in a order the network can reproduce
//! (docs/proof-of-coverage.md §6.4): the pipeline numbers forwarded uplinks consecutively,
//! outbox stores complete in any order, and [`ReceiptSequencer`] advances the chain strictly
//! in uplink-id order, skipping ids whose store failed. [`select_uplinks`] is the network's
//! side: which of the uplinks it received a receipt covers, in chain order.

use std::collections::{BTreeMap, HashMap};

use super::receipt::{ReceiptChain, TransferReceipt};
use crate::pipeline::outcome::Outcome;

/// How long the sequencer waits for the outcome of the next id while later ones are known
/// before it gives that id up (a store whose outcome never came back).
pub const STALL_MS: u64 = 60_000;
/// Most outcomes held back waiting for an earlier id; beyond this the earliest gap is given up.
pub const MAX_PENDING: usize = 16_384;

/// Advances a [`ReceiptChain`] in uplink-id order (modulo 2³²) over outcomes given in any
/// order. Pure: time is an argument.
#[derive(Debug, Clone)]
pub struct ReceiptSequencer {
    chain: ReceiptChain,
    next: u32,
    /// Held-back outcomes by uplink id (all ahead of `next`).
    pending: HashMap<u32, Outcome>,
    waiting_since_ms: Option<u64>,
    gaps: u64,
    late: u64,
}

impl ReceiptSequencer {
    /// A sequencer continuing `chain`; `next` is the first id the pipeline will assign.
    pub fn new(chain: ReceiptChain, next: u32) -> ReceiptSequencer {
        ReceiptSequencer {
            chain,
            next,
            pending: HashMap::new(),
            waiting_since_ms: None,
            gaps: 0,
            late: 0,
        }
    }

    /// The next id the chain waits for.
    pub fn next_id(&self) -> u32 {
        self.next
    }

    /// The chain (for snapshots and the head).
    pub fn chain(&self) -> &ReceiptChain {
        &self.chain
    }

    /// Ids given up after [`STALL_MS`] or [`MAX_PENDING`].
    pub fn gaps(&self) -> u64 {
        self.gaps
    }

    /// Outcomes that came for ids already passed (ignored).
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Outcomes held back waiting for an earlier id.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Record the outcome of `id` at Unix ms `now_ms`; returns how many uplinks were chained.
    pub fn record(&mut self, id: u32, outcome: Outcome, now_ms: u64) -> u32 {
        let offset = id.wrapping_sub(self.next);
        if offset >= 1 << 31 {
            // Behind the chain (given up on, or a duplicate): the chain has moved on.
            self.late += 1;
            return 0;
        }
        self.pending.insert(id, outcome);
        self.advance(now_ms)
    }

    /// Give up the id the chain waits for if it has waited [`STALL_MS`] with later outcomes
    /// known, or too many are held back; returns how many uplinks were chained as a result.
    pub fn tick(&mut self, now_ms: u64) -> u32 {
        let mut chained = 0;
        while let Some(since) = self.waiting_since_ms {
            let stalled = now_ms.saturating_sub(since) >= STALL_MS;
            if !stalled && self.pending.len() <= MAX_PENDING {
                break;
            }
            // Skip to the earliest held-back id.
            let next = self.next;
            let Some(first) = self.pending.keys().map(|id| id.wrapping_sub(next)).min() else {
                self.waiting_since_ms = None;
                break;
            };
            self.gaps += u64::from(first);
            self.next = self.next.wrapping_add(first);
            self.waiting_since_ms = None;
            chained += self.advance(now_ms);
        }
        chained
    }

    /// Close the period into a receipt (see [`ReceiptChain::close`]).
    pub fn close(&mut self, period_start_ms: u64, period_end_ms: u64) -> TransferReceipt {
        self.chain.close(period_start_ms, period_end_ms)
    }

    fn advance(&mut self, now_ms: u64) -> u32 {
        let mut chained = 0;
        while let Some(outcome) = self.pending.remove(&self.next) {
            if let Outcome::Stored(phy) = outcome {
                self.chain.push(self.next, &phy);
                chained += 1;
            }
            self.next = self.next.wrapping_add(1);
            self.waiting_since_ms = None;
        }
        if !self.pending.is_empty() && self.waiting_since_ms.is_none() {
            self.waiting_since_ms = Some(now_ms);
        }
        chained
    }
}

/// The network's side: of the uplinks it received from a hotspot (uplink id from `rx_info`,
/// PHYPayload), those `receipt` covers, in chain order — ids from `first_uplink_id` to
/// `last_uplink_id` counted modulo 2³², each id once (an MQTT redelivery repeats one).
pub fn select_uplinks(
    receipt: &TransferReceipt,
    received: &[(u32, Vec<u8>)],
) -> Vec<(u32, Vec<u8>)> {
    if receipt.count == 0 {
        return Vec::new();
    }
    let span = receipt.last_uplink_id.wrapping_sub(receipt.first_uplink_id);
    let mut by_offset: BTreeMap<u32, &(u32, Vec<u8>)> = BTreeMap::new();
    for u in received {
        let offset = u.0.wrapping_sub(receipt.first_uplink_id);
        if offset <= span {
            by_offset.entry(offset).or_insert(u);
        }
    }
    by_offset.into_values().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poc::identity::PublicKey;
    use crate::poc::receipt::genesis;

    fn seq(next: u32) -> ReceiptSequencer {
        ReceiptSequencer::new(ReceiptChain::from_head(genesis(&PublicKey([3; 32]))), next)
    }

    fn phy(id: u32) -> Vec<u8> {
        id.to_be_bytes().repeat(3)
    }

    #[test]
    fn out_of_order_outcomes_give_the_in_order_chain() {
        let mut in_order = seq(100);
        for id in 100..110 {
            in_order.record(id, Outcome::Stored(phy(id)), 0);
        }
        let mut shuffled = seq(100);
        let order = [104, 101, 109, 100, 103, 102, 108, 105, 107, 106];
        let mut chained = 0;
        for id in order {
            chained += shuffled.record(id, Outcome::Stored(phy(id)), 0);
        }
        assert_eq!(chained, 10);
        assert_eq!(shuffled.pending(), 0);
        let a = in_order.close(0, 1);
        let b = shuffled.close(0, 1);
        assert_eq!(a, b);
        assert_eq!(
            (b.first_uplink_id, b.last_uplink_id, b.count),
            (100, 109, 10)
        );
    }

    #[test]
    fn the_chain_waits_for_the_earliest_outcome_and_skips_failed_stores() {
        let mut s = seq(7);
        assert_eq!(
            s.record(8, Outcome::Stored(phy(8)), 0),
            0,
            "7 not known yet"
        );
        assert_eq!(s.chain().count(), 0);
        assert_eq!(s.record(7, Outcome::Failed, 0), 1, "7 failed: 8 is chained");
        assert_eq!(s.record(9, Outcome::Stored(phy(9)), 0), 1);
        let r = s.close(0, 10);
        assert_eq!((r.count, r.first_uplink_id, r.last_uplink_id), (2, 8, 9));
        // The network received 8 and 9 only (7 was never stored, so never published).
        let received = vec![(9, phy(9)), (8, phy(8)), (8, phy(8)), (42, phy(42))];
        let chosen = select_uplinks(&r, &received);
        assert_eq!(chosen, vec![(8, phy(8)), (9, phy(9))]);
        r.check_uplinks(&chosen).unwrap();
        assert_eq!(s.next_id(), 10);
    }

    #[test]
    fn ids_wrap_around() {
        let mut s = seq(u32::MAX - 1);
        for id in [0, u32::MAX, 1, u32::MAX - 1] {
            s.record(id, Outcome::Stored(phy(id)), 0);
        }
        let r = s.close(0, 1);
        assert_eq!(
            (r.count, r.first_uplink_id, r.last_uplink_id),
            (4, u32::MAX - 1, 1)
        );
        let received: Vec<_> = [1, 0, u32::MAX, u32::MAX - 1, 5]
            .into_iter()
            .map(|id| (id, phy(id)))
            .collect();
        let chosen = select_uplinks(&r, &received);
        assert_eq!(
            chosen.iter().map(|u| u.0).collect::<Vec<_>>(),
            vec![u32::MAX - 1, u32::MAX, 0, 1]
        );
        r.check_uplinks(&chosen).unwrap();
    }

    #[test]
    fn a_lost_outcome_is_given_up_after_the_stall_time() {
        let mut s = seq(1);
        s.record(2, Outcome::Stored(phy(2)), 1_000);
        s.record(3, Outcome::Stored(phy(3)), 2_000);
        assert_eq!(s.tick(1_000 + STALL_MS - 1), 0);
        assert_eq!(s.tick(1_000 + STALL_MS), 2);
        assert_eq!(s.gaps(), 1);
        // The outcome of 1 finally arrives: ignored, the chain has moved on.
        assert_eq!(s.record(1, Outcome::Stored(phy(1)), 70_000), 0);
        assert_eq!(s.late(), 1);
        let r = s.close(0, 1);
        assert_eq!((r.count, r.first_uplink_id, r.last_uplink_id), (2, 2, 3));
    }

    #[test]
    fn too_many_held_back_gives_up_the_gap() {
        let mut s = seq(0);
        for id in 1..=(MAX_PENDING as u32 + 1) {
            s.record(id, Outcome::Failed, 0);
        }
        s.tick(0);
        assert_eq!(s.pending(), 0);
        assert_eq!(s.gaps(), 1);
        assert_eq!(s.next_id(), MAX_PENDING as u32 + 2);
    }

    #[test]
    fn an_empty_receipt_selects_nothing() {
        let mut s = seq(5);
        let r = s.close(0, 1);
        assert!(select_uplinks(&r, &[(0, vec![1])]).is_empty());
        r.check_consistent().unwrap();
    }
}
