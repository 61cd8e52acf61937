//! Shared pieces of the developer tools: GWMP datagram building, the MQTT-side collector that
//! decodes `gw.UplinkFrame`s and matches them to what was sent, and result summaries.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine as _;
use chirpstack_api::gw;
use chirpstack_api::prost::Message as _;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

pub use testkit::broker;

/// Parse 16 hex digits.
pub fn parse_eui(s: &str) -> anyhow::Result<[u8; 8]> {
    if s.len() != 16 {
        bail!("an EUI is 16 hex digits, got {s:?}");
    }
    let mut out = [0u8; 8];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
            .with_context(|| format!("{s:?} is not hex"))?;
    }
    Ok(out)
}

/// The PHY payload carrying sequence number `seq`: an unconfirmed data uplink whose
/// FRMPayload is the sequence number (so every frame is unique and none is de-duplicated).
pub fn frame_for_seq(seq: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(21);
    p.push(0x40);
    p.extend_from_slice(&0x2601_1234u32.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&((seq & 0xffff) as u16).to_le_bytes());
    p.push(1);
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    p
}

/// The sequence number of a frame built by [`frame_for_seq`].
pub fn frame_seq(phy: &[u8]) -> Option<u64> {
    if phy.len() != 21 || phy[0] != 0x40 {
        return None;
    }
    Some(u64::from_le_bytes(phy[9..17].try_into().ok()?))
}

/// Build a GWMP v2 PUSH_DATA datagram with one rxpk per sequence number into `buf`.
pub fn gwmp_push_data(buf: &mut Vec<u8>, token: u16, gateway: [u8; 8], seqs: &[u64]) {
    buf.clear();
    buf.push(2);
    buf.extend_from_slice(&token.to_be_bytes());
    buf.push(0);
    buf.extend_from_slice(&gateway);
    buf.extend_from_slice(b"{\"rxpk\":[");
    let b64 = base64::engine::general_purpose::STANDARD;
    for (i, seq) in seqs.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        let data = b64.encode(frame_for_seq(*seq));
        let tmst = (*seq as u32).wrapping_mul(1000);
        buf.extend_from_slice(
            format!(
                "{{\"tmst\":{tmst},\"chan\":{},\"rfch\":0,\"freq\":868.{:01}00000,\"stat\":1,\"modu\":\"LORA\",\
                 \"datr\":\"SF7BW125\",\"codr\":\"4/5\",\"rssi\":-{},\"lsnr\":7.5,\"size\":21,\"data\":\"{data}\"}}",
                seq % 8,
                1 + 2 * (seq % 3),
                40 + seq % 60
            )
            .as_bytes(),
        );
    }
    buf.extend_from_slice(b"]}");
}

/// What the collector saw.
#[derive(Debug, Default, Clone)]
pub struct Collected {
    /// Distinct sequence numbers received.
    pub unique: u64,
    /// Repeated receptions.
    pub duplicates: u64,
    /// (sequence number, ns since the origin) of first receptions.
    pub arrivals: Vec<(u64, u64)>,
    /// First reception.
    pub first_at: Option<Instant>,
    /// Last reception.
    pub last_at: Option<Instant>,
}

/// Subscribes to uplinks and records when each sequence number arrives.
pub struct Collector {
    state: Arc<Mutex<(Collected, Vec<bool>)>>,
    expected: u64,
    task: tokio::task::JoinHandle<()>,
    client: AsyncClient,
}

impl Collector {
    /// Connect to `host:port`, subscribe to `filter` and start recording.
    /// With `session`, the client id is that name, the session persistent and the
    /// subscription QoS 1; connecting is retried for 30 s (the broker may be starting).
    pub async fn start(
        addr: &str,
        filter: &str,
        expected: u64,
        start_seq: u64,
        origin: Instant,
        session: Option<&str>,
    ) -> anyhow::Result<Collector> {
        let (host, port) = addr.rsplit_once(':').context("--mqtt is host:port")?;
        let port: u16 = port.parse().context("--mqtt port")?;
        let id = session.map_or_else(|| format!("gw-load-{}", std::process::id()), str::to_string);
        let mut opts = MqttOptions::new(id, host, port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        opts.set_clean_session(session.is_none());
        opts.set_inflight(u16::MAX);
        let qos = if session.is_some() {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        eventloop.set_network_options(net);
        client.subscribe(filter, qos).await?;
        let state = Arc::new(Mutex::new((
            Collected::default(),
            vec![false; expected as usize],
        )));
        // Wait for the SUBACK so nothing published after we return is missed.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut early = Vec::new();
        loop {
            if Instant::now() > deadline {
                bail!("no SUBACK from {addr} within 30 s");
            }
            match tokio::time::timeout(Duration::from_secs(10), eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
                // A persistent session's queued messages may come before the SUBACK.
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => early.push(p),
                Ok(Ok(_)) => {}
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(_) => bail!("no answer from {addr}"),
            }
        }
        let st = state.clone();
        let task = tokio::spawn(async move {
            // The queued messages that came before the SUBACK count first.
            let mut early = early.into_iter();
            loop {
                let next = match early.next() {
                    Some(p) => Ok(Event::Incoming(Packet::Publish(p))),
                    None => eventloop.poll().await,
                };
                match next {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let Ok(up) = gw::UplinkFrame::decode(p.payload.as_ref()) else {
                            continue;
                        };
                        let Some(seq) = frame_seq(&up.phy_payload) else {
                            continue;
                        };
                        let now = Instant::now();
                        let Ok(mut guard) = st.lock() else { return };
                        let (c, seen) = &mut *guard;
                        let Some(idx) = seq.checked_sub(start_seq) else {
                            continue;
                        };
                        match seen.get_mut(idx as usize) {
                            Some(s) if *s => c.duplicates += 1,
                            Some(s) => {
                                *s = true;
                                c.unique += 1;
                                c.arrivals
                                    .push((seq, now.duration_since(origin).as_nanos() as u64));
                                c.first_at.get_or_insert(now);
                                c.last_at = Some(now);
                            }
                            None => {}
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        Ok(Collector {
            state,
            expected,
            task,
            client,
        })
    }

    /// Wait until every expected uplink arrived, or `timeout` passed without progress.
    pub async fn wait(self, timeout: Duration) -> Collected {
        let mut last_count = 0;
        let mut last_progress = Instant::now();
        loop {
            let n = self.state.lock().map(|g| g.0.unique).unwrap_or(0);
            if n >= self.expected || timeout.is_zero() {
                break;
            }
            if n != last_count {
                last_count = n;
                last_progress = Instant::now();
            } else if last_progress.elapsed() > timeout {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let late duplicates show up.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = self.client.disconnect().await;
        self.task.abort();
        self.state.lock().map(|g| g.0.clone()).unwrap_or_default()
    }
}

/// One line describing an uplink as a network operator would read it.
pub fn describe_uplink(up: &gw::UplinkFrame) -> String {
    let phy = &up.phy_payload;
    let header = if phy.len() >= 8 && matches!(phy[0] >> 5, 2 | 4) {
        format!(
            "DevAddr {:08x} FCnt {:<5}",
            u32::from_le_bytes([phy[1], phy[2], phy[3], phy[4]]),
            u16::from_le_bytes([phy[6], phy[7]])
        )
    } else {
        format!(
            "MHDR {:02x} {} bytes",
            phy.first().copied().unwrap_or(0),
            phy.len()
        )
    };
    let (freq, dr) = match &up.tx_info {
        Some(tx) => {
            let dr = match tx.modulation.as_ref().and_then(|m| m.parameters.as_ref()) {
                Some(gw::modulation::Parameters::Lora(l)) => {
                    format!("SF{}BW{}", l.spreading_factor, l.bandwidth / 1000)
                }
                Some(gw::modulation::Parameters::Fsk(f)) => format!("FSK {}", f.datarate),
                Some(gw::modulation::Parameters::LrFhss(_)) => "LR-FHSS".to_string(),
                None => "?".to_string(),
            };
            (tx.frequency as f64 / 1e6, dr)
        }
        None => (0.0, "?".to_string()),
    };
    let (rssi, snr) = up
        .rx_info
        .as_ref()
        .map(|r| (r.rssi, r.snr))
        .unwrap_or_default();
    format!("{header} {freq:.1} MHz {dr:<9} RSSI {rssi:>4} dBm SNR {snr:>5.1} dB")
}

/// A human summary of a run.
pub fn summarize(
    expected: u64,
    unique: u64,
    duplicates: u64,
    span: Duration,
    latencies_us: &[u64],
) -> String {
    let mut out = format!(
        "received {unique}/{expected} uplinks ({} lost, {duplicates} duplicates) in {:.2} s: {:.0} uplinks/s\n",
        expected.saturating_sub(unique),
        span.as_secs_f64(),
        unique as f64 / span.as_secs_f64().max(1e-9)
    );
    if !latencies_us.is_empty() {
        let mut l = latencies_us.to_vec();
        l.sort_unstable();
        let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)] as f64 / 1000.0;
        out.push_str(&format!(
            "latency UDP send -> MQTT receive: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n",
            pct(0.50),
            pct(0.99),
            pct(1.0)
        ));
    }
    out
}

/// (VmHWM, VmRSS) of a process in KiB.
pub fn read_peak_rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("no process {pid}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmHWM:"), field("VmRSS:")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_their_sequence() {
        for seq in [0u64, 1, 65_535, 65_536, 1 << 40] {
            assert_eq!(frame_seq(&frame_for_seq(seq)), Some(seq));
        }
        assert_eq!(frame_seq(&[0x40; 5]), None);
    }

    #[test]
    fn push_data_is_valid_gwmp_json() {
        let mut buf = Vec::new();
        gwmp_push_data(&mut buf, 0x1234, [1, 2, 3, 4, 5, 6, 7, 8], &[5, 6]);
        assert_eq!(&buf[..4], &[2, 0x12, 0x34, 0]);
        let v: serde_json::Value = serde_json::from_slice(&buf[12..]).unwrap();
        let rxpk = v["rxpk"].as_array().unwrap();
        assert_eq!(rxpk.len(), 2);
        assert_eq!(rxpk[0]["size"], 21);
        let data = base64::engine::general_purpose::STANDARD
            .decode(rxpk[1]["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(frame_seq(&data), Some(6));
    }

    #[test]
    fn summary_reports_losses_and_percentiles() {
        let s = summarize(10, 8, 1, Duration::from_secs(2), &[1000, 2000, 3000]);
        assert!(s.contains("8/10"), "{s}");
        assert!(s.contains("2 lost"), "{s}");
        assert!(s.contains("4 uplinks/s"), "{s}");
        assert!(s.contains("p50 2.00 ms"), "{s}");
    }
}
