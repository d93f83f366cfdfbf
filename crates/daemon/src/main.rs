//! `ringsocket`: the daemon binary. Parses the command line, loads the configuration,
//! sets up logging, starts the server and stops it on SIGTERM/SIGINT.

mod logger;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use ringsocket_server::config::{Config, DEFAULT_PATH};
use ringsocket_server::Server;
use std::path::PathBuf;
use std::process::ExitCode;

/// A lockless, multi-threaded WebSocket server that runs app plugins.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The configuration file.
    #[arg(long, short, value_name = "PATH", default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// Stay in the foreground and log to stderr (for development and tests).
    #[arg(long, short)]
    foreground: bool,
    /// Validate the configuration (PATH, or --config) and exit: 0 if valid, 2 if not.
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    check_config: Option<Option<PathBuf>>,
}

/// Exit status for a configuration error.
const EXIT_CONFIG: u8 = 2;
/// Exit status for any other start-up failure.
const EXIT_START: u8 = 1;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = args.check_config {
        let path = path.unwrap_or(args.config);
        return match Config::load(&path) {
            Ok(config) => {
                for key in config.ignored_keys() {
                    println!(
                        "{}: {key}: ignored (a RingSocket 1 tuning key ringsocket does not use)",
                        path.display()
                    );
                }
                println!("{}: configuration is valid", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ringsocket: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ringsocket: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    logger::init(&config.log_level);
    if !args.foreground {
        log::warn!("daemon mode is not implemented yet; staying in the foreground");
    }
    for key in config.ignored_keys() {
        log::info!(
            "{}: {key}: ignored (a RingSocket 1 tuning key ringsocket does not use)",
            args.config.display()
        );
    }

    // Block the stop signals before any thread starts, so every thread inherits the
    // mask and only the main thread's sigwait sees them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    if let Err(e) = signals.thread_block() {
        log::error!("cannot block signals: {e}");
        return ExitCode::from(EXIT_START);
    }

    let running = match Server::prepare(config).and_then(|p| p.start()) {
        Ok(running) => running,
        Err(e) => {
            log::error!("{e}");
            eprintln!("ringsocket: {e}");
            return ExitCode::from(EXIT_START);
        }
    };
    match signals.wait() {
        Ok(signal) => log::info!("received {signal}; closing every connection and stopping"),
        Err(e) => log::error!("sigwait failed: {e}; stopping"),
    }
    running.stop();
    log::info!("stopped");
    ExitCode::SUCCESS
}
