//! De-duplication of the same frame heard twice within a short window (two IF channels, two
//! antennas, a ghost on a neighbouring channel): pure, time passed in.

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

/// Most remembered frames; beyond this the oldest are forgotten early (bounded memory).
pub const MAX_REMEMBERED: usize = 16_384;

/// Remembers recently seen payloads.
#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    seen: HashSet<u64>,
    order: VecDeque<(Instant, u64)>,
    hasher: std::collections::hash_map::RandomState,
}

impl Dedup {
    /// A de-duplicator with the given window (zero disables it).
    pub fn new(window: Duration) -> Dedup {
        Dedup {
            window,
            seen: HashSet::new(),
            order: VecDeque::new(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// `true` if `payload` was already seen within the window; otherwise remembers it.
    pub fn is_duplicate(&mut self, now: Instant, payload: &[u8]) -> bool {
        if self.window.is_zero() {
            return false;
        }
        while let Some(&(at, key)) = self.order.front() {
            if now.saturating_duration_since(at) < self.window && self.order.len() < MAX_REMEMBERED
            {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&key);
        }
        let key = self.hasher.hash_one(payload);
        if self.seen.contains(&key) {
            return true;
        }
        self.seen.insert(key);
        self.order.push_back((now, key));
        false
    }

    /// Number of remembered frames.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_within_window_only() {
        let t0 = Instant::now();
        let mut d = Dedup::new(Duration::from_millis(200));
        assert!(!d.is_duplicate(t0, b"abc"));
        assert!(d.is_duplicate(t0 + Duration::from_millis(100), b"abc"));
        assert!(!d.is_duplicate(t0 + Duration::from_millis(100), b"abd"));
        assert!(!d.is_duplicate(t0 + Duration::from_millis(250), b"abc"));
    }

    #[test]
    fn zero_window_disables() {
        let t0 = Instant::now();
        let mut d = Dedup::new(Duration::ZERO);
        assert!(!d.is_duplicate(t0, b"x"));
        assert!(!d.is_duplicate(t0, b"x"));
        assert!(d.is_empty());
    }

    #[test]
    fn memory_is_bounded() {
        let t0 = Instant::now();
        let mut d = Dedup::new(Duration::from_secs(60));
        for i in 0..(MAX_REMEMBERED as u32 + 100) {
            d.is_duplicate(t0, &i.to_le_bytes());
        }
        assert!(d.len() <= MAX_REMEMBERED);
    }
}
