//! Data-transfer receipts (docs/proof-of-coverage.md §6.4): what a hotspot forwarded in a
//! period, with a SHA-256 hash chain over the forwarded uplinks that continues across
//! receipts. [`ReceiptChain`] is what the pipeline feeds; [`TransferReceipt`] is the body.

use ring::digest::{digest, Context, SHA256};

use super::identity::PublicKey;
use super::wire::{CodecError, Reader};

const DOMAIN: &[u8] = b"gatewayd-poc-receipt-v1";

/// Encoded length of a receipt body.
pub const RECEIPT_BODY_LEN: usize = 100;

/// A data-transfer receipt body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferReceipt {
    /// Period start, Unix ms.
    pub period_start_ms: u64,
    /// Period end, Unix ms.
    pub period_end_ms: u64,
    /// Uplinks forwarded.
    pub count: u32,
    /// Sum of their PHYPayload lengths.
    pub bytes: u64,
    /// Id of the first uplink (0 when none).
    pub first_uplink_id: u32,
    /// Id of the last uplink (0 when none).
    pub last_uplink_id: u32,
    /// Chain head at the start of the period.
    pub prev_head: [u8; 32],
    /// Chain head at the end.
    pub head: [u8; 32],
}

/// The chain's start for `key`: SHA-256("gatewayd-poc-receipt-v1" ‖ key).
pub fn genesis(key: &PublicKey) -> [u8; 32] {
    let mut c = Context::new(&SHA256);
    c.update(DOMAIN);
    c.update(&key.0);
    to32(c.finish().as_ref())
}

/// One step: SHA-256(head ‖ uplink_id ‖ len (u16) ‖ SHA-256(phy)).
pub fn chain_step(head: &[u8; 32], uplink_id: u32, phy: &[u8]) -> [u8; 32] {
    let mut c = Context::new(&SHA256);
    c.update(head);
    c.update(&uplink_id.to_be_bytes());
    c.update(&(phy.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    c.update(digest(&SHA256, phy).as_ref());
    to32(c.finish().as_ref())
}

fn to32(b: &[u8]) -> [u8; 32] {
    let mut o = [0u8; 32];
    o.copy_from_slice(b);
    o
}

/// The running chain of one hotspot: push each forwarded uplink, close a receipt per period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptChain {
    start_head: [u8; 32],
    head: [u8; 32],
    count: u32,
    bytes: u64,
    first: u32,
    last: u32,
}

impl ReceiptChain {
    /// A chain continuing from `head` (the genesis, or the last receipt's head).
    pub fn from_head(head: [u8; 32]) -> ReceiptChain {
        ReceiptChain {
            start_head: head,
            head,
            count: 0,
            bytes: 0,
            first: 0,
            last: 0,
        }
    }

    /// Add a forwarded uplink.
    pub fn push(&mut self, uplink_id: u32, phy: &[u8]) {
        self.head = chain_step(&self.head, uplink_id, phy);
        if self.count == 0 {
            self.first = uplink_id;
        }
        self.last = uplink_id;
        self.count = self.count.saturating_add(1);
        self.bytes = self.bytes.saturating_add(phy.len() as u64);
    }

    /// The current head.
    pub fn head(&self) -> [u8; 32] {
        self.head
    }

    /// Uplinks pushed since the period started.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The open period as a receipt (without closing it): what the state file stores.
    pub fn snapshot(&self, period_start_ms: u64, period_end_ms: u64) -> TransferReceipt {
        TransferReceipt {
            period_start_ms,
            period_end_ms,
            count: self.count,
            bytes: self.bytes,
            first_uplink_id: self.first,
            last_uplink_id: self.last,
            prev_head: self.start_head,
            head: self.head,
        }
    }

    /// A chain resuming an open period saved by [`ReceiptChain::snapshot`].
    pub fn resume(open: &TransferReceipt) -> ReceiptChain {
        ReceiptChain {
            start_head: open.prev_head,
            head: open.head,
            count: open.count,
            bytes: open.bytes,
            first: open.first_uplink_id,
            last: open.last_uplink_id,
        }
    }

    /// Close the period into a receipt; the chain continues from its head.
    pub fn close(&mut self, period_start_ms: u64, period_end_ms: u64) -> TransferReceipt {
        let r = self.snapshot(period_start_ms, period_end_ms);
        *self = ReceiptChain::from_head(self.head);
        r
    }
}

/// Why a receipt is not consistent (with itself or with the uplinks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// The fields contradict each other.
    #[error("inconsistent receipt: {0}")]
    Inconsistent(&'static str),
    /// The chain over the given uplinks does not give the receipt's values.
    #[error("hash chain does not match the uplinks: {0}")]
    Chain(&'static str),
}

impl TransferReceipt {
    /// Internal consistency (§7): period order, empty-period rules.
    pub fn check_consistent(&self) -> Result<(), ReceiptError> {
        if self.period_start_ms > self.period_end_ms {
            return Err(ReceiptError::Inconsistent("period ends before it starts"));
        }
        if self.count == 0
            && (self.bytes != 0
                || self.first_uplink_id != 0
                || self.last_uplink_id != 0
                || self.head != self.prev_head)
        {
            return Err(ReceiptError::Inconsistent(
                "no uplinks but bytes, ids or a new head",
            ));
        }
        if self.count > 0 && self.head == self.prev_head {
            return Err(ReceiptError::Inconsistent(
                "uplinks but the head did not move",
            ));
        }
        Ok(())
    }

    /// Recompute the chain over `uplinks` (id, PHYPayload), as the network received them.
    pub fn check_uplinks(&self, uplinks: &[(u32, Vec<u8>)]) -> Result<(), ReceiptError> {
        let mut c = ReceiptChain::from_head(self.prev_head);
        for (id, phy) in uplinks {
            c.push(*id, phy);
        }
        let r = c.close(self.period_start_ms, self.period_end_ms);
        if r.count != self.count {
            return Err(ReceiptError::Chain("uplink count"));
        }
        if r.bytes != self.bytes {
            return Err(ReceiptError::Chain("byte count"));
        }
        if (r.first_uplink_id, r.last_uplink_id) != (self.first_uplink_id, self.last_uplink_id) {
            return Err(ReceiptError::Chain("first/last uplink id"));
        }
        if r.head != self.head {
            return Err(ReceiptError::Chain("head"));
        }
        Ok(())
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.period_start_ms.to_be_bytes());
        out.extend_from_slice(&self.period_end_ms.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&self.bytes.to_be_bytes());
        out.extend_from_slice(&self.first_uplink_id.to_be_bytes());
        out.extend_from_slice(&self.last_uplink_id.to_be_bytes());
        out.extend_from_slice(&self.prev_head);
        out.extend_from_slice(&self.head);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<TransferReceipt, CodecError> {
        Ok(TransferReceipt {
            period_start_ms: r.u64("period start")?,
            period_end_ms: r.u64("period end")?,
            count: r.u32("count")?,
            bytes: r.u64("bytes")?,
            first_uplink_id: r.u32("first uplink id")?,
            last_uplink_id: r.u32("last uplink id")?,
            prev_head: r.array("previous head")?,
            head: r.array("head")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poc::identity::hex;

    fn uplinks() -> Vec<(u32, Vec<u8>)> {
        vec![
            (11, vec![0x40, 1, 2, 3]),
            (12, vec![0x80; 20]),
            (13, vec![]),
        ]
    }

    #[test]
    fn chain_fixture_and_encoding() {
        let key = PublicKey([1; 32]);
        let g = genesis(&key);
        assert_eq!(
            hex(&g),
            "39b3b441ce1448d0746e9165589bcbe34895f4a5c5d0ef2c96b18f808b8adfad"
        );
        let mut c = ReceiptChain::from_head(g);
        for (id, p) in uplinks() {
            c.push(id, &p);
        }
        let r = c.close(1000, 2000);
        assert_eq!(
            (r.count, r.bytes, r.first_uplink_id, r.last_uplink_id),
            (3, 24, 11, 13)
        );
        assert_eq!(r.prev_head, g);
        assert_eq!(
            hex(&r.head),
            "ed13b8fae4e71fece22091f96f993670c753f62c4fabb4cc672c8cadfc9e0398"
        );
        let mut out = Vec::new();
        r.write(&mut out);
        assert_eq!(out.len(), RECEIPT_BODY_LEN);
        assert_eq!(
            &out[..28],
            &[
                0, 0, 0, 0, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, 0, 0, 0x07, 0xd0, 0, 0, 0, 3, 0, 0, 0, 0,
                0, 0, 0, 24
            ]
        );
        assert_eq!(TransferReceipt::read(&mut Reader::new(&out)).unwrap(), r);
        r.check_consistent().unwrap();
        r.check_uplinks(&uplinks()).unwrap();
        // The next period continues from this head.
        let next = c.close(2000, 3000);
        assert_eq!(next.prev_head, r.head);
        next.check_consistent().unwrap();
    }

    #[test]
    fn tampered_receipts_fail() {
        let mut c = ReceiptChain::from_head(genesis(&PublicKey([1; 32])));
        for (id, p) in uplinks() {
            c.push(id, &p);
        }
        let r = c.close(1000, 2000);
        let mut fewer = uplinks();
        fewer.pop();
        assert_eq!(
            r.check_uplinks(&fewer),
            Err(ReceiptError::Chain("uplink count"))
        );
        let mut changed = uplinks();
        changed[1].1[3] ^= 1;
        assert_eq!(r.check_uplinks(&changed), Err(ReceiptError::Chain("head")));
        let mut swapped = uplinks();
        swapped.swap(0, 1);
        assert!(r.check_uplinks(&swapped).is_err());
        let inflated = TransferReceipt {
            bytes: 10_000,
            ..r.clone()
        };
        assert_eq!(
            inflated.check_uplinks(&uplinks()),
            Err(ReceiptError::Chain("byte count"))
        );
        let empty_but_bytes = TransferReceipt {
            count: 0,
            head: r.prev_head,
            ..r.clone()
        };
        assert!(matches!(
            empty_but_bytes.check_consistent(),
            Err(ReceiptError::Inconsistent(_))
        ));
        let backwards = TransferReceipt {
            period_start_ms: 3000,
            ..r
        };
        assert!(backwards.check_consistent().is_err());
    }
}
