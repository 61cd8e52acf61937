//! sd_notify: tell systemd the truth about startup, status, reload, stop and liveness.
//!
//! The protocol is one Unix datagram of `KEY=VALUE` lines to the socket named by
//! `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). Outside systemd the
//! variable is unset and every call is a no-op that succeeds.

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Why a notification could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` names no usable address.
    #[error("NOTIFY_SOCKET {0:?} is not a usable socket address: {1}")]
    BadAddress(String, std::io::Error),
    /// The datagram could not be sent.
    #[error("cannot notify systemd on {0}: {1}")]
    Send(String, std::io::Error),
}

/// A handle on the service manager's notification socket (or a disabled one).
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
}

#[derive(Debug)]
struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
    name: String,
}

impl Notifier {
    /// The notifier systemd asked for through `NOTIFY_SOCKET`; disabled when it is unset
    /// or empty. The environment is read, never modified.
    pub fn from_env() -> Result<Notifier, NotifyError> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(v) if !v.is_empty() => Notifier::new(&v),
            _ => Ok(Notifier::disabled()),
        }
    }

    /// A notifier sending to `socket`: a filesystem path, or `@name` for an abstract
    /// namespace socket.
    pub fn new(socket: impl AsRef<OsStr>) -> Result<Notifier, NotifyError> {
        let raw = socket.as_ref();
        let name = raw.to_string_lossy().into_owned();
        let bad = |e| NotifyError::BadAddress(name.clone(), e);
        let addr = match name.strip_prefix('@') {
            Some(abstract_name) => {
                SocketAddr::from_abstract_name(abstract_name.as_bytes()).map_err(bad)?
            }
            None => SocketAddr::from_pathname(raw).map_err(bad)?,
        };
        let socket = UnixDatagram::unbound().map_err(bad)?;
        Ok(Notifier {
            target: Some(Target { socket, addr, name }),
        })
    }

    /// A notifier that sends nothing (not running under systemd).
    pub fn disabled() -> Notifier {
        Notifier { target: None }
    }

    /// Whether notifications go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Send raw `KEY=VALUE` lines (newline-separated) in one datagram.
    pub fn notify(&self, state: &str) -> Result<(), NotifyError> {
        let Some(t) = &self.target else {
            return Ok(());
        };
        t.socket
            .send_to_addr(state.as_bytes(), &t.addr)
            .map(|_| ())
            .map_err(|e| NotifyError::Send(t.name.clone(), e))
    }

    /// `READY=1`: startup is complete (send only once every core loop runs).
    pub fn ready(&self) -> Result<(), NotifyError> {
        self.notify("READY=1")
    }

    /// `STATUS=...`: a one-line status shown by `systemctl status`. Newlines become spaces.
    pub fn status(&self, status: &str) -> Result<(), NotifyError> {
        self.notify(&format!("STATUS={}", one_line(status)))
    }

    /// `STOPPING=1`: a graceful shutdown has begun.
    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.notify("STOPPING=1")
    }

    /// `RELOADING=1` with the monotonic timestamp systemd ≥ 253 expects; send
    /// [`Notifier::ready`] when the reload is done.
    pub fn reloading(&self) -> Result<(), NotifyError> {
        self.notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}",
            monotonic_usec().unwrap_or(0)
        ))
    }

    /// `WATCHDOG=1`: the service is alive. Send only while [`super::Watchdog::should_ping`].
    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.notify("WATCHDOG=1")
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect()
}

fn monotonic_usec() -> Option<u64> {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    let secs = u64::try_from(ts.tv_sec()).ok()?;
    let nanos = u64::try_from(ts.tv_nsec()).ok()?;
    Some(secs * 1_000_000 + nanos / 1_000)
}

/// The watchdog timeout systemd set for this process (`WatchdogSec=`), from
/// `WATCHDOG_USEC` and `WATCHDOG_PID`; `None` when the watchdog is off.
pub fn watchdog_timeout_from_env() -> Option<Duration> {
    watchdog_timeout(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// `sd_watchdog_enabled` semantics as a pure function: the timeout is `WATCHDOG_USEC`
/// microseconds when it parses and is positive, and `WATCHDOG_PID` is unset or names
/// `my_pid`. Ping at half this interval ([`ping_interval`]).
pub fn watchdog_timeout(usec: Option<&str>, pid: Option<&str>, my_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        let pid: u32 = pid.trim().parse().ok()?;
        if pid != my_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// How often to send `WATCHDOG=1` for a given timeout: half of it, as systemd advises.
pub fn ping_interval(timeout: Duration) -> Duration {
    timeout / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("datagram within 5 s");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn messages_arrive_on_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(&path).unwrap();
        assert!(n.is_enabled());
        n.ready().unwrap();
        assert_eq!(recv(&server), "READY=1");
        n.status("radio up\nmqtt down").unwrap();
        assert_eq!(recv(&server), "STATUS=radio up mqtt down");
        n.watchdog().unwrap();
        assert_eq!(recv(&server), "WATCHDOG=1");
        n.reloading().unwrap();
        let r = recv(&server);
        assert!(r.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{r}");
        let usec: u64 = r.rsplit('=').next().unwrap().parse().unwrap();
        assert!(usec > 0);
        n.stopping().unwrap();
        assert_eq!(recv(&server), "STOPPING=1");
    }

    #[test]
    fn messages_arrive_on_an_abstract_socket() {
        let name = format!("gatewayd-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::new(format!("@{name}")).unwrap();
        n.ready().unwrap();
        assert_eq!(recv(&server), "READY=1");
    }

    #[test]
    fn a_missing_socket_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.sock");
        let n = Notifier::new(&path).unwrap();
        let e = n.ready().unwrap_err().to_string();
        assert!(e.contains("absent.sock"), "{e}");
    }

    #[test]
    fn disabled_notifier_is_a_silent_no_op() {
        let n = Notifier::disabled();
        assert!(!n.is_enabled());
        assert!(n.ready().is_ok());
        assert!(n.watchdog().is_ok());
    }

    #[test]
    fn watchdog_timeout_follows_sd_watchdog_enabled() {
        let d = Duration::from_secs(30);
        assert_eq!(watchdog_timeout(Some("30000000"), None, 7), Some(d));
        assert_eq!(watchdog_timeout(Some("30000000"), Some("7"), 7), Some(d));
        assert_eq!(watchdog_timeout(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_timeout(Some("30000000"), Some("x"), 7), None);
        assert_eq!(watchdog_timeout(Some("0"), None, 7), None);
        assert_eq!(watchdog_timeout(Some("-5"), None, 7), None);
        assert_eq!(watchdog_timeout(Some("abc"), None, 7), None);
        assert_eq!(watchdog_timeout(None, Some("7"), 7), None);
        assert_eq!(ping_interval(d), Duration::from_secs(15));
    }
}
