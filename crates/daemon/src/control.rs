//! The control socket `ringsocketctl` talks to: a Unix stream socket at `ctl_socket`,
//! mode 0660, owned by the run user and `ctl_group`. Each connection carries one
//! request line and gets its reply lines (see `ringsocket-control`); the peer is
//! checked with `SO_PEERCRED` first: root, the daemon's own user, or a member of
//! `ctl_group`, else "permission denied".

use base64::Engine as _;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{Gid, Uid};
use ringsocket_control::{
    AppReply, Drained, FailureKind, Kicked, Reloaded, ReplyLine, Request, Sent, MAX_REQUEST,
};
use ringsocket_server::control::{CloseCode, Control, ControlError};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections served at once; more are told to try again.
const MAX_SESSIONS: usize = 16;
/// How long a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a drain waits for the clients it closed to finish their close handshakes.
const CLOSE_WAIT: Duration = Duration::from_secs(30);

/// The bound control socket, before the daemon serves it.
pub struct Socket {
    listener: UnixListener,
    /// Its path (removed when the daemon stops).
    pub path: PathBuf,
    /// The directory `bind` created for it, if it did (to hand to the run user, so that
    /// the daemon can remove the socket, and its PID file there, at exit).
    pub created_dir: Option<PathBuf>,
}

/// Why the control socket could not be bound.
#[derive(Debug)]
pub enum BindError {
    /// Another live daemon serves that path.
    Taken(String),
    /// Anything else (a message naming `ctl_socket` and the path).
    Failed(String),
}

/// Binds the control socket at `path` (creating its directory), mode 0660. A socket
/// file nobody listens on is a leftover and replaced; one a live daemon serves is
/// [`BindError::Taken`].
///
/// # Errors
/// A [`BindError`] with a message naming `ctl_socket` and the path.
pub fn bind(path: &Path) -> Result<Socket, BindError> {
    bind_inner(path).map_err(|(taken, why)| {
        if taken {
            BindError::Taken(why)
        } else {
            BindError::Failed(why)
        }
    })
}

fn bind_inner(path: &Path) -> Result<Socket, (bool, String)> {
    let fail = |what: String| (false, format!("ctl_socket: {}: {what}", path.display()));
    let mut created_dir = None;
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| fail(format!("cannot create its directory: {e}")))?;
        created_dir = Some(dir.to_path_buf());
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            let (_, why) = fail("another ringsocket serves this control socket".into());
            return Err((true, why));
        }
        std::fs::remove_file(path).map_err(|e| fail(format!("cannot replace it: {e}")))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| fail(format!("cannot listen: {e}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| fail(format!("cannot set its mode: {e}")))?;
    Ok(Socket {
        listener,
        path: path.to_path_buf(),
        created_dir,
    })
}

/// Who may use the socket besides root.
#[derive(Clone, Copy)]
pub struct Allowed {
    /// The daemon's own user.
    pub uid: Uid,
    /// The control group.
    pub gid: Gid,
}

/// What `reload` runs (the SIGHUP handler): returns what it applied, or why not.
pub type Reload = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Serves `socket` on a thread of its own until the process exits.
pub fn serve(socket: Socket, control: Control, allowed: Allowed, reload: Reload) {
    let sessions = Arc::new(AtomicUsize::new(0));
    let spawned = std::thread::Builder::new()
        .name("rs-control".into())
        .spawn(move || {
            for stream in socket.listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if sessions.fetch_add(1, Ordering::AcqRel) >= MAX_SESSIONS {
                    sessions.fetch_sub(1, Ordering::AcqRel);
                    let busy = failed(
                        FailureKind::Unavailable,
                        "too many control sessions at once; try again",
                    );
                    let _ = writeln!(stream, "{busy}");
                    continue;
                }
                let (control, reload, sessions) =
                    (control.clone(), reload.clone(), sessions.clone());
                let spawned = std::thread::Builder::new()
                    .name("rs-control-session".into())
                    .spawn(move || {
                        session(stream, &control, allowed, &reload);
                        sessions.fetch_sub(1, Ordering::AcqRel);
                    });
                if let Err(e) = spawned {
                    log::warn!("control: cannot start a session thread: {e}");
                }
            }
        });
    if let Err(e) = spawned {
        log::error!("control: cannot start the control thread: {e}");
    }
}

fn failed(kind: FailureKind, error: &str) -> String {
    let line = ReplyLine::Failed {
        error: error.to_string(),
        kind,
    };
    serde_json::to_string(&line).unwrap_or_default()
}

fn done(result: impl serde::Serialize) -> String {
    let line = ReplyLine::Done {
        result: serde_json::to_value(result).unwrap_or_default(),
    };
    serde_json::to_string(&line).unwrap_or_default()
}

/// Whether the peer of `stream` may use the socket: root, the daemon's user, or a
/// member (primary or supplementary) of the control group.
fn permitted(stream: &UnixStream, allowed: Allowed) -> Result<(), String> {
    let creds = getsockopt(stream, PeerCredentials).map_err(|e| format!("SO_PEERCRED: {e}"))?;
    let (uid, gid) = (Uid::from_raw(creds.uid()), Gid::from_raw(creds.gid()));
    if uid.is_root() || uid == allowed.uid || gid == allowed.gid {
        return Ok(());
    }
    // Supplementary groups, as the kernel has them for the peer process.
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", creds.pid())).unwrap_or_default();
    let in_group = status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|groups| {
            groups
                .split_whitespace()
                .any(|g| g.parse::<u32>() == Ok(allowed.gid.as_raw()))
        });
    if in_group {
        return Ok(());
    }
    Err(format!(
        "permission denied: uid {uid} is not root and not in the control group (gid {})",
        allowed.gid
    ))
}

/// One connection: the check, one request, its reply.
fn session(stream: UnixStream, control: &Control, allowed: Allowed, reload: &Reload) {
    let mut out = match stream.try_clone() {
        Ok(out) => out,
        Err(_) => return,
    };
    if let Err(why) = permitted(&stream, allowed) {
        log::warn!("control: refused a client: {why}");
        let _ = writeln!(out, "{}", failed(FailureKind::PermissionDenied, &why));
        return;
    }
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let mut line = String::new();
    let mut reader = BufReader::new(stream.take(MAX_REQUEST as u64));
    if reader.read_line(&mut line).is_err() || !line.ends_with('\n') {
        let _ = writeln!(
            out,
            "{}",
            failed(FailureKind::Invalid, "expected one request line")
        );
        return;
    }
    let request: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(
                out,
                "{}",
                failed(FailureKind::Invalid, &format!("bad request: {e}"))
            );
            return;
        }
    };
    log::info!("control: {}", describe(&request));
    let reply = run(request, control, reload, &mut out);
    let _ = writeln!(out, "{reply}");
}

/// A request in a log line (without payloads).
fn describe(request: &Request) -> String {
    match request {
        Request::Send {
            app,
            to,
            binary,
            payload_b64,
        } => format!(
            "send to {app} {to:?}, {} payload bytes{}",
            payload_b64.len() / 4 * 3,
            if *binary { ", binary" } else { "" }
        ),
        other => format!("{other:?}"),
    }
}

fn from_error(e: ControlError) -> String {
    let kind = match e {
        ControlError::UnknownApp(_) => FailureKind::NotFound,
        ControlError::Invalid(_) => FailureKind::Invalid,
        ControlError::Timeout(_) => FailureKind::Unavailable,
    };
    failed(kind, &e.to_string())
}

/// Runs `request`; progress lines go to `out` as they come, the final line is returned.
fn run(request: Request, control: &Control, reload: &Reload, out: &mut UnixStream) -> String {
    match request {
        Request::Status => done(control.status()),
        Request::Clients { app } => match control.clients(&app) {
            Ok(rows) => done(rows),
            Err(e) => from_error(e),
        },
        Request::Send {
            app,
            to,
            binary,
            payload_b64,
        } => {
            let payload = match base64::engine::general_purpose::STANDARD.decode(payload_b64) {
                Ok(p) => p,
                Err(e) => return failed(FailureKind::Invalid, &format!("payload_b64: {e}")),
            };
            match control.send(&app, to, binary, payload) {
                Ok(reached) => done(Sent { reached }),
                Err(e) => from_error(e),
            }
        }
        Request::Kick { id, code, reason } => match control.kick(id, code, &reason) {
            Ok(true) => done(Kicked { found: true }),
            Ok(false) => failed(FailureKind::NotFound, &format!("no connected client {id}")),
            Err(e) => from_error(e),
        },
        Request::Drain { timeout_s } => drain(control, timeout_s, out),
        Request::Reload => match reload() {
            Ok(applied) => done(Reloaded { applied }),
            Err(e) => failed(FailureKind::Invalid, &e),
        },
        Request::App { app, args } => match control.app_command(&app, args) {
            Ok((status, reply)) => done(AppReply {
                status,
                reply: String::from_utf8_lossy(&reply).into_owned(),
            }),
            Err(e) => from_error(e),
        },
    }
}

/// Stops upgrades, reports the connections left every second until none are or
/// `timeout_s` passed, then closes the rest with 1001 and waits for them to go.
fn drain(control: &Control, timeout_s: u64, out: &mut UnixStream) -> String {
    control.start_draining();
    let start = control.connections();
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    let mut next_report = Instant::now();
    let closed = wait_until_gone(control, deadline, true, &mut next_report, out);
    let mut left = closed;
    if left > 0 {
        control.close_all(CloseCode::GOING_AWAY, "server draining");
        let until = Instant::now() + CLOSE_WAIT;
        left = wait_until_gone(control, until, false, &mut next_report, out);
    }
    progress(out, left, Duration::ZERO);
    done(Drained {
        left: start.saturating_sub(closed),
        closed,
    })
}

/// Writes a drain's progress line.
fn progress(out: &mut UnixStream, connections: u64, remaining: Duration) {
    let line = ReplyLine::Progress {
        connections,
        remaining_s: remaining.as_secs(),
    };
    let _ = writeln!(out, "{}", serde_json::to_string(&line).unwrap_or_default());
}

/// Waits until no connection is left or `until` passes, reporting the connections left
/// at every `next_report` (then a second later); with `counting_down` the report says
/// how long until `until`. Returns the connections left.
fn wait_until_gone(
    control: &Control,
    until: Instant,
    counting_down: bool,
    next_report: &mut Instant,
    out: &mut UnixStream,
) -> u64 {
    let mut left = control.connections();
    while left > 0 && Instant::now() < until {
        if Instant::now() >= *next_report {
            let remaining = if counting_down {
                until.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            progress(out, left, remaining);
            *next_report += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(50));
        left = control.connections();
    }
    left
}

/// Removes the socket file (at exit).
pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_socket_is_not_taken_over_and_a_stale_one_is() {
        let dir = std::env::temp_dir().join(format!("rs-ctl-test-{}", std::process::id()));
        let path = dir.join("sub").join("ctl.sock");
        let Ok(first) = bind(&path) else {
            panic!("cannot bind {}", path.display())
        };
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660);
        match bind(&path) {
            Err(BindError::Taken(why)) => assert!(why.contains("another ringsocket"), "{why}"),
            _ => panic!("a live socket was taken over"),
        }
        drop(first); // the file stays, nobody listens
        let again = bind(&path);
        assert!(again.is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
