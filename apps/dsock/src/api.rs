//! dSock's HTTP API: parameters, answers and error codes as dSock has them, with the
//! fixes of its known weaknesses (401 for bad authorization, one target resolver).

use crate::auth;
use crate::registry::{Claim, Identity, Registry, Target};
use crate::settings::Settings;
use serde_json::{json, Value};

/// An answer: status and JSON body.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
}

/// `{"success": true, …more}`.
pub fn ok(more: Value) -> Reply {
    let mut body = json!({"success": true});
    if let (Some(b), Value::Object(m)) = (body.as_object_mut(), more) {
        b.extend(m);
    }
    Reply { status: 200, body }
}

/// An error with dSock's `errorCode` and message.
pub fn fail(status: u16, code: &str, message: &str) -> Reply {
    Reply {
        status,
        body: json!({"success": false, "errorCode": code, "error": message}),
    }
}

/// The query parameters of a request, decoded.
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The first value of `name` that is not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` is `true`.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name) == Some("true")
    }

    /// The target: `id` beats `channel` beats `user`; `session` narrows the latter two.
    pub fn target(&self) -> Option<Target> {
        let session = self.get("session").map(str::to_string);
        if let Some(id) = self.get("id") {
            return Some(Target::Id(id.into()));
        }
        if let Some(channel) = self.get("channel") {
            return Some(Target::Channel(channel.into(), session));
        }
        self.get("user").map(|u| Target::User(u.into(), session))
    }
}

/// The message kind of `/send`'s `type`.
pub fn message_type(params: &Params) -> Option<bool> {
    match params.get("type") {
        Some("text" | "1") => Some(true),
        Some("binary" | "2") => Some(false),
        _ => None,
    }
}

/// A claim as the API shows it.
pub fn claim_json(c: &Claim) -> Value {
    let mut v = json!({"id": c.id, "expiration": c.expiration, "user": c.who.user, "channels": c.who.channels});
    if let Some(s) = &c.who.session {
        v["session"] = json!(s);
    }
    v
}

/// `POST /claim`'s parameters as a claim (its id's uniqueness is checked where claims
/// are stored).
pub fn new_claim(params: &Params, settings: &Settings, now: u64) -> Result<Claim, Reply> {
    let Some(user) = params.get("user") else {
        return Err(fail(400, "USER_ID_REQUIRED", "User ID is required"));
    };
    let expiration = if let Some(e) = params.get("expiration") {
        let Ok(e) = e.parse::<i64>() else {
            return Err(fail(
                400,
                "INVALID_EXPIRATION",
                "Error parsing expiration (must be a integer)",
            ));
        };
        if e < 1 {
            return Err(fail(
                400,
                "NEGATIVE_EXPIRATION",
                "Can not use 0 or negative expiration",
            ));
        }
        if (e as u64) < now {
            return Err(fail(400, "INVALID_EXPIRATION", "Expiration is in the past"));
        }
        e as u64
    } else if let Some(d) = params.get("duration") {
        let Ok(d) = d.parse::<i64>() else {
            return Err(fail(
                400,
                "INVALID_DURATION",
                "Could not parse duration (must be a integer)",
            ));
        };
        if d < 1 {
            return Err(fail(
                400,
                "NEGATIVE_DURATION",
                "Can not use 0 or negative duration",
            ));
        }
        now.saturating_add(d as u64)
    } else {
        now + settings.claim_ttl_s
    };
    let channels = params
        .get("channels")
        .map(|c| c.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    Ok(Claim {
        id: params
            .get("id")
            .map_or_else(auth::new_claim_id, str::to_string),
        who: Identity {
            user: user.into(),
            session: params.get("session").map(Into::into),
            channels: auth::dedup(channels),
        },
        expiration,
    })
}

/// Stores a new claim in this node's registry (one node, no Redis).
pub fn store_claim(claim: Claim, registry: &mut Registry) -> Reply {
    if registry.has_claim(&claim.id) {
        return fail(400, "CLAIM_ID_ALREADY_USED", "Claim ID is already used");
    }
    let reply = ok(json!({"claim": claim_json(&claim)}));
    registry.add_claim(claim);
    reply
}

/// Checks a claim a connect presents: known, and not expired.
pub fn check_claim(claim: Option<Claim>, now: u64) -> Result<Identity, Reply> {
    match claim {
        None => Err(fail(400, "MISSING_CLAIM", "Could not find claim")),
        Some(c) if c.expiration < now => Err(fail(400, "EXPIRED_CLAIM", "Claim has expired")),
        Some(c) => Ok(c.who),
    }
}

/// Checks a client's `/connect` by JWT (a claim is checked where claims are stored).
pub fn connect_jwt(params: &Params, settings: &Settings) -> Result<Identity, Reply> {
    match (params.get("jwt"), &settings.jwt) {
        (Some(jwt), Some(config)) => auth::verify_jwt(jwt, config)
            .map_err(|_| fail(400, "INVALID_JWT", "Could not validate JWT")),
        _ => Err(fail(
            400,
            "MISSING_AUTHENTICATION",
            "Did not provide an authentication method",
        )),
    }
}

/// A connection as `/info` shows it (`session` only when it has one), whether it is
/// this node's or read back from Redis. `who`: user, session, channels.
pub fn connection_json(
    id: &str,
    worker: Option<&str>,
    last_ping: Option<u64>,
    (user, session, channels): (&str, Option<&str>, &[&str]),
) -> Value {
    let mut v = json!({"id": id, "worker": worker, "lastPing": last_ping, "user": user,
                       "channels": channels});
    if let Some(s) = session {
        v["session"] = json!(s);
    }
    v
}

/// The connections and claims `/info` shows.
pub fn info(target: &Target, registry: &Registry, node: &str, now: u64) -> Reply {
    let connections: Vec<Value> = registry
        .resolve(target)
        .into_iter()
        .filter_map(|c| registry.connection(c))
        .map(|c| {
            let channels: Vec<&str> = c.channels.iter().map(|c| &**c).collect();
            let who = (&*c.user, c.session.as_deref(), &channels[..]);
            connection_json(&c.uuid.to_string(), Some(node), Some(c.last_ping), who)
        })
        .collect();
    let claims: Vec<Value> = registry
        .resolve_claims(target, now)
        .into_iter()
        .map(claim_json)
        .collect();
    ok(json!({"connections": connections, "claims": claims}))
}
