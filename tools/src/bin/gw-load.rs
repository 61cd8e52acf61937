//! `gw-load`: the GWMP load generator and benchmark for gatewayd.
//!
//! Sends Semtech UDP `PUSH_DATA` uplinks to the daemon at a rate or with a window of
//! unacknowledged datagrams, subscribes to the broker, and reports throughput, latency from UDP
//! send to MQTT receive (p50/p99/max), losses and duplicates, and the daemon's peak resident
//! memory (`--pid`). See BENCHMARKS.md for the commands behind the recorded numbers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use gatewayd_tools::{gwmp_push_data, read_peak_rss_kib, summarize};
use tokio::net::UdpSocket;

#[derive(Debug, Parser)]
#[command(about = "GWMP load generator and MQTT-side measurement for gatewayd")]
struct Args {
    /// The daemon's Semtech UDP address.
    #[arg(long, default_value = "127.0.0.1:1680")]
    target: SocketAddr,
    /// The MQTT broker (host:port) to measure at; empty to not subscribe.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// Topic prefix.
    #[arg(long, default_value = "eu868")]
    topic_prefix: String,
    /// Gateway EUI announced in PUSH_DATA.
    #[arg(long, default_value = "0102030405060708")]
    gateway: String,
    /// Number of uplinks to send.
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Uplinks per second (0 = as fast as the window allows).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Datagrams sent but not yet PUSH_ACKed at most (0 = no window).
    #[arg(long, default_value_t = 256)]
    window: u64,
    /// rxpk entries per datagram.
    #[arg(long, default_value_t = 1)]
    per_datagram: u64,
    /// First sequence number (to run several phases against one daemon).
    #[arg(long, default_value_t = 0)]
    start_seq: u64,
    /// Only subscribe and count `--count` uplinks (backlog drain measurement).
    #[arg(long)]
    subscribe_only: bool,
    /// Only send (no subscriber): for filling a backlog while the broker is down.
    #[arg(long)]
    send_only: bool,
    /// Subscribe with a persistent session (QoS 1, clean session off) under this client id,
    /// so the broker queues what is published while the collector is not connected.
    #[arg(long)]
    session: Option<String>,
    /// Only create the persistent `--session` (subscribe, then disconnect) and exit.
    #[arg(long)]
    register_session: bool,
    /// Seconds to wait for the last uplinks at the broker.
    #[arg(long, default_value_t = 60)]
    drain_timeout: u64,
    /// The daemon's pid, to report its peak resident memory (VmHWM).
    #[arg(long)]
    pid: Option<u32>,
}

struct Shared {
    sent_at: Vec<AtomicU64>,
    origin: Instant,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let gateway = gatewayd_tools::parse_eui(&args.gateway).context("--gateway")?;
    if args.per_datagram == 0 || args.per_datagram > 255 {
        bail!("--per-datagram must be 1..=255");
    }
    let shared = Arc::new(Shared {
        sent_at: (0..args.count).map(|_| AtomicU64::new(0)).collect(),
        origin: Instant::now(),
    });

    let subscriber = if args.send_only || args.mqtt.is_empty() {
        None
    } else {
        let filter = format!("{}/gateway/+/event/up", args.topic_prefix);
        let c = gatewayd_tools::Collector::start(
            &args.mqtt,
            &filter,
            args.count,
            args.start_seq,
            shared.origin,
            args.session.as_deref(),
        )
        .await?;
        if args.register_session {
            c.wait(Duration::ZERO).await;
            println!("session {:?} registered", args.session);
            return Ok(());
        }
        Some(c)
    };

    let t_start = Instant::now();
    let mut acked = 0u64;
    if !args.subscribe_only {
        acked = send(&args, gateway, &shared).await?;
    }
    let t_sent = Instant::now();

    let mut report = String::new();
    if let Some(sub) = subscriber {
        let got = sub.wait(Duration::from_secs(args.drain_timeout)).await;
        let latencies: Vec<u64> = if args.subscribe_only {
            Vec::new()
        } else {
            got.arrivals
                .iter()
                .filter_map(|(seq, at_ns)| {
                    let sent = shared
                        .sent_at
                        .get((*seq - args.start_seq) as usize)?
                        .load(Ordering::Relaxed);
                    (sent > 0 && *at_ns >= sent).then(|| (*at_ns - sent) / 1000)
                })
                .collect()
        };
        let last = got.last_at.unwrap_or(t_sent);
        // A backlog drain (--subscribe-only) is timed from the first uplink received, which
        // leaves out the daemon's reconnect backoff; the collector's persistent session (see
        // scripts/bench) makes sure nothing published before it is back escapes the count.
        let span = match (args.subscribe_only, got.first_at) {
            (true, Some(first)) => last.duration_since(first),
            _ => last.duration_since(t_start),
        };
        report.push_str(&summarize(
            args.count,
            got.unique,
            got.duplicates,
            span,
            &latencies,
        ));
    }
    if !args.subscribe_only {
        let secs = t_sent.duration_since(t_start).as_secs_f64();
        report.push_str(&format!(
            "sent {} uplinks in {:.2} s ({:.0}/s), {} datagrams PUSH_ACKed\n",
            args.count,
            secs,
            args.count as f64 / secs.max(1e-9),
            acked
        ));
    }
    if let Some(pid) = args.pid {
        match read_peak_rss_kib(pid) {
            Ok((hwm, rss)) => report.push_str(&format!(
                "daemon pid {pid}: peak RSS {:.1} MB, current RSS {:.1} MB\n",
                hwm as f64 / 1024.0,
                rss as f64 / 1024.0
            )),
            Err(e) => report.push_str(&format!("daemon pid {pid}: {e}\n")),
        }
    }
    print!("{report}");
    Ok(())
}

/// Send every uplink; returns the number of datagrams acknowledged.
async fn send(args: &Args, gateway: [u8; 8], shared: &Arc<Shared>) -> anyhow::Result<u64> {
    // A large receive buffer: a window of PUSH_ACKs arriving at once must not overflow the
    // default ~208 KiB (each small datagram costs the kernel ~1 KiB) and be counted as lost.
    let std_sock = {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        let _ = s.set_recv_buffer_size(4 << 20);
        s.set_nonblocking(true)?;
        s.bind(&"127.0.0.1:0".parse::<SocketAddr>()?.into())?;
        std::net::UdpSocket::from(s)
    };
    let sock = Arc::new(UdpSocket::from_std(std_sock)?);
    sock.connect(args.target).await?;
    let acked = Arc::new(AtomicU64::new(0));
    let notify = Arc::new(tokio::sync::Notify::new());
    let reader = {
        let (sock, acked, notify) = (sock.clone(), acked.clone(), notify.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok(n) = sock.recv(&mut buf).await {
                if n == 4 && buf[3] == 0x01 {
                    acked.fetch_add(1, Ordering::Relaxed);
                    notify.notify_one();
                }
            }
        })
    };
    let datagrams = args.count.div_ceil(args.per_datagram);
    let pace = (args.rate > 0)
        .then(|| Duration::from_secs_f64(args.per_datagram as f64 / args.rate as f64));
    let started = Instant::now();
    let scratch = Mutex::new(Vec::with_capacity(2048));
    let mut seq = args.start_seq;
    let end = args.start_seq + args.count;
    for d in 0..datagrams {
        if let Some(p) = pace {
            let due = started + p.mul_f64(d as f64);
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
        if args.window > 0 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while d.saturating_sub(acked.load(Ordering::Relaxed)) >= args.window {
                if tokio::time::timeout(Duration::from_millis(200), notify.notified())
                    .await
                    .is_err()
                    && Instant::now() > deadline
                {
                    bail!("no PUSH_ACK for 10 s with {} datagrams outstanding: is the daemon running?", args.window);
                }
            }
        }
        let batch: Vec<u64> = (seq..(seq + args.per_datagram).min(end)).collect();
        seq += batch.len() as u64;
        let token = (d & 0xffff) as u16;
        let datagram = {
            let mut buf = scratch.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            gwmp_push_data(&mut buf, token, gateway, &batch);
            buf.clone()
        };
        let now_ns = shared.origin.elapsed().as_nanos() as u64;
        for s in &batch {
            if let Some(slot) = shared.sent_at.get((s - args.start_seq) as usize) {
                slot.store(now_ns.max(1), Ordering::Relaxed);
            }
        }
        sock.send(&datagram).await?;
    }
    // Wait (bounded) for the last acknowledgements.
    let deadline = Instant::now() + Duration::from_secs(10);
    while acked.load(Ordering::Relaxed) < datagrams && Instant::now() < deadline {
        let _ = tokio::time::timeout(Duration::from_millis(100), notify.notified()).await;
    }
    reader.abort();
    Ok(acked.load(Ordering::Relaxed))
}
