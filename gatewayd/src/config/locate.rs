//! Where a key is in the config text: the line of its value, or of the table that should hold
//! it, so that every config error names the file, the line and the key. The text is parsed a
//! second time with `toml_edit`, which keeps spans, only when an error has to be located.

use toml_edit::{ImDocument, Item};

/// 1-based line and column of byte `offset` in `text`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

/// One step of a dotted key: a table key or an array index (`prefixes[2]`).
#[derive(Debug, PartialEq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn steps(key: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in key.split('.').filter(|p| !p.is_empty()) {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        out.push(Step::Key(name));
        while let Some((index, after)) = rest.split_once(']') {
            if let Ok(i) = index.parse() {
                out.push(Step::Index(i));
            }
            rest = after.strip_prefix('[').unwrap_or("");
        }
    }
    out
}

/// The 1-based line of `key` (dotted, with `[i]` for array elements) in `text`: the line of
/// its value when the key is written; else the header line of the deepest enclosing table
/// that is written (a missing key is reported where it belongs). `None` when nothing of the
/// path is in the file, or the text does not parse.
pub(super) fn key_line(text: &str, key: &str) -> Option<usize> {
    let doc = ImDocument::parse(text).ok()?;
    let mut item: &Item = doc.as_item();
    let mut best = None;
    for step in steps(key) {
        match step {
            Step::Key(k) => {
                let Some((k, next)) = item.as_table_like().and_then(|t| t.get_key_value(k)) else {
                    break;
                };
                // A value's span is the value; a table's is its header; a table made by a
                // dotted key has none (then the key's).
                if let Some(s) = next.span().or_else(|| k.span()) {
                    best = Some(s.start);
                }
                item = next;
            }
            Step::Index(i) => {
                if let Some(s) = item
                    .as_array()
                    .and_then(|a| a.get(i))
                    .and_then(|v| v.span())
                {
                    best = Some(s.start);
                }
                break;
            }
        }
    }
    best.map(|offset| line_col(text, offset).0)
}

/// The dotted key whose value holds byte `offset` (the deepest one), if any.
pub(super) fn key_at(text: &str, offset: usize) -> Option<String> {
    let doc = ImDocument::parse(text).ok()?;
    let mut path: Vec<String> = Vec::new();
    let mut item: &Item = doc.as_item();
    while let Some(table) = item.as_table_like() {
        let inside = |s: Option<std::ops::Range<usize>>| s.is_some_and(|s| s.contains(&offset));
        // A value (or its key) that holds the offset; a sub-table (whose span is only its
        // header) when one of its values does.
        let Some((name, child)) = table.iter().find(|(name, child)| match child {
            Item::Value(v) => {
                inside(v.span()) || inside(table.get_key_value(name).and_then(|(k, _)| k.span()))
            }
            Item::Table(_) => contains_offset(child, offset),
            _ => false,
        }) else {
            break;
        };
        path.push(name.to_string());
        item = child;
    }
    (!path.is_empty()).then(|| path.join("."))
}

/// Whether any value below `item` spans `offset`.
fn contains_offset(item: &Item, offset: usize) -> bool {
    match item {
        Item::Value(v) => v.span().is_some_and(|s| s.contains(&offset)),
        _ => item
            .as_table_like()
            .is_some_and(|t| t.iter().any(|(_, c)| contains_offset(c, offset))),
    }
}

/// The `[table]` header in force at 1-based `line` (the last header above it), if any.
pub(super) fn table_before(text: &str, line: usize) -> Option<String> {
    text.lines()
        .take(line)
        .filter_map(|l| {
            let l = l.trim();
            let inner = l.strip_prefix("[[").and_then(|r| r.split("]]").next());
            inner
                .or_else(|| l.strip_prefix('[').and_then(|r| r.split(']').next()))
                .map(|t| t.trim().to_string())
        })
        .filter(|t| !t.is_empty())
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "# comment\n[gateway]\nregion = \"EU868\"\n\n[gateway.location]\nlatitude = 1.0\n\
                        [uplink]\ndev_addr_prefixes = [\n  \"26000000/7\",\n  \"x\",\n]\n\
                        [mqtt]\ntls = { ca = \"a\" }\nradio.kind = \"sx126x\"\n";

    #[test]
    fn values_tables_elements_and_missing_keys() {
        assert_eq!(key_line(TEXT, "gateway.region"), Some(3));
        assert_eq!(key_line(TEXT, "gateway.location.latitude"), Some(6));
        // Missing: the table that should hold it.
        assert_eq!(key_line(TEXT, "gateway.location.longitude"), Some(5));
        assert_eq!(key_line(TEXT, "gateway.id"), Some(2));
        assert_eq!(key_line(TEXT, "uplink.dev_addr_prefixes[1]"), Some(10));
        assert_eq!(key_line(TEXT, "uplink.dev_addr_prefixes"), Some(8));
        assert_eq!(key_line(TEXT, "mqtt.tls.ca"), Some(13));
        assert_eq!(key_line(TEXT, "mqtt.radio.kind"), Some(14));
        assert_eq!(key_line(TEXT, "log.level"), None);
        assert_eq!(key_line("[broken", "log.level"), None);
    }

    #[test]
    fn key_at_an_offset() {
        let at = |needle: &str| key_at(TEXT, TEXT.find(needle).unwrap());
        assert_eq!(at("EU868").as_deref(), Some("gateway.region"));
        assert_eq!(at("1.0").as_deref(), Some("gateway.location.latitude"));
        assert_eq!(at("\"x\"").as_deref(), Some("uplink.dev_addr_prefixes"));
        assert_eq!(at("# comment"), None);
    }

    #[test]
    fn table_in_force_and_line_columns() {
        assert_eq!(table_before(TEXT, 6).as_deref(), Some("gateway.location"));
        assert_eq!(table_before(TEXT, 7).as_deref(), Some("uplink"));
        assert_eq!(table_before(TEXT, 1), None);
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é", 1), (1, 1), "never inside a character");
    }
}
