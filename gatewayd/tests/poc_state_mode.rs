//! Every state file (the PoC key `identity.pk8`, the receipt chain's `receipts.state` and
//! its previous generation `receipts.state.prev`, the outbox and the duty-cycle ledger with
//! their SQLite `-wal`/`-shm`) is created 0600 whatever the umask. The umask is per process, so the test runs the daemon's own start-up
//! calls (`KeyFileSigner::load_or_create`, `receipt_task::prepare`, the outbox's and the ledger's
//! open) in a child process — this
//! test binary again, running only this test — whose umask is 000.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gatewayd::config::OutboxConfig;
use gatewayd::guard::DutyCycleLedger;
use gatewayd::outbox::OutboxHandle;
use gatewayd::poc::identity::{KeyFileSigner, Signer, KEY_FILE_NAME};
use gatewayd::poc::receipt_state::STATE_FILE_NAME;
use gatewayd::poc::receipt_task;

/// Set in the child: the directory to create the files in.
const CHILD_DIR: &str = "GATEWAYD_TEST_UMASK_000_DIR";
/// Set in the child: where it says it is ready and learns that the parent is done.
const CTRL_DIR: &str = "GATEWAYD_TEST_UMASK_000_CTRL";
/// A file made with a plain `File::create`, which follows the umask.
const CANARY: &str = "canary";

/// File name → mode in octal, of every file in `dir`.
fn modes(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (
                name,
                format!("{:04o}", e.metadata().unwrap().mode() & 0o7777),
            )
        })
        .collect()
}

/// What the daemon does at start-up, twice (a restart), under umask 000.
fn child(dir: &Path) {
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    std::fs::File::create(dir.join(CANARY)).unwrap();
    for now_ms in [1_000, 2_000] {
        let key = KeyFileSigner::load_or_create(&dir.join(KEY_FILE_NAME)).unwrap();
        receipt_task::prepare(&dir.join(STATE_FILE_NAME), key.public_key(), now_ms);
    }
    // Held open while the parent looks, so their -wal and -shm exist too.
    let _ledger = DutyCycleLedger::open(&dir.join("dutycycle.sqlite")).unwrap();
    let _outbox = OutboxHandle::open(&OutboxConfig {
        path: dir.join("outbox.sqlite"),
        max_bytes: 1 << 20,
        uplink_expiry: None,
        stats_expiry: None,
        commit_delay: std::time::Duration::ZERO,
    })
    .unwrap();
    // Tell the parent, and keep the databases open until it has looked (at most 60 s).
    let ctrl = Path::new(&std::env::var_os(CTRL_DIR).unwrap()).to_path_buf();
    std::fs::write(ctrl.join("ready"), "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ctrl.join("done").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn state_files_are_0600_under_umask_000() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ctrl = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "state_files_are_0600_under_umask_000",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .env(CTRL_DIR, ctrl.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ctrl.path().join("ready").exists() && Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut modes = modes(dir.path());
    std::fs::write(ctrl.path().join("done"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The umask really was 000 in the child: a plain file came out world-writable.
    assert_eq!(modes.remove(CANARY).as_deref(), Some("0666"), "{modes:?}");
    for f in [
        KEY_FILE_NAME.to_owned(),
        STATE_FILE_NAME.to_owned(),
        format!("{STATE_FILE_NAME}.prev"),
        "outbox.sqlite".to_owned(),
        "outbox.sqlite-wal".to_owned(),
        "outbox.sqlite-shm".to_owned(),
        "dutycycle.sqlite".to_owned(),
    ] {
        assert!(modes.contains_key(&f), "{f} was created: {modes:?}");
    }
    let open: Vec<_> = modes.iter().filter(|(_, m)| *m != "0600").collect();
    assert!(open.is_empty(), "every state file is 0600: {modes:?}");
}
