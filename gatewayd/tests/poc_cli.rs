//! `gatewayd keys …` and `gatewayd poc verify` through the real binary, including receipts
//! checked against an `--uplinks` file.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

fn gatewayd(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatewayd"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn keys_generate_show_onboard_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id.pk8");
    let key_s = key.to_str().unwrap();

    let out = gatewayd(&["keys", "generate", "--out", key_s], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = gatewayd(&["keys", "generate", "--out", key_s], None);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("refusing to overwrite"),
        "{}",
        text(&again.stderr)
    );

    let shown = gatewayd(&["keys", "show", "--key", key_s], None);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let shown = text(&shown.stdout);
    let address = shown
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .unwrap()
        .to_owned();
    assert_eq!(address.len(), 64);
    assert!(shown.contains(&format!("address:    {address}")));

    let onboard = gatewayd(
        &["keys", "onboard", "--owner", "wallet-9", "--key", key_s],
        None,
    );
    assert!(onboard.status.success(), "{}", text(&onboard.stderr));
    let statement = text(&onboard.stdout).trim().to_owned();

    // Valid from stdin; a tampered copy (owner changed, same length) fails on its signature.
    let tampered = statement.replace(&hex_of("wallet-9"), &hex_of("wallet-8"));
    assert_ne!(tampered, statement);
    let verify = gatewayd(
        &["poc", "verify"],
        Some(&format!("{statement}\n{tampered}\n")),
    );
    assert_eq!(verify.status.code(), Some(1));
    let lines = text(&verify.stdout);
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines[0], format!("-:1: valid Onboarding from {address}"));
    assert!(
        lines[1].starts_with("-:2: INVALID: BadSignature: bad signature"),
        "{lines:?}"
    );

    // All valid: exit 0 (file argument).
    let file = dir.path().join("reports.txt");
    std::fs::write(&file, format!("{statement}\n")).unwrap();
    let ok = gatewayd(&["poc", "verify", file.to_str().unwrap()], None);
    assert!(ok.status.success(), "{}", text(&ok.stdout));
}

/// A key made by `gatewayd keys generate` in a new temp dir (kept alive by the returned dir).
fn generated_key() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id.pk8");
    let out = gatewayd(&["keys", "generate", "--out", key.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    (dir, key)
}

#[test]
fn world_readable_key_is_refused_with_its_name() {
    let (_dir, key) = generated_key();
    let key_s = key.to_str().unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = gatewayd(&["keys", "show", "--key", key_s], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("id.pk8") && err.contains("0644"), "{err}");
}

#[test]
fn damaged_key_is_explained_with_what_to_do() {
    let (_dir, key) = generated_key();
    let key_s = key.to_str().unwrap();
    // Cut short (as by a full disk or a bad copy); the mode stays 0600.
    let bytes = std::fs::read(&key).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&key)
        .unwrap()
        .set_len(40)
        .unwrap();
    let out = gatewayd(&["keys", "show", "--key", key_s], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for part in [
        &format!("key file {key_s} is not a valid Ed25519 key (PKCS#8, DER)"),
        "it is 40 bytes where its DER header announces 83",
        "it is truncated",
        "Restore it from a backup",
        &format!("mv {key_s} {key_s}.damaged"),
        "new identity",
    ] {
        assert!(err.contains(part), "{part:?} not in {err}");
    }
    assert!(!err.contains("InvalidEncoding"), "{err}");
    // Nothing was changed: the damaged file is still there as it was.
    assert_eq!(std::fs::read(&key).unwrap(), bytes[..40]);
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Receipts of a hotspot over consecutive periods, each covering one id range, with the
/// uplinks (id, PHYPayload) it chains.
fn signed_receipts(
    key: &gatewayd::poc::KeyFileSigner,
    ranges: &[std::ops::RangeInclusive<u32>],
) -> (Vec<String>, Vec<(u32, Vec<u8>)>) {
    use gatewayd::poc::receipt::{genesis, ReceiptChain};
    use gatewayd::poc::{Body, Report, Signer};
    let mut chain = ReceiptChain::from_head(genesis(&key.public_key()));
    let mut reports = Vec::new();
    let mut uplinks = Vec::new();
    for (k, ids) in ranges.iter().enumerate() {
        for id in ids.clone() {
            let phy = [vec![0x40], id.to_be_bytes().to_vec(), vec![id as u8; 9]].concat();
            chain.push(id, &phy);
            uplinks.push((id, phy));
        }
        let end = T0 + (k as u64 + 1) * 60_000;
        let r = Report {
            key: key.public_key(),
            created_ms: end,
            deadline_ms: end + 600_000,
            body: Body::Receipt(chain.close(end - 60_000, end)),
        }
        .sign(key)
        .unwrap();
        reports.push(r.to_hex());
    }
    (reports, uplinks)
}

const T0: u64 = 1_790_000_000_000;

fn uplink_lines(ups: &[(u32, Vec<u8>)]) -> String {
    ups.iter()
        .map(|(id, phy)| format!("{id} {}\n", hex_bytes(phy)))
        .collect()
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn receipts_are_checked_against_an_uplinks_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = gatewayd::poc::KeyFileSigner::generate(&dir.path().join("id.pk8")).unwrap();
    let (reports, ups) = signed_receipts(&key, &[1..=3, 4..=5, 6..=6, 7..=8]);
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    // The third receipt was lost: the fourth starts a new segment.
    let kept = [&reports[0], &reports[1], &reports[3]];
    std::fs::write(
        path("receipts.txt"),
        kept.iter().map(|r| format!("{r}\n")).collect::<String>(),
    )
    .unwrap();
    let at = (T0 + 300_000).to_string();
    let verify = |uplinks: &str| {
        gatewayd(
            &[
                "poc",
                "verify",
                "--at-ms",
                &at,
                "--uplinks",
                &path(uplinks),
                &path("receipts.txt"),
            ],
            None,
        )
    };

    // Everything the network received (out of order, one MQTT redelivery, some lines
    // naming the hotspot): all valid.
    let address = gatewayd::poc::Signer::public_key(&key).address();
    let mut lines = format!("# uplink_id phy\n{}", uplink_lines(&ups[3..]));
    lines += &uplink_lines(&ups[..2]);
    lines += &format!("{address} {}", uplink_lines(&ups[2..3]));
    lines += &uplink_lines(&ups[..1]);
    std::fs::write(path("all.txt"), lines).unwrap();
    let out = verify("all.txt");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let verdicts: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        verdicts,
        vec![
            format!("{}:1: valid Receipt from {address}", path("receipts.txt")),
            format!("{}:2: valid Receipt from {address}", path("receipts.txt")),
            format!(
                "{}:3: valid ReceiptNewSegment from {address}",
                path("receipts.txt")
            ),
        ]
    );

    // Uplink 2 never reached the network: the first receipt fails with the reason, the
    // others still verify.
    let missing: Vec<_> = ups.iter().filter(|u| u.0 != 2).cloned().collect();
    std::fs::write(path("missing.txt"), uplink_lines(&missing)).unwrap();
    let out = verify("missing.txt");
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let verdicts: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        verdicts[0],
        format!(
            "{}:1: INVALID: ReceiptChainMismatch: receipt: hash chain does not match the uplinks: uplink count",
            path("receipts.txt")
        )
    );
    assert!(verdicts[1].contains("valid Receipt"), "{stdout}");
    assert!(verdicts[2].contains("valid ReceiptNewSegment"), "{stdout}");

    // The same with --json: one object per verdict, with the stable names.
    let out = gatewayd(
        &[
            "poc",
            "verify",
            "--json",
            "--at-ms",
            &at,
            "--uplinks",
            &path("missing.txt"),
            &path("receipts.txt"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let objects: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    let summary: Vec<(u64, bool, &str)> = objects
        .iter()
        .map(|o| {
            assert_eq!(o["file"], path("receipts.txt"));
            assert_eq!(o["kind"], "Receipt");
            assert_eq!(o["address"], address.as_str());
            (
                o["line"].as_u64().unwrap(),
                o["valid"].as_bool().unwrap(),
                o["verdict"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, false, "ReceiptChainMismatch"),
            (2, true, "Receipt"),
            (3, true, "ReceiptNewSegment")
        ]
    );
    assert_eq!(
        objects[0]["detail"],
        "receipt: hash chain does not match the uplinks: uplink count"
    );
    assert_eq!(objects[1]["detail"], serde_json::Value::Null);

    // A malformed line: a clear error naming the file and the line, no verdicts.
    std::fs::write(
        path("bad.txt"),
        format!("{}\n3 not-hex!\n", uplink_lines(&ups[..1]).trim_end()),
    )
    .unwrap();
    let out = verify("bad.txt");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{}:2: ", path("bad.txt"))) && err.contains("not a PHYPayload"),
        "{err}"
    );
    assert_eq!(text(&out.stdout), "");
    let out = verify("does-not-exist.txt");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("does-not-exist.txt"));
}
