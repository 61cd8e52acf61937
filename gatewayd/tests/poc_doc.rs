//! docs/proof-of-coverage.md against the code, so that the two cannot drift: its generated
//! parts (the EIRP table of §7.3, the test vectors of §10 and their files in
//! docs/poc-vectors/) are what the code gives byte for byte, its verdict names (§7.2) are
//! the code's, its usage line (§7.1) lists every option of `gatewayd poc verify`, and the
//! real binary gives the vectors the verdicts the doc says. With `GATEWAYD_BLESS_DOCS=1` the
//! generated parts are rewritten from the code instead of compared (review the diff before
//! committing it).

#[path = "poc_doc/layout.rs"]
mod layout;
#[path = "poc_doc/vectors.rs"]
mod vectors;

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;

use clap::CommandFactory;
use gatewayd::poc::reason::{REASON_NAMES, VALID_NAMES};
use gatewayd::poc::verify::eirp_limit_cdb;
use gatewayd::region::REGIONS;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/proof-of-coverage.md");
/// The vectors' files.
const VECTORS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/poc-vectors");

/// One reader or writer of the doc at a time (tests run in parallel, and may bless).
static BLESS: Mutex<()> = Mutex::new(());

fn doc() -> String {
    let _one = BLESS.lock().unwrap_or_else(|e| e.into_inner());
    std::fs::read_to_string(DOC).unwrap()
}

/// Byte range of the text between `<!-- generated:NAME … -->\n` and
/// `<!-- /generated:NAME -->` in `doc`.
fn generated_span(doc: &str, name: &str) -> std::ops::Range<usize> {
    let open = format!("<!-- generated:{name} ");
    let start = doc
        .find(&open)
        .and_then(|i| doc[i..].find('\n').map(|j| i + j + 1))
        .unwrap_or_else(|| panic!("no {open}… line in {DOC}"));
    let close = format!("<!-- /generated:{name} -->");
    let end = doc[start..]
        .find(&close)
        .map(|j| start + j)
        .unwrap_or_else(|| panic!("no {close} in {DOC}"));
    start..end
}

/// The first line where `have` and `want` differ, for a readable failure.
fn first_difference(have: &str, want: &str) -> String {
    let (h, w): (Vec<&str>, Vec<&str>) = (have.lines().collect(), want.lines().collect());
    (0..h.len().max(w.len()))
        .find(|&i| h.get(i) != w.get(i))
        .map(|i| format!("line {}: doc {:?}, code {:?}", i + 1, h.get(i), w.get(i)))
        .unwrap_or_else(|| "only in trailing white space".into())
}

/// The generated part `name` of the doc equals `want` (or is rewritten to it when blessing).
pub fn check_generated(name: &str, want: &str) {
    let _one = BLESS.lock().unwrap_or_else(|e| e.into_inner());
    let mut doc = std::fs::read_to_string(DOC).unwrap();
    let span = generated_span(&doc, name);
    if std::env::var_os("GATEWAYD_BLESS_DOCS").is_some() {
        doc.replace_range(span, want);
        std::fs::write(DOC, doc).unwrap();
        return;
    }
    let have = &doc[span];
    assert!(
        have == want,
        "{DOC}, generated:{name} is not what the code gives ({}); \
         rerun with GATEWAYD_BLESS_DOCS=1 to regenerate it",
        first_difference(have, want)
    );
}

/// Hundredths as a decimal with two places.
fn cdb(v: i32) -> String {
    format!("{}.{:02}", v / 100, v % 100)
}

#[test]
fn eirp_table_is_the_region_tables() {
    let mut want = String::from(
        "| code | region | band | from (Hz) | to (Hz) | max EIRP (dBm) |\n\
         |---|---|---|---|---|---|\n",
    );
    for (i, region) in REGIONS.iter().enumerate() {
        for band in region.bands {
            // The limit the verifier applies inside the band is the row's.
            let limit = eirp_limit_cdb(region, (band.min_hz + band.max_hz) / 2).unwrap();
            want += &format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                i + 1,
                region.name,
                band.name,
                band.min_hz,
                band.max_hz,
                cdb(limit)
            );
        }
    }
    assert!(want.lines().count() > 2 + REGIONS.len());
    check_generated("eirp-table", &want);
}

/// The backticked names at the start of the table rows of §7.2.
fn documented_names(doc: &str) -> Vec<String> {
    let start = doc.find("### 7.2 Verdict names").expect("§7.2");
    let end = start + doc[start..].find("\n### 7.3").expect("§7.3");
    doc[start..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn verdict_names_are_the_codes() {
    let want: Vec<&str> = VALID_NAMES.iter().chain(REASON_NAMES).copied().collect();
    assert_eq!(documented_names(&doc()), want);
    // Every name the doc's rules (§7) cite is a verdict name.
    let doc = doc();
    let s7 = &doc[doc.find("## 7. ").unwrap()..doc.find("### 7.1").unwrap()];
    for reason in REASON_NAMES {
        assert!(
            s7.contains(&format!("`{reason}`")),
            "§7 does not cite {reason}"
        );
    }
}

#[test]
fn usage_line_lists_every_option() {
    let cli = gatewayd::cli::Cli::command();
    let verify = cli
        .find_subcommand("poc")
        .and_then(|p| p.find_subcommand("verify"))
        .expect("gatewayd poc verify");
    let options: Vec<String> = verify
        .get_arguments()
        .filter(|a| !a.is_global_set())
        .filter_map(|a| a.get_long())
        .map(|l| format!("--{l}"))
        .collect();
    assert!(options.contains(&"--min-window-secs".to_owned()));
    let doc = doc();
    let s71 = &doc[doc.find("### 7.1").unwrap()..];
    let usage = s71
        .split("```")
        .nth(1)
        .expect("a usage block in §7.1")
        .to_owned();
    let documented: Vec<String> = usage
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--"))
        .map(str::to_owned)
        .collect();
    assert_eq!(documented, options, "usage line of §7.1:\n{usage}");
}

/// The file `name` in docs/poc-vectors equals `want` (or is written when blessing).
fn check_vector_file(name: &str, want: &str) {
    let path = Path::new(VECTORS_DIR).join(name);
    if std::env::var_os("GATEWAYD_BLESS_DOCS").is_some() {
        std::fs::create_dir_all(VECTORS_DIR).unwrap();
        std::fs::write(&path, want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        have == want,
        "{} is not what the code gives ({}); rerun with GATEWAYD_BLESS_DOCS=1",
        path.display(),
        first_difference(&have, want)
    );
}

#[test]
fn test_vectors_are_what_the_code_gives() {
    let v = vectors::build();
    check_generated("vectors", &v.doc);
    check_vector_file("reports.txt", &v.reports_txt);
    check_vector_file("uplinks.txt", &v.uplinks_txt);
    check_vector_file("verdicts.txt", &v.verdicts_txt);
    assert_eq!(v.expected.len(), 12);
}

fn gatewayd(dir: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gatewayd"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// The command of §10.8 as the doc writes it, without the leading `gatewayd`.
fn documented_command() -> Vec<String> {
    let doc = doc();
    let s108 = &doc[doc.find("### 10.8").expect("§10.8")..];
    let line = s108
        .lines()
        .find(|l| l.starts_with("gatewayd poc verify"))
        .expect("the command in §10.8");
    line.split_whitespace().skip(1).map(str::to_owned).collect()
}

/// `verdicts.txt` as committed: (line of reports.txt, verdict name).
fn expected_verdicts() -> Vec<(u64, String)> {
    std::fs::read_to_string(Path::new(VECTORS_DIR).join("verdicts.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (line, name) = l.split_once(' ').unwrap();
            (line.parse().unwrap(), name.to_owned())
        })
        .collect()
}

#[test]
fn the_doc_vectors_get_their_verdicts_from_gatewayd_poc_verify() {
    let args = documented_command();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let expected = expected_verdicts();
    assert_eq!(expected.len(), 12);
    assert!(expected.iter().any(|(_, v)| v == "Witness"));

    let out = gatewayd(VECTORS_DIR, &args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{stdout}");
    let valid = [
        "Onboarding",
        "Beacon",
        "Witness",
        "Receipt",
        "ReceiptNewSegment",
    ];
    for (got, (line, name)) in lines.iter().zip(&expected) {
        let want = if valid.contains(&name.as_str()) {
            format!("reports.txt:{line}: valid {name} from ")
        } else {
            format!("reports.txt:{line}: INVALID: {name}: ")
        };
        assert!(got.starts_with(&want), "{got:?} is not {want:?}…\n{stdout}");
    }

    let json = gatewayd(VECTORS_DIR, &[&args[..], &["--json"]].concat());
    let verdicts: Vec<(u64, String)> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|l| {
            let o: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(o["file"], "reports.txt");
            (
                o["line"].as_u64().unwrap(),
                o["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(verdicts, expected);
}

#[test]
fn the_doc_key_file_reads_with_gatewayd_keys_show() {
    let (pk8, address) = vectors::build().key_a;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.pk8");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &pk8))
        .unwrap();
    let out = gatewayd(
        dir.path().to_str().unwrap(),
        &["keys", "show", "--key", "identity.pk8"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("public key: {address}")),
        "{stdout}"
    );
    assert_eq!(address, vectors::RFC8032[0].1);
}
