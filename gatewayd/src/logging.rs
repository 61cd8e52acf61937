//! Logging for the `log` facade: to the systemd journal with structured fields when the
//! service runs under systemd, otherwise (or when the journal is unreachable) to stderr.
//!
//! Journal entries carry `SYSLOG_IDENTIFIER=gatewayd`, `SUBSYSTEM=` (the log target, e.g.
//! `mqtt`), `GATEWAY_ID=` once [`set_gateway_id`] was called, plus the journal logger's own
//! `PRIORITY`, `TARGET`, `CODE_*` fields. Filter with `journalctl -u gatewayd SUBSYSTEM=mqtt`.

use std::io::Write;
use std::sync::RwLock;

use drivers::time::UtcDateTime;
use log::kv::{Error as KvError, Key, Source, Value, VisitSource};
use log::{LevelFilter, Log, Metadata, Record};
use systemd_journal_logger::JournalLog;

/// The `SYSLOG_IDENTIFIER` of every journal entry.
pub const SYSLOG_IDENTIFIER: &str = "gatewayd";

/// The logger's one piece of process-wide state besides the `log` facade itself: the
/// gateway id, known only after the config is loaded.
static GATEWAY_ID: RwLock<Option<String>> = RwLock::new(None);

/// Where log records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// The native journal protocol (structured fields).
    Journal,
    /// Plain lines on stderr; with `<N>` priority prefixes when stderr is the journal's
    /// stream, with a UTC timestamp otherwise.
    Stderr {
        /// Whether stderr is connected to the journal (`JOURNAL_STREAM`).
        journal_stream: bool,
    },
}

enum Sink {
    Journal(JournalLog),
    Stderr { journal_stream: bool },
}

struct Logger {
    sink: Sink,
}

/// Install the process logger at `level`: the journal when stderr is connected to it
/// (running under systemd) and its socket answers, stderr otherwise. Calling it again
/// only changes the level.
pub fn init(level: LevelFilter) {
    let stderr_is_journal = systemd_journal_logger::connected_to_journal();
    let (kind, note) = install(stderr_is_journal, JournalLog::new);
    set_level(level);
    if let Some(note) = note {
        log::warn!(target: "logging", "{note}");
    }
    log::debug!(target: "logging", "logging to {kind:?}");
}

/// Change the maximum level (from the config file, or `--log-level`, or on reload).
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// Attach `GATEWAY_ID=id` to every later journal entry.
pub fn set_gateway_id(id: &str) {
    if let Ok(mut g) = GATEWAY_ID.write() {
        *g = Some(id.to_owned());
    }
}

/// Choose and install the sink: the journal if stderr is connected to it and
/// `open_journal` succeeds, stderr otherwise. Returns what was chosen and, for a
/// fallback, a note saying why (log it once the logger is installed).
pub fn install(
    stderr_is_journal: bool,
    open_journal: impl FnOnce() -> std::io::Result<JournalLog>,
) -> (SinkKind, Option<String>) {
    let (sink, note) = select_sink(stderr_is_journal, open_journal);
    let kind = match &sink {
        Sink::Journal(_) => SinkKind::Journal,
        Sink::Stderr { journal_stream } => SinkKind::Stderr {
            journal_stream: *journal_stream,
        },
    };
    // A logger installed earlier (a second init) stays; the level still applies.
    let _ = log::set_boxed_logger(Box::new(Logger { sink }));
    (kind, note)
}

fn select_sink(
    stderr_is_journal: bool,
    open_journal: impl FnOnce() -> std::io::Result<JournalLog>,
) -> (Sink, Option<String>) {
    if !stderr_is_journal {
        return (
            Sink::Stderr {
                journal_stream: false,
            },
            None,
        );
    }
    match open_journal() {
        Ok(j) => (
            Sink::Journal(j.with_syslog_identifier(SYSLOG_IDENTIFIER.to_owned())),
            None,
        ),
        Err(e) => (
            Sink::Stderr {
                journal_stream: true,
            },
            Some(format!(
                "the journal socket is unavailable ({e}); logging to stderr"
            )),
        ),
    }
}

/// The structured fields added to a record's own key-values for the journal.
pub struct JournalFields<'a> {
    /// The subsystem (the record's target).
    pub subsystem: &'a str,
    /// The gateway id, once known.
    pub gateway_id: Option<&'a str>,
    /// The record's own key-values.
    pub inner: &'a dyn Source,
}

impl Source for JournalFields<'_> {
    fn visit<'kvs>(&'kvs self, visitor: &mut dyn VisitSource<'kvs>) -> Result<(), KvError> {
        visitor.visit_pair(Key::from_str("SUBSYSTEM"), Value::from(self.subsystem))?;
        if let Some(id) = self.gateway_id {
            visitor.visit_pair(Key::from_str("GATEWAY_ID"), Value::from(id))?;
        }
        self.inner.visit(visitor)
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        match &self.sink {
            Sink::Journal(j) => {
                let id = GATEWAY_ID.read().ok();
                let fields = JournalFields {
                    subsystem: record.target(),
                    gateway_id: id.as_ref().and_then(|g| g.as_deref()),
                    inner: record.key_values(),
                };
                let r = record.to_builder().key_values(&fields).build();
                // journald gone mid-run: say it on stderr (the unit's stream) instead.
                if j.journal_send(&r).is_err() {
                    write_line(&mut std::io::stderr().lock(), record, true);
                }
            }
            Sink::Stderr { journal_stream } => {
                write_line(&mut std::io::stderr().lock(), record, *journal_stream)
            }
        }
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// One stderr line for `record`: `<N>target: message` for the journal's stream (systemd
/// reads the priority prefix), `TIMESTAMP LEVEL target: message` otherwise.
pub fn format_line(record: &Record, journal_stream: bool, now: std::time::SystemTime) -> String {
    if journal_stream {
        let prio = match record.level() {
            log::Level::Error => 3,
            log::Level::Warn => 4,
            log::Level::Info => 5,
            log::Level::Debug => 6,
            log::Level::Trace => 7,
        };
        format!("<{prio}>{}: {}", record.target(), record.args())
    } else {
        format!(
            "{} {:<5} {}: {}",
            utc_timestamp(now),
            record.level(),
            record.target(),
            record.args()
        )
    }
}

fn write_line(out: &mut impl Write, record: &Record, journal_stream: bool) {
    let line = format_line(record, journal_stream, std::time::SystemTime::now());
    let _ = writeln!(out, "{line}");
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a system time (UTC, proleptic Gregorian).
pub fn utc_timestamp(t: std::time::SystemTime) -> String {
    UtcDateTime::from_system_time(t)
        .iso8601_millis()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_utc_iso8601() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_164_800_250); // leap day 2024
        assert_eq!(utc_timestamp(t), "2024-02-29T00:00:00.250Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_799);
        assert_eq!(utc_timestamp(t), "2099-12-31T23:59:59.000Z");
    }

    #[test]
    fn stderr_lines_carry_level_and_subsystem() {
        let args = format_args!("connected to {}", "broker");
        let r = Record::builder()
            .args(args)
            .level(log::Level::Warn)
            .target("mqtt")
            .build();
        assert_eq!(
            format_line(&r, false, UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z WARN  mqtt: connected to broker"
        );
        assert_eq!(
            format_line(&r, true, UNIX_EPOCH),
            "<4>mqtt: connected to broker"
        );
    }

    struct Collect(BTreeMap<String, String>);
    impl<'kvs> VisitSource<'kvs> for Collect {
        fn visit_pair(&mut self, k: Key<'kvs>, v: Value<'kvs>) -> Result<(), KvError> {
            self.0.insert(k.to_string(), v.to_string());
            Ok(())
        }
    }

    #[test]
    fn journal_fields_add_subsystem_gateway_id_and_keep_the_record_pairs() {
        let own: &[(&str, &str)] = &[("FCNT", "7")];
        let f = JournalFields {
            subsystem: "pipeline",
            gateway_id: Some("0016c001f153a14c"),
            inner: &own,
        };
        let mut c = Collect(BTreeMap::new());
        f.visit(&mut c).unwrap();
        assert_eq!(c.0["SUBSYSTEM"], "pipeline");
        assert_eq!(c.0["GATEWAY_ID"], "0016c001f153a14c");
        assert_eq!(c.0["FCNT"], "7");
        let f = JournalFields {
            subsystem: "x",
            gateway_id: None,
            inner: &own,
        };
        let mut c = Collect(BTreeMap::new());
        f.visit(&mut c).unwrap();
        assert!(!c.0.contains_key("GATEWAY_ID"));
    }

    #[test]
    fn without_a_journal_stream_stderr_is_chosen_and_the_journal_not_opened() {
        let (sink, note) = select_sink(false, || panic!("must not open the journal"));
        assert!(matches!(
            sink,
            Sink::Stderr {
                journal_stream: false
            }
        ));
        assert!(note.is_none());
    }

    #[test]
    fn an_unreachable_journal_falls_back_to_stderr_with_a_note() {
        let (sink, note) = select_sink(true, || {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no /run/systemd/journal/socket",
            ))
        });
        assert!(matches!(
            sink,
            Sink::Stderr {
                journal_stream: true
            }
        ));
        let note = note.unwrap();
        assert!(note.contains("no /run/systemd/journal/socket"), "{note}");
    }

    const CHILD: &str = "GATEWAYD_LOGGING_TEST_CHILD";

    /// The whole path in a child process (the logger is process-global): with no journal,
    /// `init` logs to stderr, honours the level, and `set_level` changes it.
    #[test]
    fn init_falls_back_to_stderr_in_a_child_process() {
        if std::env::var_os(CHILD).is_some() {
            init(LevelFilter::Info);
            log::info!(target: "pipeline", "child info line");
            log::debug!(target: "pipeline", "hidden debug line");
            set_level(LevelFilter::Debug);
            log::debug!(target: "mqtt", "visible debug line");
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "logging::tests::init_falls_back_to_stderr_in_a_child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed: {err}");
        assert!(err.contains("INFO  pipeline: child info line"), "{err}");
        assert!(err.contains("DEBUG mqtt: visible debug line"), "{err}");
        assert!(!err.contains("hidden debug line"), "{err}");
    }
}
