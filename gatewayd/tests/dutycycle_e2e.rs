//! End to end, duty cycle across a restart: the real `gatewayd` binary in EU868, a real
//! Mosquitto on which the test plays the network server, and a GWMP packet forwarder on a
//! real UDP socket. Class C downlinks (`immediately`) in band M (868.0–868.6 MHz, 1 %) go
//! out until the guard refuses with DUTY_CYCLE_OVERFLOW; the daemon is stopped (SIGTERM) and
//! started again on the same state directory; band M must stay refused while band P
//! (869.525 MHz, 10 %) still transmits, and status and `/metrics` show the airtime used.
//! The same holds after a SIGKILL.

use testkit as support;

use std::time::{Duration, Instant};

use chirpstack_api::gw;
use chirpstack_api::prost::Message as _;
use support::daemon::*;
use support::observe::{metric, metrics};

const WAIT: Duration = Duration::from_secs(20);
const DOWN: &str = "eu868/gateway/0102030405060708/command/down";
const ACK: &str = "eu868/gateway/0102030405060708/event/ack";
const CONN: &str = "eu868/gateway/0102030405060708/state/conn";
/// Largest PHY payload at EU868 DR0 (M = 59, + 5): long frames, so few are needed.
const PHY_LEN: usize = 64;
/// More than enough frames to use up band M's budget (bounds the loop).
const MAX_FRAMES: u32 = 40;

/// LoRa time on air from the Semtech formula (SX1276 datasheet §4.1.1.7), in µs: SF12,
/// 125 kHz, CR 4/5, explicit header, no CRC (a downlink), preamble 8, low data-rate
/// optimisation on (symbol time ≥ 16 ms).
fn sf12_airtime_us(payload_len: u64) -> u64 {
    let (sf, bw_hz, cr, preamble) = (12u64, 125_000u64, 1u64, 8u64);
    let t_sym_us = (1u64 << sf) * 1_000_000 / bw_hz; // 32 768 µs, exact
    let de = u64::from(t_sym_us >= 16_000);
    let (crc, header) = (0u64, 0u64); // no CRC; H = 0: explicit header
    let num = (8 * payload_len + 28 + 16 * crc)
        .saturating_sub(4 * sf)
        .saturating_sub(20 * header);
    let den = 4 * (sf - 2 * de);
    let payload_symbols = 8 + num.div_ceil(den) * (cr + 4);
    // (preamble + 4.25) symbols, in quarter symbols to stay exact.
    ((4 * preamble + 17) * t_sym_us) / 4 + payload_symbols * t_sym_us
}

/// A Class C downlink of `PHY_LEN` bytes at `freq`, SF12, 14 dBm EIRP, no CRC.
fn class_c(id: u32, freq: u32) -> Vec<u8> {
    let modulation = gw::Modulation {
        parameters: Some(gw::modulation::Parameters::Lora(gw::LoraModulationInfo {
            bandwidth: 125_000,
            spreading_factor: 12,
            code_rate: gw::CodeRate::Cr45.into(),
            polarization_inversion: true,
            no_crc: true,
            ..Default::default()
        })),
    };
    gw::DownlinkFrame {
        downlink_id: id,
        gateway_id: GATEWAY_ID.into(),
        items: vec![gw::DownlinkFrameItem {
            phy_payload: (0..PHY_LEN as u8).collect(),
            tx_info: Some(gw::DownlinkTxInfo {
                frequency: freq,
                power: 14,
                modulation: Some(modulation),
                timing: Some(gw::Timing {
                    parameters: Some(gw::timing::Parameters::Immediately(
                        gw::ImmediatelyTimingInfo {},
                    )),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
    .encode_to_vec()
}

/// Answer a PULL_RESP with a successful v2 TX_ACK.
fn tx_ack_ok(pf: &Forwarder, token: [u8; 2]) {
    let mut d = vec![2, token[0], token[1], 5];
    d.extend_from_slice(&GATEWAY);
    pf.send_raw(&d);
}

/// Wait (bounded) for the ack of downlink `id`; its item statuses.
fn wait_ack(sub: &Subscriber, daemon: &Daemon, id: u32) -> Vec<gw::TxAckStatus> {
    let deadline = Instant::now() + WAIT;
    loop {
        let ack = sub
            .all()
            .iter()
            .filter(|r| r.topic == ACK)
            .filter_map(|r| gw::DownlinkTxAck::decode(r.payload.as_slice()).ok())
            .find(|a| a.downlink_id == id);
        if let Some(a) = ack {
            return a.items.iter().map(|i| i.status()).collect();
        }
        assert!(
            Instant::now() < deadline,
            "no ack for downlink {id}:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Publish downlink `id` at `freq`; if the daemon transmits it, check the txpk and answer
/// TX_ACK OK. Returns the ack's single status.
fn send(
    ns: &Publisher,
    pf: &Forwarder,
    sub: &Subscriber,
    daemon: &Daemon,
    id: u32,
    freq: u32,
) -> gw::TxAckStatus {
    ns.publish(DOWN, class_c(id, freq));
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = acked(sub, id) {
            return status;
        }
        if let Some((token, txpk)) = pf.pull_resp(Duration::from_millis(100)) {
            assert_eq!(txpk["imme"], true, "{txpk}");
            assert_eq!(txpk["datr"], "SF12BW125", "{txpk}");
            assert_eq!(txpk["size"], PHY_LEN, "{txpk}");
            assert_eq!(txpk["ncrc"], true, "{txpk}");
            assert_eq!(txpk["freq"].as_f64(), Some(f64::from(freq) / 1e6), "{txpk}");
            tx_ack_ok(pf, token);
            let statuses = wait_ack(sub, daemon, id);
            assert_eq!(statuses.len(), 1);
            return statuses[0];
        }
        assert!(
            Instant::now() < deadline,
            "downlink {id}: neither sent nor acknowledged:\n{}",
            daemon.log()
        );
    }
}

fn acked(sub: &Subscriber, id: u32) -> Option<gw::TxAckStatus> {
    sub.all()
        .iter()
        .filter(|r| r.topic == ACK)
        .filter_map(|r| gw::DownlinkTxAck::decode(r.payload.as_slice()).ok())
        .find(|a| a.downlink_id == id)
        .map(|a| {
            a.items
                .first()
                .map_or(gw::TxAckStatus::Ignored, |i| i.status())
        })
}

/// How many ONLINE states the gateway has published so far.
fn onlines(sub: &Subscriber) -> usize {
    sub.all()
        .iter()
        .filter(|r| r.topic == CONN)
        .filter_map(|r| gw::ConnState::decode(r.payload.as_slice()).ok())
        .filter(|c| c.state() == gw::conn_state::State::Online)
        .count()
}

fn wait_online(sub: &Subscriber, daemon: &Daemon, n: usize) {
    let deadline = Instant::now() + WAIT;
    while onlines(sub) < n {
        assert!(
            Instant::now() < deadline,
            "no ONLINE #{n}:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait (bounded) until `series` reads `want` (± 1 µs) on `/metrics`.
fn wait_metric(daemon: &Daemon, series: &str, want: f64) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = metrics(daemon);
        if metric(&text, series).is_some_and(|v| (v - want).abs() < 1e-6) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is not {want}:\n{text}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn duty_cycle_budget_survives_a_restart() {
    const BAND_M_HZ: u32 = 868_100_000;
    const BAND_M_OTHER_HZ: u32 = 868_300_000;
    const BAND_P_HZ: u32 = 869_525_000;
    let airtime_us = sf12_airtime_us(PHY_LEN as u64);
    assert_eq!(airtime_us, 2_793_472, "85.25 symbols of 32.768 ms");
    let budget_us = 36_000_000u64; // 1 % of an hour
    let fits = budget_us / airtime_us;
    assert_eq!(fits, 12);

    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/0102030405060708/#");
    let mut daemon = Daemon::start(broker.port(), "");
    let pf = Forwarder::new(daemon.udp_port);
    assert!(pf.pull_data(WAIT), "PULL_ACK");
    wait_online(&sub, &daemon, 1);
    let ns = Publisher::connect(broker.port());

    // Band M until the guard says no.
    let mut accepted = 0u64;
    let mut refused_at = None;
    for i in 0..MAX_FRAMES {
        match send(&ns, &pf, &sub, &daemon, 1000 + i, BAND_M_HZ) {
            gw::TxAckStatus::Ok => accepted += 1,
            gw::TxAckStatus::DutyCycleOverflow => {
                refused_at = Some(i);
                break;
            }
            other => panic!("downlink {i}: {other:?}\n{}", daemon.log()),
        }
    }
    assert!(refused_at.is_some(), "never refused after {MAX_FRAMES}");
    assert_eq!(
        accepted, fits,
        "36 s budget / {airtime_us} µs per frame = {fits} frames"
    );
    assert!(
        pf.pull_resp(Duration::from_millis(300)).is_none(),
        "nothing transmitted after the refusal"
    );
    let used_s = (fits * airtime_us) as f64 / 1e6;
    let text = wait_metric(
        &daemon,
        "gatewayd_dutycycle_used_seconds{band=\"M\"}",
        used_s,
    );
    assert_eq!(
        metric(&text, "gatewayd_dutycycle_budget_seconds{band=\"M\"}"),
        Some(36.0)
    );
    assert_eq!(
        metric(
            &text,
            "gatewayd_guard_refusals_total{reason=\"duty_cycle\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "gatewayd_downlink_acks_total{status=\"DUTY_CYCLE_OVERFLOW\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "gatewayd_downlink_acks_total{status=\"OK\"}"),
        Some(fits as f64)
    );
    assert_eq!(
        metric(&text, "gatewayd_downlinks_sent_total"),
        Some(fits as f64)
    );

    // Stop gracefully and start again on the same state directory.
    let exit = daemon.terminate(Duration::from_secs(15)).expect("stopped");
    assert!(exit.success(), "{exit}:\n{}", daemon.log());
    daemon.spawn();
    assert!(pf.pull_data(WAIT), "PULL_ACK after the restart");
    wait_online(&sub, &daemon, 2);

    // The budget used before the restart still counts, on any channel of band M.
    for (id, freq) in [(2000, BAND_M_HZ), (2001, BAND_M_OTHER_HZ)] {
        assert_eq!(
            send(&ns, &pf, &sub, &daemon, id, freq),
            gw::TxAckStatus::DutyCycleOverflow,
            "{freq} Hz after the restart:\n{}",
            daemon.log()
        );
    }
    // Band P has its own budget.
    assert_eq!(
        send(&ns, &pf, &sub, &daemon, 2002, BAND_P_HZ),
        gw::TxAckStatus::Ok
    );

    let text = wait_metric(
        &daemon,
        "gatewayd_dutycycle_used_seconds{band=\"P\"}",
        airtime_us as f64 / 1e6,
    );
    assert!(
        metric(&text, "gatewayd_dutycycle_used_seconds{band=\"M\"}")
            .is_some_and(|v| (v - used_s).abs() < 1e-6),
        "{text}"
    );
    assert_eq!(
        metric(&text, "gatewayd_dutycycle_budget_seconds{band=\"P\"}"),
        Some(360.0)
    );
    assert_eq!(
        metric(
            &text,
            "gatewayd_guard_refusals_total{reason=\"duty_cycle\"}"
        ),
        Some(2.0),
        "counters restart at zero; two refusals since"
    );

    let status = daemon.status_json();
    let band_m = status["duty_cycle"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["band"] == "M"))
        .cloned()
        .unwrap_or_else(|| panic!("no band M in {status}"));
    assert!(
        (band_m["used_seconds"].as_f64().unwrap() - used_s).abs() < 1e-6,
        "{band_m}"
    );
    assert_eq!(band_m["budget_seconds"], 36.0);
    assert_eq!(status["downlinks"]["acks"]["DUTY_CYCLE_OVERFLOW"], 2);
    assert_eq!(status["downlinks"]["sent"], 1);

    // A power cut (SIGKILL) loses nothing either: each charge is committed before the
    // frame is handed to the radio.
    daemon.kill9();
    daemon.spawn();
    assert!(pf.pull_data(WAIT), "PULL_ACK after the crash");
    wait_online(&sub, &daemon, 3);
    assert_eq!(
        send(&ns, &pf, &sub, &daemon, 3000, BAND_M_HZ),
        gw::TxAckStatus::DutyCycleOverflow,
        "after SIGKILL:\n{}",
        daemon.log()
    );
    assert_eq!(
        send(&ns, &pf, &sub, &daemon, 3001, BAND_P_HZ),
        gw::TxAckStatus::Ok
    );
    wait_metric(
        &daemon,
        "gatewayd_dutycycle_used_seconds{band=\"P\"}",
        2.0 * airtime_us as f64 / 1e6,
    );
}

/// Something done to the ledger file between two runs.
type Damage = fn(&std::path::Path);

/// A damaged or missing duty-cycle ledger on a state directory in use: the daemon runs, but
/// every duty-cycled band counts as fully used for one window, so the guard refuses (band P,
/// 10 %, untouched before) and status says why and until when. A restart within the window
/// keeps refusing.
#[test]
fn a_corrupt_or_missing_ledger_refuses_transmissions_for_a_window() {
    const BAND_P_HZ: u32 = 869_525_000;
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/0102030405060708/#");
    let mut daemon = Daemon::start(broker.port(), "");
    let pf = Forwarder::new(daemon.udp_port);
    assert!(pf.pull_data(WAIT), "PULL_ACK");
    wait_online(&sub, &daemon, 1);
    let ns = Publisher::connect(broker.port());
    assert_eq!(
        send(&ns, &pf, &sub, &daemon, 1, BAND_P_HZ),
        gw::TxAckStatus::Ok,
        "a fresh state directory transmits"
    );
    let ledger = daemon.state_dir().join("dutycycle.sqlite");
    let cases: [(&str, Damage); 2] = [
        ("corrupt", |p| {
            std::fs::write(p, vec![0x42; 20_000]).unwrap()
        }),
        ("missing", |p| {
            for ext in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
            }
        }),
    ];
    let mut id = 10;
    for (n, (what, damage)) in cases.into_iter().enumerate() {
        assert_eq!(daemon.terminate(WAIT).and_then(|s| s.code()), Some(0));
        damage(&ledger);
        daemon.spawn();
        assert!(pf.pull_data(WAIT), "{what}: PULL_ACK");
        wait_online(&sub, &daemon, n + 2);
        id += 1;
        assert_eq!(
            send(&ns, &pf, &sub, &daemon, id, BAND_P_HZ),
            gw::TxAckStatus::DutyCycleOverflow,
            "{what}: refused\n{}",
            daemon.log()
        );
        let status = daemon.status_json();
        let problems = status["storage"]["problems"].to_string();
        assert_eq!(status["storage"]["ledger_reset"], true, "{what}: {status}");
        assert!(problems.contains("fully used until"), "{what}: {problems}");
        let p = status["duty_cycle"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["band"] == "P")
            .cloned()
            .unwrap();
        assert!(p["used_ratio"].as_f64().unwrap() >= 1.0, "{what}: {p}");
    }
    let moved = std::fs::read_dir(daemon.state_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("dutycycle.sqlite.corrupt-")
        })
        .count();
    assert_eq!(moved, 1, "the corrupt ledger was moved aside");
    // A plain restart within the window keeps refusing (the charge is in the new ledger).
    assert_eq!(daemon.terminate(WAIT).and_then(|s| s.code()), Some(0));
    daemon.spawn();
    assert!(pf.pull_data(WAIT));
    wait_online(&sub, &daemon, 4);
    assert_eq!(
        send(&ns, &pf, &sub, &daemon, 99, BAND_P_HZ),
        gw::TxAckStatus::DutyCycleOverflow
    );
    assert_eq!(daemon.status_json()["storage"]["ledger_reset"], false);
}
