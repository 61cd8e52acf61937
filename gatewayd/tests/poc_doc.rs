//! docs/proof-of-coverage.md against the code, so that the two cannot drift: its generated
//! parts (the EIRP table of §7.3) are what the code gives byte for byte, its verdict names
//! (§7.2) are the code's and its usage line (§7.1) lists every option of
//! `gatewayd poc verify`. With `GATEWAYD_BLESS_DOCS=1` the generated parts are rewritten
//! from the code instead of compared (review the diff before committing it).

use std::sync::Mutex;

use clap::CommandFactory;
use gatewayd::poc::reason::{REASON_NAMES, VALID_NAMES};
use gatewayd::poc::verify::eirp_limit_cdb;
use gatewayd::region::REGIONS;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/proof-of-coverage.md");

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
