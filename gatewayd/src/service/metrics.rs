//! Prometheus `/metrics`: the [`StatusSnapshot`] figures in the text exposition format,
//! served by a tiny HTTP/1.1 server (GET/HEAD, `Connection: close`) on loopback.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::status::{BackendCounter, DownlinkStatus, StatusSnapshot};

/// The default listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";
const MAX_HEAD: usize = 8 * 1024;
const MAX_CONNECTIONS: usize = 16;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The MQTT link's counters.
fn mqtt_counters(
    metric: &mut impl FnMut(&str, &str, &str, &[(String, f64)]),
    m: Option<&super::status::MqttStatus>,
) {
    let Some(m) = m else {
        return;
    };
    let one = |v: u64| [(String::new(), v as f64)];
    metric(
        "gatewayd_mqtt_connections_total",
        "counter",
        "MQTT sessions established since the daemon started.",
        &one(m.connections_total),
    );
    metric(
        "gatewayd_mqtt_resent_total",
        "counter",
        "Messages published again after a lost connection because their PUBACK never came.",
        &one(m.resent_total),
    );
    metric(
        "gatewayd_mqtt_commands_total",
        "counter",
        "Commands from the network passed on since the daemon started.",
        &one(m.commands_total),
    );
    metric(
        "gatewayd_mqtt_commands_dropped_total",
        "counter",
        "Commands from the network discarded, by reason.",
        &m.commands_dropped
            .iter()
            .map(|(r, n)| (format!("{{reason=\"{}\"}}", escape(r)), *n as f64))
            .collect::<Vec<_>>(),
    );
}

/// The exposition text for one snapshot. Unknown (`None`) figures are left out.
pub fn render_metrics(s: &StatusSnapshot) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        if samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let one = |v: Option<f64>| v.map(|v| vec![(String::new(), v)]).unwrap_or_default();
    let u = |v: Option<u64>| one(v.map(|v| v as f64));
    let b = |v: Option<bool>| one(v.map(|v| if v { 1.0 } else { 0.0 }));

    metric(
        "gatewayd_build_info",
        "gauge",
        "Version of the running daemon.",
        &[(format!("{{version=\"{}\"}}", escape(&s.version)), 1.0)],
    );
    metric(
        "gatewayd_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
        &u(Some(s.uptime_seconds)),
    );
    metric(
        "gatewayd_radio_up",
        "gauge",
        "Whether the radio backend is running (1) or not (0).",
        &s.radio
            .as_ref()
            .map(|r| {
                vec![(
                    format!("{{backend=\"{}\"}}", escape(&r.backend)),
                    f64::from(u8::from(r.running)),
                )]
            })
            .unwrap_or_default(),
    );
    metric(
        "gatewayd_mqtt_connected",
        "gauge",
        "Whether the MQTT session to the broker is up (1) or not (0).",
        &b(s.mqtt.as_ref().map(|m| m.connected)),
    );
    mqtt_counters(&mut metric, s.mqtt.as_ref());
    metric(
        "gatewayd_outbox_messages",
        "gauge",
        "Messages stored in the outbox, waiting for the broker.",
        &u(s.outbox_messages),
    );
    metric(
        "gatewayd_outbox_oldest_message_age_seconds",
        "gauge",
        "Age of the oldest message in the outbox.",
        &u(s.outbox_oldest_age_seconds),
    );
    metric(
        "gatewayd_uplinks_received_total",
        "counter",
        "Uplinks accepted since the daemon started.",
        &u(s.uplinks_received_total),
    );
    metric(
        "gatewayd_uplinks_last_hour",
        "gauge",
        "Uplinks accepted in the last hour.",
        &u(s.uplinks_last_hour),
    );
    metric(
        "gatewayd_beacons_sent_total",
        "counter",
        "Proof-of-coverage beacons transmitted since the daemon started.",
        &u(s.beacons_sent_total),
    );
    metric(
        "gatewayd_last_beacon_age_seconds",
        "gauge",
        "Seconds since the last beacon was transmitted.",
        &u(s.last_beacon_age_seconds),
    );
    metric(
        "gatewayd_beacons_skipped_total",
        "counter",
        "Beacon windows skipped since the daemon started, by reason.",
        &s.beacons_skipped
            .iter()
            .map(|(r, n)| (format!("{{reason=\"{}\"}}", escape(r)), *n as f64))
            .collect::<Vec<_>>(),
    );
    metric(
        "gatewayd_witnesses_total",
        "counter",
        "Witness reports created since the daemon started.",
        &u(s.witnesses_total),
    );
    metric(
        "gatewayd_last_witness_age_seconds",
        "gauge",
        "Seconds since the last witness report was created.",
        &u(s.last_witness_age_seconds),
    );
    metric(
        "gatewayd_receipts_total",
        "counter",
        "Data-transfer receipts made since the daemon started.",
        &u(s.receipts_total),
    );
    metric(
        "gatewayd_receipt_uplinks_total",
        "counter",
        "Forwarded uplinks covered by data-transfer receipts since the daemon started.",
        &u(s.receipt_uplinks_total),
    );
    metric(
        "gatewayd_last_receipt_age_seconds",
        "gauge",
        "Seconds since the last data-transfer receipt was made.",
        &u(s.last_receipt_age_seconds),
    );
    metric(
        "gatewayd_receipt_gaps_total",
        "counter",
        "Uplink ids the receipt chain gave up on because their store outcome never came back.",
        &u(s.receipt_gaps_total),
    );
    metric(
        "gatewayd_receipt_failures_total",
        "counter",
        "Data-transfer receipts that could not be signed or stored.",
        &u(s.receipt_failures_total),
    );
    let per_class = |v: &[super::status::ClassCount]| {
        v.iter()
            .map(|c| {
                (
                    format!("{{class=\"{}\"}}", escape(&c.class)),
                    c.count as f64,
                )
            })
            .collect::<Vec<_>>()
    };
    metric(
        "gatewayd_outbox_expired_total",
        "counter",
        "Messages dropped unsent because they expired, per class.",
        &per_class(&s.outbox_expired),
    );
    metric(
        "gatewayd_outbox_evicted_total",
        "counter",
        "Messages evicted (or refused) to respect the outbox bound, per class.",
        &per_class(&s.outbox_evicted),
    );
    metric(
        "gatewayd_duty_cycle_used_ratio",
        "gauge",
        "Fraction of the sub-band's duty-cycle allowance used in the current window.",
        &s.duty_cycle
            .iter()
            .map(|d| (format!("{{band=\"{}\"}}", escape(&d.band)), d.used_ratio))
            .collect::<Vec<_>>(),
    );
    let per_band = |f: fn(&super::status::DutyCycleUse) -> f64| {
        s.duty_cycle
            .iter()
            .map(|d| (format!("{{band=\"{}\"}}", escape(&d.band)), f(d)))
            .collect::<Vec<_>>()
    };
    metric(
        "gatewayd_dutycycle_used_seconds",
        "gauge",
        "Airtime used in the sub-band over the sliding hour.",
        &per_band(|d| d.used_seconds),
    );
    metric(
        "gatewayd_dutycycle_budget_seconds",
        "gauge",
        "The sub-band's airtime budget per sliding hour.",
        &per_band(|d| d.budget_seconds),
    );
    let d = s.downlinks.as_ref();
    let downlink_counters: [(&str, &str, DownlinkFigure); 5] = [
        (
            "gatewayd_downlinks_received_total",
            "Downlink commands (command/down) received.",
            |d| d.received,
        ),
        (
            "gatewayd_downlinks_rejected_total",
            "Downlink commands rejected as malformed or for another gateway.",
            |d| d.rejected,
        ),
        (
            "gatewayd_downlinks_scheduled_total",
            "Downlink items the guard approved and handed to the radio backend.",
            |d| d.scheduled,
        ),
        (
            "gatewayd_downlinks_sent_total",
            "Downlinks one of whose items was sent.",
            |d| d.sent,
        ),
        (
            "gatewayd_downlinks_failed_total",
            "Downlinks none of whose items could be sent.",
            |d| d.failed,
        ),
    ];
    for (name, help, f) in downlink_counters {
        metric(name, "counter", help, &u(d.map(f)));
    }
    metric(
        "gatewayd_downlink_acks_total",
        "counter",
        "Items of downlink acks by status (OK, TOO_LATE, DUTY_CYCLE_OVERFLOW, ...).",
        &labelled("status", d.map(|d| &d.acks)),
    );
    let g = s.guard.as_ref();
    metric(
        "gatewayd_guard_approved_total",
        "counter",
        "Transmissions the regulatory guard approved.",
        &u(g.map(|g| g.approved)),
    );
    metric(
        "gatewayd_guard_released_total",
        "counter",
        "Approved transmissions the backend did not send (airtime refunded).",
        &u(g.map(|g| g.released)),
    );
    metric(
        "gatewayd_guard_power_clamped_total",
        "counter",
        "Approved transmissions whose power the guard lowered to the limit.",
        &u(g.map(|g| g.power_clamped)),
    );
    metric(
        "gatewayd_guard_refusals_total",
        "counter",
        "Transmissions the regulatory guard refused, by reason.",
        &labelled("reason", g.map(|g| &g.refusals)),
    );
    for (name, kind, help, v) in s.storage.iter().flat_map(|st| st.metrics()) {
        metric(name, kind, help, &[(String::new(), v)]);
    }
    metric(
        "gatewayd_time_source",
        "gauge",
        "Where the time of signed reports comes from (1 for the current source).",
        &s.time_source
            .as_ref()
            .map(|now| {
                ["gps", "ntp-synced", "trusted", "unsynchronized"]
                    .iter()
                    .map(|src| {
                        (
                            format!("{{source=\"{src}\"}}"),
                            f64::from(u8::from(now == src)),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
    );
    metric(
        "gatewayd_witnesses_skipped_total",
        "counter",
        "Beacons heard but not witnessed, by reason.",
        &labelled(
            "reason",
            Some(&s.witnesses_skipped).filter(|m| !m.is_empty()),
        ),
    );
    metric(
        "gatewayd_receipts_held_total",
        "counter",
        "Receipt period ends held because there was no trusted time.",
        &u(s.receipts_held_total),
    );
    for (family, help, samples) in backend_families(&s.radio_counters) {
        metric(
            &format!("gatewayd_{family}_total"),
            "counter",
            help,
            &samples,
        );
    }
    metric(
        "gatewayd_gps_fix",
        "gauge",
        "Whether the GPS receiver has a fix (1) or not (0).",
        &b(s.gps.as_ref().map(|g| g.fix)),
    );
    metric(
        "gatewayd_gps_satellites",
        "gauge",
        "Satellites used by the GPS receiver.",
        &u(s.gps.as_ref().and_then(|g| g.satellites).map(u64::from)),
    );
    out
}

/// One metric family of the radio backend: family, help, samples (`{reason="…"}`, value).
type Family<'a> = (&'a str, &'a str, Vec<(String, f64)>);

/// The radio backend's counters grouped by family, in their order.
fn backend_families(counters: &[BackendCounter]) -> Vec<Family<'_>> {
    let mut out: Vec<Family<'_>> = Vec::new();
    for c in counters {
        let labels = c
            .reason
            .as_deref()
            .map(|r| format!("{{reason=\"{}\"}}", escape(r)))
            .unwrap_or_default();
        let sample = (labels, c.value as f64);
        match out.iter_mut().find(|(f, _, _)| *f == c.family) {
            Some((_, _, samples)) => samples.push(sample),
            None => out.push((&c.family, &c.help, vec![sample])),
        }
    }
    out
}

/// Reads one counter of a [`DownlinkStatus`].
type DownlinkFigure = fn(&DownlinkStatus) -> u64;

/// One sample per map entry, labelled `{key="entry"}`.
fn labelled(key: &str, counts: Option<&BTreeMap<String, u64>>) -> Vec<(String, f64)> {
    counts
        .into_iter()
        .flatten()
        .map(|(k, n)| (format!("{{{key}=\"{}\"}}", escape(k)), *n as f64))
        .collect()
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address could not be bound.
    #[error("metrics: cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// A bound `/metrics` endpoint, not yet serving.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
}

impl MetricsServer {
    /// Bind `addr` (use 127.0.0.1 unless a scraper elsewhere needs it; port 0 picks one).
    pub async fn bind(addr: SocketAddr) -> Result<MetricsServer, MetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| MetricsError::Bind(addr, e))?;
        Ok(MetricsServer { listener })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown`, rendering `snapshot()` for each scrape. At most 16
    /// connections at once; each has 5 s to send its request and take the answer.
    pub async fn serve<F>(self, snapshot: F, shutdown: CancellationToken)
    where
        F: Fn() -> StatusSnapshot + Send + Sync + 'static,
    {
        let snapshot = Arc::new(snapshot);
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = self.listener.accept() => match a {
                    Ok((s, _)) => s,
                    Err(e) => {
                        log::warn!(target: "metrics", "accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let snapshot = snapshot.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(IO_TIMEOUT, handle(stream, &*snapshot)).await;
                drop(permit);
            });
        }
    }
}

/// What the server answers to a request head.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` (body wanted) or `HEAD /metrics` (no body).
    Metrics {
        /// Whether to send the body.
        body: bool,
    },
    /// Another path.
    NotFound,
    /// Another method.
    MethodNotAllowed,
    /// Not an HTTP/1.x request line.
    BadRequest,
}

/// Route a request by its first line (pure).
pub fn route(request_line: &str) -> Route {
    let mut parts = request_line.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or(target);
    match (method, path) {
        ("GET", "/metrics") => Route::Metrics { body: true },
        ("HEAD", "/metrics") => Route::Metrics { body: false },
        ("GET" | "HEAD", _) => Route::NotFound,
        _ => Route::MethodNotAllowed,
    }
}

async fn handle<F: Fn() -> StatusSnapshot>(
    mut stream: TcpStream,
    snapshot: &F,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() > MAX_HEAD {
            return respond(&mut stream, "431 Request Header Fields Too Large", "", true).await;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head
        .split(|&b| b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim_end().to_owned())
        .unwrap_or_default();
    match route(&line) {
        Route::Metrics { body } => {
            let text = render_metrics(&snapshot());
            respond(&mut stream, "200 OK", &text, body).await
        }
        Route::NotFound => respond(&mut stream, "404 Not Found", "try /metrics\n", true).await,
        Route::MethodNotAllowed => {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "GET or HEAD only\n",
                true,
            )
            .await
        }
        Route::BadRequest => respond(&mut stream, "400 Bad Request", "bad request\n", true).await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    body: &str,
    send_body: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if send_body {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
