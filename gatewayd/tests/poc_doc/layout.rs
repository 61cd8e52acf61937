//! The field-by-field tables of the test vectors (docs/proof-of-coverage.md §10): each
//! report's bytes cut into the fields of §6, with the value of each for people.

use gatewayd::poc::identity::hex;
use gatewayd::poc::receipt::TransferReceipt;
use gatewayd::poc::report::{BeaconReport, WitnessReport};
use gatewayd::poc::wire::{PositionSource, TimeSource, WirePosition};
use gatewayd::poc::SignedReport;

/// A field of an encoding: name, size in bytes, value for people.
type Field = (&'static str, usize, String);

/// A table of `bytes` cut into `fields`, which must cover it exactly; a value that starts
/// with a number must be what its bytes say (big-endian, signed when negative).
pub fn layout(bytes: &[u8], fields: &[Field]) -> String {
    let mut out = String::from("| offset | size | field | value | hex |\n|---|---|---|---|---|\n");
    let mut at = 0;
    for (name, size, value) in fields {
        let part = &bytes[at..at + size];
        let number = value.split_whitespace().next().map(str::parse::<i64>);
        if let (Some(Ok(n)), 1 | 2 | 4 | 8) = (number, size) {
            let raw = part.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
            let bits = 64 - 8 * *size as u32;
            let decoded = if n < 0 {
                ((raw << bits) as i64) >> bits
            } else {
                raw as i64
            };
            assert_eq!(decoded, n, "{name}: {value} vs {}", hex(part));
        }
        out += &format!("| {at} | {size} | {name} | {value} | `{}` |\n", hex(part));
        at += size;
    }
    assert_eq!(at, bytes.len(), "the fields cover the encoding exactly");
    out
}

fn envelope(r: &SignedReport, kind: &str) -> Vec<Field> {
    let body_len = r.bytes().len() - 54 - 64;
    let rp = &r.report;
    vec![
        ("magic", 2, "\"GP\"".into()),
        ("version", 1, "1".into()),
        ("kind", 1, kind.into()),
        ("signer public key", 32, "".into()),
        ("created_ms", 8, rp.created_ms.to_string()),
        ("deadline_ms", 8, rp.deadline_ms.to_string()),
        ("body_len", 2, body_len.to_string()),
    ]
}

fn signature_field() -> Field {
    ("signature", 64, "Ed25519".into())
}

fn location_value(p: &Option<WirePosition>) -> String {
    match p {
        None => "none".into(),
        Some(p) => format!(
            "{} {} {} {} (source, 1e-7 °, 1e-7 °, dm)",
            match p.source {
                PositionSource::Gps => 1,
                PositionSource::Config => 2,
            },
            p.lat_e7,
            p.lon_e7,
            p.alt_dm
        ),
    }
}

fn time_source(t: TimeSource) -> String {
    match t {
        TimeSource::Local => "0 (local clock)".into(),
        TimeSource::Gps => "1 (GPS)".into(),
    }
}

pub fn beacon_fields(r: &SignedReport, b: &BeaconReport) -> Vec<Field> {
    let mut f = envelope(r, "1 (beacon)");
    f.extend([
        ("window_len_s", 4, b.window.len_s.to_string()),
        ("window_id", 8, b.window.id.to_string()),
        ("network entropy", 32, "".into()),
        ("local entropy", 32, "".into()),
        ("region", 1, "1 (EU868)".into()),
        ("sub-band", 1, "0 (none)".into()),
        ("tx_time_ms", 8, b.tx_time_ms.to_string()),
        ("time source", 1, time_source(b.time_source)),
        ("frequency Hz", 4, b.freq_hz.to_string()),
        ("data rate", 1, format!("DR{}", b.dr)),
        ("conducted power dBm", 1, b.power_dbm.to_string()),
        ("antenna gain dBi×10", 2, b.antenna_gain_ddbi.to_string()),
        ("cable loss dB×10", 2, b.cable_loss_ddb.to_string()),
        ("location", 13, location_value(&b.location)),
    ]);
    f.push(signature_field());
    f
}

pub fn witness_fields(r: &SignedReport, w: &WitnessReport) -> Vec<Field> {
    let mut f = envelope(r, "2 (witness)");
    f.extend([
        ("frame length", 1, w.frame.len().to_string()),
        ("frame (PHYPayload)", w.frame.len(), "the beacon".into()),
        ("region", 1, "1 (EU868)".into()),
        ("frequency Hz", 4, w.freq_hz.to_string()),
        ("spreading factor", 1, w.sf.to_string()),
        ("bandwidth Hz", 4, w.bw_hz.to_string()),
        ("RSSI dBm×10", 2, w.rssi_ddbm.to_string()),
        ("SNR dB×10", 2, w.snr_ddb.to_string()),
        ("rx_time_ms", 8, w.rx_time_ms.to_string()),
        ("time source", 1, time_source(w.time_source)),
        ("antenna gain dBi×10", 2, w.antenna_gain_ddbi.to_string()),
        ("location", 13, location_value(&w.location)),
    ]);
    f.push(signature_field());
    f
}

pub fn receipt_fields(r: &SignedReport, t: &TransferReceipt) -> Vec<Field> {
    let mut f = envelope(r, "3 (receipt)");
    f.extend([
        ("period_start_ms", 8, t.period_start_ms.to_string()),
        ("period_end_ms", 8, t.period_end_ms.to_string()),
        ("uplink count", 4, t.count.to_string()),
        ("bytes forwarded", 8, t.bytes.to_string()),
        ("first uplink id", 4, t.first_uplink_id.to_string()),
        ("last uplink id", 4, t.last_uplink_id.to_string()),
        ("prev_head", 32, "".into()),
        ("head", 32, "".into()),
    ]);
    f.push(signature_field());
    f
}
