//! Tests of the outbox's recovery from damaged files at open.

use std::time::{Duration, UNIX_EPOCH};

use super::super::{Class, NewMessage, OutboxHandle};
use super::*;
use crate::config::OutboxConfig;

fn config(path: &Path) -> OutboxConfig {
    OutboxConfig {
        path: path.to_path_buf(),
        max_bytes: 64 * 1024 * 1024,
        uplink_expiry: None,
        stats_expiry: None,
        commit_delay: Duration::ZERO,
    }
}

fn msg(n: u32) -> NewMessage {
    NewMessage::new(
        Class::Uplink,
        format!("t/{n}"),
        vec![(n % 251) as u8; 200 + (n % 7) as usize],
    )
}

/// A database with `n` uplinks, closed cleanly.
async fn filled(path: &Path, n: u32) {
    let o = OutboxHandle::open(&config(path)).unwrap();
    o.store((0..n).map(msg).collect()).await.unwrap();
    o.close().await.unwrap();
}

fn corrupt_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().contains(".corrupt-"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn random_bytes_are_moved_aside_and_a_new_outbox_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite");
    let junk: Vec<u8> = (0..20_000u32).map(|i| (i * 7919 % 256) as u8).collect();
    std::fs::write(&path, &junk).unwrap();
    let o = OutboxHandle::open(&config(&path)).unwrap();
    let stats = o.stats().await.unwrap();
    let r = stats.recovery.expect("recovery reported");
    assert_eq!(r.salvaged, 0);
    assert_eq!(r.lost, None, "unknown, not zero");
    let moved = r.moved_to.expect("moved aside");
    assert_eq!(
        std::fs::read(&moved).unwrap(),
        junk,
        "the bad file kept as it was"
    );
    assert!(r.summary.contains("moved it to"), "{}", r.summary);
    o.store(vec![msg(1)]).await.unwrap();
    assert_eq!(o.stats().await.unwrap().messages(), 1);
    o.close().await.unwrap();
    assert_eq!(corrupt_files(dir.path()), vec![moved]);
}

#[tokio::test]
async fn a_truncated_file_is_moved_aside_and_its_readable_rows_salvaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite");
    filled(&path, 2000).await;
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let o = OutboxHandle::open(&config(&path)).unwrap();
    let r = o
        .stats()
        .await
        .unwrap()
        .recovery
        .expect("recovery reported");
    assert!(r.moved_to.is_some());
    assert!(
        r.salvaged > 100 && r.salvaged < 2000,
        "some rows salvaged: {r:?}"
    );
    // What was salvaged is handed out in the original order with the original content.
    let got = o.next(5000).await.unwrap();
    assert_eq!(got.len() as u64, r.salvaged);
    assert!(got.windows(2).all(|w| w[0].id < w[1].id));
    for m in &got {
        let n: u32 = m.topic[2..].parse().unwrap();
        assert_eq!(m.payload, msg(n).payload);
    }
    o.close().await.unwrap();
}

#[tokio::test]
async fn malformed_pages_behind_a_good_header_are_found_and_salvaged_around() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite");
    filled(&path, 3000).await;
    // Overwrite a few pages in the middle with garbage; the header (page 1) stays valid.
    let mut bytes = std::fs::read(&path).unwrap();
    let page = 4096;
    let pages = bytes.len() / page;
    for p in [pages / 3, pages / 2] {
        for b in &mut bytes[p * page..(p + 1) * page] {
            *b = 0xa5;
        }
    }
    std::fs::write(&path, &bytes).unwrap();
    let o = OutboxHandle::open(&config(&path)).unwrap();
    let r = o
        .stats()
        .await
        .unwrap()
        .recovery
        .expect("recovery reported");
    assert!(r.moved_to.is_some(), "{r:?}");
    assert!(r.salvaged > 1000 && r.salvaged < 3000, "{r:?}");
    assert_eq!(o.stats().await.unwrap().messages(), r.salvaged);
    o.close().await.unwrap();
}

#[tokio::test]
async fn a_lost_wal_is_reported_with_the_ids_that_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite");
    filled(&path, 10).await;
    {
        let o = OutboxHandle::open(&config(&path)).unwrap();
        o.store((10..20).map(msg).collect()).await.unwrap();
        o.close().await.unwrap();
    }
    // What a lost WAL leaves behind: the database as of the last checkpoint (before the
    // second batch), while the side file remembers id 20.
    let c = Connection::open(&path).unwrap();
    c.execute_batch("DELETE FROM messages WHERE id > 10; UPDATE sqlite_sequence SET seq = 10")
        .unwrap();
    drop(c);
    let o = OutboxHandle::open(&config(&path)).unwrap();
    let r = o.stats().await.unwrap().recovery.expect("loss reported");
    assert_eq!(r.moved_to, None);
    assert_eq!(r.lost, Some(10));
    assert!(r.summary.contains("11..=20"), "{}", r.summary);
    // New ids continue above the lost ones, and the loss is reported once.
    o.store(vec![msg(99)]).await.unwrap();
    assert_eq!(o.next(100).await.unwrap().last().map(|m| m.id), Some(21));
    o.close().await.unwrap();
    let o = OutboxHandle::open(&config(&path)).unwrap();
    assert_eq!(o.stats().await.unwrap().recovery, None);
    o.close().await.unwrap();
}

#[test]
fn the_shm_index_tells_when_wal_frames_are_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite");
    assert_eq!(lost_wal_frames(&path), None, "no files, nothing known");
    // A WAL index as SQLite leaves it after a crash: 40 frames, 10 copied.
    let mut shm = vec![0u8; 32768];
    let mut hdr = vec![0u8; 48];
    hdr[12] = 1;
    hdr[14..16].copy_from_slice(&4096u16.to_ne_bytes());
    hdr[16..20].copy_from_slice(&40u32.to_ne_bytes());
    shm[..48].copy_from_slice(&hdr);
    shm[48..96].copy_from_slice(&hdr);
    shm[96..100].copy_from_slice(&10u32.to_ne_bytes());
    std::fs::write(with_suffix(&path, "-shm"), &shm).unwrap();
    let (lost, what) = lost_wal_frames(&path).expect("missing WAL");
    assert_eq!(lost, 30);
    assert!(what.contains("is missing"), "{what}");
    // Cut to 20 frames: 20 lost.
    std::fs::write(with_suffix(&path, "-wal"), vec![0u8; 32 + 20 * (24 + 4096)]).unwrap();
    assert_eq!(lost_wal_frames(&path).map(|l| l.0), Some(20));
    // Whole: nothing lost.
    std::fs::write(with_suffix(&path, "-wal"), vec![0u8; 32 + 40 * (24 + 4096)]).unwrap();
    assert_eq!(lost_wal_frames(&path), None);
}

#[test]
fn moved_aside_names_carry_the_utc_time_and_take_the_wal_along() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite");
    for ext in ["", "-wal", "-shm"] {
        std::fs::write(with_suffix(&path, ext), ext).unwrap();
    }
    let t = UNIX_EPOCH + Duration::from_secs(1_780_000_000); // 2026-05-28T20:26:40Z
    let moved = move_aside(&path, t).unwrap();
    assert!(
        moved.ends_with("outbox.sqlite.corrupt-20260528T202640Z"),
        "{}",
        moved.display()
    );
    assert_eq!(std::fs::read(with_suffix(&moved, "-wal")).unwrap(), b"-wal");
    assert_eq!(std::fs::read(with_suffix(&moved, "-shm")).unwrap(), b"-shm");
    assert!(!path.exists() && !with_suffix(&path, "-wal").exists());
    // A second one in the same second gets its own name.
    std::fs::write(&path, "again").unwrap();
    let second = move_aside(&path, t).unwrap();
    assert_ne!(second, moved);
}
