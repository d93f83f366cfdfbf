//! Who is connected and which claims wait, with the indexes the API resolves targets
//! through. Lives on the app's thread: every change is one callback, so a claim is
//! consumed exactly once and nothing is shared.
//!
//! A connection is kept compact (there may be a million): its UUID as 16 bytes, its user
//! and channel names shared with the index keys, and an index set of one member held
//! inline.

use ringsocket_sdk::ClientId;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;
use uuid::Uuid;

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
    /// Its id in the API.
    pub uuid: Uuid,
    /// The user (the same allocation as its `by_user` key).
    pub user: Arc<str>,
    /// The session, if any.
    pub session: Option<Box<str>>,
    /// Channels, without duplicates, in the order given (each the same allocation as
    /// its `by_channel` key).
    pub channels: Box<[Arc<str>]>,
    /// Unix seconds of the connect or of its last ping or pong.
    pub last_ping: u64,
}

impl Connection {
    /// Who it is, as the API and Redis spell it.
    pub fn who(&self) -> Identity {
        Identity {
            user: self.user.to_string(),
            session: self.session.as_deref().map(str::to_string),
            channels: self.channels.iter().map(|c| c.to_string()).collect(),
        }
    }
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

/// The members of one index entry: most users have one connection, so one member is
/// held inline and only a second one costs a set.
#[derive(Debug)]
enum Members<T> {
    One(T),
    /// Boxed so that an entry stays 16 bytes (a set is 48).
    #[allow(clippy::box_collection)]
    Many(Box<HashSet<T>>),
}

impl<T: Hash + Eq + Clone> Members<T> {
    fn insert(&mut self, item: T) {
        match self {
            Members::One(only) if *only == item => {}
            Members::One(only) => {
                *self = Members::Many(Box::new(HashSet::from([only.clone(), item])));
            }
            Members::Many(set) => {
                set.insert(item);
            }
        }
    }

    /// Takes `item` out; whether none is left.
    fn remove(&mut self, item: &T) -> bool {
        match self {
            Members::One(only) => only == item,
            Members::Many(set) => {
                set.remove(item);
                set.is_empty()
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        let (one, many) = match self {
            Members::One(only) => (Some(only), None),
            Members::Many(set) => (None, Some(set.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

/// Adds `item` to the members under `key`.
fn index<K: Hash + Eq, V: Hash + Eq + Clone>(map: &mut HashMap<K, Members<V>>, key: K, item: V) {
    match map.entry(key) {
        std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().insert(item),
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(Members::One(item));
        }
    }
}

/// Removes `item` from the members under `key`, and the entry once empty.
fn unindex<K, Q, V>(map: &mut HashMap<K, Members<V>>, key: &Q, item: &V)
where
    K: Hash + Eq + std::borrow::Borrow<Q>,
    Q: Hash + Eq + ?Sized,
    V: Hash + Eq + Clone,
{
    if map.get_mut(key).is_some_and(|m| m.remove(item)) {
        map.remove(key);
    }
}

/// `name` as the key `map` already holds for it (one allocation shared by every
/// connection that names it), or a new one.
fn interned<V>(map: &HashMap<Arc<str>, V>, name: &str) -> Arc<str> {
    map.get_key_value(name)
        .map_or_else(|| Arc::from(name), |(k, _)| Arc::clone(k))
}

/// The app's view of its clients and claims.
#[derive(Default)]
pub struct Registry {
    conns: HashMap<ClientId, Connection>,
    by_uuid: HashMap<Uuid, ClientId>,
    by_user: HashMap<Arc<str>, Members<ClientId>>,
    by_channel: HashMap<Arc<str>, Members<ClientId>>,
    claims: HashMap<String, Claim>,
    claims_by_user: HashMap<String, Members<String>>,
    claims_by_channel: HashMap<String, Members<String>>,
}

impl Registry {
    /// An accepted upgrade: from here on `client` is a connection, with a fresh UUID
    /// (the server sends to it and reports its close from the accept on).
    pub fn accepted(&mut self, client: ClientId, who: Identity, now: u64) -> &Connection {
        let uuid = Uuid::new_v4();
        let user = interned(&self.by_user, &who.user);
        index(&mut self.by_user, Arc::clone(&user), client);
        let channels: Box<[Arc<str>]> = who
            .channels
            .iter()
            .map(|name| {
                let channel = interned(&self.by_channel, name);
                index(&mut self.by_channel, Arc::clone(&channel), client);
                channel
            })
            .collect();
        self.by_uuid.insert(uuid, client);
        let conn = Connection {
            uuid,
            user,
            session: who.session.map(String::into_boxed_str),
            channels,
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
        unindex(&mut self.by_user, &*conn.user, &client);
        for channel in conn.channels.iter() {
            unindex(&mut self.by_channel, &**channel, &client);
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
        let session_of = |c: &ClientId| self.conns.get(c).and_then(|c| c.session.as_deref());
        let narrowed = |members: Option<&Members<ClientId>>, session: &Option<String>| {
            let mut ids: Vec<ClientId> = members
                .into_iter()
                .flat_map(Members::iter)
                .filter(|c| session.is_none() || session_of(c) == session.as_deref())
                .copied()
                .collect();
            ids.sort();
            ids
        };
        match target {
            Target::Id(uuid) => Uuid::try_parse(uuid)
                .ok()
                .and_then(|uuid| self.by_uuid.get(&uuid).copied())
                .into_iter()
                .collect(),
            Target::Channel(channel, session) => {
                narrowed(self.by_channel.get(channel.as_str()), session)
            }
            Target::User(user, session) => narrowed(self.by_user.get(user.as_str()), session),
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
            .flat_map(Members::iter)
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
        let has = conn.channels.iter().any(|c| &**c == channel);
        if has == on {
            return false;
        }
        let mut channels = std::mem::take(&mut conn.channels).into_vec();
        if on {
            let interned = interned(&self.by_channel, channel);
            index(&mut self.by_channel, Arc::clone(&interned), client);
            channels.push(interned);
        } else {
            channels.retain(|c| &**c != channel);
            unindex(&mut self.by_channel, channel, &client);
        }
        conn.channels = channels.into_boxed_slice();
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
            .to_string();
        r.accepted(ClientId(2), who("u", Some("b"), &["g", "h"]), 0);
        r.accepted(ClientId(3), who("v", None, &["h"]), 0);
        assert_eq!(r.resolve(&Target::Id(uuid)), [ClientId(1)]);
        assert!(r.resolve(&Target::Id("not-a-uuid".into())).is_empty());
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

    /// What an idle connection holds here is what `benches/run push-idle` measures
    /// (≤ 1 KiB in all, with the server's share): keep the parts small.
    #[test]
    fn a_connection_is_compact() {
        assert_eq!(std::mem::size_of::<Connection>(), 72);
        assert_eq!(std::mem::size_of::<Members<ClientId>>(), 16);
        let mut r = Registry::default();
        r.accepted(ClientId(1), who("u", None, &["g"]), 0);
        r.accepted(ClientId(2), who("v", None, &["g"]), 0);
        let (a, b) = (&r.conns[&ClientId(1)], &r.conns[&ClientId(2)]);
        assert!(
            Arc::ptr_eq(&a.channels[0], &b.channels[0]),
            "one name, shared"
        );
        let (user, _) = r.by_user.get_key_value("u").expect("indexed");
        assert!(
            Arc::ptr_eq(user, &a.user),
            "the index key is the connection's user"
        );
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
