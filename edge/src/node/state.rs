//! What an edge knows that changes with its streams, its view of the
//! control nodes and its parked sessions, as plain data behind the node's
//! one state lock: the newest view term heard of, per channel where the
//! edge stands and the gaps it fetches (`cursor.rs`), and the sessions
//! waiting to be resumed (`parking.rs`). Both are pure and keep
//! their deadlines as data; the node's clock sleeps until
//! [`EdgeState::next_deadline`].

use tokio::time::Instant;

use crate::cursor::Cursors;
use crate::parking::Parking;

/// The edge's streams and parked sessions.
#[derive(Default)]
pub(crate) struct EdgeState {
    /// The newest view term heard of; its ring is the node's snapshot.
    pub view_term: u64,
    pub cursors: Cursors,
    pub parking: Parking,
}

impl EdgeState {
    /// The earliest deadline: a gap fetch's or a parked session's.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.cursors.next_deadline().into_iter().chain(self.parking.next_deadline()).min()
    }
}
