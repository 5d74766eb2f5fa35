//! Where `slip.v1` sessions live when not on the edge their connection id
//! names: a session resumed on another edge keeps its id, so its commands
//! must be sent where it went. Edges say so (`SessionMoved`) to every
//! control node; everything else is found by its id, as ever.

use std::collections::HashMap;

use parking_lot::Mutex;
use slip_proto::ids::ConnectionId;

/// Moved sessions a control node remembers, at most; past it, a move is not
/// recorded and commands go by the connection id (to the old edge).
pub const MAX_MOVED_SESSIONS: usize = 1_000_000;

#[derive(Default)]
pub struct Homes {
    moved: Mutex<HashMap<String, String>>,
}

impl Homes {
    /// Moved sessions remembered (`slip_entries`).
    pub fn remembered(&self) -> usize {
        self.moved.lock().len()
    }

    /// The edge holding connection `id`.
    pub fn of(&self, id: &ConnectionId) -> String {
        let key = id.to_string();
        self.moved.lock().get(&key).cloned().unwrap_or_else(|| id.edge().to_owned())
    }

    /// Session `id` now lives on `edge` ("" once it ended).
    pub fn moved(&self, id: &str, edge: &str) {
        let mut moved = self.moved.lock();
        if edge.is_empty() {
            moved.remove(id);
        } else if moved.len() < MAX_MOVED_SESSIONS || moved.contains_key(id) {
            moved.insert(id.to_owned(), edge.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_moved_session_is_found_where_it_went_until_it_ends() {
        let homes = Homes::default();
        let id = ConnectionId::parse("edge-a.0123456789abcdef0123").unwrap();
        assert_eq!(homes.of(&id), "edge-a");
        homes.moved(&id.to_string(), "edge-b");
        assert_eq!(homes.of(&id), "edge-b");
        homes.moved(&id.to_string(), "");
        assert_eq!(homes.of(&id), "edge-a");
    }
}
