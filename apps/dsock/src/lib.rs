//! dSock (<https://github.com/Cretezy/dSock>) on ringsocket: clients connect with a
//! single-use claim or a JWT, checked before the upgrade; backends push to users,
//! sessions, connections and channels through dSock's HTTP API, on the same server.
//!
//! Endpoints (`ringsocket.json`): the API on endpoints whose `endpoint_id` is listed in
//! `settings.api_endpoints` (default `[1]`), e.g. `http://127.0.0.1:6241/*`; clients on
//! the others, e.g. `ws://0.0.0.0:6242/*` (`/connect` upgrades, `/ping` answers `pong`).
//! `apps/dsock/README.md` documents the API and the settings.
//!
//! Fixed against dSock: an empty token refuses to start; the token is compared in
//! constant time and needs `Bearer ` in a header; bad authorization is 401; JWTs have
//! one pinned algorithm (HS256 or RS256), need `exp` and `sub`, with a configurable
//! leeway; claims are consumed once (every change happens on the app's one thread);
//! claim ids come from the OS CSPRNG; messages to a connection keep their order; a
//! closed connection leaves nothing behind; one target resolver serves connections and
//! claims; `/info` shows `[]` for no channels; text bodies must be UTF-8.
//!
//! With `settings.redis`, nodes share one Redis (see [`backplane`]): claims, the
//! connection registry behind `/info`, and a bus every send, disconnect and channel
//! change goes over, so that any node's API reaches every node's clients.

mod api;
mod auth;
mod backplane;
mod registry;
mod settings;
mod wire;

use api::{fail, ok, Params, Reply};
use backplane::{Backplane, Command, ConnRecord};
use registry::{Identity, Registry, Target};
use ringsocket_sdk::{
    App, ClientId, CloseCode, Context, Error, Message, PeriodicTimer, Request, TimerNext, To,
};
use serde_json::json;
use settings::Settings;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix seconds now.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The longest channel name that is also a topic (longer ones are sent to one by one).
const MAX_TOPIC: usize = 255;

/// The app: its settings, its registry, this node's id, and Redis if configured.
pub struct Dsock {
    settings: Settings,
    registry: Registry,
    node: String,
    backplane: Option<Backplane>,
    /// Whether Redis answered last (always true without Redis).
    redis_up: bool,
    /// Periodic ticks (one a second) since start.
    ticks: u64,
}

/// What a bus frame asks every node to do.
enum Bus {
    Send { text: bool },
    Disconnect,
    Channel { channel: String, on: bool },
}

impl Dsock {
    /// Sends `reply` as the answer to request `id`, with a request id.
    fn answer(ctx: &mut Context<'_>, id: ClientId, mut reply: Reply) -> Result<(), Error> {
        let request_id = uuid::Uuid::new_v4().to_string();
        if reply.status != 200 {
            reply.body["requestId"] = json!(request_id);
        }
        let headers = format!("Content-Type: application/json\r\nX-Request-ID: {request_id}");
        ctx.respond(
            id,
            reply.status,
            &headers,
            reply.body.to_string().as_bytes(),
        )
    }

    fn is_api(&self, endpoint_id: u16) -> bool {
        self.settings.api_endpoints.contains(&endpoint_id)
    }

    /// A connection of this node as Redis registers it.
    fn record(&self, client: ClientId) -> Option<ConnRecord> {
        let c = self.registry.connection(client)?;
        Some(ConnRecord {
            uuid: c.uuid.to_string(),
            who: c.who(),
            last_ping: c.last_ping,
        })
    }

    /// Registers every connection of this node in Redis (on start-up of Redis, and to
    /// renew them before they go stale).
    fn register_all(&self) {
        if let Some(bp) = &self.backplane {
            let conns = self
                .registry
                .clients()
                .filter_map(|c| self.record(c))
                .collect();
            bp.send(Command::Register { conns, now: now() });
        }
    }

    /// The API's routes (after the token check). `None`: the answer comes later.
    fn api(&mut self, ctx: &mut Context<'_>, req: &Request<'_>, params: &Params) -> Option<Reply> {
        let now = now();
        let path = req.path;
        if self.backplane.is_some() && !self.redis_up {
            return Some(fail(
                503,
                "REDIS_UNAVAILABLE",
                "Redis is unreachable; try again",
            ));
        }
        if path == "/claim" {
            let claim = match api::new_claim(params, &self.settings, now) {
                Ok(claim) => claim,
                Err(reply) => return Some(reply),
            };
            return match &self.backplane {
                Some(bp) => {
                    bp.send(Command::CreateClaim {
                        claim,
                        request: req.id.0,
                    });
                    None
                }
                None => Some(api::store_claim(claim, &mut self.registry)),
            };
        }
        let channel = |prefix: &str, on: bool| {
            path.strip_prefix(prefix).map(|c| Bus::Channel {
                channel: c.into(),
                on,
            })
        };
        // A send's type is checked below, after the target (dSock's order of errors).
        let send_type = api::message_type(params);
        let bus = match path {
            "/send" => Some(Bus::Send {
                text: send_type.unwrap_or(false),
            }),
            "/disconnect" => Some(Bus::Disconnect),
            _ => channel("/channel/subscribe/", true)
                .or_else(|| channel("/channel/unsubscribe/", false)),
        };
        if bus.is_none() && path != "/info" {
            return Some(fail(404, "NOT_FOUND", "No such API path"));
        }
        let Some(target) = params.target() else {
            return Some(fail(400, "MISSING_TARGET", "Missing target"));
        };
        let Some(bus) = bus else {
            // /info
            return match &self.backplane {
                Some(bp) => {
                    bp.send(Command::Info {
                        target,
                        request: req.id.0,
                        now,
                    });
                    None
                }
                None => Some(api::info(&target, &self.registry, &self.node, now)),
            };
        };
        match &bus {
            Bus::Send { .. } if send_type.is_none() => {
                let why = "Invalid message type, must be text or binary";
                return Some(fail(400, "INVALID_MESSAGE_TYPE", why));
            }
            Bus::Send { text: true } if std::str::from_utf8(req.body).is_err() => {
                return Some(fail(
                    400,
                    "INVALID_MESSAGE_BODY",
                    "A text message must be UTF-8",
                ));
            }
            Bus::Channel { channel, .. } if channel.is_empty() || channel.contains('/') => {
                return Some(fail(400, "MISSING_CHANNEL", "Missing channel"));
            }
            _ => {}
        }
        // Here first, then (with Redis) on every other node.
        if let Err(reply) = self.apply(ctx, &bus, &target, req.body) {
            return Some(reply);
        }
        let claims_too = match &bus {
            Bus::Disconnect => !params.flag("keepClaims"),
            Bus::Channel { .. } => !params.flag("ignoreClaims"),
            Bus::Send { .. } => false,
        };
        let Some(bp) = &self.backplane else {
            if claims_too {
                self.local_claims(&bus, &target, now);
            }
            return Some(ok(json!({})));
        };
        if claims_too {
            bp.send(match &bus {
                Bus::Channel { channel, on } => Command::ClaimChannel {
                    target: target.clone(),
                    channel: channel.clone(),
                    on: *on,
                    now,
                },
                _ => Command::DeleteClaims {
                    target: target.clone(),
                    now,
                },
            });
        }
        let header = bus_header(&bus, &target, &self.node);
        let frame = wire::encode(&header, req.body);
        bp.send(Command::Publish {
            frame,
            request: Some(req.id.0),
        });
        None
    }

    /// Claims of this node's registry that a disconnect deletes or a channel change
    /// edits (one node, no Redis).
    fn local_claims(&mut self, bus: &Bus, target: &Target, now: u64) {
        let ids: Vec<String> = self
            .registry
            .resolve_claims(target, now)
            .into_iter()
            .map(|c| c.id.clone())
            .collect();
        for id in ids {
            match bus {
                Bus::Channel { channel, on } => self.registry.set_claim_channel(&id, channel, *on),
                _ => {
                    self.registry.take_claim(&id);
                }
            }
        }
    }

    /// Applies a send, disconnect or channel change to this node's connections.
    fn apply(
        &mut self,
        ctx: &mut Context<'_>,
        bus: &Bus,
        target: &Target,
        body: &[u8],
    ) -> Result<(), Reply> {
        match bus {
            Bus::Send { text } => {
                let msg = if *text {
                    Message::Text(std::str::from_utf8(body).unwrap_or_default())
                } else {
                    Message::Binary(body)
                };
                let sent = match target {
                    // A whole channel is a topic: one record per worker, whatever its size.
                    Target::Channel(channel, None) if channel.len() <= MAX_TOPIC => {
                        ctx.publish(channel.as_bytes(), None, msg)
                    }
                    _ => {
                        let clients = self.registry.resolve(target);
                        if clients.is_empty() {
                            Ok(())
                        } else {
                            ctx.send(To::Clients(&clients), msg)
                        }
                    }
                };
                match sent {
                    Ok(()) => Ok(()),
                    Err(Error::TooBig) => Err(fail(
                        413,
                        "MESSAGE_TOO_LARGE",
                        "Message larger than max_ws_msg_size",
                    )),
                    Err(e) => Err(fail(
                        500,
                        "ERROR_DELIVERING_MESSAGING",
                        &format!("Error delivering message: {e}"),
                    )),
                }
            }
            Bus::Disconnect => {
                for client in self.registry.resolve(target) {
                    let _ = ctx.close(client, CloseCode::NORMAL, "");
                }
                Ok(())
            }
            Bus::Channel { channel, on } => {
                for client in self.registry.resolve(target) {
                    if self.registry.set_channel(client, channel, *on) {
                        if channel.len() <= MAX_TOPIC {
                            let _ = if *on {
                                ctx.subscribe(client, channel)
                            } else {
                                ctx.unsubscribe(client, channel)
                            };
                        }
                        if let (Some(bp), Some(conn)) = (&self.backplane, self.record(client)) {
                            bp.send(Command::Register {
                                conns: vec![conn],
                                now: now(),
                            });
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// A client whose upgrade is accepted: registered here (and in Redis) and
    /// subscribed to its channels.
    fn admit(
        &mut self,
        ctx: &mut Context<'_>,
        request: ClientId,
        mut who: Identity,
    ) -> Result<(), Error> {
        who.channels
            .extend(self.settings.default_channels.iter().cloned());
        who.channels = auth::dedup(std::mem::take(&mut who.channels));
        ctx.accept(request, 0)?;
        // A connection from here on: sends reach it, and its close will come.
        let channels = self.registry.accepted(request, who, now()).channels.clone();
        for channel in channels.iter().filter(|c| c.len() <= MAX_TOPIC) {
            ctx.subscribe(request, channel.as_bytes())?;
        }
        if let (Some(bp), Some(conn)) = (&self.backplane, self.record(request)) {
            bp.send(Command::Register {
                conns: vec![conn],
                now: now(),
            });
        }
        Ok(())
    }
}

/// The header of a bus frame for `bus` to `target`, from `node`.
fn bus_header(bus: &Bus, target: &Target, node: &str) -> serde_json::Value {
    let target = backplane::target_json(target);
    match bus {
        Bus::Send { text } => json!({"op": "send", "origin": node, "target": target, "text": text}),
        Bus::Disconnect => json!({"op": "disconnect", "origin": node, "target": target}),
        Bus::Channel { channel, on } => {
            json!({"op": "channel", "origin": node, "target": target, "channel": channel, "on": on})
        }
    }
}

impl App for Dsock {
    const DECIDES_UPGRADES: bool = true;
    const SERVES_HTTP: bool = true;
    /// A client's ping or pong is its `lastPing`.
    const REPORTS_PINGS: bool = true;
    /// Every second: expired claims go; with Redis, this node's registrations are
    /// renewed every `ttl_s / 3`.
    const PERIODIC: Option<PeriodicTimer> = Some(PeriodicTimer {
        min: Duration::from_secs(1),
        incr: Duration::ZERO,
        max: Duration::from_secs(1),
    });

    fn init(settings: &str) -> Result<Self, String> {
        Ok(Dsock {
            settings: Settings::parse(settings)?,
            registry: Registry::default(),
            node: uuid::Uuid::new_v4().to_string(),
            backplane: None,
            redis_up: true,
            ticks: 0,
        })
    }

    fn started(&mut self, ctx: &mut Context<'_>) -> Result<(), Error> {
        if let Some(config) = self.settings.redis.clone() {
            self.redis_up = false; // until the commander says otherwise
            self.backplane = Some(Backplane::start(
                config,
                self.node.clone(),
                ctx.event_sender(),
            ));
        }
        Ok(())
    }

    fn upgrade(&mut self, ctx: &mut Context<'_>, req: &Request<'_>) -> Result<(), Error> {
        if self.is_api(req.endpoint_id) || req.path != "/connect" {
            return Self::answer(ctx, req.id, fail(404, "NOT_FOUND", "Connect at /connect"));
        }
        let params = Params(req.query_pairs().collect());
        if let Some(id) = params.get("claim") {
            let now = now();
            return match &self.backplane {
                Some(_) if !self.redis_up => Self::answer(
                    ctx,
                    req.id,
                    fail(503, "REDIS_UNAVAILABLE", "Redis is unreachable; try again"),
                ),
                Some(bp) => {
                    bp.send(Command::TakeClaim {
                        id: id.to_string(),
                        request: req.id.0,
                        now,
                    });
                    Ok(()) // decided when Redis answers (event)
                }
                None => match api::check_claim(self.registry.take_claim(id), now) {
                    Ok(who) => self.admit(ctx, req.id, who),
                    Err(reply) => Self::answer(ctx, req.id, reply),
                },
            };
        }
        match api::connect_jwt(&params, &self.settings) {
            Ok(who) => self.admit(ctx, req.id, who),
            Err(reply) => Self::answer(ctx, req.id, reply),
        }
    }

    fn http(&mut self, ctx: &mut Context<'_>, req: &Request<'_>) -> Result<(), Error> {
        let params = Params(req.query_pairs().collect());
        if !self.is_api(req.endpoint_id) {
            return match req.path {
                "/ping" => ctx.respond(req.id, 200, "Content-Type: text/plain", b"pong"),
                _ => Self::answer(ctx, req.id, fail(404, "NOT_FOUND", "No such path")),
            };
        }
        let presented = auth::presented_token(params.get("token"), req.header("Authorization"));
        if !presented.is_some_and(|t| auth::token_matches(t, &self.settings.token)) {
            let reply = fail(401, "INVALID_AUTHORIZATION", "Invalid authorization");
            return Self::answer(ctx, req.id, reply);
        }
        if req.path == "/ping" {
            return ctx.respond(req.id, 200, "Content-Type: text/plain", b"pong");
        }
        match self.api(ctx, req, &params) {
            Some(reply) => Self::answer(ctx, req.id, reply),
            None => Ok(()), // answered when Redis answers (event)
        }
    }

    fn read(
        &mut self,
        _ctx: &mut Context<'_>,
        _client: ClientId,
        _msg: Message<'_>,
    ) -> Result<(), Error> {
        Ok(()) // dSock is one-way: what clients send is dropped
    }

    fn ping(&mut self, _ctx: &mut Context<'_>, client: ClientId) {
        let now = now();
        if self.registry.touch(client, now) {
            if let (Some(bp), Some(conn)) = (&self.backplane, self.record(client)) {
                bp.send(Command::Register {
                    conns: vec![conn],
                    now,
                });
            }
        }
    }

    fn close(&mut self, _ctx: &mut Context<'_>, client: ClientId, _code: CloseCode) {
        if let (Some(bp), Some(conn)) = (&self.backplane, self.record(client)) {
            bp.send(Command::Unregister { conn });
        }
        self.registry.closed(client);
    }

    fn periodic(&mut self, _ctx: &mut Context<'_>) -> TimerNext {
        self.ticks += 1;
        self.registry.expire_claims(now());
        if let Some(config) = &self.settings.redis {
            if self.redis_up && self.ticks.is_multiple_of((config.ttl_s / 3).max(1)) {
                self.register_all();
            }
        }
        TimerNext::Hold
    }

    fn event(&mut self, ctx: &mut Context<'_>, event: &[u8]) -> Result<(), Error> {
        let Some((header, body)) = wire::decode(event) else {
            return Ok(());
        };
        let request = header["request"].as_u64().map(ClientId);
        match header["op"].as_str() {
            Some("respond") => {
                let (Some(request), Some(status)) = (request, header["status"].as_u64()) else {
                    return Ok(());
                };
                let body = serde_json::from_slice(body).unwrap_or_default();
                let _ = Self::answer(
                    ctx,
                    request,
                    Reply {
                        status: status as u16,
                        body,
                    },
                );
            }
            Some("claim") => {
                let Some(request) = request else {
                    return Ok(());
                };
                match backplane::who_from_json(&header["who"]) {
                    Some(who) => {
                        if self.admit(ctx, request, who).is_err() {
                            // The client left while Redis answered: the claim is spent.
                        }
                    }
                    None => {
                        let e = &header["error"];
                        let reply = fail(
                            e[0].as_u64().unwrap_or(500) as u16,
                            e[1].as_str().unwrap_or("ERROR_GETTING_CLAIM"),
                            e[2].as_str().unwrap_or("Error getting claim"),
                        );
                        let _ = Self::answer(ctx, request, reply);
                    }
                }
            }
            Some("redis") => {
                self.redis_up = header["up"].as_bool().unwrap_or(false);
                if self.redis_up {
                    self.register_all(); // Redis may have restarted empty
                }
            }
            Some(op) if header["origin"].as_str() != Some(&self.node) => {
                let Some(target) = backplane::target_from_json(&header["target"]) else {
                    return Ok(());
                };
                let bus = match op {
                    "send" => Bus::Send {
                        text: header["text"].as_bool().unwrap_or(false),
                    },
                    "disconnect" => Bus::Disconnect,
                    "channel" => Bus::Channel {
                        channel: header["channel"].as_str().unwrap_or_default().to_string(),
                        on: header["on"].as_bool().unwrap_or(false),
                    },
                    _ => return Ok(()),
                };
                let _ = self.apply(ctx, &bus, &target, body);
            }
            _ => {} // our own frame, back from the bus
        }
        Ok(())
    }
}

ringsocket_sdk::export_app!("dsock", Dsock);
