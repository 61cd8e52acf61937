//! Runs a [`Fleet`] on a running air ([`AirHandle`]) in real time: polls devices when they
//! are due, hands them what the air delivers, and publishes the fleet's counters.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fleet::{Fleet, FleetCounters};
use super::hub::AirHandle;
use super::SimError;

/// Attach every device of `fleet` to `air` and run it until `shutdown`; the receiver shows
/// the fleet's summed counters as they change. The fleet's simulated time is microseconds
/// since this call.
pub async fn run_fleet(
    mut fleet: Fleet,
    air: AirHandle,
    shutdown: CancellationToken,
) -> Result<watch::Receiver<FleetCounters>, SimError> {
    let (dtx, mut drx) = mpsc::channel(1024);
    let mut nodes = Vec::with_capacity(fleet.len());
    let mut index = HashMap::new();
    for i in 0..fleet.len() {
        let Some(cfg) = fleet.node_config(i) else {
            break;
        };
        let node = air.attach(cfg, dtx.clone()).await?;
        index.insert(node, i);
        nodes.push(node);
    }
    let (ctx, crx) = watch::channel(fleet.counters());
    tokio::spawn(async move {
        let t0 = Instant::now();
        let now_us = || t0.elapsed().as_micros() as u64;
        let mut refused = 0u64;
        loop {
            let wake = fleet
                .next_wake()
                .map(|t| t0 + Duration::from_micros(t))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                d = drx.recv() => {
                    let Some(d) = d else { break };
                    if let Some(&i) = index.get(&d.node) {
                        fleet.on_downlink(i, now_us(), &d.frame);
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    for (i, tx) in fleet.poll(now_us()) {
                        if let Err(e) = air.transmit(nodes[i], tx).await {
                            refused += 1;
                            if refused.is_power_of_two() {
                                log::warn!("fleet: transmission refused ({refused} so far): {e}");
                            }
                            if matches!(e, SimError::Stopped) {
                                return;
                            }
                        }
                    }
                }
            }
            ctx.send_if_modified(|c| {
                let now = fleet.counters();
                let changed = *c != now;
                *c = now;
                changed
            });
        }
        for n in nodes {
            air.detach(n).await;
        }
    });
    Ok(crx)
}
