//! The network's entropy (docs/proof-of-coverage.md §3): the `command/poc_entropy` payload
//! codec and [`EntropyBook`], which keeps the latest values per window for the scheduler.

use std::collections::BTreeMap;

use super::beacon::BeaconWindow;
use super::wire::{bad, CodecError, Reader};

/// Encoded length of a `command/poc_entropy` payload.
pub const ENTROPY_COMMAND_LEN: usize = 44;
/// Windows kept by an [`EntropyBook`].
pub const BOOK_CAPACITY: usize = 4;

/// One `command/poc_entropy` message: `window_len_s (u32) ‖ window_id (u64) ‖ entropy (32)`,
/// big-endian, 44 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntropyCommand {
    /// The window it is for.
    pub window: BeaconWindow,
    /// The network's 32 random bytes.
    pub entropy: [u8; 32],
}

impl EntropyCommand {
    /// Parse a payload; the window length must be valid.
    pub fn decode(bytes: &[u8]) -> Result<EntropyCommand, CodecError> {
        let mut r = Reader::new(bytes);
        let len_s = r.u32("window length")?;
        let id = r.u64("window id")?;
        let entropy = r.array("entropy")?;
        r.finish("poc_entropy")?;
        if !BeaconWindow::valid_len(len_s) {
            return Err(bad(
                "window length",
                format!("{len_s} s (must be ≥ 10 and divide 86400)"),
            ));
        }
        Ok(EntropyCommand {
            window: BeaconWindow { len_s, id },
            entropy,
        })
    }

    /// The payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENTROPY_COMMAND_LEN);
        out.extend_from_slice(&self.window.len_s.to_be_bytes());
        out.extend_from_slice(&self.window.id.to_be_bytes());
        out.extend_from_slice(&self.entropy);
        out
    }
}

/// The latest entropy per window (the newest [`BOOK_CAPACITY`] windows).
#[derive(Debug, Default, Clone)]
pub struct EntropyBook {
    by_window: BTreeMap<BeaconWindow, [u8; 32]>,
}

impl EntropyBook {
    /// Record a command (a later value for the same window replaces the earlier one).
    pub fn insert(&mut self, c: EntropyCommand) {
        self.by_window.insert(c.window, c.entropy);
        while self.by_window.len() > BOOK_CAPACITY {
            self.by_window.pop_first();
        }
    }

    /// The entropy of `window`, if the network sent it.
    pub fn get(&self, window: &BeaconWindow) -> Option<[u8; 32]> {
        self.by_window.get(window).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_fixture_and_errors() {
        let c = EntropyCommand {
            window: BeaconWindow {
                len_s: 21_600,
                id: 82_000,
            },
            entropy: [0xab; 32],
        };
        let b = c.encode();
        assert_eq!(b.len(), ENTROPY_COMMAND_LEN);
        assert_eq!(&b[..12], &[0, 0, 0x54, 0x60, 0, 0, 0, 0, 0, 1, 0x40, 0x50]);
        assert_eq!(EntropyCommand::decode(&b), Ok(c));
        assert!(EntropyCommand::decode(&b[..43])
            .unwrap_err()
            .to_string()
            .contains("entropy"));
        let mut long = b.clone();
        long.push(0);
        assert!(EntropyCommand::decode(&long).is_err());
        let mut bad_len = b;
        bad_len[..4].copy_from_slice(&7_000u32.to_be_bytes());
        assert!(EntropyCommand::decode(&bad_len)
            .unwrap_err()
            .to_string()
            .contains("window length"));
    }

    #[test]
    fn book_keeps_the_newest_windows() {
        let mut book = EntropyBook::default();
        for id in 0..6u64 {
            book.insert(EntropyCommand {
                window: BeaconWindow { len_s: 3600, id },
                entropy: [id as u8; 32],
            });
        }
        assert_eq!(book.get(&BeaconWindow { len_s: 3600, id: 1 }), None);
        assert_eq!(
            book.get(&BeaconWindow { len_s: 3600, id: 5 }),
            Some([5; 32])
        );
        assert_eq!(
            book.get(&BeaconWindow { len_s: 3600, id: 2 }),
            Some([2; 32])
        );
    }
}
