//! The simulated radio backend through the `Radio` interface, on an in-process air in
//! paused (virtual) tokio time; its `[radio.simulated]` settings.

use std::collections::HashMap;

use super::*;
use crate::air::NodeId;
use crate::crypto::{data_dev_addr, open_data_frame};
use crate::fleet::{device_keys, Fleet, FleetConfig};
use crate::fleet_task::run_fleet;
use crate::hub::spawn_air;
use crate::model::{sensitivity_dbm, AirModel};
use drivers::radio::{CodeRate, Modulation};

fn model() -> AirModel {
    AirModel {
        shadowing_sigma_db: 0.0,
        ..AirModel::default()
    }
}

fn lora7() -> Modulation {
    Modulation::Lora {
        sf: 7,
        bw_hz: 125_000,
        cr: Some(CodeRate::Cr45),
    }
}

fn config(air: &AirHandle, x: f64) -> SimRadioConfig {
    SimRadioConfig {
        hub: SimHub::InProcess(air.clone()),
        position: SimPosition::xy(x, 0.0),
        antenna_gain_dbi: 0.0,
        gateway: Some(Eui64([0xaa, 0, 0, 0, 0, 0, 0, x as u8])),
        stats_interval: Duration::from_secs(3600),
    }
}

async fn next_uplink(radio: &mut Radio) -> Option<RxFrame> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), radio.events.recv()).await {
            Ok(Some(RadioEvent::Uplinks { frames, .. })) => return frames.into_iter().next(),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

async fn device(air: &AirHandle, x: f64) -> (NodeId, mpsc::Receiver<Delivery>) {
    let (tx, rx) = mpsc::channel(16);
    let cfg = NodeConfig {
        position: SimPosition::xy(x, 0.0),
        antenna_gain_dbi: 0.0,
        listen: Listen::device(),
    };
    (air.attach(cfg, tx).await.unwrap(), rx)
}

fn up(payload: Vec<u8>) -> Transmission {
    Transmission {
        freq_hz: 868_300_000,
        modulation: lora7(),
        power_dbm: 14.0,
        invert_iq: false,
        preamble: 8,
        crc: true,
        payload,
    }
}

#[tokio::test(start_paused = true)]
async fn uplinks_carry_radio_metadata_and_a_monotonic_tmst() {
    let stop = CancellationToken::new();
    let air = spawn_air(model(), 1, stop.clone());
    let mut near = spawn(config(&air, 0.0), stop.clone()).await.unwrap();
    let mut mid = spawn(config(&air, 1000.0), stop.clone()).await.unwrap();
    let mut far = spawn(config(&air, 60_000.0), stop.clone()).await.unwrap();
    assert!(matches!(
        near.events.recv().await,
        Some(RadioEvent::Health(RadioHealth::Up))
    ));
    let (dev, _) = device(&air, 100.0).await;
    let mut last = None;
    for i in 0..3u8 {
        air.transmit(dev, up(vec![0x40, i])).await.unwrap();
        let a = next_uplink(&mut near).await.unwrap();
        let b = next_uplink(&mut mid).await.unwrap();
        assert_eq!(
            (a.payload.clone(), b.payload),
            (vec![0x40, i], vec![0x40, i])
        );
        assert_eq!((a.meta.freq_hz, a.meta.modulation), (868_300_000, lora7()));
        assert_eq!(a.meta.crc, CrcStatus::Ok);
        assert!(
            a.meta.rssi > b.meta.rssi,
            "{} vs {}",
            a.meta.rssi,
            b.meta.rssi
        );
        assert_eq!(a.meta.rssi, (14.0 - (40.0 + 27.0 * 2.0)) as i32);
        assert!(a.meta.snr.unwrap() > b.meta.snr.unwrap());
        if let Some(prev) = last {
            assert!(a.meta.tmst > prev);
        }
        last = Some(a.meta.tmst);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        next_uplink(&mut far).await.is_none(),
        "60 km is out of range at SF7"
    );
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn downlinks_leave_when_the_counter_says_and_bad_timing_is_refused() {
    let stop = CancellationToken::new();
    let air = spawn_air(model(), 1, stop.clone());
    let mut radio = spawn(config(&air, 0.0), stop.clone()).await.unwrap();
    let (dev, mut heard) = device(&air, 500.0).await;
    air.transmit(dev, up(vec![0x40, 1, 2, 3])).await.unwrap();
    let rx = next_uplink(&mut radio).await.unwrap();
    let t_rx = Instant::now();
    let req = |timing, payload: Vec<u8>| TxRequest {
        freq_hz: 868_300_000,
        power_dbm: 14,
        modulation: lora7(),
        invert_iq: true,
        preamble: None,
        crc: false,
        timing,
        rf_chain: 0,
        board: 0,
        antenna: 0,
        payload,
    };
    let wait = Duration::from_secs(1);
    let c = &radio.control;
    let at = TxTiming::AtCounter(rx.meta.tmst.wrapping_add(1_000_000));
    assert_eq!(
        c.transmit(req(at, vec![0x60, 9]), wait).await,
        Ok(TxStatus::Ok)
    );
    assert_eq!(
        c.transmit(req(at, vec![0x60, 8]), wait).await,
        Ok(TxStatus::CollisionPacket)
    );
    let past = TxTiming::AtCounter(rx.meta.tmst);
    assert_eq!(
        c.transmit(req(past, vec![1]), wait).await,
        Ok(TxStatus::TooLate)
    );
    let later = TxTiming::AtCounter(rx.meta.tmst.wrapping_add(600_000_000));
    assert_eq!(
        c.transmit(req(later, vec![1]), wait).await,
        Ok(TxStatus::TooEarly)
    );
    let gps = TxTiming::AtGpsTime(Duration::from_secs(1));
    assert_eq!(
        c.transmit(req(gps, vec![1]), wait).await,
        Ok(TxStatus::GpsUnlocked)
    );
    let d = tokio::time::timeout(Duration::from_secs(5), heard.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.frame.payload, vec![0x60, 9]);
    assert!(d.frame.invert_iq);
    let airtime = Duration::from_micros(d.frame.airtime_us());
    let took = t_rx.elapsed();
    assert!(
        took >= wait + airtime,
        "sent at the counter, not before: {took:?}"
    );
    assert!(
        took < wait + airtime + Duration::from_millis(20),
        "{took:?}"
    );
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn three_radios_hear_a_fifty_device_fleet_within_range_only() {
    let stop = CancellationToken::new();
    let air = spawn_air(model(), 3, stop.clone());
    let xs = [0.0, 3000.0, 40_000.0];
    let mut radios = Vec::new();
    for x in xs {
        radios.push(spawn(config(&air, x), stop.clone()).await.unwrap());
    }
    let cfg = FleetConfig {
        devices: 50,
        seed: 9,
        interval_us: 10_000_000,
        radius_m: 5000.0,
        ..FleetConfig::default()
    };
    let fleet = Fleet::new(&cfg, 0).unwrap();
    let positions: HashMap<u32, SimPosition> = (0..50)
        .map(|i| {
            let p = fleet.node_config(i).unwrap().position;
            (device_keys(9, i as u32).abp.dev_addr, p)
        })
        .collect();
    let counters = run_fleet(fleet, air.clone(), stop.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(counters.borrow().uplinks > 200, "{:?}", *counters.borrow());
    let mut heard = [0usize; 3];
    for (k, radio) in radios.iter_mut().enumerate() {
        while let Ok(ev) = radio.events.try_recv() {
            let RadioEvent::Uplinks { frames, .. } = ev else {
                continue;
            };
            for f in frames {
                let addr = data_dev_addr(&f.payload).unwrap();
                let i = addr - 0x2600_0000;
                let s = device_keys(9, i).abp;
                open_data_frame(&f.payload, &s, 0).expect("valid MIC");
                let d = positions[&addr]
                    .distance_m(&SimPosition::xy(xs[k], 0.0))
                    .unwrap();
                let p = 14.0 - (40.0 + 27.0 * d.max(1.0).log10());
                assert!(
                    p >= sensitivity_dbm(&f.meta.modulation) - 1e-9,
                    "out of range"
                );
                heard[k] += 1;
            }
        }
    }
    assert!(heard[0] > 100 && heard[1] > 100, "{heard:?}");
    assert_eq!(heard[2], 0, "40 km away hears nothing at 14 dBm: {heard:?}");
    stop.cancel();
}

/// Why a test's `[radio.simulated]` did not load: its TOML shape, or its values.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error(transparent)]
    Sim(#[from] SimError),
}

fn settings(text: &str) -> Result<SimRadioConfig, LoadError> {
    let s: SimRadioSettings = toml::from_str(text)?;
    Ok(s.to_config(None)?)
}

#[test]
fn settings_parse_and_errors_name_the_key() {
    let c = settings("hub = \"127.0.0.1:1680\"\nx_m = 10.0\ny_m = -5.0\nantenna_gain_dbi = 3.0")
        .unwrap();
    assert!(matches!(c.hub, SimHub::Address(a) if a.port() == 1680));
    assert_eq!(c.position, SimPosition::xy(10.0, -5.0));
    assert_eq!(c.stats_interval, Duration::from_secs(30));
    let c = settings("hub = \"[::1]:9\"\nlat = 52.0\nlon = 4.5").unwrap();
    assert_eq!(
        c.position,
        SimPosition::LatLon {
            lat: 52.0,
            lon: 4.5
        }
    );
    let err = |t| settings(t).unwrap_err().to_string();
    assert!(err("hub = \"127.0.0.1:1\"\nx_m = 1.0\ny_m = 1.0\ncolour = 1").contains("colour"));
    assert!(err("hub = \"nowhere\"\nx_m = 1.0\ny_m = 1.0").starts_with("radio.simulated.hub:"));
    assert!(err("hub = \"10.0.0.1:1\"\nx_m = 1.0\ny_m = 1.0").contains("loopback"));
    assert!(err("hub = \"127.0.0.1:1\"").starts_with("radio.simulated.lat:"));
    assert!(err("hub = \"127.0.0.1:1\"\nx_m = 1.0").starts_with("radio.simulated.x_m:"));
    assert!(err("hub = \"127.0.0.1:1\"\nlat = 91.0\nlon = 0.0").starts_with("radio.simulated.lat:"));
    assert!(
        err("hub = \"127.0.0.1:1\"\nx_m = 1.0\ny_m = 1.0\nantenna_gain_dbi = 99.0")
            .starts_with("radio.simulated.antenna_gain_dbi:")
    );
    assert!(
        err("hub = \"127.0.0.1:1\"\nx_m = 1.0\ny_m = 1.0\nstats_interval_s = 0")
            .starts_with("radio.simulated.stats_interval_s:")
    );
}
