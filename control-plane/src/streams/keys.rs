//! One stream's idempotency keys: the offset each key got, the keys in the
//! order they were seen (for their window, their count and the node's byte
//! bound), and what they cost in bytes. Pure; the clock is passed in.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::MAX_KEYS_PER_STREAM;

/// What a key costs besides its bytes (twice: in the map and in the order),
/// about: its map entry, its place in the order and in the node's queue.
pub const KEY_OVERHEAD: usize = 96;

/// What remembering `key` costs, counted against the node's byte bound.
pub fn cost(key: &str) -> usize {
    2 * key.len() + KEY_OVERHEAD
}

#[derive(Debug, Default)]
pub struct Keys {
    offsets: HashMap<String, u64>,
    /// Oldest first.
    order: VecDeque<(Instant, String)>,
    bytes: usize,
}

impl Keys {
    pub fn get(&self, key: &str) -> Option<u64> {
        self.offsets.get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// What they cost, by [`cost`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// When the oldest was seen.
    pub fn oldest(&self) -> Option<Instant> {
        self.order.front().map(|(at, _)| *at)
    }

    /// Remembers `key` for `offset`, seen at `at`, in its place by age; past
    /// [`MAX_KEYS_PER_STREAM`] the oldest goes. False if it was known.
    pub fn insert(&mut self, key: String, offset: u64, at: Instant) -> bool {
        if self.offsets.contains_key(&key) {
            return false;
        }
        let place = self.order.partition_point(|(seen, _)| *seen <= at);
        self.bytes += cost(&key);
        self.order.insert(place, (at, key.clone()));
        self.offsets.insert(key, offset);
        if self.order.len() > MAX_KEYS_PER_STREAM {
            self.pop_oldest();
        }
        true
    }

    /// Forgets the oldest key; false if there is none.
    pub fn pop_oldest(&mut self) -> bool {
        let Some((_, key)) = self.order.pop_front() else { return false };
        self.offsets.remove(&key);
        self.bytes -= cost(&key);
        true
    }

    /// Forgets the keys seen `ttl` or longer before `now`.
    pub fn expire(&mut self, ttl: Duration, now: Instant) {
        while self.oldest().is_some_and(|at| at + ttl <= now) {
            self.pop_oldest();
        }
    }

    /// Forgets the keys of offsets from `offset` on.
    pub fn retain_below(&mut self, offset: u64) {
        let offsets = &mut self.offsets;
        let mut freed = 0;
        self.order.retain(|(_, key)| {
            let keep = offsets.get(key).is_some_and(|o| *o < offset);
            if !keep {
                offsets.remove(key);
                freed += cost(key);
            }
            keep
        });
        self.bytes -= freed;
    }

    /// The keys of offsets after `after`, in the order seen: when, which, where.
    pub fn after(&self, after: u64) -> impl Iterator<Item = (Instant, &String, u64)> {
        // The order seen is offset order, but for keys a copy brought in.
        let first = self.order.partition_point(|(_, key)| self.offsets.get(key).is_none_or(|&o| o <= after));
        self.order.range(first..).filter_map(move |(at, key)| {
            self.offsets.get(key).filter(|&&offset| offset > after).map(|&offset| (*at, key, offset))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_counted_in_bytes_kept_by_age_and_forgotten_by_offset() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut keys = Keys::default();
        assert!(keys.insert("b".into(), 2, t0 + s));
        assert!(keys.insert("a".into(), 1, t0), "an older one (a copy taken) goes in its place");
        assert!(!keys.insert("a".into(), 9, t0 + 2 * s), "known");
        assert_eq!((keys.get("a"), keys.oldest(), keys.bytes()), (Some(1), Some(t0), 2 * cost("a")));
        assert_eq!(keys.after(1).map(|(_, k, o)| (k.clone(), o)).collect::<Vec<_>>(), [("b".to_owned(), 2)]);
        keys.expire(s, t0 + s);
        assert_eq!((keys.get("a"), keys.len()), (None, 1));
        keys.retain_below(2);
        assert_eq!((keys.len(), keys.bytes()), (0, 0));
        assert!(!keys.pop_oldest());
    }
}
