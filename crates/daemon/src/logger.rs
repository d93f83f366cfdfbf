//! The `log` backend: timestamped lines on stderr in the foreground, syslog (facility
//! daemon, ident `ringsocket`) as a daemon, or the `log_file` when no syslog socket
//! accepts connections. SIGHUP reconnects to syslog, or reopens the file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

type Syslog = Logger<LoggerBackend, Formatter3164>;

/// Where log lines go.
enum Sink {
    Stderr,
    Syslog(Option<Syslog>),
    File(std::fs::File, PathBuf),
}

struct RsLogger {
    sink: Mutex<Sink>,
}

static LOGGER: RsLogger = RsLogger {
    sink: Mutex::new(Sink::Stderr),
};

fn connect_syslog() -> Result<Syslog, String> {
    let formatter = Formatter3164 {
        facility: Facility::LOG_DAEMON,
        hostname: None,
        process: "ringsocket".into(),
        pid: std::process::id(),
    };
    syslog::unix(formatter).map_err(|e| e.to_string())
}

impl log::Log for RsLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("main");
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        let now = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
        };
        match &mut *sink {
            Sink::Stderr => {
                let now = now();
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "{}.{:03} {:<5} [{thread}] {}",
                    now.as_secs(),
                    now.subsec_millis(),
                    record.level(),
                    record.args()
                );
            }
            Sink::File(file, _) => {
                let now = now();
                let _ = writeln!(
                    file,
                    "{}.{:03} {:<5} ringsocket[{}] [{thread}] {}",
                    now.as_secs(),
                    now.subsec_millis(),
                    record.level(),
                    std::process::id(),
                    record.args()
                );
            }
            Sink::Syslog(Some(logger)) => {
                let msg = format!("[{thread}] {}", record.args());
                let _ = match record.level() {
                    log::Level::Error => logger.err(msg),
                    log::Level::Warn => logger.warning(msg),
                    log::Level::Info => logger.info(msg),
                    log::Level::Debug | log::Level::Trace => logger.debug(msg),
                };
            }
            Sink::Syslog(None) => {}
        }
    }

    fn flush(&self) {}
}

/// Maps a configuration `log_level` to a filter.
pub fn level_filter(level: &str) -> log::LevelFilter {
    match level {
        "error" => log::LevelFilter::Error,
        "warning" => log::LevelFilter::Warn,
        "notice" | "info" => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    }
}

/// Installs the logger, writing to stderr, at `level`.
pub fn init(level: &str) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level_filter(level));
}

fn open_file(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Where a daemon's log lines went.
pub enum Destination {
    /// Syslog.
    Syslog,
    /// The file, because syslog refused (the reason).
    File(String),
}

/// Switches the logger to syslog or, if no syslog socket accepts connections, to
/// appending to `file`.
///
/// # Errors
/// A message naming both failures if neither works (log lines are then dropped).
pub fn use_syslog_or_file(file: &Path) -> Result<Destination, String> {
    let mut sink = LOGGER.sink.lock().unwrap_or_else(|p| p.into_inner());
    let syslog_error = match connect_syslog() {
        Ok(logger) => {
            *sink = Sink::Syslog(Some(logger));
            return Ok(Destination::Syslog);
        }
        Err(e) => e,
    };
    match open_file(file) {
        Ok(f) => {
            *sink = Sink::File(f, file.to_path_buf());
            Ok(Destination::File(syslog_error))
        }
        Err(file_error) => {
            *sink = Sink::Syslog(None);
            Err(format!(
                "cannot log to syslog ({syslog_error}) nor to log_file ({file_error})"
            ))
        }
    }
}

/// Reopens the log: reconnects to syslog, or reopens the log file (e.g. after
/// rotation; the old one is kept if the file cannot be opened). Stderr needs nothing.
pub fn reopen() {
    let mut sink = LOGGER.sink.lock().unwrap_or_else(|p| p.into_inner());
    match &mut *sink {
        Sink::Syslog(logger) => *logger = connect_syslog().ok(),
        Sink::File(file, path) => {
            if let Ok(f) = open_file(path) {
                *file = f;
            }
        }
        Sink::Stderr => {}
    }
}
