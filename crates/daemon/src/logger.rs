//! The `log` backend: timestamped lines on stderr in the foreground, syslog (facility
//! daemon, ident `ringsocket`) as a daemon. SIGHUP reconnects to syslog.

use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

type Syslog = Logger<LoggerBackend, Formatter3164>;

/// Where log lines go.
enum Sink {
    Stderr,
    Syslog(Option<Syslog>),
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
        match &mut *sink {
            Sink::Stderr => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "{}.{:03} {:<5} [{thread}] {}",
                    now.as_secs(),
                    now.subsec_millis(),
                    record.level(),
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

/// Switches the logger to syslog.
///
/// # Errors
/// A message if no syslog socket accepts connections (log lines are then dropped).
pub fn use_syslog() -> Result<(), String> {
    let connected = connect_syslog();
    let error = connected.as_ref().err().cloned();
    *LOGGER.sink.lock().unwrap_or_else(|p| p.into_inner()) = Sink::Syslog(connected.ok());
    error.map_or(Ok(()), Err)
}

/// Reopens the log (reconnects to syslog; stderr needs nothing).
pub fn reopen() {
    let mut sink = LOGGER.sink.lock().unwrap_or_else(|p| p.into_inner());
    if let Sink::Syslog(logger) = &mut *sink {
        *logger = connect_syslog().ok();
    }
}
