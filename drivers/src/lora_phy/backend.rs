//! The lora-phy backend task: owns the chip on its own thread, receives continuously on the
//! configured channel, transmits scheduled frames, and resets and re-initialises the chip
//! with backoff when it fails. The daemon sees a plain [`Radio`].
//!
//! Timing: `tmst` is the backend's microsecond counter ([`Clock`]) at the RxDone interrupt.
//! A transmission `AtCounter(t)` is programmed [`super::schedule::PREP_LEAD`] ahead, then `SetTx` is issued
//! no earlier than the instant of `t`; tokio's timer makes it late by at most about a
//! millisecond plus scheduling latency (tests allow 0..=15 ms). Timed frames whose programming
//! ends more than [`LATE_TOLERANCE`] after their instant are dropped (logged), never sent late;
//! `Immediate` frames have no instant and are sent however long programming took.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use embedded_hal::spi::Operation;
use embedded_hal_async::spi::SpiDevice;
use lora_phy::mod_params::{
    Bandwidth, CodingRate, ModulationParams, PacketParams, RadioError, SpreadingFactor,
};
use lora_phy::mod_traits::{InterfaceVariant, RadioKind};
use lora_phy::sx126x::{self, DeviceSel, Sx126x, Sx126xVariant};
use lora_phy::sx127x::{self, Sx1276, Sx127x};
use lora_phy::{LoRa, RxMode};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::irq::{ControlledIv, IrqControl};
use super::linux::TokioDelay;
use super::pa_boost::PaBoostFix;
pub use super::schedule::LATE_TOLERANCE;
use super::schedule::{airtime, check_request, Clock, Scheduled, TxQueue};
use super::snoop::{Snoop, Snooped};
use super::{ErrorNote, LoraHardware, LoraPhyError, LoraPhySettings};
use crate::radio::{
    CodeRate, CrcStatus, Modulation, Radio, RadioCapabilities, RadioControl, RadioEvent,
    RadioHealth, RxFrame, RxMeta, StoreAck, TxCommand, TxStatus,
};
use crate::ratelimit::RateLimiter;

/// First wait before re-initialising a failed chip; doubles up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between re-initialisations.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Extra time allowed beyond the time on air for the TX-done interrupt.
pub const TX_IRQ_MARGIN: Duration = Duration::from_millis(500);

/// Start the backend on its own thread (the SPI ioctls block) and return the daemon's
/// handle. Only a thread or runtime failure is an error here; device and chip failures are
/// reported as [`RadioHealth::Down`] events while the backend keeps retrying.
pub async fn spawn<H: LoraHardware>(
    settings: LoraPhySettings,
    hardware: H,
    shutdown: CancellationToken,
) -> Result<Radio, LoraPhyError> {
    let (events_tx, events) = mpsc::channel(256);
    let (control, commands) = RadioControl::channel(32);
    let (started_tx, started_rx) = oneshot::channel::<Result<(), std::io::Error>>();
    let max_tx_power_dbm = settings.tx_power_max_dbm;
    std::thread::Builder::new()
        .name("lora-phy".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                    return;
                }
            };
            let _ = started_tx.send(Ok(()));
            rt.block_on(run(settings, hardware, events_tx, commands, shutdown));
        })
        .map_err(LoraPhyError::Thread)?;
    started_rx
        .await
        .map_err(|_| LoraPhyError::ThreadEnded)?
        .map_err(LoraPhyError::Thread)?;
    Ok(Radio {
        events,
        control,
        capabilities: RadioCapabilities {
            lbt: false,
            gps_timed_tx: false,
            rx_channels: 1,
            max_tx_power_dbm: Some(max_tx_power_dbm),
        },
        counters: crate::radio::RadioCounters::none(),
    })
}

/// What the loop owns across chip sessions.
struct Ctx<H: LoraHardware> {
    settings: LoraPhySettings,
    hw: H,
    clock: Clock,
    events: mpsc::Sender<RadioEvent>,
    commands: mpsc::Receiver<TxCommand>,
    commands_open: bool,
    queue: TxQueue,
    backoff: Duration,
    /// Warnings that can repeat per frame (a late transmission), at most one a minute.
    warn: RateLimiter,
}

/// A session ended for good (the daemon dropped its handle).
struct Stop;

async fn run<H: LoraHardware>(
    settings: LoraPhySettings,
    hw: H,
    events: mpsc::Sender<RadioEvent>,
    commands: mpsc::Receiver<TxCommand>,
    shutdown: CancellationToken,
) {
    let mut ctx = Ctx {
        settings,
        hw,
        clock: Clock::new(Instant::now()),
        events,
        commands,
        commands_open: true,
        queue: TxQueue::default(),
        backoff: INITIAL_BACKOFF,
        warn: RateLimiter::new(Duration::from_secs(60)),
    };
    loop {
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = session(&mut ctx) => r,
        };
        let err = match outcome {
            Ok(Stop) => return,
            Err(e) => e,
        };
        let dropped = ctx.queue.clear();
        log::warn!(
            "radio down: {err}; dropped {dropped} scheduled transmissions; retrying in {:?}",
            ctx.backoff
        );
        if ctx
            .events
            .send(RadioEvent::Health(RadioHealth::Down(err.to_string())))
            .await
            .is_err()
        {
            return;
        }
        let until = tokio::time::Instant::now() + ctx.backoff;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(until) => break,
                cmd = ctx.commands.recv(), if ctx.commands_open => match cmd {
                    Some(c) => { let _ = c.reply.send(TxStatus::InternalError); }
                    None => ctx.commands_open = false,
                },
            }
        }
        ctx.backoff = (ctx.backoff * 2).min(MAX_BACKOFF);
    }
}

fn chip_err(what: &str, op: &str, e: &RadioError, note: &ErrorNote) -> LoraPhyError {
    let detail = note.take().map(|d| format!(": {d}")).unwrap_or_default();
    LoraPhyError::Chip(format!("{what}: {op} failed ({e:?}){detail}"))
}

/// SX126x variant from the settings (PA selection, DIO2 as RF switch).
struct Variant {
    low_power_pa: bool,
    dio2_rf_switch: bool,
}

impl Sx126xVariant for Variant {
    fn get_device_sel(&self) -> DeviceSel {
        if self.low_power_pa {
            DeviceSel::LowPowerPA
        } else {
            DeviceSel::HighPowerPA
        }
    }
    fn use_dio2_as_rfswitch(&self) -> bool {
        self.dio2_rf_switch
    }
}

async fn session<H: LoraHardware>(ctx: &mut Ctx<H>) -> Result<Stop, LoraPhyError> {
    let note = ctx.hw.errors();
    let _ = note.take();
    let what = ctx.hw.describe();
    let (spi, iv) = ctx.hw.open()?;
    let control = Arc::new(IrqControl::default());
    let seen = Arc::new(Mutex::new(Snooped::default()));
    let s = &ctx.settings;
    let mut spi = Snoop::new(spi, s.chip.is_sx126x(), seen.clone());
    let mut iv = ControlledIv::new(iv, control.clone(), note.clone());
    probe(&mut spi, &mut iv, s.chip.is_sx126x(), &what, &note).await?;
    if s.chip.is_sx126x() {
        let config = sx126x::Config {
            chip: Variant {
                low_power_pa: s.chip == super::Chip::Sx1261,
                dio2_rf_switch: s.dio2_rf_switch,
            },
            tcxo_ctrl: s.tcxo.map(|t| t.to_lora_phy()),
            use_dcdc: s.dcdc,
            rx_boost: s.rx_boost,
        };
        drive(
            ctx,
            Sx126x::new(spi, iv, config),
            &control,
            &seen,
            &note,
            &what,
        )
        .await
    } else {
        let config = sx127x::Config {
            chip: Sx1276,
            tcxo_used: s.sx127x_tcxo,
            tx_boost: true,
            rx_boost: s.rx_boost,
        };
        drive(
            ctx,
            Sx127x::new(PaBoostFix(spi), iv, config),
            &control,
            &seen,
            &note,
            &what,
        )
        .await
    }
}

/// Reset the chip and read something with a known shape, so an absent or unpowered chip
/// (MISO stuck at 0x00 or 0xFF) is named before lora-phy configures it blindly.
async fn probe<S: SpiDevice<u8>, IV: InterfaceVariant>(
    spi: &mut S,
    iv: &mut IV,
    sx126x: bool,
    what: &str,
    note: &ErrorNote,
) -> Result<(), LoraPhyError> {
    iv.reset(&mut TokioDelay)
        .await
        .map_err(|e| chip_err(what, "reset", &e, note))?;
    iv.wait_on_busy()
        .await
        .map_err(|e| chip_err(what, "waiting for BUSY after reset", &e, note))?;
    let mut answer = [0u8; 1];
    let (cmd, name) = if sx126x {
        (0xC0u8, "GetStatus")
    } else {
        (0x42u8, "reading RegVersion")
    };
    spi.transaction(&mut [Operation::Write(&[cmd]), Operation::Read(&mut answer)])
        .await
        .map_err(|_| chip_err(what, name, &RadioError::SPI, note))?;
    iv.wait_on_busy()
        .await
        .map_err(|e| chip_err(what, name, &e, note))?;
    let a = answer[0];
    let ok = if sx126x {
        (2..=6).contains(&((a >> 4) & 7)) && a != 0xFF
    } else {
        a == 0x12
    };
    if !ok {
        return Err(LoraPhyError::Chip(format!(
            "{what}: the chip does not answer ({name} returned 0x{a:02x}); check spi_device / chip select, power and reset_pin"
        )));
    }
    Ok(())
}

fn lora_params(m: &Modulation) -> Option<(SpreadingFactor, Bandwidth, CodingRate)> {
    let Modulation::Lora { sf, bw_hz, cr } = *m else {
        return None;
    };
    let sf = match sf {
        5 => SpreadingFactor::_5,
        6 => SpreadingFactor::_6,
        7 => SpreadingFactor::_7,
        8 => SpreadingFactor::_8,
        9 => SpreadingFactor::_9,
        10 => SpreadingFactor::_10,
        11 => SpreadingFactor::_11,
        12 => SpreadingFactor::_12,
        _ => return None,
    };
    let bw = match bw_hz {
        125_000 => Bandwidth::_125KHz,
        250_000 => Bandwidth::_250KHz,
        500_000 => Bandwidth::_500KHz,
        _ => return None,
    };
    let cr = match cr {
        Some(CodeRate::Cr46) => CodingRate::_4_6,
        Some(CodeRate::Cr47) => CodingRate::_4_7,
        Some(CodeRate::Cr48) => CodingRate::_4_8,
        _ => CodingRate::_4_5,
    };
    Some((sf, bw, cr))
}

/// Check and queue one request, answering it.
fn accept(cmd: TxCommand, settings: &LoraPhySettings, queue: &mut TxQueue, clock: &Clock) {
    let asked = cmd.request.power_dbm;
    let status = check_request(cmd.request, settings)
        .and_then(|req| {
            if req.power_dbm < asked {
                log::debug!(
                    "transmission at {} dBm, the most the chip can do ({asked} dBm approved)",
                    req.power_dbm
                );
            }
            queue.schedule(req, Instant::now(), clock)
        })
        .err()
        .unwrap_or(TxStatus::Ok);
    if status != TxStatus::Ok {
        log::debug!("transmission refused: {status:?}");
    }
    let _ = cmd.reply.send(status);
}

async fn drive<H: LoraHardware, RK: RadioKind>(
    ctx: &mut Ctx<H>,
    kind: RK,
    control: &IrqControl,
    seen: &Mutex<Snooped>,
    note: &ErrorNote,
    what: &str,
) -> Result<Stop, LoraPhyError> {
    let ch = ctx.settings.channel.clone();
    let e = |op: &str, err: RadioError| chip_err(what, op, &err, note);
    let mut lora = LoRa::new(kind, ctx.settings.public_network, TokioDelay)
        .await
        .map_err(|err| e("initialising", err))?;
    let rx_modulation = Modulation::Lora {
        sf: ch.sf,
        bw_hz: ch.bw_hz,
        cr: Some(ch.cr),
    };
    let (sf, bw, cr) = lora_params(&rx_modulation)
        .ok_or_else(|| e("configuring the channel", RadioError::InvalidConfiguration))?;
    let rx_mod = lora
        .create_modulation_params(sf, bw, cr, ch.freq_hz)
        .map_err(|err| e("configuring the channel", err))?;
    let rx_pkt = lora
        .create_rx_packet_params(ch.preamble, false, 255, true, false, &rx_mod)
        .map_err(|err| e("configuring the channel", err))?;
    lora.prepare_for_rx(RxMode::Continuous, &rx_mod, &rx_pkt)
        .await
        .map_err(|err| e("starting receive", err))?;
    if ctx
        .events
        .send(RadioEvent::Health(RadioHealth::Up))
        .await
        .is_err()
    {
        return Ok(Stop);
    }
    log::info!(
        "{what}: receiving on {} Hz SF{} BW{}",
        ch.freq_hz,
        ch.sf,
        ch.bw_hz
    );
    ctx.backoff = INITIAL_BACKOFF;
    let mut buf = [0u8; 255];
    loop {
        if let Some(tx) = ctx.queue.pop_due(Instant::now()) {
            transmit(ctx, &mut lora, tx, control, what, note).await?;
            lora.prepare_for_rx(RxMode::Continuous, &rx_mod, &rx_pkt)
                .await
                .map_err(|err| e("restarting receive", err))?;
            continue;
        }
        control.clear_preempt();
        let prep = ctx.queue.next_prep_at();
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        let sleep = tokio::time::sleep_until(prep.map(Into::into).unwrap_or(far));
        tokio::pin!(sleep);
        let outcome = {
            let rx = lora.rx(&rx_pkt, &mut buf);
            tokio::pin!(rx);
            loop {
                tokio::select! {
                    r = &mut rx => break r,
                    cmd = ctx.commands.recv(), if ctx.commands_open => match cmd {
                        Some(c) => {
                            accept(c, &ctx.settings, &mut ctx.queue, &ctx.clock);
                            if let Some(at) = ctx.queue.next_prep_at() {
                                sleep.as_mut().reset(at.into());
                            }
                        }
                        None => ctx.commands_open = false,
                    },
                    _ = &mut sleep, if !control.preempted() => control.preempt(),
                }
            }
        };
        let preempted = control.preempted();
        control.clear_preempt();
        match outcome {
            Ok((len, status)) => {
                let at = control.last_irq().unwrap_or_else(Instant::now);
                let snooped = seen.lock().map(|s| *s).unwrap_or_default();
                let frame = RxFrame {
                    payload: buf[..usize::from(len)].to_vec(),
                    meta: RxMeta::single_channel(
                        u64::from(ch.freq_hz),
                        rx_modulation,
                        ctx.clock.counter_at(at),
                        i32::from(status.rssi),
                        Some(snooped.snr_db.unwrap_or(f32::from(status.snr))),
                        if snooped.crc_error {
                            CrcStatus::Bad
                        } else {
                            CrcStatus::Ok
                        },
                    ),
                };
                log::debug!(
                    "rx {} bytes rssi {} snr {:?}",
                    len,
                    frame.meta.rssi,
                    frame.meta.snr
                );
                let event = RadioEvent::Uplinks {
                    gateway: None,
                    frames: vec![frame],
                    ack: StoreAck::none(),
                };
                if ctx.events.send(event).await.is_err() {
                    return Ok(Stop);
                }
            }
            Err(_) if preempted => {}
            Err(err) => return Err(e("receiving", err)),
        }
    }
}

async fn transmit<H: LoraHardware, RK: RadioKind>(
    ctx: &mut Ctx<H>,
    lora: &mut LoRa<RK, TokioDelay>,
    tx: Scheduled,
    control: &IrqControl,
    what: &str,
    note: &ErrorNote,
) -> Result<(), LoraPhyError> {
    let e = |op: &str, err: RadioError| chip_err(what, op, &err, note);
    let req = &tx.request;
    let (sf, bw, cr) = lora_params(&req.modulation)
        .ok_or_else(|| e("preparing a transmission", RadioError::InvalidConfiguration))?;
    let m: ModulationParams = lora
        .create_modulation_params(sf, bw, cr, req.freq_hz as u32)
        .map_err(|err| e("preparing a transmission", err))?;
    let mut p: PacketParams = lora
        .create_tx_packet_params(req.preamble.unwrap_or(8), false, req.crc, req.invert_iq, &m)
        .map_err(|err| e("preparing a transmission", err))?;
    lora.prepare_for_tx(&m, &mut p, i32::from(req.power_dbm), &req.payload)
        .await
        .map_err(|err| e("preparing a transmission", err))?;
    if let Some(late) = tx.late_by(Instant::now()) {
        let msg = format!("transmission dropped: programmed {late:?} after its instant");
        ctx.warn.warn("late", &msg);
        return Ok(());
    }
    // Keep taking requests while waiting for the instant and while on air.
    let wait = tokio::time::sleep_until(tx.start.into());
    tokio::pin!(wait);
    loop {
        tokio::select! {
            _ = &mut wait => break,
            cmd = ctx.commands.recv(), if ctx.commands_open => match cmd {
                Some(c) => accept(c, &ctx.settings, &mut ctx.queue, &ctx.clock),
                None => ctx.commands_open = false,
            },
        }
    }
    let limit = airtime(req) + TX_IRQ_MARGIN;
    let irq_name = if ctx.settings.chip.is_sx126x() {
        "DIO1"
    } else {
        "DIO0"
    };
    control.set_deadline(Some((
        Instant::now() + limit,
        format!(
            "no TX-done interrupt on {irq_name} (line {} on {}) within {} ms",
            ctx.settings.irq_pin,
            ctx.settings.gpiochip.display(),
            limit.as_millis()
        ),
    )));
    let result = {
        let on_air = lora.tx();
        tokio::pin!(on_air);
        loop {
            tokio::select! {
                r = &mut on_air => break r,
                cmd = ctx.commands.recv(), if ctx.commands_open => match cmd {
                    Some(c) => accept(c, &ctx.settings, &mut ctx.queue, &ctx.clock),
                    None => ctx.commands_open = false,
                },
            }
        }
    };
    control.set_deadline(None);
    result.map_err(|err| e("transmitting", err))?;
    log::debug!("tx done: {} bytes at {} Hz", req.payload.len(), req.freq_hz);
    Ok(())
}
