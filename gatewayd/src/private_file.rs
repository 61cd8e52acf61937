//! Files only the daemon's user may read or write: every state file (the PoC key and the
//! receipt chain's state, docs/proof-of-coverage.md §2, §6.4.2; the outbox and the duty-cycle
//! ledger, whose `-wal`/`-shm` SQLite creates with the database's mode) is created with mode
//! 0600 whatever the umask.

use std::fs::{File, OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of every state file: read and write for the owner only.
pub const PRIVATE_MODE: u32 = 0o600;

/// Create the new file `path` (it must not exist) for writing with mode exactly 0600: asked
/// for at creation, so the file is never more open than that, and set again on the open
/// file, because the umask may have taken bits from it.
pub fn create_new(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_MODE)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(PRIVATE_MODE))?;
    Ok(file)
}

/// Make sure the file `path` exists, creating it empty with mode 0600 if it does not (an
/// existing file keeps its mode): called before SQLite opens a database, which would otherwise
/// create it, and its `-wal` and `-shm` after it, with 0644 less the umask.
pub fn ensure_private(path: &Path) -> std::io::Result<()> {
    match create_new(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn created_0600_and_never_over_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        create_new(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        let again = create_new(&path).unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
    }
}
