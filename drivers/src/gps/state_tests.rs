//! Tests for the GPS state machine, driven by decoded fixtures and synthetic instants.

use std::time::UNIX_EPOCH;

use super::super::nmea::parse;
use super::*;

const GGA_FIX: &[u8] = b"$GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,*76";
const RMC_FIX: &[u8] = b"$GPRMC,092750.000,A,5321.6802,N,00630.3372,W,0.02,31.66,280511,,,A*43";
const RMC_NOFIX: &[u8] = b"$GPRMC,,V,,,,,,,,,,N*53";
const GGA_NOFIX: &[u8] = b"$GPGGA,,,,,,0,00,99.99,,,,,,*48";
const GSV: &[u8] = b"$GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00*74";

fn s(line: &[u8]) -> Sentence {
    parse(line).unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn opened() -> (GpsTracker, Instant) {
    let t0 = Instant::now();
    let mut tr = GpsTracker::new(DEFAULT_STALE_AFTER);
    assert_eq!(tr.state().status, ReceiverStatus::NoDevice);
    assert!(tr.device_opened(t0));
    assert_eq!(tr.state().status, ReceiverStatus::NoFix);
    (tr, t0)
}

#[test]
fn starts_without_device() {
    let tr = GpsTracker::new(DEFAULT_STALE_AFTER);
    assert_eq!(*tr.state(), GpsState::default());
    assert_eq!(tr.state().status, ReceiverStatus::NoDevice);
}

#[test]
fn no_fix_stream_stays_no_fix_without_position_or_time() {
    let (mut tr, t0) = opened();
    // Each sentence moves `last_sentence`, so each is a change to publish.
    assert!(tr.on_sentence(&s(RMC_NOFIX), t0 + ms(100)));
    assert!(tr.on_sentence(&s(GGA_NOFIX), t0 + ms(110)));
    assert!(tr.on_sentence(&s(GSV), t0 + ms(120)));
    assert!(
        !tr.on_sentence(&s(GSV), t0 + ms(120)),
        "same instant, nothing new"
    );
    let st = tr.state();
    assert_eq!(st.status, ReceiverStatus::NoFix);
    assert_eq!((st.position, st.time), (None, None));
    assert_eq!(st.last_sentence, Some(t0 + ms(120)));
}

#[test]
fn fix_gives_position_and_time_with_observation_instant() {
    let (mut tr, t0) = opened();
    let at = t0 + ms(1000);
    tr.on_sentence(&s(RMC_FIX), at);
    tr.on_sentence(&s(GGA_FIX), at + ms(5));
    let st = tr.state().clone();
    assert_eq!(st.status, ReceiverStatus::Fix);
    let p = st.position.unwrap();
    assert!((p.latitude - 53.361_336_666).abs() < 1e-6);
    assert!((p.longitude + 6.505_62).abs() < 1e-6);
    assert_eq!(
        (p.altitude, p.satellites, p.hdop),
        (Some(61.7), Some(8), Some(1.03))
    );
    let time = st.time.unwrap();
    assert_eq!(time.utc, UNIX_EPOCH + Duration::from_secs(1_306_574_870));
    assert_eq!(time.observed, at);
    assert_eq!(time.at(at + ms(1500)), time.utc + ms(1500));
}

#[test]
fn rmc_after_gga_keeps_gga_extras() {
    let (mut tr, t0) = opened();
    tr.on_sentence(&s(GGA_FIX), t0 + ms(10));
    assert_eq!(tr.state().status, ReceiverStatus::Fix);
    assert_eq!(tr.state().time, None, "GGA alone carries no date");
    tr.on_sentence(&s(RMC_FIX), t0 + ms(20));
    let p = tr.state().position.unwrap();
    assert_eq!(p.satellites, Some(8));
    assert!(tr.state().time.is_some());
}

#[test]
fn untrusted_time_is_not_reported() {
    // RMC with date and time but status V: the receiver's clock is not trusted.
    let body = "GPRMC,092750.000,V,,,,,,,280511,,,N";
    let line = format!(
        "${body}*{:02X}",
        super::super::nmea::checksum(body.as_bytes())
    );
    let (mut tr, t0) = opened();
    tr.on_sentence(&s(line.as_bytes()), t0 + ms(10));
    assert_eq!(tr.state().status, ReceiverStatus::NoFix);
    assert_eq!(tr.state().time, None);
}

#[test]
fn losing_the_fix_clears_position_and_time() {
    let (mut tr, t0) = opened();
    tr.on_sentence(&s(RMC_FIX), t0 + ms(10));
    tr.on_sentence(&s(GGA_FIX), t0 + ms(20));
    assert_eq!(tr.state().status, ReceiverStatus::Fix);
    assert!(tr.on_sentence(&s(GGA_NOFIX), t0 + ms(1010)));
    let st = tr.state();
    assert_eq!(st.status, ReceiverStatus::NoFix);
    assert_eq!((st.position, st.time), (None, None));
    // A new fix brings them back.
    tr.on_sentence(&s(RMC_FIX), t0 + ms(2010));
    assert_eq!(tr.state().status, ReceiverStatus::Fix);
    assert!(tr.state().position.is_some() && tr.state().time.is_some());
}

#[test]
fn silence_goes_stale_and_sentences_recover() {
    let (mut tr, t0) = opened();
    tr.on_sentence(&s(RMC_FIX), t0 + ms(100));
    assert!(!tr.tick(t0 + ms(5000)), "4.9 s of silence is not stale yet");
    assert_eq!(tr.state().status, ReceiverStatus::Fix);
    assert!(tr.tick(t0 + ms(5100)));
    let st = tr.state();
    assert_eq!(st.status, ReceiverStatus::Stale);
    assert_eq!((st.position, st.time), (None, None));
    assert_eq!(st.last_sentence, Some(t0 + ms(100)));
    // Any valid sentence ends staleness; a fix needs a fix-bearing one.
    tr.on_sentence(&s(GSV), t0 + ms(6000));
    assert_eq!(tr.state().status, ReceiverStatus::NoFix);
    tr.on_sentence(&s(RMC_FIX), t0 + ms(6100));
    assert_eq!(tr.state().status, ReceiverStatus::Fix);
}

#[test]
fn opened_but_silent_goes_stale() {
    let (mut tr, t0) = opened();
    assert!(!tr.tick(t0 + ms(4999)));
    assert!(tr.tick(t0 + ms(5000)));
    assert_eq!(tr.state().status, ReceiverStatus::Stale);
}

#[test]
fn fix_expires_when_only_other_sentences_arrive() {
    let (mut tr, t0) = opened();
    tr.on_sentence(&s(GGA_FIX), t0);
    for i in 1..=5 {
        tr.on_sentence(&s(GSV), t0 + ms(1000 * i));
    }
    assert_eq!(
        tr.state().status,
        ReceiverStatus::NoFix,
        "fix older than stale_after"
    );
    assert_eq!(tr.state().position, None);
}

#[test]
fn device_loss_and_reopen() {
    let (mut tr, t0) = opened();
    tr.on_sentence(&s(RMC_FIX), t0 + ms(10));
    assert!(tr.device_lost(t0 + ms(20)));
    let st = tr.state();
    assert_eq!(st.status, ReceiverStatus::NoDevice);
    assert_eq!((st.position, st.time), (None, None));
    assert!(!tr.tick(t0 + ms(60_000)), "no device stays no device");
    assert!(tr.device_opened(t0 + ms(61_000)));
    assert_eq!(tr.state().status, ReceiverStatus::NoFix);
    assert!(
        !tr.tick(t0 + ms(61_000) + ms(4000)),
        "fresh open is not stale"
    );
}

#[test]
fn custom_stale_after() {
    let t0 = Instant::now();
    let mut tr = GpsTracker::new(ms(200));
    tr.device_opened(t0);
    tr.on_sentence(&s(GGA_FIX), t0 + ms(10));
    tr.tick(t0 + ms(209));
    assert_eq!(tr.state().status, ReceiverStatus::Fix);
    tr.tick(t0 + ms(210));
    assert_eq!(tr.state().status, ReceiverStatus::Stale);
}

#[test]
fn counters_count_by_reason() {
    let c = Counters::default();
    c.record_ok();
    c.record_ok();
    c.record_rejected(RejectReason::Checksum);
    c.record_rejected(RejectReason::Syntax);
    c.record_rejected(RejectReason::Syntax);
    c.record_rejected(RejectReason::TooLong);
    c.record_reopen();
    assert_eq!(
        c.snapshot(),
        CountersSnapshot {
            lines_ok: 2,
            rejected_checksum: 1,
            rejected_syntax: 2,
            rejected_too_long: 1,
            reopens: 1
        }
    );
}
