//! `groups`: SocketForwarder's group relay, over WebSocket.
//!
//! A client's first message must be the text `<prefix><group>` (default prefix
//! `SOCKETFORWARDER-NEW:`; the group id is everything after it, verbatim). From then on
//! every message it sends, text or binary, goes as one message to every other member of
//! its group — never back to the sender, never to another group. Members are a native
//! topic each group, so a message to a group of any size crosses each worker's ring once.
//!
//! Refused with close 1008 and a reason: a first message without the prefix (or binary),
//! no first message within `join_timeout_ms`, a group id longer than `max_group_id_len`,
//! a full group (`max_group_size`). A client whose address is listed in `preconfig`
//! joins its group at once, without a join message.
//!
//! Settings (the app's `settings` in ringsocket.json, every key optional):
//! `{"prefix": "SOCKETFORWARDER-NEW:", "join_timeout_ms": 5000, "max_group_size": 1024,
//!   "max_group_id_len": 128, "ack_join": false,
//!   "preconfig": {"127.0.0.1": "group-a", "10.0.0.5:4000": "b"}}`
//! (`preconfig` keys are an IP, or an IP and source port). With `ack_join`, a client
//! that joined gets its join message back (the original sends nothing; a client that
//! must not miss the group's next message waits for it).
//!
//! Unlike the original SocketForwarder: joins never wait on one another (a silent client
//! only waits out its own timeout), message boundaries are kept, and all state lives on
//! the app's one thread.

use ringsocket_sdk::{App, ClientId, CloseCode, Context, Error, Message, OpenInfo, To};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The app's settings.
#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    prefix: String,
    join_timeout_ms: u64,
    max_group_size: usize,
    max_group_id_len: usize,
    ack_join: bool,
    preconfig: HashMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            prefix: "SOCKETFORWARDER-NEW:".into(),
            join_timeout_ms: 5000,
            max_group_size: 1024,
            max_group_id_len: 128,
            ack_join: false,
            preconfig: HashMap::new(),
        }
    }
}

/// Topic names are `g` + the group id, so that the empty id is a group too.
fn topic(group: &str) -> Vec<u8> {
    let mut t = Vec::with_capacity(group.len() + 1);
    t.push(b'g');
    t.extend_from_slice(group.as_bytes());
    t
}

/// The relay's state.
pub struct Groups {
    settings: Settings,
    join_timeout: Duration,
    /// Clients that have not joined yet, by when they must.
    pending: HashMap<ClientId, Instant>,
    /// The same, by deadline (for the timer).
    deadlines: BTreeMap<(Instant, ClientId), ()>,
    /// Joined clients and their group's topic.
    members: HashMap<ClientId, Vec<u8>>,
}

impl Groups {
    fn refuse(ctx: &mut Context<'_>, client: ClientId, reason: &str) -> Result<(), Error> {
        ctx.close(client, CloseCode::POLICY_VIOLATION, reason)
    }

    /// Joins `client` to `group`, or refuses it.
    fn join(&mut self, ctx: &mut Context<'_>, client: ClientId, group: &str) -> Result<(), Error> {
        if group.len() > self.settings.max_group_id_len {
            return Self::refuse(ctx, client, "group id too long");
        }
        let topic = topic(group);
        if ctx.topic_count(&topic) >= self.settings.max_group_size {
            return Self::refuse(ctx, client, "group full");
        }
        ctx.subscribe(client, &topic)?;
        self.members.insert(client, topic);
        if self.settings.ack_join {
            let ack = format!("{}{group}", self.settings.prefix);
            ctx.send_to(client, Message::Text(&ack))?;
        }
        Ok(())
    }

    fn forget_pending(&mut self, client: ClientId) {
        if let Some(deadline) = self.pending.remove(&client) {
            self.deadlines.remove(&(deadline, client));
        }
    }

    /// Arms the timer for the earliest join deadline.
    fn arm(&self, ctx: &mut Context<'_>) {
        if let Some(&(deadline, _)) = self.deadlines.keys().next() {
            ctx.set_timer(deadline.saturating_duration_since(Instant::now()));
        }
    }
}

impl App for Groups {
    fn init(settings: &str) -> Result<Self, String> {
        let settings: Settings = match settings.trim() {
            "null" | "" => Settings::default(),
            json => serde_json::from_str(json).map_err(|e| format!("groups settings: {e}"))?,
        };
        if settings.prefix.is_empty() {
            return Err("groups settings: prefix must not be empty".into());
        }
        if settings.max_group_id_len > 254 {
            return Err("groups settings: max_group_id_len is at most 254".into());
        }
        for (addr, group) in &settings.preconfig {
            if addr.parse::<std::net::IpAddr>().is_err() && addr.parse::<SocketAddr>().is_err() {
                return Err(format!(
                    "groups settings: preconfig key {addr:?} is not an IP or IP:port"
                ));
            }
            if group.len() > settings.max_group_id_len {
                return Err(format!(
                    "groups settings: preconfig group {group:?} is too long"
                ));
            }
        }
        Ok(Groups {
            join_timeout: Duration::from_millis(settings.join_timeout_ms),
            settings,
            pending: HashMap::new(),
            deadlines: BTreeMap::new(),
            members: HashMap::new(),
        })
    }

    fn open(
        &mut self,
        ctx: &mut Context<'_>,
        client: ClientId,
        info: &OpenInfo<'_>,
    ) -> Result<(), Error> {
        let preset = info.peer.and_then(|peer| {
            let by_addr = self.settings.preconfig.get(&peer.to_string());
            by_addr.or_else(|| self.settings.preconfig.get(&peer.ip().to_string()))
        });
        if let Some(group) = preset.cloned() {
            return self.join(ctx, client, &group);
        }
        let deadline = Instant::now() + self.join_timeout;
        self.pending.insert(client, deadline);
        self.deadlines.insert((deadline, client), ());
        self.arm(ctx);
        Ok(())
    }

    fn read(
        &mut self,
        ctx: &mut Context<'_>,
        client: ClientId,
        msg: Message<'_>,
    ) -> Result<(), Error> {
        if let Some(topic) = self.members.get(&client) {
            let to = To::Topic {
                topic,
                except: Some(client),
            };
            return ctx.send(to, msg);
        }
        if !self.pending.contains_key(&client) {
            return Ok(()); // refused already; its close is on the way
        }
        self.forget_pending(client);
        let prefix = self.settings.prefix.as_str();
        match msg {
            Message::Text(t) if t.starts_with(prefix) => self.join(ctx, client, &t[prefix.len()..]),
            _ => {
                let reason = format!("first message must be {prefix}<group>");
                Self::refuse(ctx, client, &reason)
            }
        }
    }

    fn close(&mut self, _ctx: &mut Context<'_>, client: ClientId, _code: CloseCode) {
        // The server ends the client's group membership itself.
        self.members.remove(&client);
        self.forget_pending(client);
    }

    fn timer(&mut self, ctx: &mut Context<'_>) {
        let now = Instant::now();
        while let Some(&(deadline, client)) = self.deadlines.keys().next() {
            if deadline > now {
                break;
            }
            self.forget_pending(client);
            let reason = format!(
                "no join message within {} ms",
                self.settings.join_timeout_ms
            );
            let _ = Self::refuse(ctx, client, &reason);
        }
        self.arm(ctx);
    }
}

ringsocket_sdk::export_app!("groups", Groups);
