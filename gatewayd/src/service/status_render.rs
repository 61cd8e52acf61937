//! How `gatewayd status` shows a [`StatusSnapshot`]: the JSON, the human-readable table and
//! the one-line summary for systemd's status line.

use std::collections::BTreeMap;

use super::status::{BackendCounter, GuardStatus, StatusSnapshot};

/// Pretty JSON for `gatewayd status --json`.
pub fn render_json(s: &StatusSnapshot) -> String {
    serde_json::to_string_pretty(s).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// A short human duration: `42s`, `5m 3s`, `2h 5m`, `3d 4h`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// The human view printed by `gatewayd status`.
pub fn render(s: &StatusSnapshot) -> String {
    const UNKNOWN: &str = "unknown";
    let ago = |v: Option<u64>| {
        v.map_or_else(
            || "never".to_owned(),
            |a| format!("{} ago", human_duration(a)),
        )
    };
    let num = |v: Option<u64>| v.map_or_else(|| UNKNOWN.to_owned(), |n| n.to_string());
    let mut out = Vec::new();
    let mut row = |k: &str, v: String| out.push(format!("{k:<16}{v}"));
    row(
        "gatewayd",
        format!(
            "{} (gateway {})",
            if s.version.is_empty() {
                UNKNOWN
            } else {
                &s.version
            },
            s.gateway_id.as_deref().unwrap_or(UNKNOWN)
        ),
    );
    row("uptime", human_duration(s.uptime_seconds));
    row(
        "radio",
        match &s.radio {
            None => UNKNOWN.to_owned(),
            Some(r) => {
                let state = if r.running { "running" } else { "DOWN" };
                match &r.detail {
                    Some(d) => format!("{} {state} ({d})", r.backend),
                    None => format!("{} {state}", r.backend),
                }
            }
        },
    );
    row(
        "mqtt",
        match &s.mqtt {
            None => UNKNOWN.to_owned(),
            Some(m) => {
                let mut v = format!(
                    "{} {}",
                    if m.connected {
                        "connected to"
                    } else {
                        "DISCONNECTED from"
                    },
                    m.broker
                );
                if let Some(t) = m.since_seconds {
                    v.push_str(&format!(" for {}", human_duration(t)));
                }
                if let (false, Some(e)) = (m.connected, &m.last_error) {
                    v.push_str(&format!(": {e}"));
                }
                if m.connections_total > 1 || m.resent_total > 0 {
                    v.push_str(&format!(
                        "; {} sessions since start, {} messages resent",
                        m.connections_total, m.resent_total
                    ));
                }
                let dropped: Vec<String> = m
                    .commands_dropped
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(r, n)| format!("{r} {n}"))
                    .collect();
                if !dropped.is_empty() {
                    v.push_str(&format!("; commands dropped: {}", dropped.join(", ")));
                }
                v
            }
        },
    );
    row(
        "outbox",
        match (s.outbox_messages, s.outbox_oldest_age_seconds) {
            (Some(n), Some(age)) if n > 0 => format!("{n} messages, oldest {}", ago(Some(age))),
            (Some(n), _) => format!("{n} messages"),
            (None, _) => UNKNOWN.to_owned(),
        },
    );
    row(
        "uplinks",
        format!(
            "{} in the last hour, {} since start",
            num(s.uplinks_last_hour),
            num(s.uplinks_received_total)
        ),
    );
    row("last beacon", ago(s.last_beacon_age_seconds));
    if s.beacons_sent_total.is_some() || !s.beacons_skipped.is_empty() {
        let skipped: Vec<String> = s
            .beacons_skipped
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        row(
            "beacons",
            format!(
                "{} sent, skipped: {}",
                num(s.beacons_sent_total),
                if skipped.is_empty() {
                    "none".to_owned()
                } else {
                    skipped.join(", ")
                }
            ),
        );
    }
    row("last witness", ago(s.last_witness_age_seconds));
    if let Some(source) = &s.time_source {
        let mut v = source.clone();
        if source == "unsynchronized" {
            v.push_str(" (no GPS fix, NTP not synchronized: beacons skipped, witnesses not made, receipts held)");
        }
        row("report time", v);
    }
    if let Some(n) = s.receipts_total {
        row(
            "receipts",
            format!(
                "{n} ({} uplinks), last {}{}",
                num(s.receipt_uplinks_total),
                ago(s.last_receipt_age_seconds),
                match (
                    s.receipt_gaps_total.unwrap_or(0),
                    s.receipt_failures_total.unwrap_or(0)
                ) {
                    (0, 0) => String::new(),
                    (g, f) => format!("; {g} ids given up, {f} failed"),
                }
            ),
        );
    }
    let dropped: Vec<String> = s
        .outbox_expired
        .iter()
        .filter(|c| c.count > 0)
        .map(|c| format!("{} {}", c.count, c.class))
        .collect();
    if !dropped.is_empty() {
        row("expired unsent", dropped.join(", "));
    }
    row(
        "duty cycle",
        if s.duty_cycle.is_empty() {
            UNKNOWN.to_owned()
        } else {
            s.duty_cycle
                .iter()
                .map(|d| {
                    format!(
                        "{} {:.1}% ({:.1} of {} s)",
                        d.band,
                        d.used_ratio * 100.0,
                        d.used_seconds,
                        d.budget_seconds
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    row(
        "downlinks",
        match &s.downlinks {
            None => UNKNOWN.to_owned(),
            Some(d) => {
                let mut v = format!(
                    "{} received, {} sent, {} failed, {} rejected",
                    d.received, d.sent, d.failed, d.rejected
                );
                let acks = nonzero(&d.acks);
                if !acks.is_empty() {
                    v.push_str(&format!("; acks {acks}"));
                }
                v
            }
        },
    );
    row(
        "tx guard",
        match &s.guard {
            None => UNKNOWN.to_owned(),
            Some(g) => {
                let mut v = format!("{} approved, {} refused", g.approved, g.refused());
                let why = nonzero(&g.refusals);
                if !why.is_empty() {
                    v.push_str(&format!(" ({why})"));
                }
                v.push_str(&format!(
                    ", {} power clamped, {} released",
                    g.power_clamped, g.released
                ));
                v
            }
        },
    );
    row(
        "gps",
        match &s.gps {
            None => UNKNOWN.to_owned(),
            Some(g) => {
                let fix = match g.state.as_str() {
                    "" if g.fix => "fix",
                    "" => "no fix",
                    "no_device" => "no device (reopening)",
                    "no_fix" => "no fix",
                    "stale" => "stale (no valid sentence lately)",
                    other => other,
                };
                match g.satellites {
                    Some(n) => {
                        format!("{fix}, {n} satellites, position from {}", g.position_source)
                    }
                    None => format!("{fix}, position from {}", g.position_source),
                }
            }
        },
    );
    for (family, reasons) in backend_reasons(&s.radio_counters) {
        row(&family.replace('_', " "), reasons);
    }
    for (k, v) in s.storage.iter().flat_map(|st| st.rows()) {
        row(k, v);
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// `(family, "reason n, …")` for each backend family split by reason with a non-zero count.
fn backend_reasons(counters: &[BackendCounter]) -> Vec<(String, String)> {
    let mut by_family: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for c in counters {
        if let (Some(reason), true) = (&c.reason, c.value > 0) {
            by_family
                .entry(&c.family)
                .or_default()
                .insert(reason.clone(), c.value);
        }
    }
    by_family
        .into_iter()
        .map(|(f, counts)| (f.to_string(), nonzero(&counts)))
        .collect()
}

/// The one-line summary (systemd's STATUS=): radio, MQTT, uplinks, outbox, transmissions.
pub fn render_line(s: &StatusSnapshot) -> String {
    let mqtt = match &s.mqtt {
        Some(m) if m.connected => "mqtt connected".to_string(),
        Some(m) => format!(
            "mqtt down ({})",
            m.last_error.as_deref().unwrap_or("connecting")
        ),
        None => "mqtt waiting for the gateway id".to_string(),
    };
    let radio = match &s.radio {
        Some(r) if r.running => "radio up",
        _ => "radio down",
    };
    let mut line = format!(
        "{radio}, {mqtt}, {} uplinks in the last hour, outbox {}, tx {} ok, {} refused",
        s.uplinks_last_hour.unwrap_or(0),
        s.outbox_messages.map_or("?".to_string(), |n| n.to_string()),
        s.downlinks.as_ref().map_or(0, |d| d.sent),
        s.guard.as_ref().map_or(0, GuardStatus::refused),
    );
    if let Some(st) = &s.storage {
        if st.outbox_state == "full" {
            line.push_str(", DISK FULL (uplinks refused)");
        }
        if !st.problems.is_empty() {
            line.push_str(", state files damaged at start (see gatewayd status)");
        }
    }
    line
}

/// `KEY n, KEY m` for the non-zero entries.
fn nonzero(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
