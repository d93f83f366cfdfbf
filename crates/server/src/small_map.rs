//! A map for what is almost always one entry: a client's topic subscriptions. One entry
//! lives inline (16 bytes for a `u64` key and a `u32` value, as for a `u32` key alone), two or more in a boxed
//! hash map, so a client with one subscription costs no heap block of its own and a
//! client with thousands still gets O(1) operations.

use rustc_hash::FxHashMap;
use std::hash::Hash;

/// Up to one entry inline, more on the heap.
#[derive(Debug, Default)]
pub(crate) enum SmallMap<K, V> {
    /// No entry (the owner usually drops the map instead).
    #[default]
    Empty,
    /// Exactly one entry.
    One(K, V),
    /// Any number; stays on the heap once it got there. Boxed so that the inline
    /// case stays 16 bytes (a map is 32).
    #[allow(clippy::box_collection)]
    Many(Box<FxHashMap<K, V>>),
}

impl<K: Hash + Eq + Copy, V> SmallMap<K, V> {
    /// Whether `key` is in.
    pub(crate) fn contains_key(&self, key: &K) -> bool {
        match self {
            SmallMap::Empty => false,
            SmallMap::One(k, _) => k == key,
            SmallMap::Many(map) => map.contains_key(key),
        }
    }

    /// Adds `key` with `value` if it is not in yet; returns whether it was added.
    pub(crate) fn insert_new(&mut self, key: K, value: V) -> bool {
        match self {
            SmallMap::Empty => *self = SmallMap::One(key, value),
            SmallMap::One(k, _) if *k == key => return false,
            SmallMap::One(..) => {
                let SmallMap::One(k, v) = std::mem::take(self) else {
                    unreachable!("matched One above")
                };
                let mut map = FxHashMap::default();
                map.insert(k, v);
                map.insert(key, value);
                *self = SmallMap::Many(Box::new(map));
            }
            SmallMap::Many(map) => {
                if map.contains_key(&key) {
                    return false;
                }
                map.insert(key, value);
            }
        }
        true
    }

    /// The value under `key`.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        match self {
            SmallMap::One(k, v) if k == key => Some(v),
            SmallMap::Many(map) => map.get(key),
            _ => None,
        }
    }

    /// The value under `key`, to change.
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        match self {
            SmallMap::One(k, v) if k == key => Some(v),
            SmallMap::Many(map) => map.get_mut(key),
            _ => None,
        }
    }

    /// Takes `key` out; its value if it was in.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        match self {
            SmallMap::One(k, _) if k == key => match std::mem::take(self) {
                SmallMap::One(_, v) => Some(v),
                _ => unreachable!("matched One above"),
            },
            SmallMap::Many(map) => map.remove(key),
            _ => None,
        }
    }

    /// How many entries it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        match self {
            SmallMap::Empty => 0,
            SmallMap::One(..) => 1,
            SmallMap::Many(map) => map.len(),
        }
    }

    /// Whether it holds no entry.
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            SmallMap::Empty => true,
            SmallMap::One(..) => false,
            SmallMap::Many(map) => map.is_empty(),
        }
    }

    /// Calls `f` with every entry, consuming the map.
    pub(crate) fn for_each(self, mut f: impl FnMut(K, V)) {
        match self {
            SmallMap::Empty => {}
            SmallMap::One(k, v) => f(k, v),
            SmallMap::Many(map) => map.into_iter().for_each(|(k, v)| f(k, v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_is_inline_and_small() {
        assert_eq!(std::mem::size_of::<SmallMap<u64, u32>>(), 16);
        assert_eq!(std::mem::size_of::<SmallMap<u32, ()>>(), 16);
    }

    #[test]
    fn behaves_like_a_map_through_spill_and_removal() {
        let mut m = SmallMap::default();
        let mut model = std::collections::HashMap::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let key = rng % 5;
            match (rng >> 8) % 3 {
                0 => {
                    let added = m.insert_new(key, rng);
                    assert_eq!(added, !model.contains_key(&key));
                    model.entry(key).or_insert(rng);
                }
                1 => assert_eq!(m.remove(&key), model.remove(&key)),
                _ => {
                    if let Some(v) = m.get_mut(&key) {
                        *v += 1;
                        *model.get_mut(&key).expect("in the model too") += 1;
                    }
                    assert_eq!(m.contains_key(&key), model.contains_key(&key));
                }
            }
            assert_eq!(m.is_empty(), model.is_empty());
            assert_eq!(m.len(), model.len());
            assert_eq!(m.get(&key), model.get(&key));
        }
        let mut all = Vec::new();
        m.for_each(|k, v| all.push((k, v)));
        all.sort();
        let mut want: Vec<_> = model.into_iter().collect();
        want.sort();
        assert_eq!(all, want);
    }
}
