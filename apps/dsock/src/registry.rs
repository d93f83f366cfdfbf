//! Who is connected and which claims wait, with the indexes the API resolves targets
//! through. Lives on the app's thread: every change is one callback, so a claim is
//! consumed exactly once and nothing is shared.

use ringsocket_sdk::ClientId;
use std::collections::{HashMap, HashSet};

/// Who a connection (or a claim) is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user.
    pub user: String,
    /// The session, if any.
    pub session: Option<String>,
    /// Channels, without duplicates, in the order given.
    pub channels: Vec<String>,
}

/// A connected client.
#[derive(Debug)]
pub struct Connection {
    /// Its id in the API (a UUID).
    pub uuid: String,
    /// Who it is.
    pub who: Identity,
    /// Unix seconds of the connect or of its last ping or pong.
    pub last_ping: u64,
}

/// A single-use permission to connect.
#[derive(Debug, Clone)]
pub struct Claim {
    /// 32 characters of `[A-Za-z0-9]`, or the id the backend chose.
    pub id: String,
    /// Who connects with it.
    pub who: Identity,
    /// Unix seconds after which it is void.
    pub expiration: u64,
}

/// Whom an API call is about: `id` beats `channel` beats `user`; `session` narrows the
/// latter two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One connection, by UUID.
    Id(String),
    /// A channel's connections (and claims), optionally of one session.
    Channel(String, Option<String>),
    /// A user's connections (and claims), optionally of one session.
    User(String, Option<String>),
}

/// Adds `item` to the set under `key`.
fn index<K: std::hash::Hash + Eq, V: std::hash::Hash + Eq>(
    map: &mut HashMap<K, HashSet<V>>,
    key: K,
    item: V,
) {
    map.entry(key).or_default().insert(item);
}

/// Removes `item` from the set under `key`, and the set once empty.
fn unindex<K: std::hash::Hash + Eq, V: std::hash::Hash + Eq>(
    map: &mut HashMap<K, HashSet<V>>,
    key: &K,
    item: &V,
) {
    if let Some(set) = map.get_mut(key) {
        set.remove(item);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

/// The app's view of its clients and claims.
#[derive(Default)]
pub struct Registry {
    conns: HashMap<ClientId, Connection>,
    by_uuid: HashMap<String, ClientId>,
    by_user: HashMap<String, HashSet<ClientId>>,
    by_channel: HashMap<String, HashSet<ClientId>>,
    claims: HashMap<String, Claim>,
    claims_by_user: HashMap<String, HashSet<String>>,
    claims_by_channel: HashMap<String, HashSet<String>>,
}

impl Registry {
    /// An accepted upgrade: from here on `client` is a connection, with a fresh UUID
    /// (the server sends to it and reports its close from the accept on).
    pub fn accepted(&mut self, client: ClientId, who: Identity, now: u64) -> &Connection {
        let uuid = uuid::Uuid::new_v4().to_string();
        index(&mut self.by_user, who.user.clone(), client);
        for channel in &who.channels {
            index(&mut self.by_channel, channel.clone(), client);
        }
        self.by_uuid.insert(uuid.clone(), client);
        let conn = Connection {
            uuid,
            who,
            last_ping: now,
        };
        self.conns.entry(client).or_insert(conn)
    }

    /// The client is gone: everything about it goes.
    pub fn closed(&mut self, client: ClientId) {
        let Some(conn) = self.conns.remove(&client) else {
            return;
        };
        self.by_uuid.remove(&conn.uuid);
        unindex(&mut self.by_user, &conn.who.user, &client);
        for channel in &conn.who.channels {
            unindex(&mut self.by_channel, channel, &client);
        }
    }

    /// Every connected client.
    pub fn clients(&self) -> impl Iterator<Item = ClientId> + '_ {
        self.conns.keys().copied()
    }

    /// A connected client showed a sign of life at `now`; returns whether `lastPing`
    /// moved (it counts whole seconds).
    pub fn touch(&mut self, client: ClientId, now: u64) -> bool {
        match self.conns.get_mut(&client) {
            Some(c) if c.last_ping != now => {
                c.last_ping = now;
                true
            }
            _ => false,
        }
    }

    /// A connected client.
    pub fn connection(&self, client: ClientId) -> Option<&Connection> {
        self.conns.get(&client)
    }

    /// The connections `target` names.
    pub fn resolve(&self, target: &Target) -> Vec<ClientId> {
        let session_of = |c: &ClientId| self.conns.get(c).and_then(|c| c.who.session.as_deref());
        let narrowed = |set: Option<&HashSet<ClientId>>, session: &Option<String>| {
            let mut ids: Vec<ClientId> = set
                .into_iter()
                .flatten()
                .filter(|c| session.is_none() || session_of(c) == session.as_deref())
                .copied()
                .collect();
            ids.sort();
            ids
        };
        match target {
            Target::Id(uuid) => self.by_uuid.get(uuid).copied().into_iter().collect(),
            Target::Channel(channel, session) => narrowed(self.by_channel.get(channel), session),
            Target::User(user, session) => narrowed(self.by_user.get(user), session),
        }
    }

    /// The claims `target` names (none for an id), expired ones left out.
    pub fn resolve_claims(&self, target: &Target, now: u64) -> Vec<&Claim> {
        let (set, session) = match target {
            Target::Id(_) => return Vec::new(),
            Target::Channel(channel, session) => (self.claims_by_channel.get(channel), session),
            Target::User(user, session) => (self.claims_by_user.get(user), session),
        };
        let mut claims: Vec<&Claim> = set
            .into_iter()
            .flatten()
            .filter_map(|id| self.claims.get(id))
            .filter(|c| c.expiration >= now)
            .filter(|c| session.is_none() || c.who.session == *session)
            .collect();
        claims.sort_by(|a, b| a.id.cmp(&b.id));
        claims
    }

    /// Whether a claim with this id exists (expired or not).
    pub fn has_claim(&self, id: &str) -> bool {
        self.claims.contains_key(id)
    }

    /// Stores a new claim.
    pub fn add_claim(&mut self, claim: Claim) {
        index(
            &mut self.claims_by_user,
            claim.who.user.clone(),
            claim.id.clone(),
        );
        for channel in &claim.who.channels {
            index(
                &mut self.claims_by_channel,
                channel.clone(),
                claim.id.clone(),
            );
        }
        self.claims.insert(claim.id.clone(), claim);
    }

    /// Takes a claim out (a connect consumes it; a disconnect deletes it).
    pub fn take_claim(&mut self, id: &str) -> Option<Claim> {
        let claim = self.claims.remove(id)?;
        unindex(&mut self.claims_by_user, &claim.who.user, &claim.id);
        for channel in &claim.who.channels {
            unindex(&mut self.claims_by_channel, channel, &claim.id);
        }
        Some(claim)
    }

    /// Drops claims that expired before `now`; returns how many.
    pub fn expire_claims(&mut self, now: u64) -> usize {
        let expired: Vec<String> = self
            .claims
            .values()
            .filter(|c| c.expiration < now)
            .map(|c| c.id.clone())
            .collect();
        for id in &expired {
            self.take_claim(id);
        }
        expired.len()
    }

    /// Adds (`on`) or removes a channel to connection `client`; returns whether it
    /// changed.
    pub fn set_channel(&mut self, client: ClientId, channel: &str, on: bool) -> bool {
        let Some(conn) = self.conns.get_mut(&client) else {
            return false;
        };
        let has = conn.who.channels.iter().any(|c| c == channel);
        if has == on {
            return false;
        }
        if on {
            conn.who.channels.push(channel.to_string());
            index(&mut self.by_channel, channel.to_string(), client);
        } else {
            conn.who.channels.retain(|c| c != channel);
            unindex(&mut self.by_channel, &channel.to_string(), &client);
        }
        true
    }

    /// Adds or removes a channel to claim `id`.
    pub fn set_claim_channel(&mut self, id: &str, channel: &str, on: bool) {
        let Some(mut claim) = self.take_claim(id) else {
            return;
        };
        claim.who.channels.retain(|c| c != channel);
        if on {
            claim.who.channels.push(channel.to_string());
        }
        self.add_claim(claim);
    }

    /// How much is held, for leak checks: connections, pending upgrades, claims, and
    /// index entries.
    #[cfg(test)]
    pub fn sizes(&self) -> [usize; 7] {
        [
            self.conns.len(),
            0,
            self.claims.len(),
            self.by_uuid.len(),
            self.by_user.len() + self.by_channel.len(),
            self.claims_by_user.len() + self.claims_by_channel.len(),
            0,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: &str, session: Option<&str>, channels: &[&str]) -> Identity {
        Identity {
            user: user.into(),
            session: session.map(Into::into),
            channels: channels.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn targets_resolve_and_everything_is_forgotten_on_close() {
        let mut r = Registry::default();
        let uuid = r
            .accepted(ClientId(1), who("u", Some("a"), &["g"]), 0)
            .uuid
            .clone();
        r.accepted(ClientId(2), who("u", Some("b"), &["g", "h"]), 0);
        r.accepted(ClientId(3), who("v", None, &["h"]), 0);
        assert_eq!(r.resolve(&Target::Id(uuid)), [ClientId(1)]);
        assert_eq!(
            r.resolve(&Target::User("u".into(), None)),
            [ClientId(1), ClientId(2)]
        );
        assert_eq!(
            r.resolve(&Target::User("u".into(), Some("b".into()))),
            [ClientId(2)]
        );
        assert_eq!(
            r.resolve(&Target::Channel("h".into(), None)),
            [ClientId(2), ClientId(3)]
        );
        assert!(r.set_channel(ClientId(3), "g", true));
        assert!(!r.set_channel(ClientId(3), "g", true));
        assert_eq!(r.resolve(&Target::Channel("g".into(), None)).len(), 3);
        for c in 1..=3 {
            r.closed(ClientId(c));
        }
        assert_eq!(r.sizes(), [0; 7]);
    }

    #[test]
    fn claims_are_taken_once_and_expire() {
        let mut r = Registry::default();
        let claim = |id: &str, exp| Claim {
            id: id.into(),
            who: who("u", None, &["c"]),
            expiration: exp,
        };
        r.add_claim(claim("a", 100));
        r.add_claim(claim("b", 10));
        let user = Target::User("u".into(), None);
        assert_eq!(r.resolve_claims(&user, 50).len(), 1, "b expired");
        assert!(r.take_claim("a").is_some());
        assert!(r.take_claim("a").is_none());
        assert_eq!(r.expire_claims(50), 1);
        assert_eq!(r.sizes(), [0; 7]);
    }
}
