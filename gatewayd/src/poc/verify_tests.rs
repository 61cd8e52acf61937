//! Verifier tests: valid reports pass; each tampering fails with its own reason.

use super::*;
use crate::poc::identity::Signer;
use crate::poc::receipt::{genesis, ReceiptChain, ReceiptError};
use crate::poc::report::{Onboarding, Report};
use crate::poc::test_support::*;
use crate::poc::wire::TimeSource;

fn now() -> u64 {
    tx_time_ms() + 5_000
}

/// A verifier that has accepted the beacon of signer 1.
fn with_beacon() -> (Verifier, SeedSigner) {
    let b = SeedSigner::new(1);
    let mut v = Verifier::new(Policy::default());
    v.add_entropy(WINDOW, ENTROPY);
    let r = signed(&b, Body::Beacon(beacon(&b)), tx_time_ms() + 1000);
    assert_eq!(v.verify(r.bytes(), now()), Ok(Kind::Beacon));
    (v, b)
}

fn witness_bytes(w: &SeedSigner, report: WitnessReport) -> Vec<u8> {
    signed(w, Body::Witness(report), tx_time_ms() + 2000)
        .bytes()
        .to_vec()
}

#[test]
fn valid_beacon_and_witness_pass() {
    let (mut v, b) = with_beacon();
    let w = SeedSigner::new(2);
    assert_eq!(
        v.verify(&witness_bytes(&w, witness(&b)), now()),
        Ok(Kind::Witness)
    );
}

#[test]
fn rssi_beyond_free_space_fails() {
    let (mut v, b) = with_beacon();
    let w = SeedSigner::new(2);
    // 5 km at 868 MHz: FSPL ≈ 105.2 dB; bound = 15.5 + 3 − 105.2 + 6 ≈ −80.7 dBm.
    let mut ok = witness(&b);
    ok.rssi_ddbm = -810;
    assert_eq!(v.verify(&witness_bytes(&w, ok), now()), Ok(Kind::Witness));
    let w3 = SeedSigner::new(3);
    let mut loud = witness(&b);
    loud.rssi_ddbm = -790;
    let err = v.verify(&witness_bytes(&w3, loud), now()).unwrap_err();
    assert!(matches!(err, Reason::RssiTooHigh { .. }), "{err}");
    // A huge claimed antenna gain does not lift the bound beyond the policy's cap: with
    // 9 dBi counted the bound is ≈ −74.7 dBm (30 dBi claimed would allow −53.7 dBm).
    let w4 = SeedSigner::new(4);
    let mut gain = witness(&b);
    gain.rssi_ddbm = -700;
    gain.antenna_gain_ddbi = 300;
    let err = v.verify(&witness_bytes(&w4, gain), now()).unwrap_err();
    assert!(matches!(err, Reason::RssiTooHigh { .. }), "{err}");
}

#[test]
fn changed_payload_fails() {
    // Beacon: local entropy changed after the fact (re-signed) → recomputed frequency or
    // payload no longer matches what was on air; the witness of the real frame finds nothing.
    let b = SeedSigner::new(1);
    let mut v = Verifier::new(Policy::default());
    let mut rep = beacon(&b);
    rep.local_entropy[0] ^= 1;
    let r = signed(&b, Body::Beacon(rep.clone()), tx_time_ms() + 1000);
    let verdict = v.verify(r.bytes(), now());
    let w = SeedSigner::new(2);
    let wv = v.verify(&witness_bytes(&w, witness(&b)), now());
    assert!(
        matches!(wv, Err(Reason::NoBeacon(_))),
        "beacon {verdict:?}, witness {wv:?}"
    );
    // Witness: a changed payload matches no beacon.
    let (mut v, b) = with_beacon();
    let mut wr = witness(&b);
    wr.frame[10] ^= 0xff;
    let err = v.verify(&witness_bytes(&w, wr), now()).unwrap_err();
    assert!(matches!(err, Reason::NoBeacon(_)), "{err}");
    // Changed bytes without re-signing: bad signature.
    let mut bytes = witness_bytes(&w, witness(&b));
    bytes[60] ^= 1;
    assert!(matches!(
        v.verify(&bytes, now()),
        Err(Reason::BadSignature(_))
    ));
}

#[test]
fn recomputed_frequency_and_dr_must_match() {
    let b = SeedSigner::new(1);
    let mut v = Verifier::new(Policy::default());
    let mut rep = beacon(&b);
    rep.freq_hz = if rep.freq_hz == 868_100_000 {
        868_300_000
    } else {
        868_100_000
    };
    let r = signed(&b, Body::Beacon(rep), tx_time_ms() + 1000);
    assert!(matches!(
        v.verify(r.bytes(), now()),
        Err(Reason::FrequencyMismatch { .. })
    ));
    let mut v = Verifier::new(Policy::default());
    let mut rep = beacon(&b);
    rep.dr = 0;
    let r = signed(&b, Body::Beacon(rep), tx_time_ms() + 1000);
    assert!(matches!(
        v.verify(r.bytes(), now()),
        Err(Reason::DataRateMismatch { .. })
    ));
    let mut v = Verifier::new(Policy::default());
    let mut rep = beacon(&b);
    rep.power_dbm = 27;
    let r = signed(&b, Body::Beacon(rep), tx_time_ms() + 1000);
    assert!(matches!(
        v.verify(r.bytes(), now()),
        Err(Reason::PowerAboveLimit { .. })
    ));
}

#[test]
fn claimed_eirp_is_compared_exactly_in_hundredths_of_a_db() {
    // Every limit in the region tables has at most two decimals, so 0.01 dB is exact.
    for r in crate::region::REGIONS {
        for band in r.bands {
            let cdb = f64::from(band.max_eirp_dbm) * 100.0;
            assert!((cdb - cdb.round()).abs() < 1e-3, "{} {}", r.name, band.name);
        }
    }
    // EU868 at the beacon's frequency: 16.15 dBm. 14 dBm + 2.1 dBi − 0 = 16.10 passes,
    // + 2.2 dBi = 16.20 fails, also when reached as 14 + 3.3 − 1.1.
    let b = SeedSigner::new(1);
    let at = |gain: i16, loss: u16| {
        let mut rep = beacon(&b);
        rep.antenna_gain_ddbi = gain;
        rep.cable_loss_ddb = loss;
        let r = signed(&b, Body::Beacon(rep), tx_time_ms() + 1000);
        Verifier::new(Policy::default()).verify(r.bytes(), now())
    };
    assert_eq!(eirp_limit_cdb(eu868(), 868_100_000), Some(1615));
    assert_eq!(at(21, 0), Ok(Kind::Beacon));
    assert_eq!(at(32, 11), Ok(Kind::Beacon));
    for (gain, loss) in [(22, 0), (33, 11)] {
        assert_eq!(
            at(gain, loss),
            Err(Reason::PowerAboveLimit {
                eirp_dbm: 16.2,
                limit_dbm: 16.15
            })
        );
    }
    // Outside every band there is no limit to be under.
    assert_eq!(eirp_limit_cdb(eu868(), 900_000_000), None);
}

#[test]
fn wrong_key_fails() {
    let b = SeedSigner::new(1);
    let impostor = SeedSigner::new(9);
    // Names signer 1's key but is signed by another key.
    let report = Report {
        key: b.public_key(),
        created_ms: tx_time_ms() + 1000,
        deadline_ms: tx_time_ms() + 60_000,
        body: Body::Beacon(beacon(&b)),
    };
    let mut bytes = report.unsigned_bytes();
    let sig = impostor
        .sign(&crate::poc::report::signed_message(&bytes))
        .unwrap();
    bytes.extend_from_slice(&sig);
    let mut v = Verifier::new(Policy::default());
    assert_eq!(
        v.verify(&bytes, now()),
        Err(Reason::BadSignature(b.public_key()))
    );
}

#[test]
fn witness_claiming_to_be_the_beaconer_fails() {
    let (mut v, b) = with_beacon();
    let err = v
        .verify(&witness_bytes(&b, witness(&b)), now())
        .unwrap_err();
    assert_eq!(err, Reason::SelfWitness);
}

#[test]
fn same_owner_witness_fails() {
    let (mut v, b) = with_beacon();
    let w = SeedSigner::new(2);
    for s in [&b, &w] {
        let o = Body::Onboarding(Onboarding {
            owner: "wallet-A".into(),
        });
        assert_eq!(
            v.verify(signed(s, o, now()).bytes(), now()),
            Ok(Kind::Onboarding)
        );
    }
    let err = v
        .verify(&witness_bytes(&w, witness(&b)), now())
        .unwrap_err();
    assert_eq!(err, Reason::SameOwner("wallet-A".into()));
}

#[test]
fn replayed_and_duplicate_reports_fail() {
    let (mut v, b) = with_beacon();
    let w = SeedSigner::new(2);
    let bytes = witness_bytes(&w, witness(&b));
    assert_eq!(v.verify(&bytes, now()), Ok(Kind::Witness));
    assert_eq!(v.verify(&bytes, now()), Err(Reason::Replayed));
    // Same witness, re-signed with a different RSSI: a duplicate, not a second credit.
    let mut again = witness(&b);
    again.rssi_ddbm -= 10;
    assert_eq!(
        v.verify(&witness_bytes(&w, again), now()),
        Err(Reason::DuplicateWitness)
    );
    // A second beacon of the same key in the same window.
    let mut second = beacon(&b);
    second.tx_time_ms += 1;
    let r = signed(&b, Body::Beacon(second), tx_time_ms() + 1001);
    assert!(matches!(
        v.verify(r.bytes(), now()),
        Err(Reason::IrregularInterval { .. })
    ));
}

#[test]
fn late_report_fails() {
    let (mut v, b) = with_beacon();
    let w = SeedSigner::new(2);
    let bytes = witness_bytes(&w, witness(&b));
    let deadline = tx_time_ms() + 2000 + 600_000;
    assert_eq!(
        v.verify(&bytes, deadline + 1),
        Err(Reason::Late {
            received_ms: deadline + 1,
            deadline_ms: deadline
        })
    );
    // A report that grants itself a far deadline.
    let far = Report {
        key: w.public_key(),
        created_ms: tx_time_ms(),
        deadline_ms: tx_time_ms() + 2 * 3_600_000,
        body: Body::Witness(witness(&b)),
    }
    .sign(&w)
    .unwrap();
    assert!(matches!(
        v.verify(far.bytes(), now()),
        Err(Reason::DeadlineTooFar { .. })
    ));
    // A report about an event after its own arrival.
    let mut future = witness(&b);
    future.rx_time_ms = now() + 120_000;
    let err = v.verify(&witness_bytes(&w, future), now()).unwrap_err();
    assert!(matches!(err, Reason::TimeMismatch(_)), "{err}");
}

#[test]
fn entropy_and_window_are_checked() {
    let b = SeedSigner::new(1);
    let mut v = Verifier::new(Policy::default());
    v.add_entropy(WINDOW, [0x99; 32]);
    let r = signed(&b, Body::Beacon(beacon(&b)), tx_time_ms() + 1000);
    assert_eq!(
        v.verify(r.bytes(), now()),
        Err(Reason::EntropyMismatch(WINDOW.id))
    );
    let mut strict = Verifier::new(Policy {
        require_entropy: true,
        ..Policy::default()
    });
    assert_eq!(
        strict.verify(r.bytes(), now()),
        Err(Reason::EntropyUnknown(WINDOW.id))
    );
    let mut v = Verifier::new(Policy::default());
    let mut outside = beacon(&b);
    outside.tx_time_ms = WINDOW.end_ms();
    let r = signed(&b, Body::Beacon(outside), WINDOW.end_ms() + 1000);
    let verdict = v.verify(r.bytes(), WINDOW.end_ms() + 5000);
    assert!(
        matches!(verdict, Err(Reason::WindowMismatch(_))),
        "{verdict:?}"
    );
}

#[test]
fn witness_geometry_and_radio_checks() {
    let w = SeedSigner::new(2);
    type Case = (fn(&mut WitnessReport), fn(&Reason) -> bool);
    let cases: Vec<Case> = vec![
        (|r| r.location = None, |e| *e == Reason::NoLocation),
        (
            |r| {
                r.location = r.location.map(|mut p| {
                    p.lat_e7 = 525_201_000;
                    p
                })
            },
            |e| matches!(e, Reason::BelowMinDistance { .. }),
        ),
        (
            |r| {
                r.location = r.location.map(|mut p| {
                    p.lat_e7 = 545_200_000;
                    p
                })
            },
            |e| matches!(e, Reason::AboveMaxDistance { .. }),
        ),
        (
            |r| r.freq_hz += 100_000,
            |e| matches!(e, Reason::WitnessFrequencyMismatch { .. }),
        ),
        (
            |r| r.sf = 12,
            |e| matches!(e, Reason::WitnessDataRateMismatch { .. }),
        ),
        (
            |r| r.rx_time_ms += 10_000,
            |e| matches!(e, Reason::TimeMismatch(_)),
        ),
        (
            |r| {
                r.time_source = TimeSource::Local;
                r.rx_time_ms = WINDOW.end_ms() + 120_000;
            },
            |e| matches!(e, Reason::TimeMismatch(_)),
        ),
        (
            |r| r.region = crate::region::Region::by_name("RU864").unwrap(),
            |e| matches!(e, Reason::RegionMismatch { .. }),
        ),
    ];
    for (i, (tamper, expect)) in cases.into_iter().enumerate() {
        let (mut v, b) = with_beacon();
        let mut r = witness(&b);
        tamper(&mut r);
        let verdict = v.verify(&witness_bytes(&w, r), now());
        assert!(
            matches!(&verdict, Err(e) if expect(e)),
            "case {i}: {verdict:?}"
        );
    }
}

/// Verdict of a witness (signer 2) of `beacon_r` received at `rx_ms` from `source`, the
/// report made and received just after `max(rx_ms, tx)`.
fn witness_at(beacon_r: &BeaconReport, source: TimeSource, rx_ms: u64) -> ReportVerdict {
    let b = SeedSigner::new(1);
    let mut v = Verifier::new(Policy::default());
    let created = rx_ms.max(beacon_r.tx_time_ms) + 1000;
    let r = signed(
        &b,
        Body::Beacon(beacon_r.clone()),
        beacon_r.tx_time_ms + 1000,
    );
    assert_eq!(
        v.verify(r.bytes(), beacon_r.tx_time_ms + 5000),
        Ok(Kind::Beacon)
    );
    let mut w = witness(&b);
    w.time_source = source;
    w.rx_time_ms = rx_ms;
    let report = signed(&SeedSigner::new(2), Body::Witness(w), created);
    v.verify(report.bytes(), created + 1000)
}

#[test]
fn witness_receive_time_lies_inside_the_window_and_near_a_gps_beacon() {
    let b = SeedSigner::new(1);
    let mid = beacon(&b);
    // The beacon (SF9, 34 bytes) is on air 246.784 ms: the GPS tolerance is 2 s + 246 ms.
    let airtime = beacon::plan(eu868(), None, &ENTROPY, &WINDOW, &LOCAL, &b.public_key())
        .unwrap()
        .airtime;
    assert_eq!(airtime.as_micros(), 246_784);
    let tol = 2_246;
    let time_mismatch = |v: ReportVerdict| matches!(v, Err(Reason::TimeMismatch(_)));
    let (start, end) = (WINDOW.start_ms(), WINDOW.end_ms());
    // Local clock: anywhere in [start, end), not a millisecond outside.
    for (rx, inside) in [
        (start - 1, false),
        (start, true),
        (mid.tx_time_ms, true),
        (end - 1, true),
        (end, false),
        (end + 59_000, false),
    ] {
        let v = witness_at(&mid, TimeSource::Local, rx);
        assert_eq!(v.is_ok(), inside, "local rx {rx}: {v:?}");
        assert!(inside || time_mismatch(v), "local rx {rx}");
    }
    // GPS: within ±(2 s + airtime) of tx ...
    let tx = mid.tx_time_ms;
    for (rx, ok) in [
        (tx - tol - 1, false),
        (tx - tol, true),
        (tx + tol, true),
        (tx + tol + 1, false),
    ] {
        let v = witness_at(&mid, TimeSource::Gps, rx);
        assert_eq!(v.is_ok(), ok, "GPS rx tx{:+}: {v:?}", rx as i64 - tx as i64);
        assert!(ok || time_mismatch(v));
    }
    // ... and inside the window too: a beacon 0.5 s after the window start (valid for the
    // verifier) heard by GPS 1 ms before the start is within the tolerance but outside.
    let early = BeaconReport {
        tx_time_ms: start + 500,
        ..mid
    };
    let v = witness_at(&early, TimeSource::Gps, start - 1);
    assert!(time_mismatch(v.clone()), "{v:?}");
    assert_eq!(
        witness_at(&early, TimeSource::Gps, start),
        Ok(Kind::Witness)
    );
    let late = BeaconReport {
        tx_time_ms: end - 500,
        ..beacon(&b)
    };
    assert_eq!(
        witness_at(&late, TimeSource::Gps, end - 1),
        Ok(Kind::Witness)
    );
    let v = witness_at(&late, TimeSource::Gps, end);
    assert!(time_mismatch(v.clone()), "{v:?}");
}

#[test]
fn batch_verifies_witnesses_after_their_beacon() {
    let b = SeedSigner::new(1);
    let w = SeedSigner::new(2);
    let beacon_r = signed(&b, Body::Beacon(beacon(&b)), tx_time_ms() + 1000);
    let reports = vec![
        witness_bytes(&w, witness(&b)),
        beacon_r.bytes().to_vec(),
        b"garbage".to_vec(),
    ];
    let out = Verifier::new(Policy::default()).verify_batch(&reports, now());
    assert_eq!(out[0], Ok(Kind::Witness));
    assert_eq!(out[1], Ok(Kind::Beacon));
    assert!(matches!(out[2], Err(Reason::Malformed(_))));
}

#[test]
fn receipts_chain_and_match_uplinks() {
    let s = SeedSigner::new(5);
    let mut chain = ReceiptChain::from_head(genesis(&s.public_key()));
    let ups = vec![(1u32, b"\x40aaaa".to_vec()), (2, b"\x80bb".to_vec())];
    for (id, p) in &ups {
        chain.push(*id, p);
    }
    let first = chain.close(1_000, 2_000);
    let mut v = Verifier::new(Policy::default());
    v.add_uplinks(s.public_key(), first.prev_head, ups.clone());
    let r1 = signed(&s, Body::Receipt(first.clone()), 2_000);
    assert_eq!(v.verify(r1.bytes(), 3_000), Ok(Kind::Receipt));
    // The next receipt continues from the first's head; one from an unknown head whose
    // period reaches back into the first's is not accepted.
    chain.push(3, b"\x40c");
    let second = chain.close(2_000, 3_000);
    let broken = crate::poc::receipt::TransferReceipt {
        prev_head: [0; 32],
        period_start_ms: 1_500,
        ..second.clone()
    };
    let rb = signed(&s, Body::Receipt(broken), 3_000);
    assert!(matches!(
        v.verify(rb.bytes(), 3_500),
        Err(Reason::ReceiptOverlap(_))
    ));
    let r2 = signed(&s, Body::Receipt(second), 3_000);
    assert_eq!(v.verify(r2.bytes(), 3_500), Ok(Kind::Receipt));
    // A receipt claiming more bytes than the network received.
    let mut v = Verifier::new(Policy::default());
    v.add_uplinks(s.public_key(), first.prev_head, ups);
    let inflated = crate::poc::receipt::TransferReceipt {
        bytes: first.bytes + 100,
        ..first
    };
    let ri = signed(&s, Body::Receipt(inflated), 2_000);
    assert!(matches!(
        v.verify(ri.bytes(), 3_000),
        Err(Reason::Receipt(_))
    ));
}

#[test]
fn a_receipt_whose_uplinks_did_not_all_arrive_fails_but_the_next_one_links() {
    let s = SeedSigner::new(6);
    let mut chain = ReceiptChain::from_head(genesis(&s.public_key()));
    let ups = vec![(1u32, b"\x40aaaa".to_vec()), (2, b"\x40bb".to_vec())];
    for (id, p) in &ups {
        chain.push(*id, p);
    }
    let first = chain.close(1_000, 2_000);
    chain.push(3, b"\x40c");
    let second = chain.close(2_000, 3_000);
    let mut v = Verifier::new(Policy::default());
    // Uplink 2 was evicted from the hotspot's outbox: the network only got 1.
    v.add_uplinks(s.public_key(), first.prev_head, ups[..1].to_vec());
    v.add_uplinks(
        s.public_key(),
        second.prev_head,
        vec![(3, b"\x40c".to_vec())],
    );
    let r1 = signed(&s, Body::Receipt(first), 2_000);
    assert_eq!(
        v.verify(r1.bytes(), 3_000),
        Err(Reason::Receipt(ReceiptError::Chain("uplink count")))
    );
    let r2 = signed(&s, Body::Receipt(second), 3_000);
    assert_eq!(v.verify(r2.bytes(), 3_500), Ok(Kind::Receipt));
}

/// A valid beacon report of `signer` in the window of `len_s` containing [`tx_time_ms`].
fn beacon_in(signer: &SeedSigner, len_s: u32) -> BeaconReport {
    let window = BeaconWindow {
        len_s,
        id: tx_time_ms() / (u64::from(len_s) * 1000),
    };
    let plan = beacon::plan(
        eu868(),
        None,
        &ENTROPY,
        &window,
        &LOCAL,
        &signer.public_key(),
    )
    .unwrap();
    BeaconReport {
        window,
        freq_hz: plan.freq_hz as u32,
        dr: plan.dr,
        ..beacon(signer)
    }
}

#[test]
fn windows_below_the_policy_minimum_are_rejected() {
    let b = SeedSigner::new(1);
    // The production default: an hour and more pass, a test network's 10 s and 60 s do not.
    assert_eq!(Policy::default().min_window_s, PRODUCTION_MIN_WINDOW_S);
    for len_s in [10, 60, 1800] {
        let r = signed(&b, Body::Beacon(beacon_in(&b, len_s)), tx_time_ms() + 1000);
        let err = Verifier::new(Policy::default())
            .verify(r.bytes(), now())
            .unwrap_err();
        assert_eq!(err, Reason::WindowTooShort { len_s, min_s: 3600 });
        assert!(
            err.to_string()
                .contains("shorter than this verifier's minimum"),
            "{err}"
        );
        // A test network's verifier accepts them.
        let mut test_net = Verifier::new(Policy {
            min_window_s: 10,
            ..Policy::default()
        });
        assert_eq!(
            test_net.verify(r.bytes(), now()),
            Ok(Kind::Beacon),
            "{len_s} s"
        );
    }
    for len_s in [3600, 21_600] {
        let r = signed(&b, Body::Beacon(beacon_in(&b, len_s)), tx_time_ms() + 1000);
        assert_eq!(
            Verifier::new(Policy::default()).verify(r.bytes(), now()),
            Ok(Kind::Beacon),
            "{len_s} s"
        );
    }
}

/// Receipt placement: linked, new segments after a gap, forks, overlaps, replays.
#[path = "verify_receipt_tests.rs"]
mod receipts;
