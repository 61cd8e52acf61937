//! The proof-of-coverage state files (the key `identity.pk8`, the receipt chain's
//! `receipts.state` and its previous generation `receipts.state.prev`) are created 0600
//! whatever the umask. The umask is per process, so the test runs the daemon's own start-up
//! calls (`KeyFileSigner::load_or_create`, `receipt_task::prepare`) in a child process — this
//! test binary again, running only this test — whose umask is 000.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use gatewayd::poc::identity::{KeyFileSigner, Signer, KEY_FILE_NAME};
use gatewayd::poc::receipt_state::STATE_FILE_NAME;
use gatewayd::poc::receipt_task;

/// Set in the child: the directory to create the files in.
const CHILD_DIR: &str = "GATEWAYD_TEST_UMASK_000_DIR";
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
}

#[test]
fn state_files_are_0600_under_umask_000() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "state_files_are_0600_under_umask_000",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut modes = modes(dir.path());
    // The umask really was 000 in the child: a plain file came out world-writable.
    assert_eq!(modes.remove(CANARY).as_deref(), Some("0666"), "{modes:?}");
    let want: BTreeMap<String, String> = [
        KEY_FILE_NAME.to_owned(),
        STATE_FILE_NAME.to_owned(),
        format!("{STATE_FILE_NAME}.prev"),
    ]
    .into_iter()
    .map(|f| (f, "0600".to_owned()))
    .collect();
    assert_eq!(modes, want);
}
