//! When parked sessions end: one queue of deadlines for every session parked
//! on the edge, read by one timer task, instead of a sleeping task per
//! session (a task, its timer entry and its future cost more than the
//! session's own state). Pure: the shell in `node/resume.rs` sleeps until
//! [`Expiries::next`] and ends what [`Expiries::take_due`] returns.
//!
//! An entry is not removed when its session resumes: the session's
//! generation tells, at the deadline, whether the entry still stands. What
//! lingers is bounded by the sessions parked within one resume window.

use std::collections::VecDeque;

use tokio::time::Instant;

/// A parked session's deadline: the session, and its generation when parked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub at: Instant,
    pub id: String,
    pub generation: u64,
}

/// Deadlines, earliest first.
#[derive(Debug, Default)]
pub struct Expiries {
    due: VecDeque<Expiry>,
}

impl Expiries {
    /// Adds a deadline. Returns true if it is now the earliest, so the
    /// timer, sleeping until a later one (or none), must wake to re-arm.
    pub fn push(&mut self, expiry: Expiry) -> bool {
        // With one resume window for the edge, deadlines come in order and
        // this is a push at the back; a shorter window after a longer one
        // (tests, a changed flag) still lands in its place.
        let at = self.due.partition_point(|e| e.at <= expiry.at);
        self.due.insert(at, expiry);
        at == 0
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.due.front().map(|e| e.at)
    }

    /// Takes every deadline at or before `now`, at most `max`, earliest first.
    pub fn take_due(&mut self, now: Instant, max: usize) -> Vec<Expiry> {
        let count = self.due.partition_point(|e| e.at <= now).min(max);
        self.due.drain(..count).collect()
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
        Expiry { at, id: id.to_owned(), generation: 1 }
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
