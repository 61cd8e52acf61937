//! Tests of the metrics exposition and its HTTP server (real TCP on 127.0.0.1:0).

use super::*;
use crate::service::status::tests::sample;
use std::collections::BTreeMap;

/// Parse exposition text into `name{labels}` → value, checking that every sample's
/// metric has HELP and TYPE lines before it.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut typed = std::collections::HashSet::new();
    let mut helped = std::collections::HashSet::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut p = rest.split(' ');
            let name = p.next().unwrap().to_owned();
            assert!(matches!(p.next(), Some("gauge" | "counter")), "{line}");
            typed.insert(name);
        } else {
            let (series, value) = line.rsplit_once(' ').expect(line);
            let name = series.split('{').next().unwrap();
            assert!(typed.contains(name) && helped.contains(name), "{line}");
            if name.ends_with("_total") {
                assert!(text.contains(&format!("# TYPE {name} counter")));
            }
            samples.insert(series.to_owned(), value.parse::<f64>().expect(line));
        }
    }
    samples
}

#[test]
fn every_figure_has_a_conventional_name() {
    let m = parse(&render_metrics(&sample()));
    assert_eq!(m["gatewayd_build_info{version=\"0.1.0\"}"], 1.0);
    assert_eq!(m["gatewayd_uptime_seconds"], 93_784.0);
    assert_eq!(m["gatewayd_radio_up{backend=\"semtech_udp\"}"], 1.0);
    assert_eq!(m["gatewayd_mqtt_connected"], 0.0);
    assert_eq!(m["gatewayd_outbox_messages"], 42.0);
    assert_eq!(m["gatewayd_outbox_oldest_message_age_seconds"], 75.0);
    assert_eq!(m["gatewayd_uplinks_received_total"], 1234.0);
    assert_eq!(m["gatewayd_uplinks_last_hour"], 17.0);
    assert_eq!(m["gatewayd_beacons_sent_total"], 3.0);
    assert_eq!(m["gatewayd_last_beacon_age_seconds"], 3600.0);
    assert_eq!(
        m["gatewayd_beacons_skipped_total{reason=\"no_entropy\"}"],
        2.0
    );
    assert_eq!(m["gatewayd_beacons_skipped_total{reason=\"refused\"}"], 0.0);
    assert_eq!(m["gatewayd_witnesses_total"], 5.0);
    assert_eq!(m["gatewayd_duty_cycle_used_ratio{band=\"g1\"}"], 0.125);
    assert_eq!(m["gatewayd_dutycycle_used_seconds{band=\"g1\"}"], 4.5);
    assert_eq!(m["gatewayd_dutycycle_budget_seconds{band=\"g1\"}"], 36.0);
    assert_eq!(m["gatewayd_dutycycle_used_seconds{band=\"K\"}"], 1.8);
    assert_eq!(m["gatewayd_dutycycle_budget_seconds{band=\"K\"}"], 3.6);
    assert_eq!(m["gatewayd_gps_fix"], 1.0);
    assert_eq!(m["gatewayd_gps_satellites"], 7.0);
    assert_eq!(m["gatewayd_receipts_total"], 4.0);
    assert_eq!(m["gatewayd_receipt_uplinks_total"], 321.0);
    assert_eq!(m["gatewayd_last_receipt_age_seconds"], 120.0);
    assert_eq!(m["gatewayd_receipt_gaps_total"], 3.0);
    assert_eq!(m["gatewayd_receipt_failures_total"], 1.0);
    assert_eq!(m["gatewayd_outbox_expired_total{class=\"poc\"}"], 2.0);
    assert_eq!(m["gatewayd_outbox_expired_total{class=\"uplink\"}"], 0.0);
    assert_eq!(m["gatewayd_outbox_evicted_total{class=\"stats\"}"], 9.0);
    assert!(
        !m.contains_key("gatewayd_last_witness_age_seconds"),
        "unknown is absent"
    );
}

#[test]
fn downlinks_and_guard_decisions_are_counters_with_labels() {
    let m = parse(&render_metrics(&sample()));
    for (series, want) in [
        ("gatewayd_downlinks_received_total", 11.0),
        ("gatewayd_downlinks_rejected_total", 2.0),
        ("gatewayd_downlinks_scheduled_total", 8.0),
        ("gatewayd_downlinks_sent_total", 6.0),
        ("gatewayd_downlinks_failed_total", 3.0),
        ("gatewayd_downlink_acks_total{status=\"OK\"}", 6.0),
        ("gatewayd_downlink_acks_total{status=\"TOO_LATE\"}", 2.0),
        (
            "gatewayd_downlink_acks_total{status=\"DUTY_CYCLE_OVERFLOW\"}",
            1.0,
        ),
        ("gatewayd_downlink_acks_total{status=\"TX_FREQ\"}", 0.0),
        ("gatewayd_guard_approved_total", 8.0),
        ("gatewayd_guard_released_total", 1.0),
        ("gatewayd_guard_power_clamped_total", 4.0),
        ("gatewayd_guard_refusals_total{reason=\"duty_cycle\"}", 1.0),
        ("gatewayd_guard_refusals_total{reason=\"frequency\"}", 2.0),
        ("gatewayd_guard_refusals_total{reason=\"dwell_time\"}", 0.0),
    ] {
        assert_eq!(m.get(series), Some(&want), "{series}");
    }
    // Without a downlink task (no gateway id yet) none of them is made up.
    let text = render_metrics(&StatusSnapshot::default());
    for name in [
        "gatewayd_downlinks_",
        "gatewayd_downlink_acks_total",
        "gatewayd_guard_",
        "gatewayd_dutycycle_",
    ] {
        assert!(!text.contains(name), "{name} in\n{text}");
    }
}

#[test]
fn backend_counters_are_counter_families_with_reasons() {
    let mut s = sample();
    for c in &mut s.radio_counters {
        c.help = format!("help of {}", c.family);
    }
    let text = render_metrics(&s);
    let m = parse(&text);
    assert_eq!(m["gatewayd_gwmp_datagrams_total"], 40.0);
    assert_eq!(m["gatewayd_gwmp_rejected_total{reason=\"bad_json\"}"], 2.0);
    assert_eq!(m["gatewayd_gwmp_rejected_total{reason=\"too_short\"}"], 1.0);
    assert_eq!(m["gatewayd_gwmp_rejected_total{reason=\"bad_stat\"}"], 0.0);
    // One HELP/TYPE pair per family, not per sample.
    assert_eq!(
        text.matches("# TYPE gatewayd_gwmp_rejected_total counter")
            .count(),
        1
    );
    assert!(text.contains("# HELP gatewayd_gwmp_rejected_total help of gwmp_rejected"));
    assert_eq!(m["gatewayd_time_source{source=\"unsynchronized\"}"], 1.0);
    assert_eq!(m["gatewayd_time_source{source=\"gps\"}"], 0.0);
    assert_eq!(
        m["gatewayd_witnesses_skipped_total{reason=\"clock_unsynchronized\"}"],
        4.0
    );
    assert_eq!(m["gatewayd_receipts_held_total"], 2.0);
    // A backend without counters (lora_phy, sim) adds no family.
    assert!(!render_metrics(&StatusSnapshot::default()).contains("gwmp"));
}

#[test]
fn unknown_figures_are_absent_and_labels_escaped() {
    let s = StatusSnapshot {
        version: "1\"\\\n".into(),
        ..Default::default()
    };
    let text = render_metrics(&s);
    assert!(
        text.contains(r#"gatewayd_build_info{version="1\"\\\n"} 1"#),
        "{text}"
    );
    assert!(!text.contains("gatewayd_outbox_messages"));
    assert!(!text.contains("gatewayd_mqtt_connected"));
}

#[test]
fn routing() {
    assert_eq!(
        route("GET /metrics HTTP/1.1"),
        Route::Metrics { body: true }
    );
    assert_eq!(
        route("GET /metrics?x=1 HTTP/1.0"),
        Route::Metrics { body: true }
    );
    assert_eq!(
        route("HEAD /metrics HTTP/1.1"),
        Route::Metrics { body: false }
    );
    assert_eq!(route("GET / HTTP/1.1"), Route::NotFound);
    assert_eq!(route("POST /metrics HTTP/1.1"), Route::MethodNotAllowed);
    assert_eq!(route("GET /metrics"), Route::BadRequest);
    assert_eq!(route("\u{16}\u{3}\u{1} garbage"), Route::BadRequest);
    assert_eq!(route(""), Route::BadRequest);
}

async fn request(addr: SocketAddr, raw: &[u8]) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut resp))
        .await
        .unwrap()
        .unwrap();
    let resp = String::from_utf8(resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

#[tokio::test]
async fn a_real_scrape_over_tcp() {
    let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.serve(sample, shutdown.clone()));

    let (head, body) = request(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(len, body.len());
    let m = parse(&body);
    assert_eq!(m["gatewayd_outbox_messages"], 42.0);
    assert_eq!(m["gatewayd_uplinks_received_total"], 1234.0);

    let (head, body) = request(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(body.is_empty());
    let (head, _) = request(addr, b"GET /other HTTP/1.1\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, _) = request(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    let (head, _) = request(addr, b"nonsense\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 10_000));
    let (head, _) = request(addr, &huge).await;
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    // The server still answers after bad requests.
    let (head, _) = request(addr, b"GET /metrics HTTP/1.0\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}

#[test]
fn the_mqtt_link_counters_are_exported() {
    let m = parse(&render_metrics(&sample()));
    assert_eq!(m["gatewayd_mqtt_connections_total"], 3.0);
    assert_eq!(m["gatewayd_mqtt_resent_total"], 2.0);
    assert_eq!(m["gatewayd_mqtt_commands_total"], 11.0);
    assert_eq!(
        m["gatewayd_mqtt_commands_dropped_total{reason=\"oversized\"}"],
        1.0
    );
    assert_eq!(
        m["gatewayd_mqtt_commands_dropped_total{reason=\"unknown\"}"],
        4.0
    );
}
