//! The CLOSE a backend can count on, at the control nodes (`closes.rs`
//! decides): records from the edges, copied by each id's owner to its
//! replicas; the CLOSEs of a lost edge's connections, queued for the
//! plane's sender once due, only by the id's owner holding its lease.

use std::collections::VecDeque;
use std::sync::Arc;

use slip_proto::ids::NodeId;
use slip_proto::link_pb::{
    CloseConnection, ConnectionCommand, ConnectionRecord, Frame, connection_command, frame::Kind,
};
use slip_proto::ring::Ring;
use tokio::time::Instant;

use super::{Outlet, Routing, holders};
use crate::closes::{Record, Recorded};

/// CLOSEs waiting for the sender, at most; past it the oldest are dropped
/// (and counted), so a backend down for long costs bounded memory.
pub const MAX_WAITING_CLOSES: usize = 100_000;
/// The close code of a connection whose edge was lost (the client saw its socket drop).
pub const EDGE_LOST_CODE: u16 = 1006;
/// The reason given with it.
pub const EDGE_LOST_REASON: &str = "edge lost";

impl Routing {
    /// A connection's record: from its edge, or a copy from its id's owner.
    pub fn connection_record(
        &mut self,
        from: &NodeId,
        mut frame: ConnectionRecord,
        now: Instant,
        out: &mut impl Outlet,
    ) {
        let from_control = self.is_control(from);
        if !from_control {
            frame.edge = from.to_string();
            frame.incarnation = self.hellos.get(from).map_or(0, |h| h.incarnation);
        }
        let id = frame.connection_id.clone();
        tracing::trace!(
            connection = id,
            edge = frame.edge,
            closed = frame.closed,
            copy = from_control,
            "connection record"
        );
        if frame.closed {
            self.closes.closed(&id);
        } else {
            let record = Record {
                connection_id: id.clone(),
                metadata: Arc::from(frame.metadata_json.as_str()),
                session: frame.session,
                target_url: Arc::from(frame.target_url.as_str()),
                edge: frame.edge.clone(),
                incarnation: frame.incarnation,
            };
            match self.closes.record(record) {
                Recorded::AlreadyClosed if !from_control => close_on_edge(from, &id, out),
                Recorded::Full => {
                    slip_metrics::metrics().closes.get_or_create(&slip_metrics::kind("not_kept")).inc();
                }
                // A copy handed to this node as the id's owner now.
                Recorded::Kept if from_control && self.ownership.owns(&id) => {
                    self.closes.unlinked_copy(&id, now, now + self.session_window);
                }
                _ => {}
            }
        }
        // What an edge says, the id's owner copies to its replicas.
        if !from_control && self.ownership.owns(&id) {
            let (ring, me) = (self.ownership.ring(), &self.node_id);
            let copy = Frame { kind: Some(Kind::ConnectionRecord(frame)) };
            for node in holders(ring, self.replicas, &id).filter(|n| *n != me) {
                out.send(node.as_str(), copy.clone());
            }
        }
    }

    /// The ring moved from `old`: each record held here goes to the nodes
    /// that hold it now and did not (its id's new owner and replicas), from
    /// every node that held it, so that records outlive their owner and
    /// replicas changing even when the edge no longer names them (its
    /// connection died with it, and only its CLOSE is left to send).
    pub(super) fn closes_view_changed(&mut self, old: &Ring, out: &mut impl Outlet) {
        let (ring, me) = (self.ownership.ring(), &self.node_id);
        let mut handed = 0;
        for record in self.closes.held() {
            let id = record.connection_id.as_str();
            let new_to_it = |n: &&NodeId| *n != me && !holders(old, self.replicas, id).any(|b| b == *n);
            for node in holders(ring, self.replicas, id).filter(new_to_it) {
                out.send(node.as_str(), Frame { kind: Some(Kind::ConnectionRecord(copy_of(record))) });
                handed += 1;
            }
        }
        if handed > 0 {
            tracing::debug!(handed, "connection records handed to their new holders");
        }
    }

    /// Edge `edge` linked again: the connections whose CLOSEs this node
    /// sent while it was away go too, so nothing follows their CLOSE.
    pub fn edge_back(&mut self, edge: &NodeId, out: &mut impl Outlet) {
        let incarnation = self.hellos.get(edge).map_or(0, |h| h.incarnation);
        for id in self.closes.closed_while_away(edge.as_str(), incarnation) {
            close_on_edge(edge, &id, out);
        }
    }

    /// CLOSEs due by `now` go to the sender's queue, while this node holds its lease.
    pub(super) fn closes_clock(&mut self, now: Instant) {
        if !self.ownership.leased(now) {
            return;
        }
        let ownership = &self.ownership;
        let due = self.closes.due(now, |id| ownership.owns(id));
        if !due.is_empty() {
            tracing::debug!(closes = due.len(), "CLOSEs due");
        }
        for record in due {
            if self.closes_waiting.len() >= MAX_WAITING_CLOSES {
                self.closes_waiting.pop_front();
                slip_metrics::metrics().closes.get_or_create(&slip_metrics::kind("dropped")).inc();
            }
            self.closes_waiting.push_back(record);
        }
    }

    /// CLOSEs due and not yet taken by the sender, at most `max`.
    pub fn take_closes(&mut self, max: usize) -> Vec<Record> {
        let n = max.min(self.closes_waiting.len());
        self.closes_waiting.drain(..n).collect()
    }

    /// Whether CLOSEs wait for the sender.
    pub fn closes_waiting(&self) -> bool {
        !self.closes_waiting.is_empty()
    }

    /// CLOSEs taken from the queue that must not go yet (another control
    /// node still links their edge): their records are kept again, and
    /// looked at once more after the grace.
    pub fn closes_deferred(&mut self, records: Vec<Record>, now: Instant) {
        for record in records {
            let edge = record.edge.clone();
            self.closes.record(record);
            let ownership = &self.ownership;
            self.closes.edge_gone(&edge, now, now + self.session_window, |id| ownership.owns(id));
        }
    }

    /// The control nodes of the view besides this one (asked whether they
    /// still link an edge before its connections' CLOSEs go out).
    pub fn other_controls(&self) -> Vec<NodeId> {
        self.ownership.ring().members().iter().filter(|n| **n != self.node_id).cloned().collect()
    }
}

/// A record as a copy to another control node.
fn copy_of(record: &Record) -> ConnectionRecord {
    ConnectionRecord {
        connection_id: record.connection_id.clone(),
        metadata_json: record.metadata.to_string(),
        session: record.session,
        target_url: record.target_url.to_string(),
        closed: false,
        edge: record.edge.clone(),
        incarnation: record.incarnation,
    }
}

/// Tells `edge` to close connection `id`: its CLOSE went out while the edge was cut off.
fn close_on_edge(edge: &NodeId, id: &str, out: &mut impl Outlet) {
    tracing::info!(connection = id, edge = %edge, "closing a connection whose CLOSE went out while its edge was away");
    let close = CloseConnection { code: u32::from(EDGE_LOST_CODE), reason: EDGE_LOST_REASON.into() };
    let command = ConnectionCommand {
        connection_id: id.to_owned(),
        op: Some(connection_command::Op::Close(close)),
        ..Default::default()
    };
    out.send(edge.as_str(), Frame { kind: Some(Kind::Command(command)) });
}

/// The closes table's queue, kept beside it in the routing.
pub(super) type Waiting = VecDeque<Record>;
