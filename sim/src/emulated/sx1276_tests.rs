//! End-to-end tests of the lora-phy backend against the emulated SX1276 with the
//! `adafruit-rfm95w-bonnet` profile: the real `sx127x` driver path, only the chip emulated.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::tests::{frame, health, up};
use super::*;
use drivers::lora_phy::{spawn, LoraPhySettings, Sx127xConfig};
use drivers::radio::{
    CodeRate, CrcStatus, Modulation, Radio, RadioHealth, TxRequest, TxStatus, TxTiming,
};

const WAIT: Duration = Duration::from_secs(5);

fn settings() -> LoraPhySettings {
    let cfg: Sx127xConfig = toml::from_str(
        "board = \"adafruit-rfm95w-bonnet\"\nfrequency_hz = 868100000\nsf = 7\nbw_hz = 125000\n",
    )
    .unwrap();
    cfg.validate("radio.sx127x").unwrap()
}

async fn start(air: &EmulatedAir) -> (Radio, CancellationToken) {
    let stop = CancellationToken::new();
    let radio = spawn(settings(), EmulatedHardware::new(air), stop.clone())
        .await
        .unwrap();
    (radio, stop)
}

fn downlink(power_dbm: i8) -> TxRequest {
    TxRequest {
        freq_hz: 869_525_000,
        power_dbm,
        modulation: Modulation::Lora {
            sf: 9,
            bw_hz: 125_000,
            cr: Some(CodeRate::Cr45),
        },
        invert_iq: true,
        preamble: Some(8),
        crc: false,
        timing: TxTiming::Immediate,
        rf_chain: 0,
        board: 0,
        antenna: 0,
        payload: vec![0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    }
}

#[tokio::test]
async fn sx1276_receives_frames_with_their_metadata() {
    let air = EmulatedAir::sx1276();
    let (mut radio, stop) = start(&air).await;
    up(&air, &mut radio).await;
    assert_eq!(air.tcxo(), None, "the bonnet has a crystal");
    // (payload, RSSI, SNR): RSSI values the chip's 1 dB register represents exactly.
    let cases: [(&[u8], i16, f32); 3] = [
        (b"\x40first", -93, 7.25),
        (b"\x40second, longer payload", -120, -6.25),
        (b"\x40third", -61, 0.0),
    ];
    for (payload, rssi, snr) in cases {
        air.inject(&AirFrame::uplink(868_100_000, 7, payload, rssi, snr))
            .unwrap();
        let f = frame(&mut radio).await;
        assert_eq!(f.payload, payload);
        assert_eq!((f.meta.rssi, f.meta.snr), (i32::from(rssi), Some(snr)));
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
    }
    let mut bad = AirFrame::uplink(868_100_000, 7, b"\x40bad", -100, 2.0);
    bad.crc_ok = false;
    air.inject(&bad).unwrap();
    assert_eq!(frame(&mut radio).await.meta.crc, CrcStatus::Bad);
    // Not on its channel, SF, or IQ: the chip does not hear it.
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
        .inject(&AirFrame::uplink(868_100_000, 8, b"x", -80, 5.0))
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
async fn sx1276_transmits_what_was_asked_then_receives_again() {
    let air = EmulatedAir::sx1276();
    let (mut radio, stop) = start(&air).await;
    up(&air, &mut radio).await;
    let before = Instant::now();
    for (i, power) in [14i8, 17, 20].into_iter().enumerate() {
        let req = downlink(power);
        assert_eq!(
            radio.control.transmit(req.clone(), WAIT).await,
            Ok(TxStatus::Ok)
        );
        let sent = air.wait_transmissions(i + 1, WAIT).await;
        assert_eq!(sent.len(), i + 1);
        let t = &sent[i];
        assert!(t.started_at >= before);
        // lora-phy truncates RegFrf: within one synthesizer step (61 Hz) below.
        assert!(
            (869_524_939..=869_525_000).contains(&t.freq_hz),
            "{} Hz",
            t.freq_hz
        );
        assert_eq!((t.sf, t.bw_hz, t.cr), (9, 125_000, CodeRate::Cr45));
        assert_eq!((t.preamble, t.crc, t.invert_iq), (8, false, true));
        assert_eq!(t.sync_word, 0x3444, "public LoRaWAN sync word 0x34");
        assert_eq!(t.payload, req.payload);
        assert_eq!(t.power_dbm, power, "PA_BOOST output power for {power} dBm");
        assert!(air.wait_mode(Mode::Rx, WAIT).await, "RX did not resume");
    }
    air.inject(&AirFrame::uplink(868_100_000, 7, b"\x40after", -70, 9.0))
        .unwrap();
    assert_eq!(frame(&mut radio).await.payload, b"\x40after");
    air.assert_no_faults();
    stop.cancel();
}

#[tokio::test]
async fn sx1276_faults_are_reported_and_recovered() {
    let air = EmulatedAir::sx1276();
    air.set_faults(Faults {
        silent: true,
        ..Faults::default()
    });
    let (mut radio, stop) = start(&air).await;
    match health(&mut radio).await {
        RadioHealth::Down(r) => {
            assert!(r.contains("SX1276 on emulated spidev"), "{r}");
            assert!(
                r.contains("does not answer (reading RegVersion returned 0xff)"),
                "{r}"
            );
        }
        h => panic!("{h:?}"),
    }
    air.set_faults(Faults::default());
    while health(&mut radio).await != RadioHealth::Up {}
    assert!(air.wait_mode(Mode::Rx, WAIT).await);

    // No TxDone on DIO0: named, then the chip is reset and receives again.
    air.set_faults(Faults {
        no_irq: true,
        ..Faults::default()
    });
    assert_eq!(
        radio.control.transmit(downlink(14), WAIT).await,
        Ok(TxStatus::Ok)
    );
    match health(&mut radio).await {
        RadioHealth::Down(r) => assert!(r.contains("no TX-done interrupt on DIO0 (line 22"), "{r}"),
        h => panic!("{h:?}"),
    }
    air.set_faults(Faults::default());
    while health(&mut radio).await != RadioHealth::Up {}
    assert!(air.wait_mode(Mode::Rx, WAIT).await);
    air.inject(&AirFrame::uplink(868_100_000, 7, b"\x40back", -90, 1.0))
        .unwrap();
    assert_eq!(frame(&mut radio).await.payload, b"\x40back");
    air.assert_no_faults();
    stop.cancel();
}

#[test]
fn sx1276_rejects_what_the_chip_would_not_accept() {
    let mut chip = Sx1276::default();
    let now = Instant::now();
    assert_eq!(
        chip.transfer(&[0x42, 0], now).unwrap(),
        [0, 0x12],
        "RegVersion"
    );
    assert!(
        chip.transfer(&[0x9E, 0x74], now).is_err(),
        "RegModemConfig2 in FSK mode"
    );
    assert!(
        chip.transfer(&[0xC2, 0x00], now).is_err(),
        "RegVersion is read-only"
    );
    assert!(
        chip.transfer(&[0x81, 0x81], now).is_err(),
        "LoRa bit outside Sleep"
    );
    assert!(chip.transfer(&[0x81, 0x80], now).is_ok(), "LoRa + Sleep");
    // Burst write auto-increments: RegFrfMsb/Mid/Lsb, 0xD90666 × 61.035 Hz.
    assert!(chip.transfer(&[0x86, 0xD9, 0x06, 0x66], now).is_ok());
    assert_eq!(chip.freq_hz(), 868_099_976);
    // FIFO writes go through RegFifoAddrPtr without incrementing the address.
    assert!(chip.transfer(&[0x8D, 0x10], now).is_ok());
    assert!(chip.transfer(&[0x80, 1, 2, 3], now).is_ok());
    assert!(chip.transfer(&[0x8D, 0x10], now).is_ok());
    assert_eq!(chip.transfer(&[0x00, 0, 0, 0], now).unwrap(), [0, 1, 2, 3]);
    assert_eq!(chip.faults.len(), 3, "{:?}", chip.faults);
}
