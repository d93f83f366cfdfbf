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

mod api;
mod auth;
mod registry;
mod settings;

use api::{fail, ok, Params, Reply};
use registry::Registry;
use ringsocket_sdk::{
    App, ClientId, CloseCode, Context, Error, Message, PeriodicTimer, Request, TimerNext, To,
};
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

/// The app: its settings, its registry, and this node's id in `/info`.
pub struct Dsock {
    settings: Settings,
    registry: Registry,
    node: String,
}

impl Dsock {
    /// Sends `reply` as the answer to request `id`, with a request id.
    fn answer(ctx: &mut Context<'_>, id: ClientId, mut reply: Reply) -> Result<(), Error> {
        let request_id = uuid::Uuid::new_v4().to_string();
        if reply.status != 200 {
            reply.body["requestId"] = serde_json::json!(request_id);
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

    /// The API's routes (after the token check).
    fn api(&mut self, ctx: &mut Context<'_>, req: &Request<'_>, params: &Params) -> Reply {
        let now = now();
        let path = req.path;
        if path == "/claim" {
            return api::claim(params, &mut self.registry, &self.settings, now);
        }
        let known = matches!(path, "/send" | "/disconnect" | "/info")
            || path.starts_with("/channel/subscribe/")
            || path.starts_with("/channel/unsubscribe/");
        if !known {
            return fail(404, "NOT_FOUND", "No such API path");
        }
        let Some(target) = params.target() else {
            return fail(400, "MISSING_TARGET", "Missing target");
        };
        match path {
            "/send" => self.send(ctx, &target, params, req.body),
            "/disconnect" => {
                for client in self.registry.resolve(&target) {
                    let _ = ctx.close(client, CloseCode::NORMAL, "");
                }
                if !params.flag("keepClaims") {
                    let ids: Vec<String> = self
                        .registry
                        .resolve_claims(&target, now)
                        .into_iter()
                        .map(|c| c.id.clone())
                        .collect();
                    for id in ids {
                        self.registry.take_claim(&id);
                    }
                }
                ok(serde_json::json!({}))
            }
            "/info" => api::info(&target, &self.registry, &self.node, now),
            _ => {
                let (on, channel) = if let Some(c) = path.strip_prefix("/channel/subscribe/") {
                    (true, c)
                } else if let Some(c) = path.strip_prefix("/channel/unsubscribe/") {
                    (false, c)
                } else {
                    return fail(404, "NOT_FOUND", "No such API path");
                };
                if channel.is_empty() || channel.contains('/') {
                    return fail(400, "MISSING_CHANNEL", "Missing channel");
                }
                self.channel(ctx, &target, channel, on, !params.flag("ignoreClaims"), now)
            }
        }
    }

    /// `/send`: one message to every connection of the target, in order per connection.
    fn send(
        &mut self,
        ctx: &mut Context<'_>,
        target: &registry::Target,
        params: &Params,
        body: &[u8],
    ) -> Reply {
        let Some(text) = api::message_type(params) else {
            return fail(
                400,
                "INVALID_MESSAGE_TYPE",
                "Invalid message type, must be text or binary",
            );
        };
        let msg = if text {
            match std::str::from_utf8(body) {
                Ok(t) => Message::Text(t),
                Err(_) => return fail(400, "INVALID_MESSAGE_BODY", "A text message must be UTF-8"),
            }
        } else {
            Message::Binary(body)
        };
        let sent = match target {
            // A whole channel is a topic: one record per worker, whatever its size.
            registry::Target::Channel(channel, None) if channel.len() <= MAX_TOPIC => {
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
            Ok(()) => ok(serde_json::json!({})),
            Err(Error::TooBig) => fail(
                413,
                "MESSAGE_TOO_LARGE",
                "Message larger than max_ws_msg_size",
            ),
            Err(e) => fail(
                500,
                "ERROR_DELIVERING_MESSAGING",
                &format!("Error delivering message: {e}"),
            ),
        }
    }

    /// `/channel/(un)subscribe/:channel`.
    fn channel(
        &mut self,
        ctx: &mut Context<'_>,
        target: &registry::Target,
        channel: &str,
        on: bool,
        claims_too: bool,
        now: u64,
    ) -> Reply {
        for client in self.registry.resolve(target) {
            if self.registry.set_channel(client, channel, on) && channel.len() <= MAX_TOPIC {
                let _ = if on {
                    ctx.subscribe(client, channel)
                } else {
                    ctx.unsubscribe(client, channel)
                };
            }
        }
        if claims_too {
            let ids: Vec<String> = self
                .registry
                .resolve_claims(target, now)
                .into_iter()
                .map(|c| c.id.clone())
                .collect();
            for id in ids {
                self.registry.set_claim_channel(&id, channel, on);
            }
        }
        ok(serde_json::json!({}))
    }
}

impl App for Dsock {
    const DECIDES_UPGRADES: bool = true;
    const SERVES_HTTP: bool = true;
    /// Expired claims are dropped every 10 s.
    const PERIODIC: Option<PeriodicTimer> = Some(PeriodicTimer {
        min: Duration::from_secs(10),
        incr: Duration::ZERO,
        max: Duration::from_secs(10),
    });

    fn init(settings: &str) -> Result<Self, String> {
        Ok(Dsock {
            settings: Settings::parse(settings)?,
            registry: Registry::default(),
            node: uuid::Uuid::new_v4().to_string(),
        })
    }

    fn upgrade(&mut self, ctx: &mut Context<'_>, req: &Request<'_>) -> Result<(), Error> {
        if self.is_api(req.endpoint_id) || req.path != "/connect" {
            return Self::answer(ctx, req.id, fail(404, "NOT_FOUND", "Connect at /connect"));
        }
        let params = Params(req.query_pairs().collect());
        match api::connect(&params, &mut self.registry, &self.settings, now()) {
            Ok(mut who) => {
                who.channels
                    .extend(self.settings.default_channels.iter().cloned());
                who.channels = auth::dedup(std::mem::take(&mut who.channels));
                ctx.accept(req.id, 0)?;
                // A connection from here on: sends reach it, and its close will come.
                let channels = self
                    .registry
                    .accepted(req.id, who, now())
                    .who
                    .channels
                    .clone();
                for channel in channels.iter().filter(|c| c.len() <= MAX_TOPIC) {
                    ctx.subscribe(req.id, channel)?;
                }
                Ok(())
            }
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
        let reply = self.api(ctx, req, &params);
        Self::answer(ctx, req.id, reply)
    }

    fn read(
        &mut self,
        _ctx: &mut Context<'_>,
        _client: ClientId,
        _msg: Message<'_>,
    ) -> Result<(), Error> {
        Ok(()) // dSock is one-way: what clients send is dropped
    }

    fn close(&mut self, _ctx: &mut Context<'_>, client: ClientId, _code: CloseCode) {
        self.registry.closed(client);
    }

    fn periodic(&mut self, _ctx: &mut Context<'_>) -> TimerNext {
        self.registry.expire_claims(now());
        TimerNext::Hold
    }
}

ringsocket_sdk::export_app!("dsock", Dsock);
