//! `ringsocketctl`: operate a running ringsocket daemon over its control socket.

use base64::Engine as _;
use clap::{Args, Parser, Subcommand};
use ringsocket_control::{
    AppReply, ClientRow, Drained, FailureKind, Kicked, Recipients, Reloaded, ReplyLine, Request,
    Sent, DEFAULT_SOCKET,
};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

/// The command succeeded.
const EXIT_OK: u8 = 0;
/// The daemon refused or could not carry out the command.
const EXIT_FAILED: u8 = 1;
/// The command line is wrong (clap's own status).
#[allow(dead_code)]
const EXIT_USAGE: u8 = 2;
/// The daemon cannot be reached.
const EXIT_UNREACHABLE: u8 = 3;
/// The caller may not use the control socket.
const EXIT_DENIED: u8 = 4;
/// The daemon answered something this ringsocketctl does not understand.
const EXIT_PROTOCOL: u8 = 5;

const AFTER_HELP: &str = "\
EXIT STATUS
    0  the command succeeded
    1  the daemon refused or failed the command (no such app or client, an invalid
       close code, text that is not UTF-8, an app callback that failed or timed out)
    2  the command line is wrong
    3  the daemon cannot be reached (not running, or another ctl_socket)
    4  permission denied: only root, the daemon's user and members of ctl_group may
       use the control socket
    5  the daemon's answer was not understood (a ringsocketctl of another version?)

FILES
    /run/ringsocket/ctl.sock   the default control socket (ctl_socket in the config),
                               mode 0660, owned by the daemon's user and ctl_group

EXAMPLES
    ringsocketctl status
    ringsocketctl clients chat --json
    echo hi | ringsocketctl send chat --all
    ringsocketctl send chat --to 4294967553 --to 4294967554 'maintenance in 5 minutes'
    ringsocketctl kick 4294967553 1008 'spamming'
    ringsocketctl drain --timeout 30 && systemctl restart ringsocket
    ringsocketctl app chat rooms";

/// Operate a running ringsocket daemon: status, clients, sends, kicks, drains, reloads
/// and app commands, over the daemon's control socket.
#[derive(Debug, Parser)]
#[command(version, about, after_long_help = AFTER_HELP)]
struct Cli {
    /// The daemon's control socket.
    #[arg(long, global = true, value_name = "PATH", env = "RINGSOCKET_CTL_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print the daemon's answer as JSON (one line per reply line).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Version, uptime, workers, apps, connections per endpoint, messages and bytes in
    /// and out, ring fill, the configuration file.
    Status,
    /// An app's connected clients: id, endpoint, peer address, age, bytes queued.
    Clients {
        /// The app's name.
        app: String,
    },
    /// Send one message to some of an app's clients (as if the app had); says how many
    /// it reached.
    Send(SendArgs),
    /// Close a client, with a close code (default 1008) and a reason.
    Kick {
        /// The client's id (see `clients`).
        id: u64,
        /// The close code: 1000, 1001, 1003, 1007–1009, 1011 or 3000–4999.
        #[arg(default_value_t = 1008)]
        code: u16,
        /// The reason (at most 123 bytes).
        #[arg(default_value = "kicked by the operator")]
        reason: String,
    },
    /// Stop accepting (new upgrades get 503, /ready says 503), wait for the clients to
    /// leave, close the rest with 1001 after the timeout; reports as it goes.
    Drain {
        /// Seconds to wait before closing the remaining clients.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Reopen the log and re-read the configuration, as SIGHUP does; says what was
    /// applied.
    Reload,
    /// Hand a command to the app's control callback and print its reply.
    App {
        /// The app's name.
        app: String,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("whom").required(true).args(["to", "all"])))]
struct SendArgs {
    /// The app's name.
    app: String,
    /// The message; read from standard input (to its end, one trailing newline
    /// dropped) when absent.
    payload: Option<String>,
    /// A recipient's client id (repeat for more).
    #[arg(long, value_name = "ID")]
    to: Vec<u64>,
    /// Every client of the app.
    #[arg(long)]
    all: bool,
    /// With --all: a client id to leave out (repeat for more).
    #[arg(long, value_name = "ID", requires = "all")]
    except: Vec<u64>,
    /// Send a binary message (else text, which must be UTF-8).
    #[arg(long)]
    binary: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let request = match request(cli.command) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ringsocketctl: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    ExitCode::from(run(&cli.socket, &request, cli.json))
}

/// The request a command line asks for.
fn request(command: Command) -> Result<Request, String> {
    Ok(match command {
        Command::Status => Request::Status,
        Command::Clients { app } => Request::Clients { app },
        Command::Send(a) => {
            let payload = match a.payload {
                Some(p) => p.into_bytes(),
                None => {
                    let mut bytes = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut bytes)
                        .map_err(|e| format!("cannot read standard input: {e}"))?;
                    if bytes.last() == Some(&b'\n') {
                        bytes.pop();
                    }
                    bytes
                }
            };
            let to = if a.all {
                Recipients::All { except: a.except }
            } else {
                Recipients::Ids { ids: a.to }
            };
            Request::Send {
                app: a.app,
                to,
                binary: a.binary,
                payload_b64: base64::engine::general_purpose::STANDARD.encode(payload),
            }
        }
        Command::Kick { id, code, reason } => Request::Kick { id, code, reason },
        Command::Drain { timeout } => Request::Drain { timeout_s: timeout },
        Command::Reload => Request::Reload,
        Command::App { app, args } => Request::App { app, args },
    })
}

/// Sends `request`, prints the answer; returns the exit status.
fn run(socket: &PathBuf, request: &Request, json: bool) -> u8 {
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!(
                "ringsocketctl: permission denied: {} (only root, the daemon's user and members of ctl_group may use it)",
                socket.display()
            );
            return EXIT_DENIED;
        }
        Err(e) => {
            eprintln!(
                "ringsocketctl: cannot reach the daemon at {}: {e} (is it running? see ctl_socket, or --socket)",
                socket.display()
            );
            return EXIT_UNREACHABLE;
        }
    };
    let line = serde_json::to_string(request).expect("requests serialize");
    // A daemon that refuses this client answers and closes at once, possibly before the
    // request is written: the write then fails, and the answer is still there to read.
    let unsent = writeln!(stream, "{line}").err();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let reply: ReplyLine = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("ringsocketctl: cannot understand the daemon's answer ({e}): {line}");
                return EXIT_PROTOCOL;
            }
        };
        if json {
            println!("{line}");
        }
        match reply {
            ReplyLine::Progress {
                connections,
                remaining_s,
            } => {
                if !json {
                    if remaining_s > 0 {
                        println!("draining: {connections} connections left; closing the rest in {remaining_s} s");
                    } else {
                        println!("draining: {connections} connections left");
                    }
                }
            }
            ReplyLine::Done { result } => {
                if json {
                    return EXIT_OK;
                }
                return match print(request, result) {
                    Ok(status) => status,
                    Err(e) => {
                        eprintln!("ringsocketctl: cannot understand the daemon's answer: {e}");
                        EXIT_PROTOCOL
                    }
                };
            }
            ReplyLine::Failed { error, kind } => {
                if !json {
                    eprintln!("ringsocketctl: {error}");
                }
                return match kind {
                    FailureKind::PermissionDenied => EXIT_DENIED,
                    _ => EXIT_FAILED,
                };
            }
        }
    }
    if let Some(e) = unsent {
        eprintln!("ringsocketctl: cannot send the request: {e}");
        return EXIT_UNREACHABLE;
    }
    eprintln!("ringsocketctl: the daemon closed the connection without an answer");
    EXIT_PROTOCOL
}

/// Prints a result for people; returns the exit status.
fn print(request: &Request, result: Value) -> Result<u8, serde_json::Error> {
    match request {
        Request::Status => print_status(&result),
        Request::Clients { .. } => {
            let rows: Vec<ClientRow> = serde_json::from_value(result)?;
            println!(
                "{:<20} {:<32} {:<24} {:>8} {:>12}",
                "ID", "ENDPOINT", "PEER", "AGE", "QUEUED"
            );
            for r in &rows {
                println!(
                    "{:<20} {:<32} {:<24} {:>8} {:>12}",
                    r.id,
                    r.endpoint,
                    r.peer.as_deref().unwrap_or("-"),
                    duration(r.age_s as f64),
                    r.queued_bytes
                );
            }
            println!("{} clients", rows.len());
        }
        Request::Send { .. } => {
            let sent: Sent = serde_json::from_value(result)?;
            println!(
                "reached {} client{}",
                sent.reached,
                if sent.reached == 1 { "" } else { "s" }
            );
        }
        Request::Kick { id, .. } => {
            let _: Kicked = serde_json::from_value(result)?;
            println!("closing client {id}");
        }
        Request::Drain { .. } => {
            let d: Drained = serde_json::from_value(result)?;
            println!(
                "drained: {} left on their own, {} closed with 1001",
                d.left, d.closed
            );
        }
        Request::Reload => {
            let r: Reloaded = serde_json::from_value(result)?;
            println!("{}", r.applied);
        }
        Request::App { .. } => {
            let r: AppReply = serde_json::from_value(result)?;
            if !r.reply.is_empty() {
                println!("{}", r.reply.trim_end_matches('\n'));
            }
            if r.status != 0 {
                eprintln!(
                    "ringsocketctl: the app's control callback returned {}",
                    r.status
                );
                return Ok(EXIT_FAILED);
            }
        }
    }
    Ok(EXIT_OK)
}

fn duration(s: f64) -> String {
    match s {
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s => format!("{:.1} h", s / 3600.0),
    }
}

fn print_status(s: &Value) {
    let u = |v: &Value| v.as_u64().unwrap_or(0);
    let state = if s["draining"] == true {
        "draining"
    } else if s["ready"] == true {
        "ready"
    } else {
        "starting"
    };
    println!(
        "ringsocket {}, {state}, up {}, {} workers",
        s["version"].as_str().unwrap_or("?"),
        duration(s["uptime_s"].as_f64().unwrap_or(0.0)),
        u(&s["workers"])
    );
    println!("config      {}", s["config_path"].as_str().unwrap_or("?"));
    println!("connections {}", u(&s["connections"]));
    if let Some(h) = s["handshakes"].as_object() {
        let seen: Vec<String> = h
            .iter()
            .filter(|(_, n)| u(n) > 0)
            .map(|(status, n)| format!("{status}: {}", u(n)))
            .collect();
        println!("handshakes  {}", seen.join(", "));
    }
    for app in s["apps"].as_array().into_iter().flatten() {
        println!(
            "app {}: in {} messages ({} B), out {} messages ({} B), slow-consumer closes {}, ring-full stalls {}",
            app["name"].as_str().unwrap_or("?"),
            u(&app["messages_in"]),
            u(&app["bytes_in"]),
            u(&app["messages_out"]),
            u(&app["bytes_out"]),
            u(&app["slow_consumer_closes"]) + u(&app["memory_budget_closes"]),
            u(&app["ring_full_inbound"]) + u(&app["ring_full_outbound"]),
        );
        for e in app["endpoints"].as_array().into_iter().flatten() {
            println!(
                "  {:<40} {} open, {} opened",
                e["url"].as_str().unwrap_or("?"),
                u(&e["connections"]),
                u(&e["opened"])
            );
        }
        let rings = app["rings"].as_array().into_iter().flatten();
        let fill: Vec<String> = rings
            .map(|r| {
                format!(
                    "w{} {} {:.1} %",
                    u(&r["worker"]),
                    r["direction"].as_str().unwrap_or("?"),
                    100.0 * u(&r["used"]) as f64 / u(&r["capacity"]).max(1) as f64
                )
            })
            .collect();
        println!("  rings: {}", fill.join(", "));
    }
}
