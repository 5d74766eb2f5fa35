//! Publishes a channel's owner holds rather than stamps: while it catches
//! up on the channel's stream, or while its lease is being renewed. Bounded
//! in count and in time: one held past [`HOLD_LIMIT`] is refused, so its
//! publisher hears UNAVAILABLE before its own deadline and retries with its
//! key. Pure; the clock is passed in.

use std::collections::VecDeque;
use std::time::Duration;

use slip_proto::link_pb::Publish;
use tokio::time::Instant;

/// Publishes held at most; past it new ones are refused.
pub const MAX_HELD: usize = 65_536;
/// Longest a publish is held before it is refused: under the 5 s a
/// control node waits for an owner's confirmation.
pub const HOLD_LIMIT: Duration = Duration::from_secs(4);

#[derive(Default)]
pub struct Held {
    queue: VecDeque<(Publish, Instant)>,
}

impl Held {
    /// Holds `publish`; gives it back if too many are held.
    #[must_use]
    pub fn push(&mut self, publish: Publish, now: Instant) -> Option<Publish> {
        if self.queue.len() >= MAX_HELD {
            return Some(publish);
        }
        self.queue.push_back((publish, now));
        None
    }

    /// Everything held, in the order it came, with when it came.
    pub fn take(&mut self) -> Vec<(Publish, Instant)> {
        self.queue.drain(..).collect()
    }

    /// Those held past [`HOLD_LIMIT`] at `now`.
    pub fn expired(&mut self, now: Instant) -> Vec<Publish> {
        let mut out = Vec::new();
        while let Some((_, at)) = self.queue.front()
            && *at + HOLD_LIMIT <= now
        {
            out.extend(self.queue.pop_front().map(|(p, _)| p));
        }
        out
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.front().map(|(_, at)| *at + HOLD_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(channel: &str) -> Publish {
        Publish { channel: channel.into(), ..Default::default() }
    }

    #[test]
    fn held_in_order_bounded_in_count_and_time() {
        let t0 = Instant::now();
        let mut held = Held::default();
        assert_eq!(held.push(publish("a"), t0), None);
        assert_eq!(held.push(publish("b"), t0 + HOLD_LIMIT / 2), None);
        assert_eq!(held.next_deadline(), Some(t0 + HOLD_LIMIT));
        assert_eq!(held.expired(t0 + HOLD_LIMIT), [publish("a")]);
        assert_eq!(held.take().into_iter().map(|(p, _)| p).collect::<Vec<_>>(), [publish("b")]);
        for _ in 0..MAX_HELD {
            assert_eq!(held.push(publish("c"), t0), None);
        }
        assert_eq!(held.push(publish("d"), t0), Some(publish("d")));
    }
}
