//! The one radio interface the daemon sees: received frames, transmit requests, radio stats.
//!
//! Every backend (Semtech UDP, lora-phy on spidev, the simulated air) is spawned as a task
//! that owns its hardware or socket and hands the daemon a [`Radio`]: a stream of
//! [`RadioEvent`]s and a cloneable [`RadioControl`] for transmissions. The daemon never
//! knows which backend it drives.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};

/// An EUI-64 (gateway id, JoinEUI, DevEUI) in the usual big-endian display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Eui64(pub [u8; 8]);

impl Eui64 {
    /// The EUI as a `u64` (big-endian interpretation of the display bytes).
    pub fn as_u64(&self) -> u64 {
        u64::from_be_bytes(self.0)
    }
}

impl std::fmt::Display for Eui64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // By hand rather than `write!("{b:02x}")` per byte: the id is formatted for every
        // uplink (topic and `gatewayId`), and eight formatter calls cost ~2,900 instructions
        // a time against ~500 (callgrind, scripts/bench-instructions).
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = [0u8; 16];
        for (i, b) in self.0.iter().enumerate() {
            s[2 * i] = HEX[usize::from(b >> 4)];
            s[2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        // Only ASCII hex digits: always UTF-8.
        f.write_str(std::str::from_utf8(&s).map_err(|_| std::fmt::Error)?)
    }
}

impl std::str::FromStr for Eui64 {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let hex: String = s.chars().filter(|c| *c != ':' && *c != '-').collect();
        if hex.len() != 16 {
            return Err(format!(
                "an EUI-64 is 16 hex digits, got {} characters in {s:?}",
                hex.len()
            ));
        }
        let mut out = [0u8; 8];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| format!("{s:?} is not hexadecimal"))?;
        }
        Ok(Eui64(out))
    }
}

/// LoRa coding rate (and the LR-FHSS / "off" variants a concentrator reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeRate {
    /// 4/5
    Cr45,
    /// 4/6 (also written 2/3)
    Cr46,
    /// 4/7
    Cr47,
    /// 4/8 (also written 1/2)
    Cr48,
    /// LR-FHSS 1/3
    Cr13,
    /// LR-FHSS 2/3
    Cr23,
    /// The concentrator reported no coding rate (`"OFF"`: a false sync).
    Off,
}

/// Modulation and data rate of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Modulation {
    /// LoRa chirp spread spectrum.
    Lora {
        /// Spreading factor, 5..=12.
        sf: u8,
        /// Bandwidth in Hz (125_000, 250_000, 500_000, …).
        bw_hz: u32,
        /// Coding rate; `None` when not reported.
        cr: Option<CodeRate>,
    },
    /// FSK.
    Fsk {
        /// Bit rate in bit/s.
        bitrate: u32,
    },
    /// LR-FHSS.
    LrFhss {
        /// Operating channel width in Hz.
        ocw_hz: u32,
        /// Coding rate.
        cr: CodeRate,
        /// Grid steps (hopping grid), when known.
        grid_steps: u32,
    },
}

/// CRC status of a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrcStatus {
    /// CRC present and correct.
    Ok,
    /// CRC present and wrong.
    Bad,
    /// No CRC in the frame.
    Missing,
}

/// Radio metadata of one received frame.
#[derive(Debug, Clone, PartialEq)]
pub struct RxMeta {
    /// Centre frequency in Hz.
    pub freq_hz: u64,
    /// Modulation and data rate.
    pub modulation: Modulation,
    /// Concentrator / radio microsecond counter at the end of reception (wraps at 2^32).
    pub tmst: u32,
    /// UTC time of reception, when the radio knows it (GPS).
    pub time: Option<SystemTime>,
    /// Time since the GPS epoch, when known.
    pub gps_time: Option<Duration>,
    /// Fine timestamp: nanoseconds since the last PPS.
    pub fine_time_ns: Option<u32>,
    /// IF channel.
    pub channel: u32,
    /// RF chain.
    pub rf_chain: u32,
    /// Board index (multi-board concentrators).
    pub board: u32,
    /// Antenna index.
    pub antenna: u32,
    /// Channel RSSI in dBm.
    pub rssi: i32,
    /// Signal RSSI in dBm, when reported (SX1302).
    pub signal_rssi: Option<i32>,
    /// SNR in dB (LoRa only).
    pub snr: Option<f32>,
    /// Frequency offset in Hz, when reported.
    pub freq_offset_hz: Option<i32>,
    /// CRC status.
    pub crc: CrcStatus,
}

impl RxMeta {
    /// What a single-channel radio knows of a frame: frequency, modulation, its counter at the
    /// end of reception, RSSI, SNR and CRC. What only a concentrator reports (UTC and GPS
    /// time, fine timestamp, IF channel, RF chain, board, antenna, signal RSSI, frequency
    /// offset) is zero or absent.
    pub fn single_channel(
        freq_hz: u64,
        modulation: Modulation,
        tmst: u32,
        rssi: i32,
        snr: Option<f32>,
        crc: CrcStatus,
    ) -> RxMeta {
        RxMeta {
            freq_hz,
            modulation,
            tmst,
            time: None,
            gps_time: None,
            fine_time_ns: None,
            channel: 0,
            rf_chain: 0,
            board: 0,
            antenna: 0,
            rssi,
            signal_rssi: None,
            snr,
            freq_offset_hz: None,
            crc,
        }
    }
}

/// One received frame: PHY payload and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct RxFrame {
    /// The PHY payload (LoRaWAN PHYPayload for LoRaWAN traffic).
    pub payload: Vec<u8>,
    /// Radio metadata.
    pub meta: RxMeta,
}

/// When a transmission should leave the antenna.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxTiming {
    /// As soon as possible (Class C).
    Immediate,
    /// When the radio's microsecond counter reaches this value (Class A).
    AtCounter(u32),
    /// At this time since the GPS epoch (Class B, beacons); needs a GPS lock.
    AtGpsTime(Duration),
}

/// A transmission the regulatory guard has approved.
#[derive(Debug, Clone, PartialEq)]
pub struct TxRequest {
    /// Frequency in Hz.
    pub freq_hz: u64,
    /// Conducted power asked of the radio, in dBm (already clamped by the guard).
    pub power_dbm: i8,
    /// Modulation and data rate.
    pub modulation: Modulation,
    /// Inverted IQ (LoRaWAN downlinks: true; beacons between hotspots: false).
    pub invert_iq: bool,
    /// Preamble length in symbols; `None` for the modulation's default.
    pub preamble: Option<u16>,
    /// Append a PHY CRC.
    pub crc: bool,
    /// When to send.
    pub timing: TxTiming,
    /// RF chain to use (concentrators).
    pub rf_chain: u32,
    /// Board index (multi-board concentrators).
    pub board: u32,
    /// Antenna index.
    pub antenna: u32,
    /// The PHY payload.
    pub payload: Vec<u8>,
}

/// How a backend answered a transmission request (maps onto ChirpStack `TxAckStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxStatus {
    /// Scheduled / sent.
    Ok,
    /// Too late to program.
    TooLate,
    /// Too far in the future.
    TooEarly,
    /// Overlaps another scheduled transmission (or the queue is full).
    CollisionPacket,
    /// Overlaps a beacon.
    CollisionBeacon,
    /// Frequency not supported.
    TxFreq,
    /// Power not supported.
    TxPower,
    /// GPS time asked without a GPS lock.
    GpsUnlocked,
    /// The transmit queue is full.
    QueueFull,
    /// Listen-before-talk found the channel busy.
    LbtBusy,
    /// The backend failed (timeout, no answer, hardware error).
    InternalError,
    /// The regulatory guard refused: the band's duty-cycle budget is used up.
    DutyCycleOverflow,
}

/// Counters a radio backend reports periodically.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RadioStats {
    /// Frames received.
    pub rx_received: u32,
    /// Frames received with a valid CRC.
    pub rx_ok: u32,
    /// Frames forwarded.
    pub rx_forwarded: u32,
    /// Downlink requests received by the radio.
    pub tx_requested: u32,
    /// Frames emitted.
    pub tx_emitted: u32,
    /// Radio / concentrator temperature in °C.
    pub temperature: Option<f32>,
    /// Location reported by the radio (packet forwarder's GPS): lat, lon, alt.
    pub location: Option<(f64, f64, f64)>,
    /// UTC time at the radio when the stats were taken.
    pub time: Option<SystemTime>,
}

/// Completion handle for a batch of uplinks: the daemon calls [`StoreAck::stored`] once the
/// frames are durably stored (or [`StoreAck::rejected`] when it could not store them). A
/// backend that acknowledges to its peer (GWMP `PUSH_ACK`) waits for this before it does.
#[derive(Debug)]
pub struct StoreAck(Option<oneshot::Sender<bool>>);

impl StoreAck {
    /// A pair: the handle passed to the daemon and the receiver the backend waits on.
    pub fn pair() -> (StoreAck, oneshot::Receiver<bool>) {
        let (tx, rx) = oneshot::channel();
        (StoreAck(Some(tx)), rx)
    }

    /// A handle nobody waits for (backends without acknowledgements).
    pub fn none() -> StoreAck {
        StoreAck(None)
    }

    /// The frames are durably stored.
    pub fn stored(mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(true);
        }
    }

    /// The frames could not be stored.
    pub fn rejected(mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(false);
        }
    }
}

/// What a radio backend reports to the daemon.
#[derive(Debug)]
pub enum RadioEvent {
    /// Frames received together (one GWMP datagram, or one frame from an SPI radio).
    Uplinks {
        /// The gateway EUI that the radio announced, if it did.
        gateway: Option<Eui64>,
        /// The frames.
        frames: Vec<RxFrame>,
        /// Resolve once the frames are durably stored.
        ack: StoreAck,
    },
    /// Periodic radio statistics.
    Stats {
        /// The gateway EUI that the radio announced, if it did.
        gateway: Option<Eui64>,
        /// The counters.
        stats: RadioStats,
    },
    /// The radio announced its gateway EUI (for example a GWMP `PULL_DATA`).
    Announce(Eui64),
    /// The backend's health changed (for logs, status and the watchdog).
    Health(RadioHealth),
}

/// A backend's health as the operator should see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RadioHealth {
    /// Receiving.
    Up,
    /// Not working, with the reason; the backend keeps trying to recover.
    Down(String),
}

/// What a backend can do, so the daemon and the guard can decide without knowing its kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RadioCapabilities {
    /// The backend can do listen-before-talk itself.
    pub lbt: bool,
    /// The backend can transmit at a GPS time.
    pub gps_timed_tx: bool,
    /// Number of channels the backend receives at once (1 for an SPI transceiver).
    pub rx_channels: u32,
    /// Highest conducted power the backend transmits at, dBm, when it knows it (the chip's
    /// or board's maximum); `None` when it does not (a packet forwarder, a simulation).
    pub max_tx_power_dbm: Option<i8>,
}

/// Why a transmission could not even be handed to the backend.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RadioError {
    /// The backend task has stopped.
    #[error("the radio backend has stopped")]
    Stopped,
    /// The backend does not answer in time.
    #[error("the radio backend did not answer within {0:?}")]
    Timeout(Duration),
}

/// A transmit request with the channel the backend answers on.
#[derive(Debug)]
pub struct TxCommand {
    /// The approved request.
    pub request: TxRequest,
    /// Where the backend answers.
    pub reply: oneshot::Sender<TxStatus>,
}

/// Cloneable handle to ask a backend to transmit.
#[derive(Debug, Clone)]
pub struct RadioControl {
    tx: mpsc::Sender<TxCommand>,
}

impl RadioControl {
    /// A control handle and the receiving end a backend task owns.
    pub fn channel(depth: usize) -> (RadioControl, mpsc::Receiver<TxCommand>) {
        let (tx, rx) = mpsc::channel(depth);
        (RadioControl { tx }, rx)
    }

    /// Ask the backend to transmit; resolves with the backend's answer.
    pub async fn transmit(
        &self,
        request: TxRequest,
        timeout: Duration,
    ) -> Result<TxStatus, RadioError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(TxCommand { request, reply })
            .await
            .map_err(|_| RadioError::Stopped)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(_)) => Err(RadioError::Stopped),
            Err(_) => Err(RadioError::Timeout(timeout)),
        }
    }
}

/// One counter a backend keeps, as the daemon exports it without knowing the backend:
/// `/metrics` shows it as `gatewayd_<family>_total{reason="<reason>"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterSample {
    /// The metric family, snake_case, without the `gatewayd_` prefix or `_total` suffix
    /// (`gwmp_rejected`, `gwmp_datagrams`).
    pub family: &'static str,
    /// The `reason` label when the family is split by reason (snake_case).
    pub reason: Option<&'static str>,
    /// One line saying what the family counts (the same for every sample of a family).
    pub help: &'static str,
    /// The count since the backend started.
    pub value: u64,
}

/// Something that can list a backend's counters at any moment, from any thread.
pub trait CounterSource: Send + Sync + std::fmt::Debug {
    /// The counters now, in a stable order (samples of one family together).
    fn counter_samples(&self) -> Vec<CounterSample>;
}

/// Cloneable read handle on a backend's counters; empty for a backend that keeps none.
#[derive(Debug, Clone, Default)]
pub struct RadioCounters(Option<Arc<dyn CounterSource>>);

impl RadioCounters {
    /// Counters read from `source`.
    pub fn new(source: Arc<dyn CounterSource>) -> RadioCounters {
        RadioCounters(Some(source))
    }

    /// No counters (backends that report only [`RadioStats`]).
    pub fn none() -> RadioCounters {
        RadioCounters(None)
    }

    /// The counters now (empty when the backend keeps none).
    pub fn snapshot(&self) -> Vec<CounterSample> {
        self.0
            .as_ref()
            .map(|s| s.counter_samples())
            .unwrap_or_default()
    }
}

/// A running radio backend as the daemon sees it.
#[derive(Debug)]
pub struct Radio {
    /// Events from the backend.
    pub events: mpsc::Receiver<RadioEvent>,
    /// Transmit handle.
    pub control: RadioControl,
    /// What the backend can do.
    pub capabilities: RadioCapabilities,
    /// The backend's own counters (rejected datagrams, …), for status and metrics.
    pub counters: RadioCounters,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eui_round_trip() {
        let e: Eui64 = "0102030405060708".parse().unwrap();
        assert_eq!(e.0, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(e.to_string(), "0102030405060708");
        assert_eq!(e.as_u64(), 0x0102030405060708);
        let e: Eui64 = "AA:BB:CC:DD:EE:FF:00:11".parse().unwrap();
        assert_eq!(e.to_string(), "aabbccddeeff0011");
        assert!("0102".parse::<Eui64>().is_err());
        // Every nibble value, both halves of a byte, formats as lower-case hex.
        let all = Eui64([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
        assert_eq!(all.to_string(), "0123456789abcdef");
        assert_eq!(Eui64([0xf0; 8]).to_string(), "f0f0f0f0f0f0f0f0");
        assert_eq!(format!("{}", Eui64([0xff; 8])), "ffffffffffffffff");
        assert!("zz02030405060708".parse::<Eui64>().is_err());
    }

    #[tokio::test]
    async fn store_ack_reports_outcome() {
        let (ack, rx) = StoreAck::pair();
        ack.stored();
        assert!(rx.await.unwrap());
        let (ack, rx) = StoreAck::pair();
        ack.rejected();
        assert!(!rx.await.unwrap());
        let (ack, rx) = StoreAck::pair();
        drop(ack);
        assert!(rx.await.is_err());
    }

    #[tokio::test]
    async fn control_reports_stopped_backend() {
        let (control, rx) = RadioControl::channel(1);
        drop(rx);
        let req = TxRequest {
            freq_hz: 868_100_000,
            power_dbm: 14,
            modulation: Modulation::Lora {
                sf: 7,
                bw_hz: 125_000,
                cr: Some(CodeRate::Cr45),
            },
            invert_iq: true,
            preamble: None,
            crc: false,
            timing: TxTiming::Immediate,
            rf_chain: 0,
            board: 0,
            antenna: 0,
            payload: vec![1, 2, 3],
        };
        assert_eq!(
            control.transmit(req, Duration::from_millis(50)).await,
            Err(RadioError::Stopped)
        );
    }
}
