//! The control protocol: what `ringsocketctl` asks the daemon over its Unix socket
//! (`ctl_socket`), and what the daemon answers.
//!
//! One request per connection, as one line of JSON ([`Request`]); the daemon answers
//! with lines of JSON ([`ReplyLine`]): any number of [`ReplyLine::Progress`] (a drain
//! reports as it goes), then exactly one [`ReplyLine::Done`] or [`ReplyLine::Failed`],
//! and closes the connection. Payloads travel as base64 (JSON strings cannot carry
//! arbitrary bytes).

use serde::{Deserialize, Serialize};

/// The default path of the daemon's control socket.
pub const DEFAULT_SOCKET: &str = "/run/ringsocket/ctl.sock";

/// The longest request line the daemon reads (a `send` payload is at most ~3/4 of it).
pub const MAX_REQUEST: usize = 64 << 20;

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Version, uptime, workers, apps, connections, traffic, rings.
    Status,
    /// An app's connected clients.
    Clients {
        /// The app's name.
        app: String,
    },
    /// Send one message to some of an app's clients, as if the app had.
    Send {
        /// The app's name.
        app: String,
        /// The recipients.
        to: Recipients,
        /// A binary message (else text, which must be UTF-8).
        binary: bool,
        /// The message, base64.
        payload_b64: String,
    },
    /// Close a client.
    Kick {
        /// The client's id.
        id: u64,
        /// The close code.
        code: u16,
        /// The close reason (at most 123 bytes).
        reason: String,
    },
    /// Refuse new upgrades (503) and wait for the clients to leave; close the rest
    /// with 1001 after `timeout_s`.
    Drain {
        /// Seconds to wait before closing the remaining clients.
        timeout_s: u64,
    },
    /// What SIGHUP does: reopen the log, re-read the configuration, apply what can be.
    Reload,
    /// Hand `args` to the app's control callback.
    App {
        /// The app's name.
        app: String,
        /// The command and its arguments.
        args: Vec<String>,
    },
}

/// Whom a [`Request::Send`] reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Recipients {
    /// These clients.
    Ids {
        /// Client ids.
        ids: Vec<u64>,
    },
    /// Every client of the app but these.
    All {
        /// Client ids to leave out.
        except: Vec<u64>,
    },
}

/// One line of the daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ReplyLine {
    /// How a drain goes.
    Progress {
        /// Clients still connected.
        connections: u64,
        /// Seconds until the rest are closed (0 once they are).
        remaining_s: u64,
    },
    /// The command succeeded; what it says depends on the command.
    Done {
        /// The command's result (see [`ClientRow`], [`Sent`], [`Kicked`], [`Drained`],
        /// [`Reloaded`], [`AppReply`]; `status` is the daemon's status snapshot).
        result: serde_json::Value,
    },
    /// The command failed.
    Failed {
        /// Why.
        error: String,
        /// What kind of failure.
        kind: FailureKind,
    },
}

/// Why a command failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// No such app or client.
    NotFound,
    /// The request is malformed or not allowed (a bad close code, text that is not
    /// UTF-8, an app without a control callback).
    Invalid,
    /// The peer is neither root nor in the control group.
    PermissionDenied,
    /// The daemon could not do it now (a thread did not answer in time, the server is
    /// stopping, the app's callback failed).
    Unavailable,
}

/// One client, as `clients` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRow {
    /// The client's id.
    pub id: u64,
    /// The endpoint's URL as configured.
    pub endpoint: String,
    /// The client's address, if the socket still knows it.
    pub peer: Option<String>,
    /// Seconds since it connected.
    pub age_s: u64,
    /// Bytes queued for it, not yet written.
    pub queued_bytes: u64,
}

/// What `send` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// Clients the message was queued to.
    pub reached: u64,
}

/// What `kick` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kicked {
    /// Whether the client was connected (and is now being closed).
    pub found: bool,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drained {
    /// Clients that left on their own during the timeout.
    pub left: u64,
    /// Clients closed with 1001 when it ran out.
    pub closed: u64,
}

/// What `reload` applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloaded {
    /// In words, e.g. "log reopened; log_level is now info".
    pub applied: String,
}

/// The app's answer to `app APP CMD…`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppReply {
    /// Its control callback's return value (0: success).
    pub status: i32,
    /// What it replied, as text (invalid UTF-8 replaced).
    pub reply: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_are_one_json_line_each() {
        let r = Request::Send {
            app: "chat".into(),
            to: Recipients::All { except: vec![7] },
            binary: false,
            payload_b64: "aGk=".into(),
        };
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(
            line,
            r#"{"cmd":"send","app":"chat","to":{"kind":"all","except":[7]},"binary":false,"payload_b64":"aGk="}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        let done = ReplyLine::Done {
            result: serde_json::to_value(Sent { reached: 3 }).unwrap(),
        };
        let line = serde_json::to_string(&done).unwrap();
        assert_eq!(line, r#"{"reply":"done","result":{"reached":3}}"#);
        assert_eq!(serde_json::from_str::<ReplyLine>(&line).unwrap(), done);
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"format_disk"}"#).is_err());
    }
}
