//! What an edge knows that changes with its streams, its view of the
//! control nodes and its parked sessions, as plain data behind the node's
//! one state lock: the newest view term heard of, per channel where the
//! edge stands and the gaps it fetches (`cursor.rs`), and the sessions
//! waiting to be resumed (`parking.rs`). Both are pure and keep
//! their deadlines as data; the node's clock sleeps until
//! [`EdgeState::next_deadline`] and then carries out what
//! [`EdgeState::on_clock`] says fell due.

use tokio::time::Instant;

use crate::cursor::{Cursors, Steps};
use crate::parking::Parking;
use crate::presence::LocalPresence;

/// Most expired sessions the clock ends per wakeup before looking again
/// (their CLOSE callbacks run as tasks of their own).
pub(crate) const EXPIRIES_PER_TURN: usize = 1024;

/// What fell due at a tick of the clock, for the node to carry out.
#[derive(Debug, Default)]
pub(crate) struct Due {
    /// Gap fetches past their time: asked again, or given up.
    pub steps: Steps,
    /// Parked sessions whose resume window passed, out of the parking now
    /// (at most [`EXPIRIES_PER_TURN`]: the clock comes back for the rest).
    pub expired: Vec<String>,
}

/// The edge's streams and parked sessions.
#[derive(Default)]
pub(crate) struct EdgeState {
    /// The newest view term heard of; its ring is the node's snapshot.
    pub view_term: u64,
    pub cursors: Cursors,
    pub parking: Parking,
    /// Local members of channels' presence, which their owners are told of.
    pub presence: LocalPresence,
}

impl EdgeState {
    /// Its entries by structure (`slip_entries`).
    pub fn sizes(&self, out: &mut slip_metrics::Sizes) {
        self.cursors.sizes(out);
        self.parking.sizes(out);
        self.presence.sizes(out);
    }

    /// The earliest deadline: a gap fetch's or a parked session's.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.cursors.next_deadline().into_iter().chain(self.parking.next_deadline()).min()
    }

    /// The clock's tick at `now`: what fell due, taken out of the state.
    pub fn on_clock(&mut self, now: Instant) -> Due {
        let steps = if self.cursors.next_deadline().is_some_and(|at| at <= now) {
            self.cursors.expire(now)
        } else {
            Steps::default()
        };
        let expired = self.parking.take_due(now, EXPIRIES_PER_TURN).into_iter().map(|(id, _)| id).collect();
        Due { steps, expired }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use slip_proto::link_pb::Deliver;
    use tokio::time::Instant;

    use super::{EXPIRIES_PER_TURN, EdgeState};
    use crate::admission::Admission;
    use crate::cursor::FETCH_TIMEOUT;
    use crate::parking::Parked;

    fn deliver(offset: u64) -> Deliver {
        Deliver { channel: "room".into(), epoch: "e".into(), offset, view: 1, ..Default::default() }
    }

    #[test]
    fn a_tick_takes_out_what_fell_due_and_nothing_else() {
        let (admission, t0) = (Admission::new(10), Instant::now());
        let mut state = EdgeState::default();
        let parked =
            |bytes| Parked { since: 0, positions: Default::default(), slot: admission.admit().unwrap().park(), bytes };
        state.parking.park("soon", parked(10), t0 + Duration::from_secs(5));
        state.parking.park("later", parked(10), t0 + Duration::from_secs(60));
        // A gap: 1 delivered, 3 held, 2 fetched.
        state.cursors.deliver(deliver(1), t0);
        let fetch = state.cursors.deliver(deliver(3), t0).fetch;
        assert_eq!(fetch.len(), 1);
        assert_eq!(state.next_deadline(), Some(t0 + FETCH_TIMEOUT));

        let due = state.on_clock(t0 + Duration::from_secs(1));
        assert!(due.expired.is_empty() && due.steps.fetch.is_empty(), "nothing due yet: {due:?}");

        let due = state.on_clock(t0 + FETCH_TIMEOUT);
        assert_eq!(due.steps.fetch.len(), 1, "the unanswered fetch is asked again");
        assert!(due.expired.is_empty());

        let due = state.on_clock(t0 + Duration::from_secs(5));
        assert_eq!(due.expired, ["soon"]);
        assert_eq!(state.parking.len(), 1, "the other waits for its own deadline");
        assert!(state.parking.since("soon").is_none());
    }

    #[test]
    fn a_tick_ends_a_bounded_number_of_sessions_and_leaves_the_rest_due() {
        let (admission, t0) = (Admission::new(EXPIRIES_PER_TURN + 10), Instant::now());
        let mut state = EdgeState::default();
        for i in 0..EXPIRIES_PER_TURN + 10 {
            let parked =
                Parked { since: 0, positions: Default::default(), slot: admission.admit().unwrap().park(), bytes: 1 };
            state.parking.park(&format!("s{i}"), parked, t0);
        }
        assert_eq!(state.on_clock(t0).expired.len(), EXPIRIES_PER_TURN);
        assert_eq!(state.next_deadline(), Some(t0), "the rest is due at once");
        assert_eq!(state.on_clock(t0).expired.len(), 10);
        assert_eq!(state.next_deadline(), None);
    }
}
