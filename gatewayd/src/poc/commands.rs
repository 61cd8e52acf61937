//! The `gatewayd keys …` and `gatewayd poc verify` commands: thin wrappers that read files,
//! call [`super::identity`] / [`super::verify`] and write text. Kept out of `main.rs` so that
//! they are testable with in-memory input and output.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use super::beacon::BeaconWindow;
use super::identity::{IdentityError, KeyFileSigner, PublicKey, Signer, KEY_FILE_NAME};
use super::reason::verdict_name;
use super::report::{valid_owner, Body, Onboarding, Report, SignedReport};
use super::verify::{Policy, Reason, Uplink, Verifier};
use super::wire::{decode_text, from_hex};

/// Validity of an onboarding statement printed by `keys onboard`.
pub const ONBOARDING_VALIDITY_MS: u64 = 3_600_000;

/// The key file: `--key` if given, else `identity.pk8` in the state directory.
pub fn key_path(explicit: Option<&Path>, state_dir: &Path) -> PathBuf {
    explicit.map_or_else(|| state_dir.join(KEY_FILE_NAME), Path::to_path_buf)
}

/// `keys show`: public key and address (the address is the key in hex).
pub fn show(path: &Path, out: &mut dyn Write) -> Result<(), IdentityError> {
    let s = KeyFileSigner::load(path)?;
    let key = s.public_key();
    let _ = writeln!(out, "key file:   {}", path.display());
    let _ = writeln!(out, "public key: {}", key.address());
    let _ = writeln!(
        out,
        "address:    {} (hex of the Ed25519 public key)",
        key.address()
    );
    Ok(())
}

/// `keys generate --out FILE`: a new key, never overwriting.
pub fn generate(path: &Path, out: &mut dyn Write) -> Result<(), IdentityError> {
    let s = KeyFileSigner::generate(path)?;
    let _ = writeln!(out, "created {} (mode 0600)", path.display());
    let _ = writeln!(out, "address: {}", s.public_key().address());
    Ok(())
}

/// `keys onboard --owner ADDRESS`: a signed onboarding statement in hex, valid for an hour
/// from `now_ms`.
pub fn onboard(path: &Path, owner: &str, now_ms: u64) -> Result<String, IdentityError> {
    if !valid_owner(owner) {
        return Err(IdentityError::Signing(format!(
            "owner {owner:?} is not an address (1..=64 of A-Z a-z 0-9 . _ : -)"
        )));
    }
    let s = KeyFileSigner::load(path)?;
    let r = Report {
        key: s.public_key(),
        created_ms: now_ms,
        deadline_ms: now_ms + ONBOARDING_VALIDITY_MS,
        body: Body::Onboarding(Onboarding {
            owner: owner.to_owned(),
        }),
    }
    .sign(&s)?;
    Ok(r.to_hex())
}

/// Why a `poc` command-line value or input file is refused; names the value, or the file
/// and line.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// `--entropy` is not `LEN:ID:HEX`.
    #[error("{0:?}: expected WINDOW_LEN_S:WINDOW_ID:HEX")]
    EntropyShape(String),
    /// The window length of `--entropy` is not a number.
    #[error("{text:?} is not a window length in seconds")]
    WindowLen {
        /// The text given.
        text: String,
        /// Why.
        #[source]
        source: std::num::ParseIntError,
    },
    /// The window id of `--entropy` is not a number.
    #[error("{text:?} is not a window id")]
    WindowId {
        /// The text given.
        text: String,
        /// Why.
        #[source]
        source: std::num::ParseIntError,
    },
    /// The entropy of `--entropy` is not 32 bytes in hex.
    #[error("{0:?} is not 64 hex digits")]
    EntropyHex(String),
    /// An uplinks file could not be read.
    #[error("{name}:{line}: {source}")]
    ReadUplinks {
        /// The file.
        name: String,
        /// 1-based line.
        line: usize,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line of an uplinks file is not `[ADDRESS] UPLINK_ID PHY`.
    #[error("{name}:{line}: {problem}")]
    BadUplink {
        /// The file.
        name: String,
        /// 1-based line.
        line: usize,
        /// What is wrong with it.
        problem: UplinkProblem,
    },
}

/// What is wrong with a line of an uplinks file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UplinkProblem {
    /// Neither two nor three fields.
    #[error("expected [ADDRESS] UPLINK_ID PHY, got {0} fields")]
    Fields(usize),
    /// The address is not 64 hex digits.
    #[error("{0:?} is not a hotspot address (64 hex digits)")]
    Address(String),
    /// The uplink id is not a u32.
    #[error("{0:?} is not an uplink id (0..=4294967295)")]
    UplinkId(String),
    /// The PHYPayload is not 1..=255 bytes in hex or base64.
    #[error("{0:?} is not a PHYPayload (1..={MAX_PHY_LEN} bytes in hex or base64)")]
    Phy(String),
}

/// Parse `--entropy LEN:ID:HEX` (window length s, window id, 64 hex digits).
pub fn parse_entropy(s: &str) -> Result<(BeaconWindow, [u8; 32]), CommandError> {
    let parts: Vec<&str> = s.split(':').collect();
    let [len, id, hex] = parts[..] else {
        return Err(CommandError::EntropyShape(s.to_owned()));
    };
    let len_s: u32 = len.parse().map_err(|source| CommandError::WindowLen {
        text: len.to_owned(),
        source,
    })?;
    let id: u64 = id.parse().map_err(|source| CommandError::WindowId {
        text: id.to_owned(),
        source,
    })?;
    let bytes = from_hex(hex)
        .filter(|b| b.len() == 32)
        .ok_or_else(|| CommandError::EntropyHex(hex.to_owned()))?;
    let mut e = [0u8; 32];
    e.copy_from_slice(&bytes);
    Ok((BeaconWindow { len_s, id }, e))
}

/// One input of `poc verify`: a name for messages and its lines.
pub struct Input {
    /// File name or `-` for stdin.
    pub name: String,
    /// The reader.
    pub reader: Box<dyn BufRead>,
}

/// Largest PHYPayload a LoRa frame can carry.
const MAX_PHY_LEN: usize = 255;

/// The uplinks the network received, from `poc verify --uplinks FILE` (docs §7.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedUplinks {
    /// Lines without a hotspot address: the uplinks of every receipt's key.
    pub any: Vec<Uplink>,
    /// Lines naming the hotspot address.
    pub by_key: HashMap<PublicKey, Vec<Uplink>>,
}

/// Parse an uplinks file: one uplink per line, `[ADDRESS] UPLINK_ID PHY` (the hotspot's
/// address, 64 hex digits, optional; the uplink id from `rx_info.uplink_id`, decimal; the
/// PHYPayload in hex or base64), fields separated by white space, blank lines and `#`
/// comments skipped. Adds to `into`; an error names `name` and the line.
pub fn parse_uplinks(
    name: &str,
    reader: &mut dyn BufRead,
    into: &mut ReceivedUplinks,
) -> Result<(), CommandError> {
    for (i, line) in reader.lines().enumerate() {
        let at = |problem| CommandError::BadUplink {
            name: name.to_owned(),
            line: i + 1,
            problem,
        };
        let line = line.map_err(|source| CommandError::ReadUplinks {
            name: name.to_owned(),
            line: i + 1,
            source,
        })?;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = t.split_whitespace().collect();
        let (key, id, phy) = match fields[..] {
            [id, phy] => (None, id, phy),
            [key, id, phy] => {
                let k = from_hex(key)
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| at(UplinkProblem::Address(key.to_owned())))?;
                (Some(PublicKey(k)), id, phy)
            }
            _ => return Err(at(UplinkProblem::Fields(fields.len()))),
        };
        let id: u32 = id
            .parse()
            .map_err(|_| at(UplinkProblem::UplinkId(id.to_owned())))?;
        let phy = decode_text(phy)
            .ok()
            .filter(|p| !p.is_empty() && p.len() <= MAX_PHY_LEN)
            .ok_or_else(|| at(UplinkProblem::Phy(phy.to_owned())))?;
        match key {
            Some(k) => into.by_key.entry(k).or_default().push((id, phy)),
            None => into.any.push((id, phy)),
        }
    }
    Ok(())
}

/// How `poc verify` prints its verdicts (docs §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `FILE:LINE: valid NAME from ADDRESS` or `FILE:LINE: INVALID: NAME: detail`.
    Text,
    /// One JSON object per line and verdict (`--json`).
    Json,
}

/// `poc verify`: verify every report line of `inputs` (hex or base64, blank lines and
/// `#` comments skipped) as one batch received at `at_ms`; print one verdict per report
/// in `format`. With `uplinks`, every receipt is also checked against the uplinks it
/// covers. Returns the number of invalid reports.
pub fn verify(
    inputs: Vec<Input>,
    entropy: &[(BeaconWindow, [u8; 32])],
    uplinks: Option<&ReceivedUplinks>,
    policy: Policy,
    at_ms: u64,
    format: Format,
    out: &mut dyn Write,
) -> std::io::Result<usize> {
    let mut labels = Vec::new();
    let mut decoded = Vec::new();
    for input in inputs {
        for (i, line) in input.reader.lines().enumerate() {
            let line = line?;
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            labels.push((input.name.clone(), i + 1));
            decoded.push(decode_text(t));
        }
    }
    let mut v = Verifier::new(policy);
    for (w, e) in entropy {
        v.add_entropy(*w, *e);
    }
    let ok: Vec<Vec<u8>> = decoded.iter().filter_map(|d| d.clone().ok()).collect();
    if let Some(u) = uplinks {
        // Every key with a receipt gets the uplinks received from it (lines naming it,
        // and lines naming no hotspot).
        let keys: std::collections::HashSet<PublicKey> = ok
            .iter()
            .filter_map(|b| SignedReport::decode(b).ok())
            .filter(|r| matches!(r.report.body, Body::Receipt(_)))
            .map(|r| r.report.key)
            .collect();
        for key in keys {
            let mut list = u.any.clone();
            list.extend(u.by_key.get(&key).cloned().unwrap_or_default());
            v.add_received(key, list);
        }
    }
    let mut verdicts = v.verify_batch(&ok, at_ms).into_iter();
    let mut invalid = 0;
    for ((file, line), d) in labels.iter().zip(&decoded) {
        let (report, verdict) = match d {
            Ok(bytes) => (
                SignedReport::decode(bytes).ok().map(|r| r.report),
                verdicts.next().unwrap_or(Err(Reason::Replayed)),
            ),
            Err(e) => (None, Err(Reason::Malformed(e.clone()))),
        };
        invalid += usize::from(verdict.is_err());
        let name = verdict_name(&verdict);
        let address = report.as_ref().map(|r| r.key.address());
        match format {
            Format::Text => match &verdict {
                Ok(_) => writeln!(
                    out,
                    "{file}:{line}: valid {name} from {}",
                    address.unwrap_or_default()
                )?,
                Err(reason) => writeln!(out, "{file}:{line}: INVALID: {name}: {reason}")?,
            },
            Format::Json => {
                let object = serde_json::json!({
                    "file": file,
                    "line": line,
                    "valid": verdict.is_ok(),
                    "verdict": name,
                    "kind": report.as_ref().map(|r| verdict_name(&Ok(r.kind()))),
                    "address": address,
                    "detail": verdict.as_ref().err().map(ToString::to_string),
                });
                writeln!(out, "{object}")?
            }
        }
    }
    Ok(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poc::test_support::*;

    fn input(text: String) -> Vec<Input> {
        vec![Input {
            name: "r.txt".into(),
            reader: Box::new(std::io::Cursor::new(text.into_bytes())),
        }]
    }

    /// `verify` of `text` (one file, `r.txt`) against the test window, 5 s after the beacon:
    /// the number of invalid reports and what it printed.
    fn verify_text(text: String, format: Format) -> (usize, String) {
        let mut out = Vec::new();
        let bad = verify(
            input(text),
            &[(WINDOW, ENTROPY)],
            None,
            Policy::default(),
            tx_time_ms() + 5000,
            format,
            &mut out,
        )
        .unwrap();
        (bad, String::from_utf8(out).unwrap())
    }

    #[test]
    fn verify_prints_a_verdict_per_line() {
        use base64::Engine;
        let b = SeedSigner::new(1);
        let w = SeedSigner::new(2);
        let beacon_r = signed(&b, Body::Beacon(beacon(&b)), tx_time_ms() + 1000);
        let witness_r = signed(&w, Body::Witness(witness(&b)), tx_time_ms() + 2000);
        let text = format!(
            "# reports\n{}\n\n{}\nzz-not-a-report\n{}\n",
            witness_r.to_hex(),
            base64::engine::general_purpose::STANDARD.encode(beacon_r.bytes()),
            witness_r.to_hex(),
        );
        let (bad, out) = verify_text(text, Format::Text);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(
            lines[0].starts_with("r.txt:2: valid Witness from "),
            "{out}"
        );
        assert!(lines[1].starts_with("r.txt:4: valid Beacon from "), "{out}");
        assert!(
            lines[2].starts_with("r.txt:5: INVALID: Malformed: malformed"),
            "{out}"
        );
        assert_eq!(
            lines[3],
            "r.txt:6: INVALID: Replayed: replayed: the same report was already received"
        );
        assert_eq!(bad, 2);
    }

    #[test]
    fn verify_json_gives_one_object_per_verdict() {
        let b = SeedSigner::new(1);
        let w = SeedSigner::new(2);
        let beacon_r = signed(&b, Body::Beacon(beacon(&b)), tx_time_ms() + 1000);
        let mut late = witness(&b);
        late.time_source = crate::poc::wire::TimeSource::Local;
        late.rx_time_ms = WINDOW.start_ms() - 120_000;
        let late_r = signed(&w, Body::Witness(late), tx_time_ms() + 2000);
        let text = format!("{}\n# c\n{}\nzz\n", beacon_r.to_hex(), late_r.to_hex());
        let (bad, out) = verify_text(text, Format::Json);
        assert_eq!(bad, 2);
        let objects: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            objects[0],
            serde_json::json!({
                "file": "r.txt", "line": 1, "valid": true, "verdict": "Beacon",
                "kind": "Beacon", "address": b.public_key().address(), "detail": null,
            })
        );
        assert_eq!(objects[1]["line"], 3);
        assert_eq!(objects[1]["valid"], false);
        assert_eq!(objects[1]["verdict"], "TimeMismatch");
        assert_eq!(objects[1]["kind"], "Witness");
        assert_eq!(objects[1]["address"], w.public_key().address());
        let detail = objects[1]["detail"].as_str().unwrap();
        assert!(detail.contains("outside the beacon's window"), "{detail}");
        assert_eq!(objects[2]["verdict"], "Malformed");
        assert_eq!(objects[2]["kind"], serde_json::Value::Null);
        assert_eq!(objects[2]["address"], serde_json::Value::Null);
        assert_eq!(objects.len(), 3);
    }

    #[test]
    fn keys_generate_show_and_onboard() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(None, dir.path());
        assert_eq!(path, dir.path().join("identity.pk8"));
        let mut out = Vec::new();
        generate(&path, &mut out).unwrap();
        assert!(generate(&path, &mut Vec::new()).is_err());
        let mut shown = Vec::new();
        show(&path, &mut shown).unwrap();
        let shown = String::from_utf8(shown).unwrap();
        let address = KeyFileSigner::load(&path).unwrap().public_key().address();
        assert!(shown.contains(&address), "{shown}");
        let hex = onboard(&path, "wallet-1", 1_000).unwrap();
        let mut v = Verifier::new(Policy::default());
        let bytes = decode_text(&hex).unwrap();
        assert_eq!(v.verify(&bytes, 2_000), Ok(crate::poc::Kind::Onboarding));
        assert_eq!(
            v.owner(&KeyFileSigner::load(&path).unwrap().public_key()),
            Some("wallet-1")
        );
        assert!(onboard(&path, "no spaces please", 1_000).is_err());
    }

    #[test]
    fn uplinks_file_lines() {
        let key = "ab".repeat(32);
        let text = format!("# id phy\n7 40aabb\n\n{key} 8 QAE=\n  9\t400102  \n");
        let mut u = ReceivedUplinks::default();
        parse_uplinks("up.txt", &mut std::io::Cursor::new(text), &mut u).unwrap();
        assert_eq!(
            u.any,
            vec![(7, vec![0x40, 0xaa, 0xbb]), (9, vec![0x40, 1, 2])]
        );
        assert_eq!(
            u.by_key.get(&PublicKey([0xab; 32])),
            Some(&vec![(8, vec![0x40, 1])])
        );
        for (line, why) in [
            ("7", "got 1 fields"),
            ("x 40aa", "\"x\" is not an uplink id"),
            ("-1 40aa", "\"-1\" is not an uplink id"),
            ("7 zz!", "\"zz!\" is not a PHYPayload"),
            ("abcd 7 40aa", "\"abcd\" is not a hotspot address"),
        ] {
            let mut u = ReceivedUplinks::default();
            let text = format!("1 40\n{line}\n");
            let e = parse_uplinks("up.txt", &mut std::io::Cursor::new(text), &mut u)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("up.txt:2: ") && e.contains(why),
                "{line}: {e}"
            );
        }
    }

    #[test]
    fn entropy_argument() {
        let (w, e) = parse_entropy(&format!("3600:490000:{}", "11".repeat(32))).unwrap();
        assert_eq!((w, e), (WINDOW, ENTROPY));
        assert!(parse_entropy("3600:1:abcd").is_err());
        assert!(parse_entropy("x:1:00").is_err());
    }
}
