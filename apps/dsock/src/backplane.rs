//! Many nodes through Redis. Two threads of the app talk to Redis so that its own
//! thread never blocks: a *commander* runs what the app asks (store or take a claim,
//! register connections, publish on the nodes' bus, read `/info`) and posts the answer
//! back as an event; a *listener* reads the bus (Redis pub/sub) and posts each frame as
//! an event. Every node applies every bus frame to its own connections.
//!
//! Keys (under `prefix`): `claim:ID` (hash, expiring with the claim), `claims:user:U`
//! and `claims:channel:C` (sorted sets of claim ids, scored by expiration);
//! `conn:UUID` (hash, expiring after `ttl_s`), `conns:user:U` and `conns:channel:C`
//! (sorted sets of UUIDs, scored by when the entry goes stale). The owning node renews
//! its connections every `ttl_s / 3`; a node that dies stops renewing, and its
//! connections drop out of every index within `ttl_s`. Stale members are removed by
//! whoever reads an index.
//!
//! Delivery across nodes is at most once: a send is answered 200 only once Redis has
//! taken it for every listening node; while Redis is unreachable the API answers 503
//! (`REDIS_UNAVAILABLE`) and nothing is half-sent. A node whose listener lost Redis
//! misses what was published meanwhile.

use crate::api::{claim_json, fail, ok, Reply};
use crate::registry::{Claim, Identity, Target};
use crate::settings::RedisConfig;
use crate::wire;
use redis::Commands;
use ringsocket_sdk::EventSender;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one Redis call may take before the connection counts as lost.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The most publishes sent to Redis in one pipeline.
const MAX_BATCH: usize = 256;
/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What the app asks of Redis. `request` is the HTTP request (or upgrade) to answer.
pub enum Command {
    /// Publishes a bus frame; answers `request` (if any) with 200 or 503.
    Publish {
        frame: Vec<u8>,
        request: Option<u64>,
    },
    /// Stores a claim unless its id is taken.
    CreateClaim { claim: Claim, request: u64 },
    /// Takes a claim out, atomically, for an upgrade.
    TakeClaim { id: String, request: u64, now: u64 },
    /// Registers (or renews) connections of this node.
    Register { conns: Vec<ConnRecord>, now: u64 },
    /// A connection of this node is gone.
    Unregister { conn: ConnRecord },
    /// Deletes the claims a target names.
    DeleteClaims { target: Target, now: u64 },
    /// Adds or removes a channel to the claims a target names.
    ClaimChannel {
        target: Target,
        channel: String,
        on: bool,
        now: u64,
    },
    /// Answers `/info` from every node's registrations.
    Info {
        target: Target,
        request: u64,
        now: u64,
    },
}

/// A connection as the registry in Redis keeps it.
#[derive(Clone)]
pub struct ConnRecord {
    /// Its UUID.
    pub uuid: String,
    /// Who it is.
    pub who: Identity,
    /// Unix seconds of its last sign of life.
    pub last_ping: u64,
}

/// The app thread's handle on the two threads.
pub struct Backplane {
    commands: mpsc::Sender<Command>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Backplane {
    /// Starts the commander and the listener for node `node`.
    pub fn start(config: RedisConfig, node: String, events: EventSender) -> Backplane {
        let (commands, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let commander = {
            let (config, node, stop) = (config.clone(), node.clone(), stop.clone());
            std::thread::Builder::new()
                .name("dsock-redis".into())
                .spawn(move || Commander::new(config, node, events, stop).run(rx))
                .expect("a thread")
        };
        let listener = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("dsock-bus".into())
                .spawn(move || listen(&config, &events, &stop))
                .expect("a thread")
        };
        Backplane {
            commands,
            stop,
            threads: vec![commander, listener],
        }
    }

    /// Queues a command (never blocks).
    pub fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }
}

impl Drop for Backplane {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The commander ends when its channel closes; the listener within a read timeout.
        let (tx, _) = mpsc::channel();
        self.commands = tx;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Posts an event to the app thread, waiting while its queue is full (the bus then
/// waits in Redis's buffers); one it can never take is logged and dropped.
fn post(events: &EventSender, frame: &[u8]) {
    loop {
        match events.post(frame) {
            Ok(()) => return,
            Err(ringsocket_sdk::Error::Full) => std::thread::sleep(Duration::from_micros(200)),
            Err(e) => {
                eprintln!(
                    "dsock: an event for the app thread was dropped ({} bytes): {e}",
                    frame.len()
                );
                return;
            }
        }
    }
}

/// Posts "answer request `request` with `reply`".
fn answer(events: &EventSender, request: u64, reply: &Reply) {
    let header = json!({"op": "respond", "request": request, "status": reply.status});
    post(
        events,
        &wire::encode(&header, reply.body.to_string().as_bytes()),
    );
}

fn unavailable() -> Reply {
    fail(503, "REDIS_UNAVAILABLE", "Redis is unreachable; try again")
}

/// A connection to Redis with read and write timeouts.
fn connect(url: &str) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(url)?;
    let con = client.get_connection_with_timeout(IO_TIMEOUT)?;
    con.set_read_timeout(Some(IO_TIMEOUT))?;
    con.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(con)
}

/// The listener: subscribes to the bus and posts every frame; reconnects with backoff.
fn listen(config: &RedisConfig, events: &EventSender, stop: &AtomicBool) {
    let channel = format!("{}bus", config.prefix);
    let mut backoff = Duration::from_millis(50);
    while !stop.load(Ordering::Relaxed) {
        let session = (|| -> redis::RedisResult<()> {
            let mut con = connect(&config.url)?;
            con.set_read_timeout(Some(Duration::from_millis(200)))?;
            let mut pubsub = con.as_pubsub();
            pubsub.subscribe(&channel)?;
            backoff = Duration::from_millis(50);
            while !stop.load(Ordering::Relaxed) {
                match pubsub.get_message() {
                    Ok(msg) => post(events, msg.get_payload_bytes()),
                    Err(e) if e.is_timeout() => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })();
        if session.is_err() && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// The commander's state.
struct Commander {
    config: RedisConfig,
    node: String,
    events: EventSender,
    stop: Arc<AtomicBool>,
    con: Option<redis::Connection>,
    /// Whether the app was last told Redis is up.
    told_up: Option<bool>,
    /// No reconnection attempt before this.
    next_attempt: Instant,
    backoff: Duration,
}

/// Takes a claim's hash and deletes it, in one step (no other connect can get it too).
const TAKE_CLAIM: &str = r"
local v = redis.call('HGETALL', KEYS[1])
if #v > 0 then redis.call('DEL', KEYS[1]) end
return v";

/// Stores a claim's hash unless the key exists; expires it with the claim.
const CREATE_CLAIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'session', ARGV[2], 'channels', ARGV[3], 'expiration', ARGV[4])
redis.call('EXPIREAT', KEYS[1], ARGV[4])
return 1";

impl Commander {
    fn new(
        config: RedisConfig,
        node: String,
        events: EventSender,
        stop: Arc<AtomicBool>,
    ) -> Commander {
        Commander {
            config,
            node,
            events,
            stop,
            con: None,
            told_up: None,
            next_attempt: Instant::now(),
            backoff: Duration::from_millis(50),
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Command>) {
        loop {
            // Reconnect in the background while idle, so that the app learns Redis is
            // back without a request having to fail first.
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Command::Publish { frame, request }) => {
                    // Publishes queued behind this one go to Redis in one pipeline, in
                    // order: one round trip for the lot instead of one each.
                    let mut batch = vec![(frame, request)];
                    let mut next = None;
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(Command::Publish { frame, request }) => batch.push((frame, request)),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.publish(batch);
                    if let Some(command) = next {
                        self.handle(command);
                    }
                }
                Ok(command) => self.handle(command),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.connection();
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }

    /// The connection, reconnecting if it is time to try; tells the app of changes.
    fn connection(&mut self) -> Option<&mut redis::Connection> {
        if self.con.is_none() && Instant::now() >= self.next_attempt {
            match connect(&self.config.url) {
                Ok(con) => {
                    self.con = Some(con);
                    self.backoff = Duration::from_millis(50);
                }
                Err(_) => {
                    self.next_attempt = Instant::now() + self.backoff;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        let up = self.con.is_some();
        if self.told_up != Some(up) {
            self.told_up = Some(up);
            post(
                &self.events,
                &wire::encode(&json!({"op": "redis", "up": up}), b""),
            );
        }
        self.con.as_mut()
    }

    /// Runs `f` on the connection; on an error the connection is dropped (and the app
    /// told), and `None` returned.
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut redis::Connection, &RedisConfig) -> redis::RedisResult<T>,
    ) -> Option<T> {
        let config = self.config.clone();
        let con = self.connection()?;
        match f(con, &config) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("dsock: redis: {e}");
                self.con = None;
                self.next_attempt = Instant::now();
                self.connection();
                None
            }
        }
    }

    fn handle(&mut self, command: Command) {
        let events = self.events;
        match command {
            Command::Publish { frame, request } => self.publish(vec![(frame, request)]),
            Command::CreateClaim { claim, request } => {
                let created = self.with(|con, cfg| {
                    let key = format!("{}claim:{}", cfg.prefix, claim.id);
                    let channels = serde_json::to_string(&claim.who.channels).unwrap_or_default();
                    let session = claim.who.session.clone().unwrap_or_default();
                    let created: i64 = redis::Script::new(CREATE_CLAIM)
                        .key(&key)
                        .arg(&claim.who.user)
                        .arg(&session)
                        .arg(&channels)
                        .arg(claim.expiration)
                        .invoke(con)?;
                    if created == 1 {
                        let mut pipe = redis::pipe();
                        pipe.zadd(
                            format!("{}claims:user:{}", cfg.prefix, claim.who.user),
                            &claim.id,
                            claim.expiration,
                        );
                        for c in &claim.who.channels {
                            pipe.zadd(
                                format!("{}claims:channel:{c}", cfg.prefix),
                                &claim.id,
                                claim.expiration,
                            );
                        }
                        pipe.query::<()>(con)?;
                    }
                    Ok(created == 1)
                });
                let reply = match created {
                    None => unavailable(),
                    Some(false) => fail(400, "CLAIM_ID_ALREADY_USED", "Claim ID is already used"),
                    Some(true) => ok(json!({"claim": claim_json(&claim)})),
                };
                answer(&events, request, &reply);
            }
            Command::TakeClaim { id, request, now } => {
                let fields = self.with(|con, cfg| {
                    let key = format!("{}claim:{id}", cfg.prefix);
                    let v: Vec<String> = redis::Script::new(TAKE_CLAIM).key(&key).invoke(con)?;
                    Ok(v)
                });
                let header = match fields {
                    None => {
                        json!({"op": "claim", "request": request, "error": [503, "REDIS_UNAVAILABLE", "Redis is unreachable; try again"]})
                    }
                    Some(v) if v.is_empty() => {
                        json!({"op": "claim", "request": request, "error": [400, "MISSING_CLAIM", "Could not find claim"]})
                    }
                    Some(v) => {
                        let claim = claim_from_hash(&id, &v);
                        self.unindex_claim(&claim);
                        match claim {
                            Some(c) if c.expiration < now => {
                                json!({"op": "claim", "request": request, "error": [400, "EXPIRED_CLAIM", "Claim has expired"]})
                            }
                            Some(c) => {
                                json!({"op": "claim", "request": request, "who": who_json(&c.who)})
                            }
                            None => {
                                json!({"op": "claim", "request": request, "error": [500, "INVALID_CLAIM", "Claim is malformed"]})
                            }
                        }
                    }
                };
                post(&events, &wire::encode(&header, b""));
            }
            Command::Register { conns, now } => {
                let (node, ttl) = (self.node.clone(), self.config.ttl_s);
                self.with(|con, cfg| {
                    let mut pipe = redis::pipe();
                    for c in &conns {
                        register(&mut pipe, cfg, &node, c, now + ttl);
                    }
                    pipe.query::<()>(con)
                });
            }
            Command::Unregister { conn } => {
                self.with(|con, cfg| {
                    let mut pipe = redis::pipe();
                    pipe.del(format!("{}conn:{}", cfg.prefix, conn.uuid));
                    pipe.zrem(
                        format!("{}conns:user:{}", cfg.prefix, conn.who.user),
                        &conn.uuid,
                    );
                    for c in &conn.who.channels {
                        pipe.zrem(format!("{}conns:channel:{c}", cfg.prefix), &conn.uuid);
                    }
                    pipe.query::<()>(con)
                });
            }
            Command::DeleteClaims { target, now } => {
                let claims = self
                    .with(|con, cfg| read_claims(con, cfg, &target, now))
                    .unwrap_or_default();
                for claim in &claims {
                    self.with(|con, cfg| {
                        con.del::<_, ()>(format!("{}claim:{}", cfg.prefix, claim.id))
                    });
                    self.unindex_claim(&Some(claim.clone()));
                }
            }
            Command::ClaimChannel {
                target,
                channel,
                on,
                now,
            } => {
                let claims = self
                    .with(|con, cfg| read_claims(con, cfg, &target, now))
                    .unwrap_or_default();
                for mut claim in claims {
                    claim.who.channels.retain(|c| *c != channel);
                    if on {
                        claim.who.channels.push(channel.clone());
                    }
                    self.with(|con, cfg| {
                        let key = format!("{}claim:{}", cfg.prefix, claim.id);
                        let channels =
                            serde_json::to_string(&claim.who.channels).unwrap_or_default();
                        let mut pipe = redis::pipe();
                        pipe.hset(&key, "channels", channels);
                        let index = format!("{}claims:channel:{channel}", cfg.prefix);
                        if on {
                            pipe.zadd(index, &claim.id, claim.expiration);
                        } else {
                            pipe.zrem(index, &claim.id);
                        }
                        pipe.query::<()>(con)
                    });
                }
            }
            Command::Info {
                target,
                request,
                now,
            } => {
                let reply = self
                    .with(|con, cfg| {
                        let conns = read_conns(con, cfg, &target, now)?;
                        let claims = read_claims(con, cfg, &target, now)?;
                        let claims: Vec<Value> = claims.iter().map(claim_json).collect();
                        Ok(ok(json!({"connections": conns, "claims": claims})))
                    })
                    .unwrap_or_else(unavailable);
                answer(&events, request, &reply);
            }
        }
    }

    /// Publishes bus frames in one pipeline, in order, and answers their requests with
    /// 200, or 503 if Redis did not take them.
    fn publish(&mut self, batch: Vec<(Vec<u8>, Option<u64>)>) {
        let channel = format!("{}bus", self.config.prefix);
        let done = self.with(|con, _| {
            let mut pipe = redis::pipe();
            for (frame, _) in &batch {
                pipe.publish(&channel, frame);
            }
            pipe.query::<Vec<i64>>(con)
        });
        for (_, request) in batch {
            if let Some(request) = request {
                let reply = if done.is_some() {
                    ok(json!({}))
                } else {
                    unavailable()
                };
                answer(&self.events, request, &reply);
            }
        }
    }

    /// Removes a taken or deleted claim from its indexes.
    fn unindex_claim(&mut self, claim: &Option<Claim>) {
        let Some(claim) = claim else { return };
        self.with(|con, cfg| {
            let mut pipe = redis::pipe();
            pipe.zrem(
                format!("{}claims:user:{}", cfg.prefix, claim.who.user),
                &claim.id,
            );
            for c in &claim.who.channels {
                pipe.zrem(format!("{}claims:channel:{c}", cfg.prefix), &claim.id);
            }
            pipe.query::<()>(con)
        });
    }
}

/// Adds a connection's registration to `pipe`, valid until `stale_at`.
fn register(
    pipe: &mut redis::Pipeline,
    cfg: &RedisConfig,
    node: &str,
    c: &ConnRecord,
    stale_at: u64,
) {
    let key = format!("{}conn:{}", cfg.prefix, c.uuid);
    let channels = serde_json::to_string(&c.who.channels).unwrap_or_default();
    let session = c.who.session.clone().unwrap_or_default();
    pipe.hset_multiple(
        &key,
        &[
            ("user", c.who.user.clone()),
            ("session", session),
            ("channels", channels),
            ("worker", node.to_string()),
            ("lastPing", c.last_ping.to_string()),
        ],
    );
    pipe.expire_at(&key, stale_at as i64);
    pipe.zadd(
        format!("{}conns:user:{}", cfg.prefix, c.who.user),
        &c.uuid,
        stale_at,
    );
    for ch in &c.who.channels {
        pipe.zadd(
            format!("{}conns:channel:{ch}", cfg.prefix),
            &c.uuid,
            stale_at,
        );
    }
}

/// The members of the sorted set `key` not stale at `now` (stale ones are removed).
fn live_members(
    con: &mut redis::Connection,
    key: &str,
    now: u64,
) -> redis::RedisResult<Vec<String>> {
    let _: () = con.zrembyscore(key, "-inf", format!("({now}"))?;
    con.zrange(key, 0, -1)
}

/// The connections `target` names, as `/info` shows them.
fn read_conns(
    con: &mut redis::Connection,
    cfg: &RedisConfig,
    target: &Target,
    now: u64,
) -> redis::RedisResult<Vec<Value>> {
    let (uuids, session) = match target {
        Target::Id(uuid) => (vec![uuid.clone()], None),
        _ => indexed(con, cfg, "conns", target, now)?.unwrap_or_default(),
    };
    let mut out = Vec::new();
    for uuid in uuids {
        let h: std::collections::HashMap<String, String> =
            con.hgetall(format!("{}conn:{uuid}", cfg.prefix))?;
        let Some(user) = h.get("user") else { continue };
        let conn_session = h.get("session").filter(|s| !s.is_empty());
        if session.is_some() && conn_session != session.as_ref() {
            continue;
        }
        let channels: Vec<String> = h
            .get("channels")
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_default();
        let channels: Vec<&str> = channels.iter().map(String::as_str).collect();
        let last_ping = h.get("lastPing").and_then(|p| p.parse::<u64>().ok());
        let who = (
            user.as_str(),
            conn_session.map(String::as_str),
            &channels[..],
        );
        out.push(crate::api::connection_json(
            &uuid,
            h.get("worker").map(String::as_str),
            last_ping,
            who,
        ));
    }
    Ok(out)
}

/// The live members of the `kind` (`conns` or `claims`) index of a user or channel
/// target, with the session it narrows to; `None` for an id (not indexed).
fn indexed(
    con: &mut redis::Connection,
    cfg: &RedisConfig,
    kind: &str,
    target: &Target,
    now: u64,
) -> redis::RedisResult<Option<(Vec<String>, Option<String>)>> {
    let (index, name, session) = match target {
        Target::User(u, s) => ("user", u, s),
        Target::Channel(c, s) => ("channel", c, s),
        Target::Id(_) => return Ok(None),
    };
    let key = format!("{}{kind}:{index}:{name}", cfg.prefix);
    Ok(Some((live_members(con, &key, now)?, session.clone())))
}

/// The live claims `target` names.
fn read_claims(
    con: &mut redis::Connection,
    cfg: &RedisConfig,
    target: &Target,
    now: u64,
) -> redis::RedisResult<Vec<Claim>> {
    let Some((ids, session)) = indexed(con, cfg, "claims", target, now)? else {
        return Ok(Vec::new()); // claims are not found by id
    };
    let mut out = Vec::new();
    for id in ids {
        let h: Vec<String> = con.hgetall(format!("{}claim:{id}", cfg.prefix))?;
        if let Some(claim) = claim_from_hash(&id, &h) {
            if session.is_none() || claim.who.session == session {
                out.push(claim);
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// A claim from its hash's field/value list.
fn claim_from_hash(id: &str, fields: &[String]) -> Option<Claim> {
    let get = |name: &str| {
        fields
            .chunks(2)
            .find(|kv| kv[0] == name)
            .and_then(|kv| kv.get(1))
    };
    Some(Claim {
        id: id.to_string(),
        who: Identity {
            user: get("user")?.clone(),
            session: get("session").filter(|s| !s.is_empty()).cloned(),
            channels: get("channels")
                .and_then(|c| serde_json::from_str(c).ok())
                .unwrap_or_default(),
        },
        expiration: get("expiration")?.parse().ok()?,
    })
}

/// Who, as a bus frame or event carries it.
pub fn who_json(who: &Identity) -> Value {
    json!({"user": who.user, "session": who.session, "channels": who.channels})
}

/// Who, from [`who_json`].
pub fn who_from_json(v: &Value) -> Option<Identity> {
    Some(Identity {
        user: v["user"].as_str()?.to_string(),
        session: v["session"].as_str().map(str::to_string),
        channels: v["channels"]
            .as_array()?
            .iter()
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect(),
    })
}

/// A target as a bus frame carries it.
pub fn target_json(t: &Target) -> Value {
    match t {
        Target::Id(id) => json!({"id": id}),
        Target::Channel(c, s) => json!({"channel": c, "session": s}),
        Target::User(u, s) => json!({"user": u, "session": s}),
    }
}

/// A target from [`target_json`].
pub fn target_from_json(v: &Value) -> Option<Target> {
    let session = v["session"].as_str().map(str::to_string);
    if let Some(id) = v["id"].as_str() {
        return Some(Target::Id(id.into()));
    }
    if let Some(c) = v["channel"].as_str() {
        return Some(Target::Channel(c.into(), session));
    }
    v["user"].as_str().map(|u| Target::User(u.into(), session))
}
