//! `chat`: a browser chat. Rooms are native topics; each client is in at most one room
//! at a time, under a nickname unique in that room. Joining replays the room's last 50
//! messages; joins and leaves are announced; each client may send at most
//! `rate_per_sec` messages a second (bursts of `burst`), beyond which it gets an error
//! and its message is dropped. `apps/chat/chat.html` is the page; `apps/chat/README.md`
//! documents the protocol.
//!
//! Protocol (JSON text messages):
//! - client → server: `{"type":"join","room":R,"nick":N}`, `{"type":"say","text":T}`,
//!   `{"type":"leave"}`;
//! - server → client: `{"type":"joined","room":R,"nick":N,"members":[..]}`,
//!   `{"type":"history","messages":[{"nick","text","ts"}..]}`,
//!   `{"type":"message","nick":N,"text":T,"ts":MS}`,
//!   `{"type":"presence","event":"join"|"leave","nick":N}`,
//!   `{"type":"error","code":C,"message":M}` with C one of `bad_request`, `bad_room`,
//!   `bad_nick`, `nick_taken`, `not_joined`, `too_long`, `rate_limited`.
//!
//! Settings: `{"history": 50, "rate_per_sec": 5, "burst": 10, "max_text": 1000}`.

use ringsocket_sdk::{App, ClientId, CloseCode, Context, Error, Message};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The app's settings.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    history: usize,
    rate_per_sec: f64,
    burst: f64,
    max_text: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            history: 50,
            rate_per_sec: 5.0,
            burst: 10.0,
            max_text: 1000,
        }
    }
}

/// What a client sends.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Request {
    Join { room: String, nick: String },
    Say { text: String },
    Leave,
}

/// One line of a room's history.
#[derive(Clone, Serialize)]
struct Line {
    nick: String,
    text: String,
    ts: u64,
}

/// A room: its members by lower-cased nickname, and its recent lines.
#[derive(Default)]
struct Room {
    members: HashMap<String, String>,
    history: VecDeque<Line>,
}

/// A connected client: its room and nickname once joined, and its rate-limit bucket.
struct Member {
    joined: Option<(String, String)>,
    tokens: f64,
    refilled: Instant,
}

/// The chat's state.
pub struct Chat {
    settings: Settings,
    rooms: HashMap<String, Room>,
    members: HashMap<ClientId, Member>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn valid_nick(nick: &str) -> bool {
    (1..=24).contains(&nick.chars().count())
        && nick
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

fn valid_room(room: &str) -> bool {
    (1..=64).contains(&room.chars().count()) && !room.chars().any(char::is_control)
}

/// The topic of a room.
fn topic(room: &str) -> Vec<u8> {
    [b"room:", room.as_bytes()].concat()
}

impl Chat {
    fn send(
        ctx: &mut Context<'_>,
        client: ClientId,
        value: serde_json::Value,
    ) -> Result<(), Error> {
        ctx.send_to(client, Message::Text(&value.to_string()))
    }

    fn error(
        ctx: &mut Context<'_>,
        client: ClientId,
        code: &str,
        message: &str,
    ) -> Result<(), Error> {
        Self::send(
            ctx,
            client,
            json!({"type": "error", "code": code, "message": message}),
        )
    }

    fn join(
        &mut self,
        ctx: &mut Context<'_>,
        client: ClientId,
        room_name: String,
        nick: String,
    ) -> Result<(), Error> {
        if !valid_room(&room_name) {
            return Self::error(ctx, client, "bad_room", "a room name is 1 to 64 characters");
        }
        if !valid_nick(&nick) {
            return Self::error(
                ctx,
                client,
                "bad_nick",
                "a nickname is 1 to 24 letters, digits, _ or -",
            );
        }
        let key = nick.to_lowercase();
        let same = self.members.get(&client).and_then(|m| m.joined.clone());
        if same
            .as_ref()
            .is_some_and(|(r, n)| *r == room_name && n.to_lowercase() == key)
        {
            return Ok(()); // already there under that name
        }
        if self
            .rooms
            .get(&room_name)
            .is_some_and(|r| r.members.contains_key(&key))
        {
            return Self::error(
                ctx,
                client,
                "nick_taken",
                &format!("{nick} is taken in {room_name}"),
            );
        }
        self.leave(ctx, client)?;
        let room = self.rooms.entry(room_name.clone()).or_default();
        room.members.insert(key, nick.clone());
        let members: Vec<&String> = room.members.values().collect();
        let joined = json!({"type": "joined", "room": room_name, "nick": nick, "members": members});
        let history = json!({"type": "history", "messages": room.history});
        Self::send(ctx, client, joined)?;
        Self::send(ctx, client, history)?;
        let notice = json!({"type": "presence", "event": "join", "nick": nick}).to_string();
        let topic = topic(&room_name);
        ctx.publish(&topic, None, Message::Text(&notice))?;
        ctx.subscribe(client, &topic)?;
        if let Some(m) = self.members.get_mut(&client) {
            m.joined = Some((room_name, nick));
        }
        Ok(())
    }

    /// Takes `client` out of its room, if it is in one, and tells the room.
    fn leave(&mut self, ctx: &mut Context<'_>, client: ClientId) -> Result<(), Error> {
        let Some((room_name, nick)) = self.members.get_mut(&client).and_then(|m| m.joined.take())
        else {
            return Ok(());
        };
        let topic = topic(&room_name);
        // The client may be gone already: then the server has ended its subscription.
        let _ = ctx.unsubscribe(client, &topic);
        if let Some(room) = self.rooms.get_mut(&room_name) {
            room.members.remove(&nick.to_lowercase());
            if room.members.is_empty() {
                self.rooms.remove(&room_name); // an empty room forgets its history
                return Ok(());
            }
        }
        let notice = json!({"type": "presence", "event": "leave", "nick": nick}).to_string();
        ctx.publish(&topic, None, Message::Text(&notice))
    }

    fn say(&mut self, ctx: &mut Context<'_>, client: ClientId, text: String) -> Result<(), Error> {
        let settings = &self.settings;
        let Some(member) = self.members.get_mut(&client) else {
            return Ok(());
        };
        let Some((room_name, nick)) = member.joined.clone() else {
            return Self::error(ctx, client, "not_joined", "join a room first");
        };
        if text.chars().count() > settings.max_text {
            let why = format!("a message is at most {} characters", settings.max_text);
            return Self::error(ctx, client, "too_long", &why);
        }
        let now = Instant::now();
        let elapsed = now.duration_since(member.refilled).as_secs_f64();
        member.tokens = (member.tokens + elapsed * settings.rate_per_sec).min(settings.burst);
        member.refilled = now;
        if member.tokens < 1.0 {
            let why = format!(
                "slow down: at most {} messages a second (bursts of {}); this one was dropped",
                settings.rate_per_sec, settings.burst
            );
            return Self::error(ctx, client, "rate_limited", &why);
        }
        member.tokens -= 1.0;
        let line = Line {
            nick,
            text,
            ts: now_ms(),
        };
        let message =
            json!({"type": "message", "nick": line.nick, "text": line.text, "ts": line.ts});
        if let Some(room) = self.rooms.get_mut(&room_name) {
            room.history.push_back(line);
            while room.history.len() > self.settings.history {
                room.history.pop_front();
            }
        }
        ctx.publish(topic(&room_name), None, Message::Text(&message.to_string()))
    }
}

impl App for Chat {
    fn init(settings: &str) -> Result<Self, String> {
        let settings: Settings = match settings.trim() {
            "null" | "" => Settings::default(),
            json => serde_json::from_str(json).map_err(|e| format!("chat settings: {e}"))?,
        };
        if settings.rate_per_sec <= 0.0 || settings.burst < 1.0 {
            return Err("chat settings: rate_per_sec must be > 0 and burst >= 1".into());
        }
        Ok(Chat {
            settings,
            rooms: HashMap::new(),
            members: HashMap::new(),
        })
    }

    fn open(
        &mut self,
        _ctx: &mut Context<'_>,
        client: ClientId,
        _info: &ringsocket_sdk::OpenInfo<'_>,
    ) -> Result<(), Error> {
        let member = Member {
            joined: None,
            tokens: self.settings.burst,
            refilled: Instant::now(),
        };
        self.members.insert(client, member);
        Ok(())
    }

    fn read(
        &mut self,
        ctx: &mut Context<'_>,
        client: ClientId,
        msg: Message<'_>,
    ) -> Result<(), Error> {
        let request = match msg {
            Message::Text(_) => msg.json::<Request>(),
            Message::Binary(_) => Err(Error::WrongKind),
        };
        match request {
            Ok(Request::Join { room, nick }) => self.join(ctx, client, room, nick),
            Ok(Request::Say { text }) => self.say(ctx, client, text),
            Ok(Request::Leave) => self.leave(ctx, client),
            Err(e) => Self::error(
                ctx,
                client,
                "bad_request",
                &format!("not a chat request: {e}"),
            ),
        }
    }

    fn close(&mut self, ctx: &mut Context<'_>, client: ClientId, _code: CloseCode) {
        let _ = self.leave(ctx, client);
        self.members.remove(&client);
    }
}

ringsocket_sdk::export_app!("chat", Chat);
