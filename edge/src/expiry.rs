//! When parked sessions end: one queue of deadlines for every session parked
//! on the edge, read by the edge's clock, instead of a sleeping task per
//! session (a task, its timer entry and its future cost more than the
//! session's own state). Pure, and kept by the parking (`parking.rs`): the
//! edge's clock (`node/clock.rs`) sleeps until the earliest deadline and
//! ends what falls due.
//!
//! One entry per session: parking it again replaces its entry, and a
//! session that resumes loses its entry ([`Expiries::remove`]), so a client
//! resuming and dropping in a loop does not grow the queue. Whether a
//! session may still be ended is decided under its own lock, not here.

use std::collections::{HashMap, VecDeque};

use tokio::time::Instant;

/// A parked session's deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub at: Instant,
    pub id: String,
}

/// Deadlines, earliest first, one per session.
#[derive(Debug, Default)]
pub struct Expiries {
    due: VecDeque<Expiry>,
    /// Each session's deadline in `due`.
    at: HashMap<String, Instant>,
}

impl Expiries {
    /// Adds a session's deadline, replacing any it had. Returns true if it
    /// is now the earliest, so the timer, sleeping until a later one (or
    /// none), must wake to re-arm.
    pub fn push(&mut self, expiry: Expiry) -> bool {
        self.remove(&expiry.id);
        // With one resume window for the edge, deadlines come in order and
        // this is a push at the back; a shorter window after a longer one
        // (tests, a changed flag) still lands in its place.
        let at = self.due.partition_point(|e| e.at <= expiry.at);
        self.at.insert(expiry.id.clone(), expiry.at);
        self.due.insert(at, expiry);
        at == 0
    }

    /// Drops a session's deadline (it resumed, or ended otherwise).
    pub fn remove(&mut self, id: &str) {
        let Some(at) = self.at.remove(id) else { return };
        let from = self.due.partition_point(|e| e.at < at);
        if let Some(place) =
            (from..self.due.len()).take_while(|&i| self.due[i].at == at).find(|&i| self.due[i].id == id)
        {
            self.due.remove(place);
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.due.front().map(|e| e.at)
    }

    /// Takes the earliest deadline, due or not: the session parked longest ago.
    pub fn take_oldest(&mut self) -> Option<Expiry> {
        let oldest = self.due.pop_front()?;
        self.at.remove(&oldest.id);
        Some(oldest)
    }

    /// Takes every deadline at or before `now`, at most `max`, earliest first.
    pub fn take_due(&mut self, now: Instant, max: usize) -> Vec<Expiry> {
        let count = self.due.partition_point(|e| e.at <= now).min(max);
        let taken: Vec<Expiry> = self.due.drain(..count).collect();
        for expiry in &taken {
            self.at.remove(&expiry.id);
        }
        taken
    }

    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;

    fn expiry(at: Instant, id: &str) -> Expiry {
        Expiry { at, id: id.to_owned() }
    }

    #[test]
    fn deadlines_come_out_earliest_first_whatever_order_they_went_in() {
        let t = Instant::now();
        let mut expiries = Expiries::default();
        assert!(expiries.push(expiry(t + Duration::from_secs(5), "b")));
        assert!(!expiries.push(expiry(t + Duration::from_secs(9), "c")));
        assert!(expiries.push(expiry(t + Duration::from_secs(1), "a")), "an earlier deadline re-arms the timer");
        assert!(!expiries.push(expiry(t + Duration::from_secs(5), "b2")));
        assert_eq!(expiries.next(), Some(t + Duration::from_secs(1)));

        let ids = |taken: Vec<Expiry>| taken.into_iter().map(|e| e.id).collect::<Vec<_>>();
        assert!(expiries.take_due(t, 10).is_empty());
        assert_eq!(ids(expiries.take_due(t + Duration::from_secs(5), 10)), ["a", "b", "b2"]);
        assert_eq!(expiries.len(), 1);
        assert_eq!(ids(expiries.take_due(t + Duration::from_secs(60), 10)), ["c"]);
        assert!(expiries.is_empty());
        assert_eq!(expiries.next(), None);
    }

    #[test]
    fn a_session_has_one_deadline_however_often_it_parks() {
        let t = Instant::now();
        let mut expiries = Expiries::default();
        expiries.push(expiry(t + Duration::from_secs(3), "other"));
        for i in 0..1000 {
            expiries.push(Expiry { at: t + Duration::from_secs(3 + i), id: "s".into() });
        }
        assert_eq!(expiries.len(), 2, "parked again: the entry replaced");
        expiries.remove("s");
        expiries.remove("s");
        assert_eq!(expiries.len(), 1, "resumed: the entry gone");
        let taken = expiries.take_due(t + Duration::from_secs(5), 10);
        assert_eq!((taken.len(), taken[0].id.as_str()), (1, "other"));
        assert!(expiries.at.is_empty());
    }

    #[test]
    fn at_most_max_are_taken_at_once() {
        let t = Instant::now();
        let mut expiries = Expiries::default();
        for i in 0..5 {
            expiries.push(expiry(t, &i.to_string()));
        }
        assert_eq!(expiries.take_due(t, 2).len(), 2);
        assert_eq!(expiries.take_due(t, 10).len(), 3);
    }
}
