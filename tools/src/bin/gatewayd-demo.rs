//! `gatewayd-demo`: gatewayd with no hardware. Starts a Mosquitto on loopback (or uses
//! `--mqtt`), a simulated air with a fleet of LoRaWAN devices, and the daemon in-process with
//! `radio.kind = "simulated"`, embedded defaults and a temporary state directory; prints every
//! uplink a subscriber receives from the broker.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use chirpstack_api::gw;
use chirpstack_api::prost::Message as _;
use clap::Parser;
use gatewayd::config::Config;
use gatewayd_tools::broker::Mosquitto;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sim::fleet::{Fleet, FleetConfig};
use sim::fleet_task::run_fleet;
use sim::hub::{serve_hub, spawn_air};
use sim::model::AirModel;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(about = "Run gatewayd with simulated traffic and show uplinks arriving over MQTT")]
struct Args {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<u64>,
    /// Uplinks per second from the whole fleet (on average).
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Seed of the simulation (device keys, positions, timing, radio propagation).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of simulated devices.
    #[arg(long, default_value_t = 20)]
    devices: u32,
    /// Use this broker (host:port) instead of starting a Mosquitto.
    #[arg(long)]
    mqtt: Option<String>,
}

const GATEWAY: &str = "0016c001ff10a235";

fn demo_config(state_dir: &std::path::Path, hub: SocketAddr, mqtt: &str) -> anyhow::Result<Config> {
    let text = format!(
        "[gateway]\nid = \"{GATEWAY}\"\nregion = \"EU868\"\nstate_dir = {state:?}\nstats_interval_secs = 10\n\
         [gateway.location]\nlatitude = 52.3702\nlongitude = 4.8952\naltitude = 5.0\n\
         [radio]\nkind = \"simulated\"\n[radio.simulated]\nhub = \"{hub}\"\nx_m = 0.0\ny_m = 0.0\n\
         [mqtt]\nserver = \"tcp://{mqtt}\"\ntopic_prefix = \"eu868\"\nreconnect_min_ms = 200\nreconnect_max_ms = 2000\n\
         [service]\nallow_root = true\nstatus_socket = \"{sock}\"\nmetrics_bind = \"\"\n",
        sock = state_dir.join("status.sock").display(),
        state = state_dir.display().to_string(),
    );
    Ok(Config::from_toml(&text, &state_dir.join("gatewayd.toml"))?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    gatewayd::logging::init(log::LevelFilter::Info);
    let mut _broker = None;
    let mqtt = match &args.mqtt {
        Some(m) => m.clone(),
        None => {
            let b = Mosquitto::try_start(false)?;
            let addr = b.addr();
            println!("demo: started mosquitto on {addr}");
            _broker = Some(b);
            addr
        }
    };
    let shutdown = CancellationToken::new();
    let air_stop = CancellationToken::new();
    let air = spawn_air(AirModel::default(), args.seed, air_stop.clone());
    let hub = serve_hub("127.0.0.1:0".parse()?, air.clone(), air_stop.clone()).await?;
    // A Class A device sends at most every 3 s (its RX windows take 2 s): enough devices for
    // the asked rate.
    let rate = args.rate.clamp(0.01, 1000.0);
    let devices = (args.devices.max(1) as usize).max((3.0 * rate).ceil() as usize);
    let fleet_cfg = FleetConfig {
        devices,
        seed: args.seed,
        interval_us: (devices as f64 / rate * 1e6) as u64,
        radius_m: 1500.0,
        ..FleetConfig::default()
    };
    let fleet = Fleet::new(&fleet_cfg, 0).context("fleet")?;
    let state = tempfile::tempdir()?;
    let config = demo_config(state.path(), hub, &mqtt)?;
    println!(
        "demo: simulated air on {hub} with {devices} LoRaWAN devices (ABP, EU868) within 1.5 km; \
         gatewayd state in {}",
        state.path().display()
    );

    let printer = print_uplinks(&mqtt).await?;
    let daemon = tokio::spawn(gatewayd::daemon::run(config, shutdown.clone()));
    let counters = run_fleet(fleet, air.clone(), air_stop.clone()).await?;

    let stop = async {
        match args.duration {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::select! {
        _ = stop => {}
        r = tokio::signal::ctrl_c() => { r.ok(); }
    }
    println!("demo: stopping");
    let sent = counters.borrow().uplinks;
    shutdown.cancel();
    daemon.await.context("daemon task")??;
    air_stop.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    printer.abort();
    println!("demo: the simulated devices sent {sent} uplinks");
    Ok(())
}

/// Subscribe to every uplink and print one line each.
async fn print_uplinks(mqtt: &str) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (host, port) = mqtt.rsplit_once(':').context("--mqtt is host:port")?;
    let mut opts = MqttOptions::new(
        format!("gatewayd-demo-{}", std::process::id()),
        host,
        port.parse::<u16>()?,
    );
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    client
        .subscribe("eu868/gateway/+/event/+", QoS::AtLeastOnce)
        .await?;
    client
        .subscribe("eu868/gateway/+/state/conn", QoS::AtLeastOnce)
        .await?;
    let started = Instant::now();
    Ok(tokio::spawn(async move {
        let _client = client;
        let mut n = 0u64;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let t = started.elapsed().as_secs_f64();
                    if p.topic.ends_with("/event/up") {
                        if let Ok(up) = gw::UplinkFrame::decode(p.payload.as_ref()) {
                            n += 1;
                            println!(
                                "{t:7.2}s  uplink #{n:<4} {}",
                                gatewayd_tools::describe_uplink(&up)
                            );
                        }
                    } else if p.topic.ends_with("/event/stats") {
                        if let Ok(s) = gw::GatewayStats::decode(p.payload.as_ref()) {
                            println!(
                                "{t:7.2}s  stats     gateway {} received {} ok {}",
                                s.gateway_id, s.rx_packets_received, s.rx_packets_received_ok
                            );
                        }
                    } else if p.topic.ends_with("/state/conn") {
                        if let Ok(c) = gw::ConnState::decode(p.payload.as_ref()) {
                            println!(
                                "{t:7.2}s  state     gateway {} {:?}",
                                c.gateway_id,
                                c.state()
                            );
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }))
}
