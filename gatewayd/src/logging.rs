//! Logging to stderr through the `log` facade (the journal logger comes with the systemd work).

use std::io::Write;

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let target = record
            .target()
            .strip_prefix("gatewayd::")
            .unwrap_or(record.target());
        let _ = writeln!(
            std::io::stderr().lock(),
            "{:<5} {target}: {}",
            record.level(),
            record.args()
        );
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Install the stderr logger (once) and set the level.
pub fn init(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    set_level(level);
}

/// Change the level at run time.
pub fn set_level(level: log::LevelFilter) {
    log::set_max_level(level);
}
