//! The outbox's SQLite file: opening, pragmas, the versioned schema and its migrations.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, ErrorCode};

use super::OutboxError;

/// Schema migrations, in order. Migration `i` takes the file from `user_version = i` to
/// `user_version = i + 1`. Never edit a released entry: append a new one.
pub(crate) const MIGRATIONS: &[&str] = &[
    // v1: one table of messages; `id` never reused (AUTOINCREMENT) so ids order by storage time;
    // `class` 0 = Control .. 3 = Stats; times in ms since the UNIX epoch; `size` = topic +
    // payload bytes (the quantity bounded by `max_bytes`).
    "CREATE TABLE messages (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        class      INTEGER NOT NULL,
        topic      TEXT    NOT NULL,
        payload    BLOB    NOT NULL,
        expires_at INTEGER,
        stored_at  INTEGER NOT NULL,
        size       INTEGER NOT NULL
    );
    CREATE INDEX messages_class_id ON messages (class, id);",
];

/// Page cache per connection, in KiB (negative `cache_size` in SQLite's terms).
const CACHE_KIB: i64 = 512;
/// WAL pages after which a commit checkpoints them into the database (SQLite's default is
/// 1000, 4 MiB: on a small card the WAL alone could fill the disk, and a checkpoint then
/// needs as much again). 128 pages = 512 KiB, well inside the outbox's free-space margin.
const WAL_AUTOCHECKPOINT: i64 = 128;
/// The WAL file is truncated back to this size after a checkpoint resets it.
const WAL_SIZE_LIMIT: i64 = 1024 * 1024;

/// Open (creating if needed) and migrate the database at `path`.
pub(crate) fn open(path: &Path) -> Result<Connection, OutboxError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| OutboxError::CreateDir {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let open_err = |source: rusqlite::Error| OutboxError::Open {
        path: path.to_path_buf(),
        hint: hint(&source),
        source,
    };
    // Created 0600 here: SQLite would create it (and its -wal, -shm) world-readable. If this
    // fails, SQLite's own open below says why, naming the file.
    if let Err(e) = crate::private_file::ensure_private(path) {
        log::debug!("outbox: {}: {e}", path.display());
    }
    let conn = Connection::open(path).map_err(open_err)?;
    configure(&conn).map_err(open_err)?;
    migrate(&conn, path)?;
    // Fold a WAL left by a crash into the database now (and truncate it), so it starts small;
    // on a full disk this may fail, which changes nothing.
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        log::debug!("outbox: {}: checkpoint at open: {e}", path.display());
    }
    Ok(conn)
}

fn hint(err: &rusqlite::Error) -> &'static str {
    match err.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
            " (the file is corrupt or not an SQLite database; move it away to start empty)"
        }
        Some(ErrorCode::CannotOpen) | Some(ErrorCode::PermissionDenied) => {
            " (check the path and the permissions of the file and its directory)"
        }
        Some(ErrorCode::ReadOnly) => " (the file or its directory is read-only)",
        _ => "",
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // Reading the journal mode touches the file: a corrupt file fails here, at open.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        log::warn!("outbox: SQLite refused WAL journal mode (got {mode}); continuing");
    }
    // FULL: a COMMIT has reached the disk when it returns (power cut loses nothing acknowledged).
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT)?;
    conn.query_row(
        &format!("PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}"),
        [],
        |_| Ok(()),
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(())
}

/// Bring the schema up to the newest version, one migration per transaction.
pub(crate) fn migrate(conn: &Connection, path: &Path) -> Result<(), OutboxError> {
    let db_err = |source: rusqlite::Error| OutboxError::Open {
        path: path.to_path_buf(),
        hint: hint(&source),
        source,
    };
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err)?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported || version < 0 {
        return Err(OutboxError::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let next = i as i64 + 1;
        let batch = format!("BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {next}; COMMIT;");
        if let Err(source) = conn.execute_batch(&batch) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(OutboxError::Migrate {
                path: path.to_path_buf(),
                version: next,
                source,
            });
        }
        log::info!(
            "outbox: {}: migrated schema to version {next}",
            path.display()
        );
    }
    Ok(())
}

/// Read every row once (and, after an unclean stop, run `PRAGMA quick_check`), so a damaged
/// file is found at open rather than in the middle of a delivery.
pub(crate) fn check(
    conn: Connection,
    path: &Path,
    unclean: bool,
) -> Result<Connection, OutboxError> {
    let err = |source: rusqlite::Error| OutboxError::Open {
        path: path.to_path_buf(),
        hint: hint(&source),
        source,
    };
    conn.query_row(
        "SELECT count(*), total(length(topic)), total(length(payload)) FROM messages",
        [],
        |_| Ok(()),
    )
    .map_err(err)?;
    if unclean {
        let verdict: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(err)?;
        if verdict != "ok" {
            return Err(err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(format!("quick_check: {verdict}")),
            )));
        }
    }
    Ok(conn)
}

/// Milliseconds since the UNIX epoch (0 for earlier times, saturating far in the future).
pub(crate) fn to_ms(t: SystemTime) -> i64 {
    i64::try_from(drivers::time::unix_ms(t)).unwrap_or(i64::MAX)
}

/// The inverse of [`to_ms`].
pub(crate) fn from_ms(ms: i64) -> SystemTime {
    drivers::time::from_unix_ms(u64::try_from(ms).unwrap_or(0))
}
