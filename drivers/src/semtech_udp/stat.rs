//! The PUSH_DATA `stat` object → [`RadioStats`].

use serde_json_borrow::{ObjectAsVec, Value};

use super::error::GwmpError;
use super::time::parse_stat_time;
use crate::radio::RadioStats;

fn bad(field: &'static str, reason: impl Into<String>) -> GwmpError {
    GwmpError::BadStat {
        field,
        reason: reason.into(),
    }
}

fn num(obj: &ObjectAsVec<'_>, field: &'static str) -> Result<Option<f64>, GwmpError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| bad(field, format!("expected a number, got {v}"))),
    }
}

fn in_range(
    obj: &ObjectAsVec<'_>,
    field: &'static str,
    lo: f64,
    hi: f64,
) -> Result<Option<f64>, GwmpError> {
    match num(obj, field)? {
        Some(x) if !(lo..=hi).contains(&x) => Err(bad(field, format!("{x} is out of range"))),
        other => Ok(other),
    }
}

fn count(obj: &ObjectAsVec<'_>, field: &'static str) -> Result<u32, GwmpError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(field, format!("expected a count, got {v}"))),
    }
}

/// Decode a `stat` JSON value.
pub fn decode_stat(value: &Value<'_>) -> Result<RadioStats, GwmpError> {
    let Some(obj) = value.as_object() else {
        return Err(bad("", format!("expected an object, got {value}")));
    };
    let time = match obj.get("time") {
        None | Some(Value::Null) => None,
        Some(Value::Str(s)) => Some(parse_stat_time(s).map_err(|e| bad("time", e.to_string()))?),
        Some(v) => return Err(bad("time", format!("expected a string, got {v}"))),
    };
    let lat = in_range(obj, "lati", -90.0, 90.0)?;
    let lon = in_range(obj, "long", -180.0, 180.0)?;
    let alt = in_range(obj, "alti", -1_000.0, 100_000.0)?;
    let location = match (lat, lon) {
        (Some(lat), Some(lon)) => Some((lat, lon, alt.unwrap_or(0.0))),
        _ => None,
    };
    in_range(obj, "ackr", 0.0, 100.0)?;
    let temperature = in_range(obj, "temp", -100.0, 200.0)?.map(|t| t as f32);
    Ok(RadioStats {
        rx_received: count(obj, "rxnb")?,
        rx_ok: count(obj, "rxok")?,
        rx_forwarded: count(obj, "rxfw")?,
        tx_requested: count(obj, "dwnb")?,
        tx_emitted: count(obj, "txnb")?,
        temperature,
        location,
        time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn doc_example() {
        let v: Value = serde_json::from_str(
            r#"{"time":"2014-01-12 08:59:28 GMT","lati":46.24000,"long":3.25230,"alti":145,
                "rxnb":2,"rxok":2,"rxfw":2,"ackr":100.0,"dwnb":2,"txnb":2,"temp":41.5}"#,
        )
        .unwrap();
        let s = decode_stat(&v).unwrap();
        assert_eq!(s.rx_received, 2);
        assert_eq!(s.rx_ok, 2);
        assert_eq!(s.rx_forwarded, 2);
        assert_eq!(s.tx_requested, 2);
        assert_eq!(s.tx_emitted, 2);
        assert_eq!(s.temperature, Some(41.5));
        assert_eq!(s.location, Some((46.24, 3.2523, 145.0)));
        assert_eq!(
            s.time,
            Some(UNIX_EPOCH + Duration::from_secs(1_389_517_168))
        );
    }

    #[test]
    fn no_gps_and_errors() {
        let v: Value = serde_json::from_str(r#"{"rxnb":0,"rxok":0}"#).unwrap();
        let s = decode_stat(&v).unwrap();
        assert_eq!(s.location, None);
        assert_eq!(s.time, None);
        for (v, field) in [
            (r#"{"lati":91.0,"long":0.0}"#, "lati"),
            (r#"{"rxnb":-1}"#, "rxnb"),
            (r#"{"rxok":"3"}"#, "rxok"),
            (r#"{"time":"yesterday"}"#, "time"),
            (r#"{"temp":1000}"#, "temp"),
        ] {
            let parsed: Value = serde_json::from_str(v).unwrap();
            match decode_stat(&parsed) {
                Err(GwmpError::BadStat { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{v}: {other:?}"),
            }
        }
    }
}
