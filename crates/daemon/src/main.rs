//! `ringsocket`: the daemon binary.
//!
//! Start-up order (all before any thread exists, so privilege changes apply to the
//! whole process): load the configuration → narrow capabilities (as root) → raise
//! RLIMIT_NOFILE → bind every listener and load every plugin → daemonize (unless
//! `--foreground`) → switch to the configured user and drop every capability → start
//! the app threads (their init runs now) and the workers → report ready. Errors up to
//! "ready" reach the terminal, even as a daemon, and set the exit status.

mod control;
mod logger;
mod privileges;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use ringsocket_server::config::{Config, DEFAULT_PATH};
use ringsocket_server::Server;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// A lockless, multi-threaded WebSocket server that runs app plugins.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The configuration file.
    #[arg(long, short, value_name = "PATH", default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// Stay in the foreground and log to stderr (for development, tests and systemd).
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

/// How start-up reports to whoever launched it: stderr in the foreground; a pipe to the
/// waiting parent process for a daemon (whose stderr is /dev/null).
enum Reporter {
    Foreground,
    Daemon(std::fs::File),
}

impl Reporter {
    fn warn(&mut self, msg: &str) {
        log::warn!("{msg}");
        if let Reporter::Daemon(pipe) = self {
            let _ = writeln!(pipe, "warning: {msg}");
        }
    }

    /// Logs `msg` as the reason start-up failed, tells the launcher, and returns `code`.
    fn fail(&mut self, code: u8, msg: &str) -> ExitCode {
        log::error!("{msg}");
        match self {
            Reporter::Foreground => eprintln!("ringsocket: {msg}"),
            Reporter::Daemon(pipe) => {
                let _ = writeln!(pipe, "error {code}: {msg}");
            }
        }
        ExitCode::from(code)
    }

    fn ready(self) {
        if let Reporter::Daemon(mut pipe) = self {
            let _ = writeln!(pipe, "ready");
        }
    }
}

fn main() -> ExitCode {
    fixed_mmap_threshold();
    let args = Args::parse();
    if let Some(path) = args.check_config {
        return check_config(&path.unwrap_or(args.config));
    }
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ringsocket: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    logger::init(&config.log_level);
    let mut report = Reporter::Foreground;
    for key in config.ignored_keys() {
        log::info!(
            "{}: {key}: ignored (a RingSocket 1 tuning key ringsocket does not use)",
            args.config.display()
        );
    }

    // Blocked from the start (before a port is bound, so a client can never see the
    // server before a SIGTERM would stop it cleanly): every thread inherits this mask,
    // so only the main thread's sigwait sees them, and one sent during start-up waits.
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(signal);
    }
    if let Err(e) = signals.thread_block() {
        return report.fail(EXIT_START, &format!("cannot block signals: {e}"));
    }

    // Privileged part: narrow the capabilities, raise the file limit, bind, load.
    let target = if privileges::is_root() {
        let target = match privileges::resolve(&config.user, &config.group, config.allow_root_apps)
        {
            Ok(target) => target,
            Err(e) => return report.fail(EXIT_CONFIG, &format!("{}: {e}", args.config.display())),
        };
        let bind_device = config.ports.iter().any(|p| !p.interface.is_empty());
        match privileges::keep_startup_caps(bind_device) {
            Ok(missing) if !missing.is_empty() => {
                log::info!("running without {missing:?}: the related start-up steps may be limited")
            }
            Ok(_) => {}
            Err(e) => return report.fail(EXIT_START, &e),
        }
        Some(target)
    } else {
        log::info!(
            "started as uid {} (not root): not switching to user '{}' and not dropping capabilities; \
             ports below 1024 need CAP_NET_BIND_SERVICE",
            nix::unistd::Uid::effective(),
            config.user
        );
        None
    };
    match privileges::raise_nofile(config.fd_alloc_c.into()) {
        Ok(limit) if limit < u64::from(config.fd_alloc_c) => report.warn(&format!(
            "the open-file limit is {limit}, below fd_alloc_c ({}); connections beyond it will be refused",
            config.fd_alloc_c
        )),
        Ok(_) => {}
        Err(e) => report.warn(&e),
    }
    let ctl_path = match &config.ctl_socket {
        None => Some((PathBuf::from(ringsocket_control::DEFAULT_SOCKET), false)),
        Some(p) if p.as_os_str().is_empty() => None,
        Some(p) => Some((p.clone(), true)),
    };
    let ctl_group = config.ctl_group.clone();
    let pid_file = config.pid_file.clone();
    let log_file = config
        .log_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(ringsocket_server::config::DEFAULT_LOG_FILE));
    let shutdown_timeout = Duration::from_secs(config.shutdown_timeout.into());
    let prepared = match Server::prepare(config) {
        Ok(prepared) => prepared,
        Err(e) => return report.fail(EXIT_START, &e.to_string()),
    };
    // The control socket: bound now (its directory may need root), handed to the run
    // user and the control group.
    let allowed = match control_allowed(&ctl_group, target.as_ref()) {
        Ok(allowed) => allowed,
        Err(e) => return report.fail(EXIT_CONFIG, &format!("{}: {e}", args.config.display())),
    };
    let ctl_socket = match ctl_path {
        None => None,
        Some((path, explicit)) => match control::bind(&path) {
            Ok(socket) => {
                if let Some(owner) = &target {
                    if let Err(e) =
                        nix::unistd::chown(&socket.path, Some(owner.uid), Some(allowed.gid))
                    {
                        return report.fail(
                            EXIT_START,
                            &format!(
                                "ctl_socket: {}: cannot hand it to the run user: {e}",
                                path.display()
                            ),
                        );
                    }
                    if let Some(dir) = &socket.created_dir {
                        let _ = nix::unistd::chown(dir, Some(owner.uid), Some(owner.gid));
                    }
                }
                Some(socket)
            }
            // An explicit ctl_socket must work; the default one may be another
            // daemon's (several on one machine) or, not as root, out of reach.
            Err(control::BindError::Taken(e) | control::BindError::Failed(e)) if explicit => {
                return report.fail(EXIT_START, &e)
            }
            Err(control::BindError::Failed(e)) if privileges::is_root() => {
                return report.fail(EXIT_START, &e)
            }
            Err(control::BindError::Taken(e) | control::BindError::Failed(e)) => {
                report.warn(&format!(
                    "{e}; running without a control socket (set ctl_socket)"
                ));
                None
            }
        },
    };

    if !args.foreground {
        match daemonize(&pid_file, target.as_ref()) {
            Ok(Some(pipe)) => report = Reporter::Daemon(pipe),
            Ok(None) => unreachable!("the parent process exits in daemonize"),
            Err(e) => return report.fail(EXIT_START, &e),
        }
        match logger::use_syslog_or_file(&log_file) {
            Ok(logger::Destination::Syslog) => {}
            Ok(logger::Destination::File(why)) => {
                if let Some(owner) = &target {
                    // The file stays writable (and reopenable on SIGHUP) as the user.
                    let _ = nix::unistd::chown(&log_file, Some(owner.uid), Some(owner.gid));
                }
                log::info!(
                    "cannot log to syslog ({why}); logging to {}",
                    log_file.display()
                );
            }
            Err(e) => report.warn(&format!("{e}; log lines are dropped")),
        }
    }

    if let Some(target) = &target {
        if let Err(e) = privileges::drop_to(target) {
            return report.fail(EXIT_START, &format!("cannot drop privileges: {e}"));
        }
        log::info!(
            "running as user {} (uid {}, gid {}) with no capabilities",
            target.user,
            target.uid,
            target.gid
        );
    }
    let running = match prepared.start() {
        Ok(running) => running,
        Err(e) => return report.fail(EXIT_START, &e.to_string()),
    };
    let ctl_file = ctl_socket.as_ref().map(|s| s.path.clone());
    if let Some(socket) = ctl_socket {
        log::info!("control socket {}", socket.path.display());
        let config_path = args.config.clone();
        let reload: control::Reload = std::sync::Arc::new(move || reload(&config_path));
        control::serve(socket, running.control(), allowed, reload);
    }
    report.ready();

    loop {
        match signals.wait() {
            Ok(Signal::SIGHUP) => match reload(&args.config) {
                Ok(applied) => log::info!("SIGHUP: {applied}"),
                Err(e) => log::error!("SIGHUP: {e}"),
            },
            Ok(signal) => {
                log::info!("received {signal}; closing every connection and stopping");
                break;
            }
            Err(e) => {
                log::error!("sigwait failed: {e}; stopping");
                break;
            }
        }
    }
    // Bound the stop even if an app callback never returns.
    std::thread::spawn(move || {
        std::thread::sleep(shutdown_timeout + Duration::from_secs(2));
        log::warn!("stop took longer than shutdown_timeout; exiting anyway");
        std::process::exit(0);
    });
    running.stop();
    if let Some(path) = ctl_file {
        control::remove(&path);
    }
    if !args.foreground {
        let _ = std::fs::remove_file(&pid_file);
    }
    log::info!("stopped");
    ExitCode::SUCCESS
}

/// Makes glibc serve every allocation of 128 KiB or more (large messages, big output
/// buffers) with its own mapping, returned to the system when freed. By default the
/// threshold rises as such blocks are freed, after which freed buffers stay in the
/// heap: the process's memory would then follow the worst burst it ever saw rather
/// than what it holds (see `max_buffered_bytes`).
fn fixed_mmap_threshold() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn check_config(path: &Path) -> ExitCode {
    match Config::load(path) {
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
    }
}

/// SIGHUP and `ringsocketctl reload`: reopen the log, and apply what can change safely
/// at run time (`log_level`). Returns what was applied, or why nothing was.
fn reload(path: &Path) -> Result<String, String> {
    logger::reopen();
    match Config::load(path) {
        Ok(config) => {
            log::set_max_level(logger::level_filter(&config.log_level));
            Ok(format!(
                "log reopened; log_level is now {} (other changes need a restart)",
                config.log_level
            ))
        }
        Err(e) => Err(format!(
            "log reopened; keeping the running configuration: {e}"
        )),
    }
}

/// Who may use the control socket: root, the user the daemon runs as, and the members
/// of `ctl_group` (empty: the group it runs as).
fn control_allowed(
    ctl_group: &str,
    target: Option<&privileges::Target>,
) -> Result<control::Allowed, String> {
    let uid = target.map_or_else(nix::unistd::Uid::effective, |t| t.uid);
    let gid = if ctl_group.is_empty() {
        target.map_or_else(nix::unistd::Gid::effective, |t| t.gid)
    } else {
        nix::unistd::Group::from_name(ctl_group)
            .map_err(|e| format!("ctl_group: cannot look up '{ctl_group}': {e}"))?
            .ok_or_else(|| format!("ctl_group: '{ctl_group}' does not exist"))?
            .gid
    };
    Ok(control::Allowed { uid, gid })
}

/// Forks into the background. In the parent, waits for the daemon's start-up report,
/// prints it and exits with its status; in the daemon, returns the report pipe.
fn daemonize(
    pid_file: &Path,
    owner: Option<&privileges::Target>,
) -> Result<Option<std::fs::File>, String> {
    let created_dir = match pid_file.parent().filter(|d| !d.exists()) {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("pid_file: cannot create {}: {e}", dir.display()))?;
            Some(dir)
        }
        None => None,
    };
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let outcome = daemonize::Daemonize::new()
        .pid_file(pid_file)
        .working_directory("/")
        .umask(0o022)
        .execute();
    match outcome {
        daemonize::Outcome::Parent(result) => {
            drop(write_end);
            if let Err(e) = result {
                eprintln!("ringsocket: cannot daemonize: {e}");
                std::process::exit(EXIT_START.into());
            }
            let mut status = EXIT_START;
            let mut said_anything = false;
            for line in BufReader::new(std::fs::File::from(read_end))
                .lines()
                .map_while(Result::ok)
            {
                said_anything = true;
                if line == "ready" {
                    status = 0;
                } else if let Some(rest) = line.strip_prefix("error ") {
                    let (code, msg) = rest.split_once(": ").unwrap_or(("1", rest));
                    status = code.parse().unwrap_or(EXIT_START);
                    eprintln!("ringsocket: {msg}");
                } else {
                    eprintln!("ringsocket: {line}");
                }
            }
            if !said_anything {
                eprintln!("ringsocket: the daemon exited during start-up");
            }
            std::process::exit(status.into());
        }
        daemonize::Outcome::Child(result) => {
            drop(read_end);
            let mut pipe = std::fs::File::from(write_end);
            if let Err(e) = result {
                let _ = writeln!(
                    pipe,
                    "error {EXIT_START}: cannot daemonize (PID file {}): {e}",
                    pid_file.display()
                );
                std::process::exit(EXIT_START.into());
            }
            if let Some(owner) = owner {
                // The PID file, and a directory we created for it, become the user's,
                // so the daemon can remove its PID file at exit after dropping root.
                for path in [Some(pid_file), created_dir].into_iter().flatten() {
                    if let Err(e) = nix::unistd::chown(path, Some(owner.uid), Some(owner.gid)) {
                        let _ = writeln!(pipe, "warning: cannot chown {}: {e}", path.display());
                    }
                }
            }
            Ok(Some(pipe))
        }
    }
}
