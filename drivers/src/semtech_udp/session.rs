//! The backend's pure decision state: which gateway EUI was announced, the downlink route
//! (address, version and EUI of the latest PULL_DATA) and the PULL_RESPs awaiting a TX_ACK
//! with their deadlines. No I/O; time is passed in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::packet::Version;
use crate::radio::Eui64;

/// Where downlinks go: the source of the latest PULL_DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    /// UDP address of the forwarder's downstream socket.
    pub addr: SocketAddr,
    /// Protocol version the forwarder speaks.
    pub version: Version,
    /// Gateway EUI of that PULL_DATA.
    pub gateway: Eui64,
}

/// Session state; `T` is what waits for a TX_ACK (a reply channel in the backend).
#[derive(Debug)]
pub(crate) struct Session<T> {
    gateway: Option<Eui64>,
    route: Option<Route>,
    pending: HashMap<u16, (Instant, T)>,
}

impl<T> Session<T> {
    pub(crate) fn new() -> Self {
        Session {
            gateway: None,
            route: None,
            pending: HashMap::new(),
        }
    }

    /// A datagram carried `eui`; true when it is new or changed (announce it).
    pub(crate) fn saw_gateway(&mut self, eui: Eui64) -> bool {
        let changed = self.gateway != Some(eui);
        self.gateway = Some(eui);
        changed
    }

    /// A PULL_DATA arrived: it becomes the downlink route. True when the EUI is to be
    /// announced.
    pub(crate) fn pull_data(&mut self, addr: SocketAddr, version: Version, gateway: Eui64) -> bool {
        self.route = Some(Route {
            addr,
            version,
            gateway,
        });
        self.saw_gateway(gateway)
    }

    /// The current downlink route.
    pub(crate) fn route(&self) -> Option<Route> {
        self.route
    }

    /// A token not used by a pending PULL_RESP, drawn from `random`.
    pub(crate) fn new_token(&self, mut random: impl FnMut() -> u16) -> u16 {
        // With at most a few pending entries this ends at once; bounded all the same.
        let mut token = random();
        for _ in 0..64 {
            if !self.pending.contains_key(&token) {
                break;
            }
            token = random();
        }
        token
    }

    /// Wait for the TX_ACK of `token` until `deadline`.
    pub(crate) fn add_pending(&mut self, token: u16, deadline: Instant, waiter: T) {
        self.pending.insert(token, (deadline, waiter));
    }

    /// The TX_ACK for `token` arrived.
    pub(crate) fn take_pending(&mut self, token: u16) -> Option<T> {
        self.pending.remove(&token).map(|(_, w)| w)
    }

    /// The earliest deadline of a pending PULL_RESP.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|(d, _)| *d).min()
    }

    /// Remove and return the waiters whose deadline has passed at `now`.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<T> {
        let expired: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, (d, _))| *d <= now)
            .map(|(t, _)| *t)
            .collect();
        expired
            .into_iter()
            .filter_map(|t| self.take_pending(t))
            .collect()
    }

    /// Remove and return all waiters (shutdown).
    pub(crate) fn drain(&mut self) -> Vec<T> {
        self.pending.drain().map(|(_, (_, w))| w).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const A: Eui64 = Eui64([1; 8]);
    const B: Eui64 = Eui64([2; 8]);

    #[test]
    fn announce_on_first_sight_and_change() {
        let mut s: Session<()> = Session::new();
        assert!(s.route().is_none());
        assert!(s.saw_gateway(A));
        assert!(!s.saw_gateway(A));
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert!(!s.pull_data(addr, Version::V2, A));
        assert_eq!(
            s.route(),
            Some(Route {
                addr,
                version: Version::V2,
                gateway: A
            })
        );
        let addr2: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        assert!(s.pull_data(addr2, Version::V1, B));
        assert_eq!(s.route().unwrap().addr, addr2);
        assert_eq!(s.route().unwrap().version, Version::V1);
    }

    #[test]
    fn pending_tokens_expire_and_resolve() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut s = Session::new();
        s.add_pending(1, t0 + 100 * ms, "a");
        s.add_pending(2, t0 + 50 * ms, "b");
        s.add_pending(3, t0 + 200 * ms, "c");
        assert_eq!(s.next_deadline(), Some(t0 + 50 * ms));
        assert_eq!(s.take_pending(1), Some("a"));
        assert_eq!(s.take_pending(1), None);
        assert!(s.expire(t0 + 49 * ms).is_empty());
        assert_eq!(s.expire(t0 + 50 * ms), vec!["b"]);
        assert_eq!(s.next_deadline(), Some(t0 + 200 * ms));
        // Tokens in use are not handed out again.
        let mut draws = [3u16, 3, 4].into_iter();
        assert_eq!(s.new_token(|| draws.next().unwrap_or(9)), 4);
        assert_eq!(s.drain(), vec!["c"]);
        assert_eq!(s.next_deadline(), None);
    }
}
