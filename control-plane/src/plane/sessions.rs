//! A session resumed on an edge that does not hold it: whether the token
//! takes it, and from where (`records.rs` decides; this asks and answers).

use super::ControlPlane;
use crate::records::{Reporter, Take};
use slip_proto::ids::ConnectionId;
use slip_proto::ids::NodeId;
use slip_proto::link_pb::query;
use slip_proto::link_pb::reply;
use slip_proto::link_pb::{SessionHandover, TakeSession};

impl ControlPlane {
    /// The incarnation of an edge linked to this node (0 for a link made
    /// without a `Hello`, inside `slip dev`); `None` when it has no link here.
    pub(super) fn incarnation(&self, edge: &str) -> Option<u64> {
        let id = NodeId::parse(edge).ok()?;
        if !self.peers.contains(&id) {
            return None;
        }
        Some(self.routing.lock().hello(&id).map_or(0, |h| h.incarnation))
    }

    /// Edge `taker` asks for session `take.connection_id` with a token of
    /// `take.generation`: handed over by the edge holding it if that edge
    /// lives and the token is the session's newest; rebuilt from its record
    /// if its edge is gone; else nothing (`found` false: a fresh session).
    pub(super) async fn take_session(&self, taker: &NodeId, take: TakeSession) -> SessionHandover {
        let Ok(connection) = ConnectionId::parse(&take.connection_id) else { return SessionHandover::default() };
        let by_id = self.homes.of(&connection);
        let incarnation = self.incarnation(taker.as_str()).unwrap_or_default();
        let me = Reporter { edge: taker.as_str(), incarnation };
        let live = |edge: &str| self.incarnation(edge);
        // Asked twice at most: a home that went away while asked is gone.
        for _ in 0..2 {
            let home = match self.records.take(&take.connection_id, take.generation, &by_id, me, live) {
                Take::Refuse => return SessionHandover::default(),
                Take::FromRecord(record) => {
                    self.homes.moved(connection.as_str(), taker.as_str());
                    return SessionHandover {
                        found: true,
                        home_lost: true,
                        metadata_json: record.metadata_json,
                        channels: record.channels,
                        presence: record.presence,
                        generation: take.generation,
                        ..Default::default()
                    };
                }
                Take::AskHome(home) => home,
            };
            match self.ask_query(&home, query::Kind::TakeSession(take.clone())).await {
                Ok(reply::Kind::SessionHandover(handover)) => {
                    if handover.found {
                        self.records.handed_over(&take.connection_id, take.generation, me);
                        self.homes.moved(connection.as_str(), taker.as_str());
                    }
                    return handover;
                }
                // No answer from a home still linked (paused, or slow): the
                // session may live on there, so nobody else may take it.
                _ if self.incarnation(&home).is_some() => return SessionHandover::default(),
                _ => continue,
            }
        }
        SessionHandover::default()
    }
}
