//! End to end, gateway statistics (issue 17): the test plays the network server on a real
//! Mosquitto and the packet forwarder on a real UDP socket, the real `gatewayd` binary sits
//! between with a one-second stats interval. What it forwards and transmits must show in
//! `event/stats` as a stock ChirpStack charts it: counts by status, frequency and modulation,
//! and the duty-cycle use per band.

use testkit as support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chirpstack_api::gw;
use chirpstack_api::prost::Message as _;
use support::network::*;

/// Sums over the `event/stats` messages published so far: the counters are per interval, so
/// their sum over every interval is what happened since start.
#[derive(Debug, Default, PartialEq)]
struct Totals {
    messages: usize,
    rx_received: u32,
    rx_per_frequency: BTreeMap<u32, u32>,
    rx_per_modulation: Vec<(gw::Modulation, u32)>,
    tx_received: u32,
    tx_emitted: u32,
    tx_per_status: BTreeMap<String, u32>,
    tx_per_frequency: BTreeMap<u32, u32>,
    tx_per_modulation: Vec<(gw::Modulation, u32)>,
}

impl Totals {
    fn of(stats: &[gw::GatewayStats]) -> Totals {
        fn add_modulations(to: &mut Vec<(gw::Modulation, u32)>, from: &[gw::PerModulationCount]) {
            for c in from {
                let m = c.modulation.clone().expect("modulation");
                match to.iter_mut().find(|(seen, _)| *seen == m) {
                    Some((_, n)) => *n += c.count,
                    None => to.push((m, c.count)),
                }
            }
        }
        let mut t = Totals {
            messages: stats.len(),
            ..Default::default()
        };
        for s in stats {
            t.rx_received += s.rx_packets_received;
            t.tx_received += s.tx_packets_received;
            t.tx_emitted += s.tx_packets_emitted;
            for (f, n) in &s.rx_packets_per_frequency {
                *t.rx_per_frequency.entry(*f).or_default() += n;
            }
            for (f, n) in &s.tx_packets_per_frequency {
                *t.tx_per_frequency.entry(*f).or_default() += n;
            }
            for (k, n) in &s.tx_packets_per_status {
                *t.tx_per_status.entry(k.clone()).or_default() += n;
            }
            add_modulations(&mut t.rx_per_modulation, &s.rx_packets_per_modulation);
            add_modulations(&mut t.tx_per_modulation, &s.tx_packets_per_modulation);
        }
        t
    }
}

/// The `event/stats` messages published so far.
fn stats(s: &Setup) -> Vec<gw::GatewayStats> {
    s.sub
        .all()
        .iter()
        .filter(|r| r.topic == "eu868/gateway/0102030405060708/event/stats")
        .map(|r| gw::GatewayStats::decode(r.payload.as_slice()).expect("GatewayStats"))
        .collect()
}

/// Wait (bounded) until `pred` holds for the stats so far; returns them.
fn wait_stats(
    s: &Setup,
    what: &str,
    pred: impl Fn(&[gw::GatewayStats]) -> bool,
) -> Vec<gw::GatewayStats> {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = stats(s);
        if pred(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {:?}\n{}",
            Totals::of(&stats),
            s.daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 17: `event/stats` reports what ChirpStack charts. Two downlinks — RX1 sent; RX1 too
/// late and RX2 sent — are counted once each as received and as emitted, every item tried by
/// its status (`IGNORED`, not tried, left out, as chirpstack-gateway-bridge does), the two
/// emitted by frequency and modulation; the uplink by frequency and modulation; the duty-cycle
/// use per EU868 band. Counters are per interval: later intervals add nothing.
#[test]
fn stats_count_downlinks_by_status_frequency_and_modulation() {
    let mut s = setup_gateway(false, "stats_interval_secs = 1");
    let t = 7_000_000u32;
    let ctx = s.uplink(1, t);
    s.ns.publish(DOWN, class_a(501, &ctx));
    let (token, _) = s.pull_resp(WAIT).expect("PULL_RESP for RX1");
    s.tx_ack(token, None);
    assert_eq!(
        s.wait_ack(501),
        [gw::TxAckStatus::Ok, gw::TxAckStatus::Ignored]
    );
    s.ns.publish(DOWN, class_a(502, &ctx));
    let (token, _) = s.pull_resp(WAIT).expect("PULL_RESP for RX1");
    s.tx_ack(token, Some("TOO_LATE"));
    let (token, _) = s.pull_resp(WAIT).expect("PULL_RESP for RX2");
    s.tx_ack(token, None);
    assert_eq!(
        s.wait_ack(502),
        [gw::TxAckStatus::TooLate, gw::TxAckStatus::Ok]
    );

    let counted = wait_stats(&s, "both downlinks counted", |st| {
        Totals::of(st).tx_emitted >= 2
    });
    // Two more intervals: a counter not reset after its message would count again.
    let stats = wait_stats(&s, "two more intervals", |st| st.len() >= counted.len() + 2);
    let totals = Totals::of(&stats);
    assert_eq!(
        (totals.tx_received, totals.tx_emitted),
        (2, 2),
        "{totals:?}"
    );
    let statuses = BTreeMap::from([("OK".to_string(), 2), ("TOO_LATE".to_string(), 1)]);
    assert_eq!(totals.tx_per_status, statuses, "{totals:?}");
    let freqs = BTreeMap::from([(868_100_000, 1), (869_525_000, 1)]);
    assert_eq!(totals.tx_per_frequency, freqs, "{totals:?}");
    let emitted = vec![(lora(7).unwrap(), 1), (lora(12).unwrap(), 1)];
    assert_eq!(totals.tx_per_modulation, emitted, "as the items asked");
    assert_eq!(totals.rx_received, 1);
    assert_eq!(totals.rx_per_frequency, BTreeMap::from([(866_349_812, 1)]));
    let sf7_cr46 = gw::Modulation {
        parameters: Some(gw::modulation::Parameters::Lora(gw::LoraModulationInfo {
            bandwidth: 125_000,
            spreading_factor: 7,
            code_rate: gw::CodeRate::Cr46.into(),
            ..Default::default()
        })),
    };
    assert_eq!(
        totals.rx_per_modulation,
        vec![(sf7_cr46, 1)],
        "the rxpk's SF7BW125 4/6"
    );

    // Duty-cycle use per band, from the guard's ledger: RX1 went out in band M, RX2 in P.
    let stats = wait_stats(&s, "duty-cycle use of bands M and P", |st| {
        st.last()
            .and_then(|s| s.duty_cycle_stats.as_ref())
            .is_some_and(|d| {
                d.bands
                    .iter()
                    .filter(|b| b.load_tracked.is_some_and(|l| l.seconds > 0 || l.nanos > 0))
                    .count()
                    == 2
            })
    });
    let dc = stats.last().unwrap().duty_cycle_stats.clone().unwrap();
    assert_eq!(
        dc.regulation(),
        chirpstack_api::common::Regulation::EtsiEn300220
    );
    assert_eq!(dc.window.map(|w| w.seconds), Some(3600));
    let band = |name: &str| {
        dc.bands
            .iter()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("band {name} in {dc:?}"))
    };
    let m = band("M");
    assert_eq!(
        (m.frequency_min, m.frequency_max),
        (868_000_000, 868_600_000)
    );
    assert_eq!(m.load_max.map(|d| d.seconds), Some(36), "1 % of an hour");
    assert!(m.load_tracked.unwrap().nanos > 0, "SF7 RX1: {m:?}");
    let p = band("P");
    assert_eq!(p.load_max.map(|d| d.seconds), Some(360), "10 % of an hour");
    assert!(
        p.load_tracked.unwrap().seconds >= 1,
        "SF12 RX2, over a second: {p:?}"
    );
    assert_eq!(
        band("K").load_tracked.unwrap_or_default().nanos,
        0,
        "unused"
    );
}
