//! Surviving a damaged outbox at start, loudly: a file SQLite cannot read (truncated, random
//! bytes, malformed pages) is moved aside with its `-wal`/`-shm` as
//! `outbox.sqlite.corrupt-<UTC time>`, what can still be read from it is copied into a new
//! outbox row by row, and a lost WAL is detected.
//!
//! # How a lost WAL is detected
//! Committed messages live in `outbox.sqlite-wal` until a checkpoint copies them into the
//! database; if that file disappears or is cut short after a crash, SQLite opens the database
//! without them and says nothing. Two witnesses outside the WAL tell:
//! - the shared-memory index `outbox.sqlite-shm` (left by a crash) records how many WAL
//!   frames were valid (`mxFrame`) and how many were already copied (`nBackfill`); frames in
//!   between that the WAL file no longer holds were lost;
//! - the side file `outbox.sqlite.hwm` holds the highest message id ever committed (written
//!   after commits, at most once a second, by rename); ids above the database's own sequence
//!   at open were committed and are gone.
//!
//! Neither can be fooled into a false alarm; both can miss a loss (the side file lags by up to
//! a second; the index is lost with a power cut), which the documentation says.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

/// How long salvaging a damaged file may take at most (the daemon must come up).
pub const SALVAGE_BUDGET: Duration = Duration::from_secs(2);
/// The high-water-mark side file's suffix (`outbox.sqlite.hwm`).
pub const HWM_SUFFIX: &str = "hwm";

/// What was found wrong with the outbox at open, and what was done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Where the damaged file was moved (with its `-wal`/`-shm`), if it was.
    pub moved_to: Option<PathBuf>,
    /// Messages copied from the damaged file into the new outbox.
    pub salvaged: u64,
    /// Messages known lost (unreadable rows, WAL frames or ids gone); `None`: unknown.
    pub lost: Option<u64>,
    /// One sentence for the log and `gatewayd status`.
    pub summary: String,
}

/// `path` with `suffix` appended to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Whether an error at open means the file's content is damaged (as opposed to permissions,
/// a missing directory or a newer schema).
pub fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

/// Before SQLite opens the file: WAL frames the `-shm` index says were committed but are not
/// in the `-wal` file (missing or cut short). `None` when nothing is known to be lost.
pub fn lost_wal_frames(db: &Path) -> Option<(u64, String)> {
    let shm = std::fs::read(with_suffix(db, "-shm")).ok()?;
    if shm.len() < 136 {
        return None;
    }
    let u32_at = |o: usize| {
        u64::from(u32::from_ne_bytes([
            shm[o],
            shm[o + 1],
            shm[o + 2],
            shm[o + 3],
        ]))
    };
    // WalIndexHdr: isInit at 12, szPage (u16) at 14, mxFrame at 16; WalCkptInfo (at 96):
    // nBackfill at 96.
    if shm[12] != 1 || shm[..48] != shm[48..96] {
        return None;
    }
    let page = match u16::from_ne_bytes([shm[14], shm[15]]) {
        1 => 65536,
        p => u64::from(p),
    };
    let (max_frame, backfilled) = (u32_at(16), u32_at(96));
    if max_frame <= backfilled || page == 0 {
        return None;
    }
    let wal = with_suffix(db, "-wal");
    let have = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let frames_held = have.saturating_sub(32) / (24 + page);
    if frames_held >= max_frame {
        return None;
    }
    let lost = max_frame - backfilled.max(frames_held);
    let how = if have == 0 {
        "is missing".to_string()
    } else {
        format!("was cut to {have} bytes")
    };
    Some((
        lost,
        format!(
            "{} {how}: {lost} committed WAL frames (pages of recently stored messages) were lost",
            wal.display()
        ),
    ))
}

/// The highest id recorded in the side file, if any.
pub fn read_hwm(db: &Path) -> Option<i64> {
    std::fs::read_to_string(with_suffix(db, &format!(".{HWM_SUFFIX}")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Record `id` as the highest committed id (rename over the old side file; errors ignored:
/// the side file only helps detection).
pub fn write_hwm(db: &Path, id: i64) {
    let path = with_suffix(db, &format!(".{HWM_SUFFIX}"));
    let tmp = with_suffix(db, &format!(".{HWM_SUFFIX}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let written = crate::private_file::create_new(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, id.to_string().as_bytes()));
    if written.is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
}

/// The highest id the database itself has given out.
pub fn db_sequence(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT seq FROM sqlite_sequence WHERE name = 'messages'",
        [],
        |r| r.get(0),
    )
    .optional()
    .ok()
    .flatten()
    .unwrap_or(0)
}

/// Let the database give out ids above `id` from now on.
pub fn raise_sequence(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    let n = conn.execute(
        "UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'messages' AND seq < ?1",
        params![id],
    )?;
    if n == 0 && db_sequence(conn) < id {
        conn.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('messages', ?1)",
            params![id],
        )?;
    }
    Ok(())
}

/// Move the database and its `-wal`/`-shm` aside as `<db>.corrupt-<UTC time>`; the new name.
pub fn move_aside(db: &Path, now: SystemTime) -> std::io::Result<PathBuf> {
    let name = format!(
        ".corrupt-{}",
        drivers::time::UtcDateTime::from_system_time(now).iso8601_basic()
    );
    let mut target = with_suffix(db, &name);
    let mut n = 1;
    while target.exists() {
        target = with_suffix(db, &format!("{name}.{n}"));
        n += 1;
    }
    std::fs::rename(db, &target)?;
    for ext in ["-wal", "-shm"] {
        let from = with_suffix(db, ext);
        if from.exists() {
            std::fs::rename(&from, with_suffix(&target, ext))?;
        }
    }
    let _ = std::fs::remove_file(with_suffix(db, &format!(".{HWM_SUFFIX}")));
    Ok(target)
}

/// A row read back from a damaged file.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    id: i64,
    class: i64,
    topic: String,
    payload: Vec<u8>,
    expires_at: Option<i64>,
    stored_at: i64,
    size: i64,
}

/// Read what can be read from the damaged file at `from`, row by row, skipping rows that
/// fail, within [`SALVAGE_BUDGET`]: the rows, and how many ids failed to read.
pub fn salvage(from: &Path) -> (Vec<Row>, u64) {
    // Work on a copy (the damaged file stays as it was for a person to look at), padded with
    // zeros to the size its header states: SQLite refuses a file cut short as a whole, but
    // reads the pages that are there once the missing ones are merely blank.
    let copy = with_suffix(from, ".salvage");
    let source = match padded_copy(from, &copy) {
        Ok(()) => copy.as_path(),
        Err(e) => {
            log::debug!(
                "outbox: salvaging in place, cannot copy {}: {e}",
                from.display()
            );
            from
        }
    };
    let result = salvage_rows(source);
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(&copy, ext));
    }
    result
}

fn padded_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::copy(from, to)?;
    let wal = with_suffix(from, "-wal");
    if wal.exists() {
        std::fs::copy(&wal, with_suffix(to, "-wal"))?;
    }
    let mut head = [0u8; 32];
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(to)?;
    if std::io::Read::read_exact(&mut &f, &mut head).is_ok()
        && head.starts_with(b"SQLite format 3\0")
    {
        let page = match u16::from_be_bytes([head[16], head[17]]) {
            1 => 65536,
            p => u64::from(p),
        };
        let pages = u64::from(u32::from_be_bytes([head[28], head[29], head[30], head[31]]));
        let want = page.saturating_mul(pages);
        let have = f.metadata()?.len();
        if want > have && want <= 1 << 34 && page > 0 {
            // A page cut in the middle is blanked whole: half a page would read as rows
            // with zeros where their bytes were.
            f.set_len(have / page * page)?;
            f.set_len(want)?;
        }
    }
    Ok(())
}

fn salvage_rows(from: &Path) -> (Vec<Row>, u64) {
    let Ok(conn) = Connection::open(from) else {
        return (Vec::new(), 0);
    };
    let deadline = Instant::now() + SALVAGE_BUDGET;
    let max_id: Option<i64> = conn
        .query_row("SELECT max(id) FROM messages", [], |r| r.get(0))
        .ok()
        .flatten()
        .or_else(|| Some(db_sequence(&conn)).filter(|s| *s > 0));
    let read = |r: &rusqlite::Row<'_>| -> rusqlite::Result<Row> {
        Ok(Row {
            id: r.get(0)?,
            class: r.get(1)?,
            topic: r.get(2)?,
            payload: r.get(3)?,
            expires_at: r.get(4)?,
            stored_at: r.get(5)?,
            size: r.get(6)?,
        })
    };
    const COLS: &str = "id, class, topic, payload, expires_at, stored_at, size";
    let mut rows = Vec::new();
    let mut failed = 0u64;
    let mut next = 1i64;
    'scan: while Instant::now() < deadline {
        // Range scan from `next` until it ends or hits a damaged page.
        let scan = conn.prepare(&format!(
            "SELECT {COLS} FROM messages WHERE id >= ?1 ORDER BY id"
        ));
        let mut broke = true;
        if let Ok(mut stmt) = scan {
            if let Ok(mut it) = stmt.query(params![next]) {
                broke = false;
                loop {
                    match it.next() {
                        Ok(Some(r)) => match read(r) {
                            Ok(row) => {
                                next = row.id + 1;
                                rows.push(row);
                            }
                            Err(_) => {
                                broke = true;
                                break;
                            }
                        },
                        Ok(None) => break,
                        Err(_) => {
                            broke = true;
                            break;
                        }
                    }
                    if Instant::now() >= deadline {
                        break 'scan;
                    }
                }
            }
        }
        if !broke {
            break;
        }
        // Point reads past the damage until one succeeds, then scan again from there.
        let Some(max) = max_id else { break };
        let mut point = match conn.prepare(&format!("SELECT {COLS} FROM messages WHERE id = ?1")) {
            Ok(s) => s,
            Err(_) => break,
        };
        loop {
            if next > max || Instant::now() >= deadline {
                break 'scan;
            }
            match point.query_row(params![next], read).optional() {
                Ok(Some(row)) => {
                    next = row.id + 1;
                    rows.push(row);
                    break;
                }
                Ok(None) => next += 1,
                Err(_) => {
                    failed += 1;
                    next += 1;
                }
            }
        }
    }
    (rows, failed)
}

/// Copy salvaged rows into the new database, keeping their ids (their order); rows of an
/// unknown class are left out. The number copied.
pub fn restore(conn: &Connection, rows: &[Row]) -> rusqlite::Result<u64> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let mut n = 0;
    let result = (|| {
        let mut stmt = conn.prepare(
            "INSERT OR IGNORE INTO messages (id, class, topic, payload, expires_at, stored_at, size)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for r in rows {
            if super::Class::from_index(r.class).is_none() {
                continue;
            }
            n += stmt.execute(params![
                r.id,
                r.class,
                r.topic,
                r.payload,
                r.expires_at,
                r.stored_at,
                r.size
            ])? as u64;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT").map(|()| n),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Open the database at `path`; a damaged one is moved aside and what can be read from it is
/// salvaged into a new one; a lost WAL is detected (see [`recover`]). Logs one error line
/// when something was lost or moved.
pub(crate) fn open_or_recover(
    path: &std::path::Path,
) -> Result<(rusqlite::Connection, Option<Recovery>), super::OutboxError> {
    let lost_frames = lost_wal_frames(path);
    let unclean = with_suffix(path, "-wal").exists() || with_suffix(path, "-shm").exists();
    let corrupt = match super::db::open(path).and_then(|conn| super::db::check(conn, path, unclean))
    {
        Ok(conn) => {
            let mut problems = Vec::new();
            // Lost frames say that something was lost, not how many messages.
            let mut lost = None;
            if let Some((_, what)) = lost_frames {
                problems.push(what);
            }
            let seq = db_sequence(&conn);
            if let Some(hwm) = read_hwm(path).filter(|h| *h > seq) {
                let gone = (hwm - seq) as u64;
                problems.push(format!(
                    "message ids {}..={hwm} were committed before the last stop and are gone \
                     (the WAL file was lost or cut short; up to {gone} messages, some perhaps \
                     already delivered)",
                    seq + 1
                ));
                lost = Some(gone);
            }
            if problems.is_empty() {
                return Ok((conn, None));
            }
            let summary = format!("outbox: {}: {}", path.display(), problems.join("; "));
            log::error!("{summary}");
            // New ids continue above the lost ones (and the next start does not report the
            // same loss again).
            if let Some(hwm) = read_hwm(path).filter(|h| *h > seq) {
                if raise_sequence(&conn, hwm).is_err() {
                    write_hwm(path, seq);
                }
            }
            return Ok((
                conn,
                Some(Recovery {
                    moved_to: None,
                    salvaged: 0,
                    lost,
                    summary,
                }),
            ));
        }
        Err(e @ (super::OutboxError::Open { .. } | super::OutboxError::Migrate { .. }))
            if e.corruption() =>
        {
            e
        }
        Err(e) => return Err(e),
    };
    let open_err = |source: std::io::Error| super::OutboxError::Db {
        path: path.to_path_buf(),
        message: format!("cannot move the damaged outbox aside: {source}"),
    };
    let moved = move_aside(path, SystemTime::now()).map_err(open_err)?;
    let (rows, failed) = salvage(&moved);
    let conn = super::db::open(path)?;
    let salvaged = restore(&conn, &rows).map_err(|e| super::OutboxError::Db {
        path: path.to_path_buf(),
        message: format!("cannot copy salvaged messages: {e}"),
    })?;
    let lost = (failed > 0 || salvaged > 0).then_some(failed);
    let summary = format!(
        "outbox: {}: the file was damaged ({}); moved it to {}; {salvaged} messages salvaged, {}",
        path.display(),
        corrupt.source_text(),
        moved.display(),
        match lost {
            Some(0) => "no unreadable rows found (messages in unreadable pages cannot be counted)"
                .to_string(),
            Some(n) => format!("{n} rows unreadable and lost"),
            None => "how many were lost is unknown".to_string(),
        }
    );
    log::error!("{summary}");
    Ok((
        conn,
        Some(Recovery {
            moved_to: Some(moved),
            salvaged,
            lost,
            summary,
        }),
    ))
}

impl super::OutboxError {
    /// Whether this open error means the file's content is damaged.
    fn corruption(&self) -> bool {
        match self {
            super::OutboxError::Open { source, .. }
            | super::OutboxError::Migrate { source, .. } => is_corruption(source),
            _ => false,
        }
    }

    /// The SQLite error text of an open error.
    fn source_text(&self) -> String {
        match self {
            super::OutboxError::Open { source, .. }
            | super::OutboxError::Migrate { source, .. } => source.to_string(),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
#[path = "recover_tests.rs"]
mod tests;
