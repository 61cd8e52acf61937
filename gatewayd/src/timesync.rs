//! Whether the hotspot knows the time: proof-of-coverage reports are signed only with a time
//! the network can trust — GPS while there is a fix, else the local clock only while the
//! kernel says NTP keeps it synchronized (`adjtimex`: no `STA_UNSYNC`, not `TIME_ERROR`).
//! A Pi without RTC boots at its last saved time (or 1970) and is unsynchronized until NTP
//! has stepped it; reports made then would carry a wrong time under a valid signature.
//!
//! The check is a [`SyncCheck`], injected into [`crate::position::Whereabouts`], so tests
//! decide the answer without root or a real NTP server.

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where report times come from right now (`gatewayd status`: `time_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockStatus {
    /// GPS time (the receiver has a fix).
    Gps,
    /// The local clock, which the kernel reports synchronized by NTP.
    NtpSynced,
    /// The local clock, trusted by configuration (`[poc] clock = "trusted"`).
    Trusted,
    /// No trustworthy time: reports are held or skipped.
    Unsynchronized,
}

impl ClockStatus {
    /// The name in status and metrics: `gps`, `ntp-synced`, `trusted`, `unsynchronized`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClockStatus::Gps => "gps",
            ClockStatus::NtpSynced => "ntp-synced",
            ClockStatus::Trusted => "trusted",
            ClockStatus::Unsynchronized => "unsynchronized",
        }
    }

    /// Whether reports may be signed with this time.
    pub fn trusted(self) -> bool {
        self != ClockStatus::Unsynchronized
    }
}

/// Answers whether the local clock is synchronized.
pub trait SyncCheck: Send + Sync + Debug {
    /// `NtpSynced` or `Trusted` when the local clock may be used, else `Unsynchronized`.
    fn local_clock(&self) -> ClockStatus;
}

/// systemd-timesyncd creates this file once it has synchronized the clock.
pub const TIMESYNCD_FLAG: &str = "/run/systemd/timesync/synchronized";

/// The kernel's view (`adjtimex` with no modes: read-only, no privileges needed; where a
/// seccomp filter denies it, [`TIMESYNCD_FLAG`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelSync;

impl SyncCheck for KernelSync {
    fn local_clock(&self) -> ClockStatus {
        // SAFETY: adjtimex with modes = 0 only reads into the zeroed struct we own.
        let (state, status) = unsafe {
            let mut tx: libc::timex = std::mem::zeroed();
            let state = libc::adjtimex(&mut tx);
            (state, tx.status)
        };
        if state < 0 {
            // Denied (a seccomp filter such as systemd's ProtectClock=yes): systemd-timesyncd
            // still says so with a flag file.
            return match std::path::Path::new(TIMESYNCD_FLAG).exists() {
                true => ClockStatus::NtpSynced,
                false => ClockStatus::Unsynchronized,
            };
        }
        if state == libc::TIME_ERROR || status & libc::STA_UNSYNC != 0 {
            ClockStatus::Unsynchronized
        } else {
            ClockStatus::NtpSynced
        }
    }
}

/// The local clock is trusted whatever the kernel says (a time service that does not report
/// to the kernel; `[poc] clock = "trusted"`).
#[derive(Debug, Default, Clone, Copy)]
pub struct TrustLocalClock;

impl SyncCheck for TrustLocalClock {
    fn local_clock(&self) -> ClockStatus {
        ClockStatus::Trusted
    }
}

/// A switch tests flip: synchronized (as NTP) or not.
#[derive(Debug, Default)]
pub struct ManualSync(AtomicBool);

impl ManualSync {
    /// Starting synchronized or not.
    pub fn new(synchronized: bool) -> ManualSync {
        ManualSync(AtomicBool::new(synchronized))
    }

    /// Change the answer.
    pub fn set(&self, synchronized: bool) {
        self.0.store(synchronized, Ordering::Relaxed);
    }
}

impl SyncCheck for ManualSync {
    fn local_clock(&self) -> ClockStatus {
        if self.0.load(Ordering::Relaxed) {
            ClockStatus::NtpSynced
        } else {
            ClockStatus::Unsynchronized
        }
    }
}

/// The kernel's answer as this process sees it (tests compare the daemon's status with it).
pub fn kernel_synchronized() -> bool {
    KernelSync.local_clock().trusted()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_switches() {
        assert_eq!(ClockStatus::NtpSynced.as_str(), "ntp-synced");
        assert_eq!(ClockStatus::Unsynchronized.as_str(), "unsynchronized");
        assert!(!ClockStatus::Unsynchronized.trusted());
        assert!(ClockStatus::Gps.trusted() && ClockStatus::Trusted.trusted());
        let m = ManualSync::new(false);
        assert_eq!(m.local_clock(), ClockStatus::Unsynchronized);
        m.set(true);
        assert_eq!(m.local_clock(), ClockStatus::NtpSynced);
        assert_eq!(TrustLocalClock.local_clock(), ClockStatus::Trusted);
        // Whatever this machine's state, the kernel answers one of the two.
        assert!(matches!(
            KernelSync.local_clock(),
            ClockStatus::NtpSynced | ClockStatus::Unsynchronized
        ));
    }
}
