//! End-to-end tests of the lora-phy backend against the emulated SX1262: the real driver
//! path (lora-phy, the backend task, scheduling, recovery) with only the chip emulated.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::*;
use drivers::lora_phy::{spawn, LoraPhySettings, Sx126xConfig};
use drivers::radio::{
    CodeRate, CrcStatus, Modulation, Radio, RadioEvent, RadioHealth, RxFrame, TxRequest, TxStatus,
    TxTiming,
};

const WAIT: Duration = Duration::from_secs(5);
/// A timed transmission starts no earlier than its instant and at most this much later.
const TX_TOLERANCE: Duration = Duration::from_millis(15);

fn settings() -> LoraPhySettings {
    let cfg: Sx126xConfig = toml::from_str(
        "board = \"waveshare-sx1262-hat\"\nfrequency_hz = 868100000\nsf = 7\ntcxo_voltage = 1.8\n",
    )
    .unwrap();
    cfg.validate("radio.sx126x").unwrap()
}

async fn start() -> (EmulatedAir, Radio, CancellationToken) {
    let air = EmulatedAir::new();
    let stop = CancellationToken::new();
    let radio = spawn(settings(), EmulatedHardware::new(&air), stop.clone())
        .await
        .unwrap();
    (air, radio, stop)
}

pub(super) async fn health(radio: &mut Radio) -> RadioHealth {
    loop {
        match tokio::time::timeout(WAIT, radio.events.recv()).await {
            Ok(Some(RadioEvent::Health(h))) => return h,
            Ok(Some(_)) => continue,
            other => panic!("no health event: {other:?}"),
        }
    }
}

pub(super) async fn up(air: &EmulatedAir, radio: &mut Radio) {
    assert_eq!(health(radio).await, RadioHealth::Up);
    assert!(air.wait_mode(Mode::Rx, WAIT).await, "chip not in RX");
}

pub(super) async fn frame(radio: &mut Radio) -> RxFrame {
    loop {
        match tokio::time::timeout(WAIT, radio.events.recv()).await {
            Ok(Some(RadioEvent::Uplinks {
                mut frames,
                gateway,
                ..
            })) => {
                assert_eq!(gateway, None);
                assert_eq!(frames.len(), 1);
                return frames.remove(0);
            }
            Ok(Some(RadioEvent::Health(h))) => panic!("unexpected health event {h:?}"),
            Ok(Some(_)) => continue,
            other => panic!("no uplink: {other:?}"),
        }
    }
}

fn downlink(timing: TxTiming) -> TxRequest {
    TxRequest {
        freq_hz: 869_525_000,
        power_dbm: 14,
        modulation: Modulation::Lora {
            sf: 9,
            bw_hz: 125_000,
            cr: Some(CodeRate::Cr45),
        },
        invert_iq: true,
        preamble: Some(8),
        crc: false,
        timing,
        rf_chain: 0,
        board: 0,
        antenna: 0,
        payload: vec![0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    }
}

#[tokio::test]
async fn capabilities_carry_the_chip_or_configured_maximum_power() {
    // The SX1262's own maximum by default, the configured cap when there is one.
    let (_air, radio, stop) = start().await;
    assert_eq!(radio.capabilities.max_tx_power_dbm, Some(22));
    stop.cancel();
    let mut capped = settings();
    capped.tx_power_max_dbm = 17;
    let air = EmulatedAir::new();
    let stop = CancellationToken::new();
    let radio = spawn(capped, EmulatedHardware::new(&air), stop.clone())
        .await
        .unwrap();
    assert_eq!(radio.capabilities.max_tx_power_dbm, Some(17));
    stop.cancel();
}

#[tokio::test]
async fn received_frames_carry_chip_metadata() {
    let (air, mut radio, stop) = start().await;
    up(&air, &mut radio).await;
    assert_eq!(air.tcxo(), Some(2), "1.8 V TCXO programmed");
    air.inject(&AirFrame::uplink(868_100_000, 7, b"\x40hello", -87, 7.25))
        .unwrap();
    let f = frame(&mut radio).await;
    assert_eq!(f.payload, b"\x40hello");
    assert_eq!(f.meta.rssi, -87);
    assert_eq!(f.meta.snr, Some(7.25));
    assert_eq!(f.meta.freq_hz, 868_100_000);
    assert_eq!(
        f.meta.modulation,
        Modulation::Lora {
            sf: 7,
            bw_hz: 125_000,
            cr: Some(CodeRate::Cr45)
        }
    );
    assert_eq!(f.meta.crc, CrcStatus::Ok);

    let mut bad = AirFrame::uplink(868_100_000, 7, b"\x40bad", -120, -12.5);
    bad.crc_ok = false;
    air.inject(&bad).unwrap();
    let f = frame(&mut radio).await;
    assert_eq!(
        (f.meta.crc, f.meta.rssi, f.meta.snr),
        (CrcStatus::Bad, -120, Some(-12.5))
    );

    // Other channel, other SF, inverted IQ: the chip does not hear them.
    let other = air
        .inject(&AirFrame::uplink(868_300_000, 7, b"x", -80, 5.0))
        .unwrap_err();
    assert!(
        matches!(
            other,
            ChipError::NotHeard(NotHeard::OtherChannel { sf: 7, .. })
        ),
        "{other:?}"
    );
    let text = other.to_string();
    assert!(text.starts_with("chip listens on 868"), "{text}");
    assert!(text.ends_with(" Hz SF7 BW125000"), "{text}");
    assert!(air
        .inject(&AirFrame::uplink(868_100_000, 9, b"x", -80, 5.0))
        .is_err());
    let mut iq = AirFrame::uplink(868_100_000, 7, b"x", -80, 5.0);
    iq.invert_iq = true;
    let iq = air.inject(&iq).unwrap_err();
    assert_eq!(iq, ChipError::NotHeard(NotHeard::FormatMismatch));
    assert_eq!(iq.to_string(), "sync word, IQ or header mode differ");
    air.assert_no_faults();
    stop.cancel();
}

#[tokio::test]
async fn timed_transmission_leaves_at_its_instant_then_rx_resumes() {
    let (air, mut radio, stop) = start().await;
    up(&air, &mut radio).await;
    let done_at = air
        .inject(&AirFrame::uplink(868_100_000, 7, b"\x40up", -70, 9.0))
        .unwrap();
    let up_frame = frame(&mut radio).await;
    let req = downlink(TxTiming::AtCounter(
        up_frame.meta.tmst.wrapping_add(1_000_000),
    ));
    assert_eq!(
        radio.control.transmit(req.clone(), WAIT).await,
        Ok(TxStatus::Ok)
    );
    // RX goes on while the downlink waits for its slot.
    air.inject(&AirFrame::uplink(868_100_000, 7, b"\x40mid", -75, 3.0))
        .unwrap();
    assert_eq!(frame(&mut radio).await.payload, b"\x40mid");

    let sent = air.wait_transmissions(1, WAIT).await;
    assert_eq!(sent.len(), 1);
    let t = &sent[0];
    assert_eq!(
        (t.freq_hz, t.sf, t.bw_hz, t.cr),
        (869_525_000, 9, 125_000, CodeRate::Cr45)
    );
    assert_eq!(
        (t.power_dbm, t.preamble, t.crc, t.invert_iq),
        (14, 8, false, true)
    );
    assert_eq!(t.sync_word, 0x3444, "public LoRaWAN sync word");
    assert_eq!(t.payload, req.payload);
    let due = done_at + Duration::from_secs(1);
    assert!(t.started_at >= due, "sent {:?} early", due - t.started_at);
    assert!(
        t.started_at - due <= TX_TOLERANCE,
        "sent {:?} late",
        t.started_at - due
    );

    assert!(
        air.wait_mode(Mode::Rx, WAIT).await,
        "RX did not resume after TX"
    );
    air.inject(&AirFrame::uplink(868_100_000, 7, b"\x40after", -60, 8.0))
        .unwrap();
    assert_eq!(frame(&mut radio).await.payload, b"\x40after");
    air.assert_no_faults();
    stop.cancel();
}

#[tokio::test]
async fn immediate_and_refused_transmissions() {
    let (air, mut radio, stop) = start().await;
    up(&air, &mut radio).await;
    let before = Instant::now();
    let mut req = downlink(TxTiming::Immediate);
    req.power_dbm = 20;
    req.modulation = Modulation::Lora {
        sf: 12,
        bw_hz: 125_000,
        cr: Some(CodeRate::Cr48),
    };
    assert_eq!(radio.control.transmit(req, WAIT).await, Ok(TxStatus::Ok));
    let sent = air.wait_transmissions(1, WAIT).await;
    assert_eq!(
        (sent[0].sf, sent[0].power_dbm, sent[0].cr),
        (12, 20, CodeRate::Cr48)
    );
    assert!(sent[0].started_at >= before);

    let c = &radio.control;
    assert_eq!(
        c.transmit(downlink(TxTiming::AtGpsTime(Duration::from_secs(5))), WAIT)
            .await,
        Ok(TxStatus::GpsUnlocked)
    );
    let mut far = downlink(TxTiming::Immediate);
    far.freq_hz = 2_400_000_000;
    assert_eq!(c.transmit(far, WAIT).await, Ok(TxStatus::TxFreq));
    // Below the chip's minimum: refused (raising it would exceed the guard's approval).
    let mut quiet = downlink(TxTiming::Immediate);
    quiet.power_dbm = -20;
    assert_eq!(c.transmit(quiet, WAIT).await, Ok(TxStatus::TxPower));
    assert!(air.wait_mode(Mode::Rx, WAIT).await);
    assert_eq!(air.transmissions().len(), 1);
    // Beyond the chip's maximum: sent at the most it can do (22 dBm), never refused.
    let mut loud = downlink(TxTiming::Immediate);
    loud.power_dbm = 27;
    assert_eq!(c.transmit(loud, WAIT).await, Ok(TxStatus::Ok));
    let sent = air.wait_transmissions(2, WAIT).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].power_dbm, 22);
    assert!(air.wait_mode(Mode::Rx, WAIT).await);
    air.assert_no_faults();
    stop.cancel();
}

/// An `Immediate` request accepted while another frame is on air is sent right after it,
/// not dropped as "late": it has no instant to miss. (Programming the chip slowly, as on a
/// loaded Pi or under qemu, made the same silent drop after the daemon was told `Ok`.)
#[tokio::test]
async fn immediate_request_during_a_transmission_is_sent_after_it() {
    let (air, mut radio, stop) = start().await;
    up(&air, &mut radio).await;
    let mut long = downlink(TxTiming::Immediate);
    long.modulation = Modulation::Lora {
        sf: 12,
        bw_hz: 125_000,
        cr: Some(CodeRate::Cr45),
    };
    let c = &radio.control;
    assert_eq!(c.transmit(long.clone(), WAIT).await, Ok(TxStatus::Ok));
    assert!(
        air.wait_mode(Mode::Tx, WAIT).await,
        "first frame not on air"
    );
    let mut next = downlink(TxTiming::Immediate);
    next.payload = b"\x60second".to_vec();
    assert_eq!(c.transmit(next.clone(), WAIT).await, Ok(TxStatus::Ok));
    let sent = air.wait_transmissions(2, WAIT).await;
    assert_eq!(sent.len(), 2, "the second Immediate frame was not sent");
    assert_eq!((sent[0].sf, sent[1].sf), (12, 9));
    assert_eq!(sent[1].payload, next.payload);
    // After the first one has left the antenna, not over it.
    let first_end = sent[0].started_at + drivers::lora_phy::schedule::airtime(&long);
    assert!(sent[1].started_at >= first_end);
    assert!(air.wait_mode(Mode::Rx, WAIT).await, "RX did not resume");
    air.assert_no_faults();
    stop.cancel();
}

async fn fault_then_recover(faults: Faults, expect: &str, trigger_tx: bool) {
    let (air, mut radio, stop) = start().await;
    up(&air, &mut radio).await;
    air.set_faults(faults);
    if trigger_tx {
        assert_eq!(
            radio
                .control
                .transmit(downlink(TxTiming::Immediate), WAIT)
                .await,
            Ok(TxStatus::Ok)
        );
    }
    match health(&mut radio).await {
        RadioHealth::Down(reason) => {
            assert!(reason.contains("SX1262 on emulated spidev"), "{reason}");
            assert!(reason.contains(expect), "{reason:?} lacks {expect:?}");
        }
        h => panic!("expected Down, got {h:?}"),
    }
    // While down, transmissions are refused, not lost in silence.
    let status = radio
        .control
        .transmit(downlink(TxTiming::Immediate), WAIT)
        .await;
    assert!(
        matches!(status, Ok(TxStatus::InternalError) | Ok(TxStatus::Ok)),
        "{status:?}"
    );
    air.set_faults(Faults::default());
    // Recovery: reset, re-init, receive again.
    loop {
        match health(&mut radio).await {
            RadioHealth::Up => break,
            RadioHealth::Down(_) => continue,
        }
    }
    assert!(air.wait_mode(Mode::Rx, WAIT).await);
    air.inject(&AirFrame::uplink(868_100_000, 7, b"\x40back", -90, 1.0))
        .unwrap();
    assert_eq!(frame(&mut radio).await.payload, b"\x40back");
    air.assert_no_faults();
    stop.cancel();
}

#[tokio::test]
async fn busy_stuck_is_reported_and_recovered() {
    fault_then_recover(
        Faults {
            busy_stuck: true,
            ..Faults::default()
        },
        "BUSY (emulated line) stayed high",
        true,
    )
    .await;
}

#[tokio::test]
async fn missing_tx_interrupt_is_reported_and_recovered() {
    fault_then_recover(
        Faults {
            no_irq: true,
            ..Faults::default()
        },
        "no TX-done interrupt on DIO1 (line 16",
        true,
    )
    .await;
}

#[tokio::test]
async fn spi_errors_are_reported_and_recovered() {
    fault_then_recover(
        Faults {
            spi_errors: 1,
            ..Faults::default()
        },
        "SPI transfer on emulated spidev",
        true,
    )
    .await;
}

#[tokio::test]
async fn a_silent_chip_is_named() {
    let air = EmulatedAir::new();
    air.set_faults(Faults {
        silent: true,
        ..Faults::default()
    });
    let stop = CancellationToken::new();
    let mut radio = spawn(settings(), EmulatedHardware::new(&air), stop.clone())
        .await
        .unwrap();
    match health(&mut radio).await {
        RadioHealth::Down(r) => assert!(
            r.contains("does not answer (GetStatus returned 0xff)"),
            "{r}"
        ),
        h => panic!("{h:?}"),
    }
    air.set_faults(Faults::default());
    loop {
        if health(&mut radio).await == RadioHealth::Up {
            break;
        }
    }
    air.assert_no_faults();
    stop.cancel();
}

#[test]
fn malformed_commands_are_recorded() {
    let mut chip = Sx1262::default();
    let now = Instant::now();
    assert!(chip.transfer(&[0xAB, 1, 2], now).is_err());
    assert!(
        chip.transfer(&[0x8B, 7, 4, 1], now).is_err(),
        "SetModulationParams with 3 params"
    );
    assert!(chip.transfer(&[0x8A, 1], now).is_ok());
    assert!(chip.transfer(&[0x82, 0xFF, 0xFF, 0xFF], now).is_ok());
    assert!(
        chip.transfer(&[0x86, 0x36, 0x41, 0x99, 0x9A], now).is_err(),
        "SetRfFrequency while in RX"
    );
    assert_eq!(chip.faults.len(), 3, "{:?}", chip.faults);
}
