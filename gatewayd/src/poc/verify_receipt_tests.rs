//! Tests of receipt placement in the verifier (docs/proof-of-coverage.md §6.4.3).

use super::*;

/// A hotspot's chain: receipts of consecutive periods [k·1000, (k+1)·1000) over the given
/// id ranges, with the uplinks each covers.
fn receipts_over(
    s: &SeedSigner,
    ranges: &[std::ops::RangeInclusive<u32>],
) -> Vec<(crate::poc::receipt::TransferReceipt, Vec<Uplink>)> {
    let mut chain = ReceiptChain::from_head(genesis(&s.public_key()));
    let mut out = Vec::new();
    for (k, ids) in ranges.iter().enumerate() {
        let ups: Vec<Uplink> = ids
            .clone()
            .map(|id| (id, id.to_be_bytes().repeat(2)))
            .collect();
        for (id, p) in &ups {
            chain.push(*id, p);
        }
        let k = k as u64 + 1;
        out.push((chain.close(k * 1_000, (k + 1) * 1_000), ups));
    }
    out
}

fn receipt_bytes(s: &SeedSigner, t: &crate::poc::receipt::TransferReceipt) -> Vec<u8> {
    signed(s, Body::Receipt(t.clone()), t.period_end_ms)
        .bytes()
        .to_vec()
}

#[test]
fn a_receipt_after_a_lost_one_starts_a_new_segment() {
    let s = SeedSigner::new(7);
    let rs = receipts_over(&s, &[1..=2, 3..=3, 4..=5, 6..=6]);
    let mut v = Verifier::new(Policy::default());
    for (t, ups) in &rs {
        v.add_uplinks(s.public_key(), t.prev_head, ups.clone());
    }
    assert_eq!(
        v.verify(&receipt_bytes(&s, &rs[0].0), 9_000),
        Ok(Kind::Receipt)
    );
    // rs[1] expired unsent: the network never sees it. rs[2] names a head it does not know,
    // but its period and ids lie after everything claimed: a new segment, checked in full
    // against its uplinks.
    assert_eq!(
        v.verify(&receipt_bytes(&s, &rs[2].0), 9_000),
        Ok(Kind::ReceiptNewSegment)
    );
    assert_eq!(
        v.verify(&receipt_bytes(&s, &rs[3].0), 9_000),
        Ok(Kind::Receipt)
    );
    // The missing receipt turning up later earns nothing: its prev_head is a head that
    // another receipt already continues.
    assert_eq!(
        v.verify(&receipt_bytes(&s, &rs[1].0), 9_000),
        Err(Reason::ReceiptFork)
    );
    // A new segment is still checked against the uplinks: one missing fails it.
    let s2 = SeedSigner::new(8);
    let rs = receipts_over(&s2, &[1..=2, 3..=3, 4..=5]);
    let mut v = Verifier::new(Policy::default());
    v.add_uplinks(s2.public_key(), rs[2].0.prev_head, rs[2].1[..1].to_vec());
    assert_eq!(
        v.verify(&receipt_bytes(&s2, &rs[0].0), 9_000),
        Ok(Kind::Receipt)
    );
    assert_eq!(
        v.verify(&receipt_bytes(&s2, &rs[2].0), 9_000),
        Err(Reason::Receipt(ReceiptError::Chain("uplink count")))
    );
}

#[test]
fn a_chain_restarted_from_the_genesis_is_a_new_segment_only_after_the_claims() {
    let s = SeedSigner::new(9);
    let rs = receipts_over(&s, &[10..=12, 13..=14]);
    let mut v = Verifier::new(Policy::default());
    for (t, _) in &rs {
        assert_eq!(v.verify(&receipt_bytes(&s, t), 9_000), Ok(Kind::Receipt));
    }
    // State lost: the hotspot starts again from the genesis. Ids restarting at 1 reach
    // back into the claims; ids after them are a new segment.
    let mut again = ReceiptChain::from_head(genesis(&s.public_key()));
    again.push(1, b"\x40x");
    let restarted = again.close(3_000, 4_000);
    let err = v.verify(&receipt_bytes(&s, &restarted), 9_000).unwrap_err();
    assert!(
        matches!(&err, Reason::ReceiptOverlap(m) if m.contains("last claimed id 14")),
        "{err}"
    );
    let mut again = ReceiptChain::from_head(genesis(&s.public_key()));
    again.push(1 << 20, b"\x40x");
    let restarted = again.close(3_000, 4_000);
    assert_eq!(
        v.verify(&receipt_bytes(&s, &restarted), 9_000),
        Ok(Kind::ReceiptNewSegment)
    );
}

#[test]
fn receipts_reaching_back_into_claimed_periods_or_ids_fail() {
    let s = SeedSigner::new(10);
    let rs = receipts_over(&s, &[1..=3]);
    let (first, ups) = &rs[0];
    let mut v = Verifier::new(Policy::default());
    assert_eq!(
        v.verify(&receipt_bytes(&s, first), 9_000),
        Ok(Kind::Receipt)
    );
    // Unknown prev_head, period overlapping the first's.
    let mut c = ReceiptChain::from_head([0xaa; 32]);
    c.push(4, b"\x40d");
    let early = c.close(1_500, 2_500);
    let err = v.verify(&receipt_bytes(&s, &early), 9_000).unwrap_err();
    assert!(
        matches!(&err, Reason::ReceiptOverlap(m) if m.contains("period starts at 1500 ms")),
        "{err}"
    );
    // Unknown prev_head, later period, but ids 3..=4 include the claimed 3.
    let mut c = ReceiptChain::from_head([0xbb; 32]);
    c.push(3, &3u32.to_be_bytes().repeat(2));
    c.push(4, b"\x40d");
    let reclaim = c.close(2_000, 3_000);
    let err = v.verify(&receipt_bytes(&s, &reclaim), 9_000).unwrap_err();
    assert!(
        matches!(&err, Reason::ReceiptOverlap(m) if m.contains("ids 3..=4")),
        "{err}"
    );
    // Linked, later period, but the same uplinks again: the network's uplinks would match
    // (a double claim), the id rule refuses it.
    let mut c = ReceiptChain::from_head(first.head);
    for (id, p) in ups {
        c.push(*id, p);
    }
    let again = c.close(2_000, 3_000);
    v.add_uplinks(s.public_key(), again.prev_head, ups.clone());
    let err = v.verify(&receipt_bytes(&s, &again), 9_000).unwrap_err();
    assert!(matches!(err, Reason::ReceiptOverlap(_)), "{err}");
    // Nothing above moved the chain: the honest next receipt links.
    let mut c = ReceiptChain::from_head(first.head);
    c.push(4, b"\x40d");
    let next = c.close(2_000, 3_000);
    v.add_uplinks(s.public_key(), next.prev_head, vec![(4, b"\x40d".to_vec())]);
    assert_eq!(
        v.verify(&receipt_bytes(&s, &next), 9_000),
        Ok(Kind::Receipt)
    );
}

#[test]
fn a_fork_from_a_known_head_fails() {
    let s = SeedSigner::new(11);
    let rs = receipts_over(&s, &[1..=2, 3..=4]);
    let mut v = Verifier::new(Policy::default());
    for (t, _) in &rs {
        assert_eq!(v.verify(&receipt_bytes(&s, t), 9_000), Ok(Kind::Receipt));
    }
    // A second continuation of the first receipt's head, even with a later period and
    // fresh ids.
    let mut c = ReceiptChain::from_head(rs[0].0.head);
    c.push(10, b"\x40z");
    let fork = c.close(3_000, 4_000);
    assert_eq!(
        v.verify(&receipt_bytes(&s, &fork), 9_000),
        Err(Reason::ReceiptFork)
    );
}

#[test]
fn replayed_receipts_fail() {
    let s = SeedSigner::new(12);
    let rs = receipts_over(&s, &[1..=2, 3..=4, 5..=6]);
    let mut v = Verifier::new(Policy::default());
    let first = receipt_bytes(&s, &rs[0].0);
    assert_eq!(v.verify(&first, 9_000), Ok(Kind::Receipt));
    // The same bytes again.
    assert_eq!(v.verify(&first, 9_000), Err(Reason::Replayed));
    // The same body re-signed (another creation time): from the genesis, so it could be a
    // restarted chain, but it reaches back into the claimed period.
    let resigned = signed(&s, Body::Receipt(rs[0].0.clone()), 2_500);
    let err = v.verify(resigned.bytes(), 9_000).unwrap_err();
    assert!(matches!(err, Reason::ReceiptOverlap(_)), "{err}");
    for (t, _) in &rs[1..] {
        assert_eq!(v.verify(&receipt_bytes(&s, t), 9_000), Ok(Kind::Receipt));
    }
    // A later receipt re-signed: its prev_head already has a successor.
    let resigned = signed(&s, Body::Receipt(rs[1].0.clone()), 3_500);
    assert_eq!(v.verify(resigned.bytes(), 9_000), Err(Reason::ReceiptFork));
}
