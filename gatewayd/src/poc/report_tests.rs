//! Byte fixtures and round trips of the report encodings.

use super::*;
use crate::poc::identity::hex;
use crate::poc::receipt::{genesis, ReceiptChain};
use crate::poc::test_support::*;

#[test]
fn beacon_report_fixture() {
    let s = SeedSigner::new(1);
    let r = signed(&s, Body::Beacon(beacon(&s)), tx_time_ms() + 1000);
    let b = r.bytes();
    assert_eq!(b.len(), HEADER_LEN + BEACON_BODY_LEN + SIGNATURE_LEN);
    assert_eq!(&b[..4], &[0x47, 0x50, 1, 1]);
    assert_eq!(&b[4..36], &s.public_key().0);
    assert_eq!(&b[52..54], &[0, BEACON_BODY_LEN as u8]);
    // window_len_s 3600, window_id 490000
    assert_eq!(
        &b[54..66],
        &[0, 0, 0x0e, 0x10, 0, 0, 0, 0, 0, 0x07, 0x7a, 0x10]
    );
    assert_eq!(hex(b), "475001018a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c0000019ab6aac26f0000019ab6b3ea2f006e00000e100000000000077a101111111111111111111111111111111111111111111111111111111111111111222222222222222222222222222222222222222222222222222222222222222201000000019ab6aabe870133c134e0030e00140005011f4dea8007fd70d000000190e2e64dc71aaa97550a2ee694c16f858898c868403801c7fb6bf04c43ff3114df2f98651a2dcf23297301dd658c0aac712248cfef9d13d9d15264cf5ba79a4301");
    let d = SignedReport::decode(b).unwrap();
    assert_eq!(d, r);
    assert!(d.signature_valid());
}

#[test]
fn witness_report_fixture() {
    let b = SeedSigner::new(1);
    let w = SeedSigner::new(2);
    let r = signed(&w, Body::Witness(witness(&b)), tx_time_ms() + 2000);
    assert_eq!(hex(r.bytes()), "475001028139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3940000019ab6aac6570000019ab6b3ee17004922e001389e6b8b8e5aad6e216394706582521b8fab66f6b22542f07e9bd13bd446b72c0133c13990090001e848fbb4ffdd0000019ab6aabfb301001e021f54c6fd07fd70d00000015ebeb137bda5dc7fce73f0cca5c66e0266a3c951cb72daad533ae63c3bb77977b3e79d107ec6632aa0355156453eae73540068b2828eee569abfc57b13531aa000");
    assert_eq!(SignedReport::decode(r.bytes()).unwrap(), r);
}

#[test]
fn receipt_and_onboarding_round_trip() {
    let s = SeedSigner::new(3);
    let mut c = ReceiptChain::from_head(genesis(&s.public_key()));
    c.push(5, b"\x40abc");
    let r = signed(&s, Body::Receipt(c.close(10, 20)), 30);
    assert_eq!(r.bytes().len(), HEADER_LEN + 100 + SIGNATURE_LEN);
    assert_eq!(SignedReport::decode(r.bytes()).unwrap(), r);
    let o = signed(
        &s,
        Body::Onboarding(Onboarding {
            owner: "owner-1".into(),
        }),
        30,
    );
    assert_eq!(
        &o.bytes()[52..62],
        &[0, 8, 7, b'o', b'w', b'n', b'e', b'r', b'-', b'1']
    );
    assert_eq!(SignedReport::decode(o.bytes()).unwrap(), o);
}

#[test]
fn malformed_bytes_are_rejected_with_the_field() {
    let s = SeedSigner::new(1);
    let good = signed(&s, Body::Beacon(beacon(&s)), tx_time_ms() + 1000);
    let b = good.bytes();
    let err = |bytes: &[u8]| SignedReport::decode(bytes).unwrap_err().to_string();
    assert!(err(&b[..b.len() - 1]).contains("signature"));
    let mut long = b.to_vec();
    long.push(0);
    assert!(err(&long).contains("unexpected bytes"));
    let mut magic = b.to_vec();
    magic[0] = b'X';
    assert!(err(&magic).contains("magic"));
    let mut kind = b.to_vec();
    kind[3] = 9;
    assert!(err(&kind).contains("kind"));
    let mut region = b.to_vec();
    region[54 + 76] = 99;
    assert!(err(&region).contains("region"));
    assert!(err(&[]).contains("magic"));
}

#[test]
fn any_flipped_bit_breaks_the_signature_or_the_encoding() {
    let s = SeedSigner::new(1);
    let good = signed(&s, Body::Beacon(beacon(&s)), tx_time_ms() + 1000);
    for i in 0..good.bytes().len() {
        let mut b = good.bytes().to_vec();
        b[i] ^= 0x01;
        if let Ok(r) = SignedReport::decode(&b) {
            assert!(
                !r.signature_valid(),
                "bit flip at byte {i} kept a valid signature"
            );
        }
    }
}

#[test]
fn signing_with_another_key_is_refused() {
    let s = SeedSigner::new(1);
    let other = SeedSigner::new(2);
    let r = Report {
        key: s.public_key(),
        created_ms: 0,
        deadline_ms: 0,
        body: Body::Onboarding(Onboarding { owner: "x".into() }),
    };
    assert!(r.sign(&other).is_err());
}

#[test]
fn owner_addresses() {
    assert!(valid_owner("14eUfY6Bd9ybQ8FYL6Pmvh5Zs3r7sYJRZgY7W5XKZcxN"));
    assert!(!valid_owner(""));
    assert!(!valid_owner("has space"));
    assert!(!valid_owner(&"a".repeat(65)));
}
