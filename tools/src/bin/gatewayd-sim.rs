//! `gatewayd-sim`: the simulated air hub plus a fleet of LoRaWAN devices, for demos and
//! multi-hotspot tests without hardware. Daemons with `radio.kind = "simulated"` join the air
//! at `--hub`; the fleet's devices transmit on it. Prints one summary line periodically.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use sim::fleet::{Fleet, FleetActivation, FleetConfig};
use sim::fleet_task::run_fleet;
use sim::hub::{serve_hub, spawn_air};
use sim::model::{AirModel, SimPosition};
use tokio_util::sync::CancellationToken;

/// Simulated LoRa air hub and device fleet.
#[derive(Debug, Parser)]
#[command(name = "gatewayd-sim", version)]
struct Args {
    /// UDP address the air hub listens on (loopback; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:1700")]
    hub: SocketAddr,
    /// Number of devices.
    #[arg(long, default_value_t = 10)]
    devices: usize,
    /// Seed for device keys, positions, timing and shadowing.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Mean seconds between uplinks per device.
    #[arg(long, default_value_t = 60.0)]
    interval_s: f64,
    /// Application payload bytes per uplink.
    #[arg(long, default_value_t = 12)]
    payload_len: usize,
    /// Spreading factors, assigned round-robin (e.g. 7,8,9).
    #[arg(long, value_delimiter = ',', default_value = "7,8,9,10,11,12")]
    sf: Vec<u8>,
    /// Uplink channels in Hz.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "868100000,868300000,868500000"
    )]
    channels: Vec<u64>,
    /// Devices are placed in a disc of this radius (metres) around the centre.
    #[arg(long, default_value_t = 2000.0)]
    radius_m: f64,
    /// Centre x in metres (or latitude with --latlon).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    center_x: f64,
    /// Centre y in metres (or longitude with --latlon).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    center_y: f64,
    /// Positions are latitude/longitude (hotspots must use lat/lon too).
    #[arg(long)]
    latlon: bool,
    /// Device transmit power, dBm.
    #[arg(long, default_value_t = 14.0)]
    power_dbm: f64,
    /// Devices join with OTAA (default: ABP, uplinks flow without a network server).
    #[arg(long)]
    otaa: bool,
    /// With --otaa: switch to ABP after this many unanswered joins.
    #[arg(long)]
    abp_fallback_after: Option<u32>,
    /// Log-normal shadowing σ, dB.
    #[arg(long, default_value_t = 4.0)]
    shadowing_db: f64,
    /// Path-loss exponent.
    #[arg(long, default_value_t = 2.7)]
    exponent: f64,
    /// Path loss at 1 m, dB.
    #[arg(long, default_value_t = 40.0)]
    reference_loss_db: f64,
    /// Disable the capture effect (every overlap destroys both frames).
    #[arg(long)]
    no_capture: bool,
    /// Seconds between summary lines.
    #[arg(long, default_value_t = 10.0)]
    summary_s: f64,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    duration_s: Option<f64>,
}

fn secs(name: &str, v: f64) -> Result<Duration> {
    if !(v.is_finite() && v > 0.0) {
        bail!("--{name} must be a positive number of seconds, got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    if !args.hub.ip().is_loopback() {
        bail!("--hub {} is not a loopback address", args.hub);
    }
    let summary = secs("summary-s", args.summary_s)?;
    let interval = secs("interval-s", args.interval_s)?;
    let center = if args.latlon {
        SimPosition::LatLon {
            lat: args.center_x,
            lon: args.center_y,
        }
    } else {
        SimPosition::xy(args.center_x, args.center_y)
    };
    let fleet_cfg = FleetConfig {
        devices: args.devices,
        seed: args.seed,
        interval_us: interval.as_micros() as u64,
        payload_len: args.payload_len,
        sf_mix: args.sf.clone(),
        channels_hz: args.channels.clone(),
        center,
        radius_m: args.radius_m,
        power_dbm: args.power_dbm,
        activation: if args.otaa {
            FleetActivation::Otaa {
                abp_fallback_after: args.abp_fallback_after,
            }
        } else {
            FleetActivation::Abp
        },
        ..FleetConfig::default()
    };
    let fleet = Fleet::new(&fleet_cfg, 0).context("invalid fleet options")?;
    let model = AirModel {
        reference_loss_db: args.reference_loss_db,
        exponent: args.exponent,
        shadowing_sigma_db: args.shadowing_db,
        capture_threshold_db: if args.no_capture { None } else { Some(6.0) },
        ..AirModel::default()
    };

    let stop = CancellationToken::new();
    let air = spawn_air(model, args.seed, stop.clone());
    let addr = serve_hub(args.hub, air.clone(), stop.clone())
        .await
        .context("starting the air hub")?;
    println!(
        "gatewayd-sim: air hub on {addr}, {} devices, seed {}",
        args.devices, args.seed
    );
    let counters = run_fleet(fleet, air.clone(), stop.clone())
        .await
        .context("attaching the fleet")?;

    let deadline = args.duration_s.map(|s| secs("duration-s", s)).transpose()?;
    let end = async {
        match deadline {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(end);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut tick = tokio::time::interval(summary);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => print_summary(&air, &counters).await,
            _ = &mut end => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    print_summary(&air, &counters).await;
    stop.cancel();
    Ok(())
}

async fn print_summary(
    air: &sim::hub::AirHandle,
    counters: &tokio::sync::watch::Receiver<sim::fleet::FleetCounters>,
) {
    let c = counters.borrow().clone();
    let a = air.stats().await.unwrap_or_default();
    println!(
        "fleet: uplinks {} join-requests {} joins {} downlinks {} | air: frames {} delivered {} \
         collisions {} half-duplex {} below-sensitivity {}",
        c.uplinks,
        c.join_requests,
        c.joins,
        c.downlinks,
        a.transmissions,
        a.delivered,
        a.collisions,
        a.half_duplex,
        a.below_sensitivity
    );
}
