//! Operating a running server from another thread (the daemon's control socket, or an
//! embedding program): status, clients, sends, kicks, drains and app commands.
//!
//! Nothing here touches a connection or a ring itself. A request for a worker goes into
//! that worker's command queue and wakes it through its eventfd, the path apps wake it
//! by; a request for an app goes into the app thread's command queue and unparks it.
//! Workers look at their queue only when their waker fired, and app threads once per
//! loop round, so commands cost the message path nothing. Each request waits for its
//! answer at most [`ANSWER_TIMEOUT`].

use crate::records::ClientId;
use crate::stats::ServerStats;
use crate::WorkerLink;
use crossbeam_queue::SegQueue;
use ringsocket_control::{ClientRow, Recipients};
pub use ringsocket_proto::CloseCode;
use ringsocket_proto::MessageKind;
use ringsocket_ring::SleepState;
use ringsocket_session::AppIndex;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

/// How long a command waits for a worker or an app thread to answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No app of that name.
    #[error("no app named '{0}'")]
    UnknownApp(String),
    /// The request is not allowed.
    #[error("{0}")]
    Invalid(String),
    /// A thread did not answer in time (a stuck app callback, say).
    #[error("the {0} did not answer within {ANSWER_TIMEOUT:?}")]
    Timeout(&'static str),
}

/// One open connection as its worker describes it.
#[derive(Debug)]
pub(crate) struct ClientFacts {
    pub(crate) id: ClientId,
    pub(crate) endpoint: usize,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) age_s: u64,
    pub(crate) queued: u64,
}

/// What a worker is asked.
pub(crate) enum WorkerCommand {
    /// Describe app `app`'s open connections here.
    Clients {
        app: AppIndex,
        reply: Sender<Vec<ClientFacts>>,
    },
    /// Close `client` with `code` and `reason`; answer whether it was open here.
    Kick {
        client: ClientId,
        code: CloseCode,
        reason: String,
        reply: Sender<bool>,
    },
    /// Refuse every new upgrade with 503 from now on.
    Drain,
    /// Close every open connection with `code` and `reason`.
    CloseAll { code: CloseCode, reason: String },
}

/// What an app thread is asked.
pub(crate) enum AppCommand {
    /// Send `payload` to `to`, as the app would; answer how many it reached.
    Send {
        to: Recipients,
        kind: MessageKind,
        payload: Vec<u8>,
        reply: Sender<Result<u64, String>>,
    },
    /// Run the app's control callback with `args`; answer its status and reply (or
    /// why it cannot run).
    Command {
        args: Vec<String>,
        reply: Sender<Result<(i32, Vec<u8>), String>>,
    },
}

/// A worker's end for commands.
pub(crate) struct WorkerCommands {
    pub(crate) queue: Sender<WorkerCommand>,
    pub(crate) link: Arc<WorkerLink>,
}

/// An app thread's command queue (a lock-free queue the app thread checks before it
/// parks, so a command never waits for its next wakeup) and its sleep word.
pub(crate) struct AppCommands {
    pub(crate) queue: Arc<SegQueue<AppCommand>>,
    pub(crate) sleep: Arc<SleepState>,
}

/// A worker's command queue and its receiving end.
pub(crate) fn worker_queue() -> (Sender<WorkerCommand>, Receiver<WorkerCommand>) {
    channel()
}

/// A handle for operating the running server (see [`crate::Running::control`]).
#[derive(Clone)]
pub struct Control {
    pub(crate) stats: Arc<ServerStats>,
    pub(crate) workers: Arc<[WorkerCommands]>,
    pub(crate) apps: Arc<[AppCommands]>,
}

impl Control {
    fn app(&self, name: &str) -> Result<usize, ControlError> {
        self.stats
            .apps
            .iter()
            .position(|a| a.name == name)
            .ok_or_else(|| ControlError::UnknownApp(name.to_string()))
    }

    fn tell_worker(&self, w: usize, command: WorkerCommand) {
        let worker = &self.workers[w];
        if worker.queue.send(command).is_ok() {
            if let Err(e) = worker.link.waker.wake() {
                log::error!("control: cannot wake worker {w}: {e}");
            }
        }
    }

    fn ask_app<T>(
        &self,
        a: usize,
        command: impl FnOnce(Sender<T>) -> AppCommand,
    ) -> Result<T, ControlError> {
        let (tx, rx) = channel();
        let app = &self.apps[a];
        app.queue.push(command(tx));
        app.sleep.unpark();
        rx.recv_timeout(ANSWER_TIMEOUT)
            .map_err(|_| ControlError::Timeout("app thread"))
    }

    /// What the server says of itself: the same snapshot as `/status.json`.
    pub fn status(&self) -> serde_json::Value {
        serde_json::to_value(crate::metrics::Snapshot::take(&self.stats)).unwrap_or_default()
    }

    /// Open connections, all apps and endpoints.
    pub fn connections(&self) -> u64 {
        self.stats.open_connections()
    }

    /// App `app`'s connected clients, oldest first.
    ///
    /// # Errors
    /// [`ControlError::UnknownApp`], or [`ControlError::Timeout`] if a worker is stuck.
    pub fn clients(&self, app: &str) -> Result<Vec<ClientRow>, ControlError> {
        let a = self.app(app)?;
        let mut rows = Vec::new();
        let (tx, rx) = channel();
        for w in 0..self.workers.len() {
            let reply = tx.clone();
            self.tell_worker(
                w,
                WorkerCommand::Clients {
                    app: AppIndex(a as u16),
                    reply,
                },
            );
        }
        drop(tx);
        for _ in 0..self.workers.len() {
            let facts = rx
                .recv_timeout(ANSWER_TIMEOUT)
                .map_err(|_| ControlError::Timeout("worker"))?;
            let urls = &self.stats.apps[a].endpoints;
            rows.extend(facts.into_iter().map(|f| ClientRow {
                id: f.id.0,
                endpoint: urls.get(f.endpoint).cloned().unwrap_or_default(),
                peer: f.peer.map(|p| p.to_string()),
                age_s: f.age_s,
                queued_bytes: f.queued,
            }));
        }
        rows.sort_by_key(|r| (std::cmp::Reverse(r.age_s), r.id));
        Ok(rows)
    }

    /// Sends one message to `to` among app `app`'s clients, through the app thread (as
    /// if the app had sent it); returns how many clients it was queued to.
    ///
    /// # Errors
    /// [`ControlError::UnknownApp`]; [`ControlError::Invalid`] for text that is not
    /// UTF-8 or a message larger than `max_ws_msg_size`.
    pub fn send(
        &self,
        app: &str,
        to: Recipients,
        binary: bool,
        payload: Vec<u8>,
    ) -> Result<u64, ControlError> {
        let a = self.app(app)?;
        let kind = if binary {
            MessageKind::Binary
        } else {
            if std::str::from_utf8(&payload).is_err() {
                return Err(ControlError::Invalid(
                    "a text message must be UTF-8 (use --binary)".into(),
                ));
            }
            MessageKind::Text
        };
        self.ask_app(a, |reply| AppCommand::Send {
            to,
            kind,
            payload,
            reply,
        })?
        .map_err(ControlError::Invalid)
    }

    /// Closes client `id` with `code` and `reason`; returns whether it was connected.
    ///
    /// # Errors
    /// [`ControlError::Invalid`] for a code an app may not close with (see
    /// `rs_close`) or a reason over 123 bytes.
    pub fn kick(&self, id: u64, code: u16, reason: &str) -> Result<bool, ControlError> {
        let code = CloseCode(code);
        if !code.is_app_allowed() {
            return Err(ControlError::Invalid(format!(
                "close code {} is not one a server may send (1000, 1001, 1003, 1007–1009, 1011, 3000–4999)",
                code.0
            )));
        }
        if reason.len() > 123 {
            return Err(ControlError::Invalid(
                "the reason is longer than 123 bytes".into(),
            ));
        }
        let client = ClientId(id);
        let w = client.worker();
        if id == 0 || w >= self.workers.len() {
            return Ok(false);
        }
        let (tx, rx) = channel();
        self.tell_worker(
            w,
            WorkerCommand::Kick {
                client,
                code,
                reason: reason.to_string(),
                reply: tx,
            },
        );
        rx.recv_timeout(ANSWER_TIMEOUT)
            .map_err(|_| ControlError::Timeout("worker"))
    }

    /// From now on every new upgrade gets 503 (plain HTTP requests to apps are still
    /// served), and `/ready` says 503.
    pub fn start_draining(&self) {
        self.stats.draining.store(true, Ordering::Relaxed);
        for w in 0..self.workers.len() {
            self.tell_worker(w, WorkerCommand::Drain);
        }
    }

    /// Closes every open connection with `code` and `reason`.
    pub fn close_all(&self, code: CloseCode, reason: &str) {
        for w in 0..self.workers.len() {
            self.tell_worker(
                w,
                WorkerCommand::CloseAll {
                    code,
                    reason: reason.to_string(),
                },
            );
        }
    }

    /// Hands `args` to app `app`'s control callback; returns its status and reply.
    ///
    /// # Errors
    /// [`ControlError::UnknownApp`]; [`ControlError::Invalid`] if the app has no
    /// control callback.
    pub fn app_command(
        &self,
        app: &str,
        args: Vec<String>,
    ) -> Result<(i32, Vec<u8>), ControlError> {
        let a = self.app(app)?;
        self.ask_app(a, |reply| AppCommand::Command { args, reply })?
            .map_err(ControlError::Invalid)
    }
}
