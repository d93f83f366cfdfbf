//! A worker's topic subscribers: for each (app, topic), the keys of its own connections
//! that subscribed, and for each of those connections, where it is listed — so that a
//! publish walks one list, and a subscription ends in O(1) when the client leaves.
//!
//! Memory is proportional to subscriptions (a list slot and a map entry each, plus one
//! map entry per topic with local subscribers; a connection's only subscription lives
//! inline in its entry); every operation is O(1) whatever a
//! connection's or a topic's number of subscriptions; a publish allocates nothing.

use crate::records::TopicId;
use crate::small_map::SmallMap;
use ringsocket_session::AppIndex;
use rustc_hash::FxHashMap;

/// An (app, topic) pair as one map key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct TopicKey(u64);

impl TopicKey {
    fn new(app: AppIndex, topic: TopicId) -> TopicKey {
        TopicKey(u64::from(app.0) << 32 | u64::from(topic.0))
    }
}

/// The worker's subscribers.
#[derive(Default)]
pub(crate) struct Topics {
    /// Each topic's subscribing connections (slab keys).
    subscribers: FxHashMap<TopicKey, Vec<u32>>,
    /// Each subscribing connection's subscriptions: topic → its position in that
    /// topic's list.
    by_conn: FxHashMap<u32, SmallMap<TopicKey, u32>>,
}

impl Topics {
    /// Subscribes connection `key` to `topic` of `app` (again: nothing changes).
    pub(crate) fn subscribe(&mut self, key: usize, app: AppIndex, topic: TopicId) {
        let topic = TopicKey::new(app, topic);
        let conn = key as u32;
        let subs = self.by_conn.entry(conn).or_default();
        if !subs.contains_key(&topic) {
            let list = self.subscribers.entry(topic).or_default();
            subs.insert_new(topic, list.len() as u32);
            list.push(conn);
        }
    }

    /// Ends connection `key`'s subscription to `topic` of `app`, if it has one.
    pub(crate) fn unsubscribe(&mut self, key: usize, app: AppIndex, topic: TopicId) {
        let topic = TopicKey::new(app, topic);
        let conn = key as u32;
        let Some(subs) = self.by_conn.get_mut(&conn) else {
            return;
        };
        let Some(at) = subs.remove(&topic) else {
            return;
        };
        if subs.is_empty() {
            self.by_conn.remove(&conn);
        }
        self.unlist(topic, at);
    }

    /// Ends every subscription of connection `key` (it is leaving).
    pub(crate) fn remove_conn(&mut self, key: usize) {
        if let Some(subs) = self.by_conn.remove(&(key as u32)) {
            subs.for_each(|topic, at| self.unlist(topic, at));
        }
    }

    /// Takes position `at` out of `topic`'s list, updating the position of the
    /// connection that moves into its place.
    fn unlist(&mut self, topic: TopicKey, at: u32) {
        let Some(list) = self.subscribers.get_mut(&topic) else {
            return;
        };
        list.swap_remove(at as usize);
        if let Some(&moved) = list.get(at as usize) {
            if let Some(position) = self
                .by_conn
                .get_mut(&moved)
                .and_then(|subs| subs.get_mut(&topic))
            {
                *position = at;
            }
        }
        if list.is_empty() {
            self.subscribers.remove(&topic);
        }
    }

    /// Takes `topic`'s subscriber list out for a publish (give it back with
    /// [`Topics::put_back`]); empty if the topic has none here.
    pub(crate) fn take(&mut self, app: AppIndex, topic: TopicId) -> Vec<u32> {
        self.subscribers
            .get_mut(&TopicKey::new(app, topic))
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Returns a list [`Topics::take`] took.
    pub(crate) fn put_back(&mut self, app: AppIndex, topic: TopicId, list: Vec<u32>) {
        if let Some(slot) = self.subscribers.get_mut(&TopicKey::new(app, topic)) {
            *slot = list;
        }
    }

    /// How many of this worker's connections subscribe to `topic` of `app`.
    #[cfg(test)]
    fn count(&self, app: AppIndex, topic: TopicId) -> usize {
        self.subscribers
            .get(&TopicKey::new(app, topic))
            .map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random subscribes, unsubscribes and leaves against a model: the lists always hold
    /// exactly the model's subscribers, and every position points back correctly.
    #[test]
    fn lists_match_a_model_through_random_churn() {
        let mut t = Topics::default();
        let mut model = std::collections::HashSet::new();
        let app = AppIndex(1);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let key = (rng % 40) as usize;
            let topic = TopicId((rng >> 8) as u32 % 7);
            match (rng >> 16) % 5 {
                0 | 1 => {
                    t.subscribe(key, app, topic);
                    model.insert((key, topic.0));
                }
                2 | 3 => {
                    t.unsubscribe(key, app, topic);
                    model.remove(&(key, topic.0));
                }
                _ => {
                    t.remove_conn(key);
                    model.retain(|&(k, _)| k != key);
                }
            }
        }
        for topic in 0..7 {
            let want = model.iter().filter(|&&(_, tp)| tp == topic).count();
            assert_eq!(t.count(app, TopicId(topic)), want);
            let list = t.take(app, TopicId(topic));
            for (at, &conn) in list.iter().enumerate() {
                assert!(model.contains(&(conn as usize, topic)));
                let position = t.by_conn[&conn]
                    .get(&TopicKey::new(app, TopicId(topic)))
                    .copied()
                    .expect("listed connections know their position");
                assert_eq!(position as usize, at, "position of {conn} in topic {topic}");
            }
            t.put_back(app, TopicId(topic), list);
        }
        let listed: usize = t.by_conn.values().map(|subs| subs.len()).sum();
        assert_eq!(listed, model.len());
    }
}
