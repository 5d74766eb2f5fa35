//! GRIP `id`/`prev-id` ordering, at the channel's owner, as pure code (the
//! clock is passed in).
//!
//! A publish that names a `prev-id` other than the channel's last `id` came
//! early: it is held until its predecessor goes out, or for at most
//! [`HOLD_FOR`], after which it goes out anyway (a lost predecessor must not
//! stall a channel). A publish without `prev-id`, or on a channel whose last
//! id is unknown (its first, or after the owner moved), goes out at once.
//! Held items per channel and channels remembered are bounded.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

// A plain value passed in, never read here: tokio's, so a paused test clock
// drives it like everything else on the runtime.
use tokio::time::Instant;

/// Longest an early publish waits for its predecessor.
pub const HOLD_FOR: Duration = Duration::from_secs(5);
/// Early publishes held per channel at most; past it the oldest goes out.
pub const MAX_HELD_PER_CHANNEL: usize = 128;
/// Channels whose last id is remembered at most; past it the table starts over.
pub const MAX_CHANNELS: usize = 100_000;

/// What a publish carries for ordering.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sequence {
    pub id: String,
    pub prev_id: String,
}

#[derive(Debug)]
struct Held<T> {
    sequence: Sequence,
    until: Instant,
    item: T,
}

#[derive(Debug)]
struct Channel<T> {
    last_id: Option<String>,
    held: Vec<Held<T>>,
}

impl<T> Default for Channel<T> {
    fn default() -> Self {
        Self { last_id: None, held: Vec::new() }
    }
}

#[derive(Debug)]
pub struct Sequencer<T> {
    channels: HashMap<String, Channel<T>>,
    /// The channels holding something: the only ones a deadline can come from.
    holding: HashSet<String>,
}

impl<T> Default for Sequencer<T> {
    fn default() -> Self {
        Self { channels: HashMap::new(), holding: HashSet::new() }
    }
}

impl<T> Sequencer<T> {
    /// Its entries by structure (`slip_entries`).
    pub fn sizes(&self, out: &mut slip_metrics::Sizes) {
        out.push(("sequencer_channels", self.channels.len()));
    }

    /// Takes a publish; returns what may go out now, in order.
    pub fn offer(&mut self, channel: &str, sequence: Sequence, item: T, now: Instant) -> Vec<T> {
        if sequence.id.is_empty() && sequence.prev_id.is_empty() {
            return vec![item];
        }
        if !self.channels.contains_key(channel) && self.channels.len() >= MAX_CHANNELS {
            // Forget everyone's last id rather than grow: ordering resumes with the next ids.
            self.channels.retain(|_, c| !c.held.is_empty());
        }
        let state = self.channels.entry(channel.to_owned()).or_default();
        let in_order = sequence.prev_id.is_empty()
            || state.last_id.is_none() && state.held.is_empty()
            || state.last_id.as_deref() == Some(sequence.prev_id.as_str());
        let out = if !in_order {
            state.held.push(Held { sequence, until: now + HOLD_FOR, item });
            if state.held.len() > MAX_HELD_PER_CHANNEL {
                let oldest = state.held.remove(0);
                Self::release(state, oldest)
            } else {
                Vec::new()
            }
        } else {
            Self::release(state, Held { sequence, until: now, item })
        };
        let holds = !state.held.is_empty();
        self.mark(channel, holds);
        out
    }

    fn mark(&mut self, channel: &str, holds: bool) {
        if holds {
            if !self.holding.contains(channel) {
                self.holding.insert(channel.to_owned());
            }
        } else {
            self.holding.remove(channel);
        }
    }

    /// Lets out what waited too long, and whatever was waiting behind it.
    pub fn expire(&mut self, now: Instant) -> Vec<(String, T)> {
        let mut out = Vec::new();
        let holding: Vec<String> = self.holding.iter().cloned().collect();
        for channel in holding {
            let Some(state) = self.channels.get_mut(&channel) else { continue };
            while let Some(at) = state.held.iter().position(|h| h.until <= now) {
                let due = state.held.remove(at);
                out.extend(Self::release(state, due).into_iter().map(|item| (channel.clone(), item)));
            }
            let holds = !state.held.is_empty();
            self.mark(&channel, holds);
        }
        out
    }

    /// When the next held item falls due, if any. Items are held in arrival
    /// order with the same wait, so each channel's first is its earliest.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.holding.iter().filter_map(|c| self.channels.get(c)?.held.first().map(|h| h.until)).min()
    }

    /// Sends `first`, then every held item now in order behind it.
    fn release(state: &mut Channel<T>, first: Held<T>) -> Vec<T> {
        let mut out = Vec::new();
        let mut next = Some(first);
        while let Some(held) = next {
            if !held.sequence.id.is_empty() {
                state.last_id = Some(held.sequence.id.clone());
            }
            out.push(held.item);
            next = state
                .last_id
                .as_ref()
                .and_then(|last| state.held.iter().position(|h| &h.sequence.prev_id == last))
                .map(|at| state.held.remove(at));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(id: &str, prev: &str) -> Sequence {
        Sequence { id: id.into(), prev_id: prev.into() }
    }

    #[test]
    fn in_order_and_unsequenced_go_at_once() {
        let mut s = Sequencer::default();
        let now = Instant::now();
        assert_eq!(s.offer("c", Sequence::default(), 0, now), [0]);
        assert_eq!(s.offer("c", seq("1", ""), 1, now), [1]);
        assert_eq!(s.offer("c", seq("2", "1"), 2, now), [2]);
        // The first sequenced publish on a channel goes out whatever its prev-id.
        assert_eq!(s.offer("d", seq("9", "8"), 9, now), [9]);
    }

    #[test]
    fn an_early_publish_waits_for_its_predecessor() {
        let mut s = Sequencer::default();
        let now = Instant::now();
        assert_eq!(s.offer("c", seq("1", ""), 1, now), [1]);
        assert_eq!(s.offer("c", seq("3", "2"), 3, now), Vec::<i32>::new());
        assert_eq!(s.offer("c", seq("4", "3"), 4, now), Vec::<i32>::new());
        assert_eq!(s.offer("c", seq("2", "1"), 2, now), [2, 3, 4]);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn a_lost_predecessor_stalls_the_channel_for_hold_for_at_most() {
        let mut s = Sequencer::default();
        let now = Instant::now();
        s.offer("c", seq("1", ""), 1, now);
        assert!(s.offer("c", seq("3", "2"), 3, now).is_empty());
        assert!(s.offer("c", seq("4", "3"), 4, now).is_empty());
        assert_eq!(s.next_deadline(), Some(now + HOLD_FOR));
        assert!(s.expire(now + HOLD_FOR / 2).is_empty());
        assert_eq!(s.expire(now + HOLD_FOR), [("c".to_owned(), 3), ("c".to_owned(), 4)]);
        assert_eq!(s.offer("c", seq("5", "4"), 5, now + HOLD_FOR), [5]);
    }

    #[test]
    fn held_items_are_bounded() {
        let mut s = Sequencer::default();
        let now = Instant::now();
        s.offer("c", seq("0", ""), 0, now);
        let mut released = Vec::new();
        for i in 0..=MAX_HELD_PER_CHANNEL {
            released.extend(s.offer("c", seq(&format!("x{i}"), &format!("missing{i}")), i, now));
        }
        assert_eq!(released, [0], "the oldest goes out once the bound is passed");
    }

    #[test]
    fn the_next_deadline_is_the_earliest_held_item() {
        let t0 = Instant::now();
        let mut s = Sequencer::default();
        assert_eq!(s.next_deadline(), None);
        s.offer("a", seq("1", ""), 1, t0);
        s.offer("b", seq("1", ""), 1, t0);
        s.offer("a", seq("3", "2"), 3, t0);
        s.offer("b", seq("3", "2"), 3, t0 + Duration::from_secs(1));
        assert_eq!(s.next_deadline(), Some(t0 + HOLD_FOR));
        // a's gap is filled: only b still waits.
        assert_eq!(s.offer("a", seq("2", "1"), 2, t0), vec![2, 3]);
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(1) + HOLD_FOR));
        assert_eq!(s.expire(t0 + Duration::from_secs(10)), vec![("b".to_owned(), 3)]);
        assert_eq!(s.next_deadline(), None);
    }
}
