//! A minimal `log` backend writing timestamped lines to stderr.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let thread = std::thread::current();
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}.{:03} {:<5} [{}] {}",
            now.as_secs(),
            now.subsec_millis(),
            record.level(),
            thread.name().unwrap_or("main"),
            record.args()
        );
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Installs the logger at the configuration's `log_level`.
pub(crate) fn init(level: &str) {
    let filter = match level {
        "error" => log::LevelFilter::Error,
        "warning" => log::LevelFilter::Warn,
        "notice" | "info" => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(filter);
}
