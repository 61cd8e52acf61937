//! End to end: malformed datagrams from a packet forwarder on a real UDP socket reach the
//! real `gatewayd`, which rejects each with a counted reason; the counts are read back from
//! `/metrics` (`gatewayd_gwmp_rejected_total{reason}`) and `gatewayd status --json`
//! (`radio_counters`), and valid uplinks between them still flow.

use testkit as support;

use std::time::Duration;

use support::daemon::*;
use support::observe::{metric, metrics, status_json, wait_until};

const WAIT: Duration = Duration::from_secs(20);

/// A GWMP header: version 2, token, identifier.
fn header(id: u8) -> Vec<u8> {
    vec![2, 0x12, 0x34, id]
}

fn push_data(json: &str) -> Vec<u8> {
    [&header(0)[..], &GATEWAY, json.as_bytes()].concat()
}

/// Each rejection reason with the datagrams that provoke it (each sent `n` times).
fn malformed() -> Vec<(&'static str, usize, Vec<u8>)> {
    vec![
        (
            "unsupported_version",
            2,
            vec![9, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
        ),
        ("too_short", 3, vec![2, 0, 1]),
        ("unknown_identifier", 1, header(0x7f)),
        ("bad_json", 2, push_data("{not json")),
        // PULL_DATA with bytes after the EUI.
        (
            "malformed_other",
            1,
            [&header(2)[..], &GATEWAY, b"xx"].concat(),
        ),
        (
            "bad_rxpk",
            2,
            push_data(r#"{"rxpk":[{"data":"!!!","size":3}]}"#),
        ),
        ("bad_stat", 1, push_data(r#"{"stat":{"rxnb":"x"}}"#)),
        // A PUSH_ACK is sent by servers, not by gateways.
        ("unexpected_packet", 2, header(1)),
        // A TX_ACK for a PULL_RESP never sent.
        ("tx_ack_unmatched", 1, [&header(5)[..], &GATEWAY].concat()),
    ]
}

#[test]
fn every_rejection_reason_is_counted_in_metrics_and_status() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/+/event/up");
    let daemon = Daemon::start(broker.port(), "");
    let mut pf = Forwarder::new(daemon.udp_port);
    let cases = malformed();
    let mut n = 0u32;
    for (_, times, bytes) in &cases {
        for _ in 0..*times {
            pf.send_raw(bytes);
            pf.push_uplink(&data_frame(n), n);
            n += 1;
        }
    }
    let ups = sub.wait_uplinks(WAIT, |u| u.len() >= n as usize);
    assert_eq!(
        ups.len(),
        n as usize,
        "valid uplinks flow:\n{}",
        daemon.log()
    );

    wait_until("every reason in /metrics", WAIT, || {
        let body = metrics(&daemon);
        for (reason, times, _) in &cases {
            let series = format!("gatewayd_gwmp_rejected_total{{reason=\"{reason}\"}}");
            if metric(&body, &series) != Some(*times as f64) {
                return Err(format!(
                    "{series} is {:?} in\n{body}",
                    metric(&body, &series)
                ));
            }
        }
        Ok(())
    });
    let body = metrics(&daemon);
    assert!(
        body.contains("# TYPE gatewayd_gwmp_rejected_total counter"),
        "{body}"
    );
    let sent: usize = cases.iter().map(|(_, t, _)| t).sum();
    // Every datagram is counted (the uplinks and the PULL_DATA of the harness too).
    let datagrams = metric(&body, "gatewayd_gwmp_datagrams_total").unwrap();
    assert!(datagrams >= (sent + n as usize) as f64, "{body}");
    assert_eq!(
        metric(&body, "gatewayd_gwmp_push_ack_sent_total"),
        // The uplinks, the bad_rxpk and bad_stat datagrams (nothing to store) are acked.
        Some((n + 3) as f64),
        "{body}"
    );

    let status = status_json(&daemon);
    let counters = status["radio_counters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (reason, times, _) in &cases {
        let found = counters
            .iter()
            .find(|c| c["family"] == "gwmp_rejected" && c["reason"] == *reason)
            .unwrap_or_else(|| panic!("{reason} missing from status: {status}"));
        assert_eq!(found["value"], *times as u64, "{reason}: {status}");
    }
    let rejected: u64 = counters
        .iter()
        .filter(|c| c["family"] == "gwmp_rejected")
        .filter_map(|c| c["value"].as_u64())
        .sum();
    assert_eq!(
        rejected, sent as u64,
        "no rejection counted twice: {status}"
    );
}
