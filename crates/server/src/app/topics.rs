//! The app thread's view of its topics: name ↔ id, how many subscribers each has on
//! each worker (so that a publish skips workers with none), and which topics each
//! client subscribes to (so that a leaving client's subscriptions are counted out).
//!
//! The workers hold the subscriber lists themselves; this side only counts. Both sides
//! change in the same order (subscribe and unsubscribe records go through the client's
//! worker's ring; a worker ends a leaving client's subscriptions before the app hears
//! of the close), so once a topic's count is 0 no worker lists anyone for it and its
//! id can be reused.

use crate::records::{ClientId, TopicId};
use crate::small_map::SmallMap;
use rustc_hash::FxHashMap;

/// The longest topic name, in bytes.
pub(crate) const MAX_TOPIC_LEN: usize = 255;

/// One topic.
struct Topic {
    name: Box<[u8]>,
    /// Subscribers on each worker.
    per_worker: Box<[u32]>,
    total: u32,
}

/// An app's topics.
pub(crate) struct AppTopics {
    ids: FxHashMap<Box<[u8]>, TopicId>,
    /// By id; `None` for a free id.
    topics: Vec<Option<Topic>>,
    free: Vec<TopicId>,
    /// Each subscribing client's topics (one inline).
    by_client: FxHashMap<u64, SmallMap<TopicId, ()>>,
    workers: usize,
}

impl AppTopics {
    /// No topics yet, on `workers` workers.
    pub(crate) fn new(workers: usize) -> AppTopics {
        AppTopics {
            ids: FxHashMap::default(),
            topics: Vec::new(),
            free: Vec::new(),
            by_client: FxHashMap::default(),
            workers,
        }
    }

    /// Records `client` (owned by worker `w`) as a subscriber of `name`; `None` if it
    /// already was (nothing to tell the worker).
    pub(crate) fn subscribe(&mut self, client: ClientId, w: usize, name: &[u8]) -> Option<TopicId> {
        let id = match self.ids.get(name) {
            Some(&id) => id,
            None => self.create(name),
        };
        if !self
            .by_client
            .entry(client.0)
            .or_default()
            .insert_new(id, ())
        {
            return None;
        }
        let topic = self.topics[id.0 as usize].as_mut().expect("a live id");
        topic.per_worker[w] += 1;
        topic.total += 1;
        Some(id)
    }

    fn create(&mut self, name: &[u8]) -> TopicId {
        let topic = Topic {
            name: name.into(),
            per_worker: vec![0; self.workers].into(),
            total: 0,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.topics[id.0 as usize] = Some(topic);
                id
            }
            None => {
                self.topics.push(Some(topic));
                TopicId(self.topics.len() as u32 - 1)
            }
        };
        self.ids.insert(name.into(), id);
        id
    }

    /// Ends `client`'s subscription to `name`; the topic's id if it had one (the worker
    /// must be told).
    pub(crate) fn unsubscribe(
        &mut self,
        client: ClientId,
        w: usize,
        name: &[u8],
    ) -> Option<TopicId> {
        let id = *self.ids.get(name)?;
        let subs = self.by_client.get_mut(&client.0)?;
        subs.remove(&id)?;
        if subs.is_empty() {
            self.by_client.remove(&client.0);
        }
        self.count_out(id, w);
        Some(id)
    }

    /// `client` (of worker `w`) is gone: its subscriptions are counted out (its worker
    /// has already ended them).
    pub(crate) fn client_left(&mut self, client: ClientId, w: usize) {
        if let Some(subs) = self.by_client.remove(&client.0) {
            subs.for_each(|id, ()| self.count_out(id, w));
        }
    }

    fn count_out(&mut self, id: TopicId, w: usize) {
        let slot = &mut self.topics[id.0 as usize];
        let topic = slot.as_mut().expect("a live id");
        topic.per_worker[w] -= 1;
        topic.total -= 1;
        if topic.total == 0 {
            let topic = slot.take().expect("a live id");
            self.ids.remove(&topic.name);
            self.free.push(id);
        }
    }

    /// The topic called `name` with its subscriber count on each worker, if it has
    /// subscribers.
    #[inline]
    pub(crate) fn find(&self, name: &[u8]) -> Option<(TopicId, &[u32])> {
        let &id = self.ids.get(name)?;
        let topic = self.topics[id.0 as usize].as_ref()?;
        Some((id, &topic.per_worker))
    }

    /// How many clients subscribe to `name`.
    pub(crate) fn count(&self, name: &[u8]) -> u32 {
        self.find(name).map_or(0, |(id, _)| {
            self.topics[id.0 as usize].as_ref().map_or(0, |t| t.total)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_subscriptions_and_ids_are_reused_once_empty() {
        let mut t = AppTopics::new(2);
        let (a, b) = (ClientId(1 << 8), ClientId((2 << 8) | 1));
        let id = t.subscribe(a, 0, b"room").unwrap();
        assert_eq!(t.subscribe(a, 0, b"room"), None, "again: nothing to do");
        assert_eq!(t.subscribe(b, 1, b"room"), Some(id));
        assert_eq!(t.find(b"room").unwrap().1, &[1, 1]);
        assert_eq!(t.count(b"room"), 2);
        let other = t.subscribe(b, 1, b"other").unwrap();
        assert_ne!(other, id);
        assert_eq!(t.unsubscribe(a, 0, b"room"), Some(id));
        assert_eq!(t.unsubscribe(a, 0, b"room"), None);
        t.client_left(b, 1);
        assert_eq!((t.count(b"room"), t.count(b"other")), (0, 0));
        assert!(t.find(b"room").is_none() && t.by_client.is_empty());
        // Both ids are free again and get reused.
        let again = t.subscribe(a, 0, b"new").unwrap();
        assert!(again == id || again == other);
    }
}
