//! The receipt chain's state file (`receipts.state` in the state directory): the key it
//! belongs to, the next uplink id and the open period, so that consecutive receipts link up
//! across restarts (docs/proof-of-coverage.md §6.4). Written atomically (temp file + rename),
//! mode 0600 whatever the umask.

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::digest::{digest, SHA256};

use super::identity::PublicKey;
use super::receipt::{genesis, TransferReceipt, RECEIPT_BODY_LEN};
use super::wire::{CodecError, Reader};

/// File name inside the state directory.
pub const STATE_FILE_NAME: &str = "receipts.state";
const MAGIC: &[u8; 4] = b"GRST";
const VERSION: u8 = 1;
/// Encoded length: magic, version, key, next id, open period, SHA-256 check.
pub const STATE_LEN: usize = 4 + 1 + 32 + 4 + RECEIPT_BODY_LEN + 32;

/// The persisted chain state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptState {
    /// The hotspot key the chain belongs to.
    pub key: PublicKey,
    /// The next uplink id the chain waits for.
    pub next_id: u32,
    /// The open period (`period_end_ms` = `period_start_ms`).
    pub open: TransferReceipt,
}

/// Why the state file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The contents are not a state file.
    #[error("{path}: not a receipt state file: {why}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

impl ReceiptState {
    /// A new chain of `key` from its genesis, period starting at `now_ms`.
    pub fn fresh(key: PublicKey, next_id: u32, now_ms: u64) -> ReceiptState {
        let g = genesis(&key);
        ReceiptState {
            key,
            next_id,
            open: TransferReceipt {
                period_start_ms: now_ms,
                period_end_ms: now_ms,
                count: 0,
                bytes: 0,
                first_uplink_id: 0,
                last_uplink_id: 0,
                prev_head: g,
                head: g,
            },
        }
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(STATE_LEN);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.key.0);
        out.extend_from_slice(&self.next_id.to_be_bytes());
        self.open.write(&mut out);
        let check = digest(&SHA256, &out);
        out.extend_from_slice(check.as_ref());
        out
    }

    /// Parse the file's bytes (exact length, magic, version, checksum).
    pub fn decode(bytes: &[u8]) -> Result<ReceiptState, CodecError> {
        let bad = |why: &str| CodecError::BadValue {
            what: "receipt state",
            why: why.to_string(),
        };
        if bytes.len() != STATE_LEN {
            return Err(bad(&format!("{} bytes, expected {STATE_LEN}", bytes.len())));
        }
        let (data, check) = bytes.split_at(STATE_LEN - 32);
        if digest(&SHA256, data).as_ref() != check {
            return Err(bad("checksum mismatch (a torn or altered file)"));
        }
        let mut r = Reader::new(data);
        if r.take(4, "magic")? != MAGIC {
            return Err(bad("wrong magic"));
        }
        let version = r.take(1, "version")?[0];
        if version != VERSION {
            return Err(bad(&format!("version {version}, expected {VERSION}")));
        }
        let key = PublicKey(r.array("key")?);
        let next_id = r.u32("next id")?;
        let open = TransferReceipt::read(&mut r)?;
        Ok(ReceiptState { key, next_id, open })
    }
}

/// Read the state at `path`; `Ok(None)` when there is none yet.
pub fn load(path: &Path) -> Result<Option<ReceiptState>, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    ReceiptState::decode(&bytes)
        .map(Some)
        .map_err(|e| StateError::Malformed {
            path: path.to_owned(),
            why: e.to_string(),
        })
}

/// Where the previous generation of the state at `path` is kept (`receipts.state.prev`):
/// what the chain falls back on when the current file is damaged (docs §6.4.2).
pub fn prev_path(path: &Path) -> PathBuf {
    path.with_extension("state.prev")
}

/// Write `state` to `path` atomically, keeping the file it replaces as
/// [`prev_path`]; with `sync`, also to the disk before returning.
pub fn save(path: &Path, state: &ReceiptState, sync: bool) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("state.tmp");
    // A new file every time (a temp file left by a crash is replaced), mode 0600 whatever
    // the umask: the chain's state is the daemon's alone.
    let _ = std::fs::remove_file(&tmp);
    let mut f = crate::private_file::create_new(&tmp).map_err(io)?;
    f.write_all(&state.encode()).map_err(io)?;
    if sync {
        f.sync_all().map_err(io)?;
    }
    drop(f);
    // The current file becomes the previous generation (a second link, so `path` always
    // exists), then the new one replaces it.
    if path.exists() {
        // A file an older version made with the umask's mode becomes private as it ages
        // into the previous generation (best effort: the new file is 0600 regardless).
        let _ = std::fs::set_permissions(
            path,
            std::os::unix::fs::PermissionsExt::from_mode(crate::private_file::PRIVATE_MODE),
        );
        let prev_tmp = path.with_extension("state.prev.tmp");
        let _ = std::fs::remove_file(&prev_tmp);
        std::fs::hard_link(path, &prev_tmp).map_err(io)?;
        std::fs::rename(&prev_tmp, prev_path(path)).map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    if sync {
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ReceiptState {
        let mut s = ReceiptState::fresh(PublicKey([5; 32]), 77, 1_000);
        s.open.count = 2;
        s.open.bytes = 30;
        s.open.first_uplink_id = 75;
        s.open.last_uplink_id = 76;
        s.open.head = [9; 32];
        s
    }

    #[test]
    fn round_trip_and_layout() {
        let s = sample();
        let b = s.encode();
        assert_eq!(b.len(), STATE_LEN);
        assert_eq!(&b[..5], b"GRST\x01");
        assert_eq!(&b[37..41], &[0, 0, 0, 77]);
        assert_eq!(ReceiptState::decode(&b).unwrap(), s);
    }

    #[test]
    fn damaged_files_are_rejected_with_the_reason() {
        let b = sample().encode();
        let mut flipped = b.clone();
        flipped[50] ^= 1;
        assert!(ReceiptState::decode(&flipped)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        assert!(ReceiptState::decode(&b[..100])
            .unwrap_err()
            .to_string()
            .contains("100 bytes"));
    }

    #[test]
    fn save_and_load_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE_NAME);
        assert!(load(&path).unwrap().is_none());
        save(&path, &sample(), true).unwrap();
        assert_eq!(load(&path).unwrap(), Some(sample()));
        assert!(load(&prev_path(&path)).unwrap().is_none());
        let mut next = sample();
        next.next_id = 90;
        save(&path, &next, false).unwrap();
        assert_eq!(load(&path).unwrap(), Some(next));
        assert_eq!(load(&prev_path(&path)).unwrap(), Some(sample()));
        // A file from before (made with the umask's 0644) is private once it is the
        // previous generation; the current one is new and 0600.
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        save(&path, &sample(), false).unwrap();
        assert_eq!((mode(&path), mode(&prev_path(&path))), (0o600, 0o600));
        std::fs::write(&path, b"junk").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("receipts.state") && e.contains("4 bytes"), "{e}");
    }
}
