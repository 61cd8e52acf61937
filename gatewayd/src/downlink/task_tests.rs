//! The downlink task end to end inside the crate: a real outbox and guard, a fake radio
//! backend answering each request in turn.

use super::*;
use crate::guard::{DutyCycleLedger, Guard, GuardConfig, TxGate};
use crate::outbox::{Class, OutboxHandle};
use crate::region::Region;

fn outbox(dir: &std::path::Path) -> OutboxHandle {
    OutboxHandle::open(&crate::config::OutboxConfig {
        path: dir.join("outbox.sqlite"),
        max_bytes: 1 << 20,
        uplink_expiry: None,
        stats_expiry: None,
        commit_delay: Duration::from_millis(1),
    })
    .unwrap()
}

/// A task on EU868 (2.15 dBi antenna) and a fake backend answering `answers` in order;
/// the requests it received come back on the returned channel.
fn task(
    dir: &std::path::Path,
    answers: Vec<TxStatus>,
) -> (
    DownlinkTask,
    tokio::sync::mpsc::UnboundedReceiver<drivers::radio::TxRequest>,
    OutboxHandle,
) {
    let config = GuardConfig {
        antenna_gain_dbi: 2.15,
        ..Default::default()
    };
    let guard = Guard::new(
        Region::by_name("EU868").unwrap(),
        config,
        DutyCycleLedger::in_memory().unwrap(),
    )
    .unwrap();
    let (control, mut commands) = RadioControl::channel(4);
    let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut answers = answers.into_iter();
        while let Some(cmd) = commands.recv().await {
            let _ = seen_tx.send(cmd.request);
            let _ = cmd
                .reply
                .send(answers.next().unwrap_or(TxStatus::InternalError));
        }
    });
    let gate = TxGate::new(guard, control, Duration::from_secs(1));
    let ob = outbox(dir);
    let cfg = DownlinkConfig {
        gateway: GW,
        topic_prefix: "eu868".into(),
        json: false,
    };
    (DownlinkTask::new(gate, ob.clone(), cfg), seen, ob)
}

#[tokio::test]
async fn too_late_rx1_then_rx2_and_the_ack_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (mut t, mut seen, ob) = task(dir.path(), vec![TxStatus::TooLate, TxStatus::Ok]);
    let ack = t.handle(&rx1_rx2(1000).encode_to_vec()).await.unwrap();
    let s: Vec<_> = ack.items.iter().map(|i| i.status()).collect();
    assert_eq!(s, [gw::TxAckStatus::TooLate, gw::TxAckStatus::Ok]);
    let rx1 = seen.recv().await.unwrap();
    assert_eq!(rx1.power_dbm, 11, "EIRP 14 − 2.15 dBi, rounded down");
    let rx2 = seen.recv().await.unwrap();
    assert_eq!(
        rx2.power_dbm, 24,
        "EIRP 27 asked at 869.525 MHz: 27 − 2.15 rounded down (the band allows 27)"
    );
    assert_eq!(rx2.timing, TxTiming::AtCounter(2_001_000));
    let stored = ob.next(10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].class, Class::Control);
    assert_eq!(stored[0].topic, "eu868/gateway/0102030405060708/event/ack");
    let decoded = gw::DownlinkTxAck::decode(stored[0].payload.as_slice()).unwrap();
    assert_eq!(decoded, ack);
    ob.close().await.unwrap();
}

#[tokio::test]
async fn illegal_frequency_never_reaches_the_radio() {
    let dir = tempfile::tempdir().unwrap();
    let (mut t, mut seen, ob) = task(dir.path(), vec![TxStatus::Ok]);
    let mut f = rx1_rx2(1000);
    f.items.truncate(1);
    f.items[0].tx_info.as_mut().unwrap().frequency = 915_000_000;
    let ack = t.handle(&f.encode_to_vec()).await.unwrap();
    assert_eq!(ack.items[0].status(), gw::TxAckStatus::TxFreq);
    assert!(seen.try_recv().is_err(), "nothing handed to the backend");
    ob.close().await.unwrap();
}

#[tokio::test]
async fn rejected_commands_have_no_effect() {
    let dir = tempfile::tempdir().unwrap();
    let (mut t, mut seen, ob) = task(dir.path(), vec![TxStatus::Ok]);
    let mut f = rx1_rx2(1000);
    f.gateway_id = "aabbccddeeff0011".into();
    assert!(t.handle(&f.encode_to_vec()).await.is_none());
    assert!(t.handle(b"\x08garbage").await.is_none());
    assert!(seen.try_recv().is_err());
    assert_eq!(ob.stats().await.unwrap().messages(), 0, "no ack stored");
    let c = t.counters();
    assert_eq!(c.rejected.load(std::sync::atomic::Ordering::Relaxed), 2);
    ob.close().await.unwrap();
}

#[tokio::test]
async fn a_frame_with_too_many_items_is_acked_as_an_error_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut t, mut seen, ob) = task(dir.path(), vec![TxStatus::Ok]);
    let ack = t
        .handle(&many_items(10_000).encode_to_vec())
        .await
        .expect("an ack for our downlink");
    assert_eq!(ack.downlink_id, 4242);
    assert_eq!(ack.items[0].status(), gw::TxAckStatus::InternalError);
    assert!(seen.try_recv().is_err(), "nothing handed to the backend");
    assert_eq!(ob.stats().await.unwrap().messages(), 1, "the ack is stored");
    let (d, _, _) = t.stats().status();
    assert_eq!((d.received, d.rejected, d.sent), (1, 1, 0));
    assert_eq!(d.acks["INTERNAL_ERROR"], 1);
    // The next legal downlink goes out.
    let ack = t.handle(&rx1_rx2(1000).encode_to_vec()).await.unwrap();
    assert!(ack.items.iter().any(|i| i.status() == gw::TxAckStatus::Ok));
    assert!(seen.try_recv().is_ok());
    ob.close().await.unwrap();
}

#[tokio::test]
async fn stats_count_what_the_transmit_path_did() {
    let dir = tempfile::tempdir().unwrap();
    let (mut t, mut seen, ob) = task(dir.path(), vec![TxStatus::TooLate, TxStatus::Ok]);
    let stats = t.stats();
    assert!(stats.duty_cycle.borrow().is_empty(), "nothing read yet");
    t.handle(&rx1_rx2(1000).encode_to_vec()).await.unwrap();
    let mut f = rx1_rx2(1000);
    f.items.truncate(1);
    f.items[0].tx_info.as_mut().unwrap().frequency = 915_000_000;
    t.handle(&f.encode_to_vec()).await.unwrap();
    assert!(t.handle(b"\x08garbage").await.is_none());
    t.refresh_duty_cycle();

    let (d, g, duty) = stats.status();
    assert_eq!(
        (d.received, d.rejected, d.scheduled, d.sent, d.failed),
        (3, 1, 2, 1, 1)
    );
    assert_eq!(d.acks["TOO_LATE"], 1);
    assert_eq!(d.acks["OK"], 1);
    assert_eq!(d.acks["TX_FREQ"], 1);
    assert_eq!(d.acks["DUTY_CYCLE_OVERFLOW"], 0);
    assert_eq!(d.acks.len(), 12, "every status has a series");
    assert_eq!((g.approved, g.released, g.power_clamped), (2, 1, 0));
    assert_eq!(g.refusals["frequency"], 1);
    assert_eq!(g.refused(), 1);

    // RX1's airtime was refunded (not sent); RX2's is charged to band P.
    let _rx1 = seen.recv().await.unwrap();
    let rx2 = seen.recv().await.unwrap();
    let airtime = drivers::airtime::time_on_air(
        &rx2.modulation,
        &drivers::airtime::FrameShape {
            payload_len: rx2.payload.len(),
            preamble: rx2.preamble.unwrap_or(8),
            crc: rx2.crc,
            implicit_header: false,
        },
    );
    let band = |name: &str| duty.iter().find(|u| u.band == name).unwrap().clone();
    assert_eq!(band("M").used_seconds, 0.0);
    assert_eq!(band("M").budget_seconds, 36.0);
    assert_eq!(band("P").used_seconds, airtime.as_secs_f64());
    assert_eq!(band("P").budget_seconds, 360.0);
    assert!(band("P").used_ratio > 0.0);
    ob.close().await.unwrap();
}

/// Beacons submitted through the task's `TxClient` and downlinks share one gate: the
/// beacons use up the 1 % budget of EU868's 868.0–868.6 MHz band, then a downlink there
/// is refused with DUTY_CYCLE_OVERFLOW.
#[tokio::test]
async fn beacons_and_downlinks_share_the_duty_cycle_ledger() {
    use crate::poc::beacon::{plan, BeaconWindow};
    use crate::poc::PublicKey;
    use std::time::SystemTime;
    let dir = tempfile::tempdir().unwrap();
    let (mut t, _seen, ob) = task(dir.path(), vec![TxStatus::Ok; 1000]);
    let client = t.tx_client();
    let (cmd_tx, cmd_rx) = tokio::sync::mpsc::channel(4);
    let run = tokio::spawn(t.run(cmd_rx));
    assert_eq!(
        client.conducted_limit_dbm(868_100_000).await,
        Ok(Some(14)),
        "16.15 dBm EIRP − 2.15 dBi"
    );
    assert_eq!(client.conducted_limit_dbm(915_000_000).await, Ok(None));
    let now = SystemTime::now();
    let w = BeaconWindow::containing(60, now).unwrap();
    let mut sent = 0u32;
    let refusal = loop {
        let p = plan(
            Region::by_name("EU868").unwrap(),
            None,
            &[sent as u8; 32],
            &w,
            &[1; 32],
            &PublicKey([2; 32]),
        )
        .unwrap();
        match client
            .send(now, p.tx_request(13, TxTiming::Immediate))
            .await
        {
            Ok((TxStatus::Ok, v)) => {
                assert_eq!(v.band.name, "M", "868.0–868.6 MHz, 1 %");
                sent += 1;
            }
            Err(e) => break e,
            Ok(other) => panic!("unexpected {other:?}"),
        }
        assert!(sent < 1000, "the duty cycle must stop the beacons");
    };
    // 36 s per hour / 246.784 ms per beacon.
    assert_eq!(sent, 145);
    assert!(
        matches!(
            refusal,
            crate::downlink::TxClientError::Gate(crate::guard::SendError::Refused(
                crate::guard::Refusal::DutyCycleExceeded { .. }
            ))
        ),
        "{refusal}"
    );
    // What is left (36 s − 145 × 246.784 ms ≈ 216 ms) is less than an SF12 downlink.
    let mut f = rx1_rx2(1000);
    f.items = vec![item(
        868_100_000,
        12,
        14,
        delay(Duration::from_secs(1)),
        1000,
    )];
    cmd_tx
        .send(crate::mqtt::Command {
            kind: "down".into(),
            payload: f.encode_to_vec(),
        })
        .await
        .unwrap();
    let stored = tokio::time::timeout(Duration::from_secs(10), ob.next(10))
        .await
        .expect("the ack is stored")
        .unwrap();
    assert_eq!(stored.len(), 1, "the downlink's ack");
    let ack = gw::DownlinkTxAck::decode(stored[0].payload.as_slice()).unwrap();
    assert_eq!(ack.items[0].status(), gw::TxAckStatus::DutyCycleOverflow);
    drop(client);
    drop(cmd_tx);
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the task ends when both inputs close")
        .unwrap();
    ob.close().await.unwrap();
}
