//! What a control node knows, as plain data and pure code: which peers are
//! control nodes, the ring built from them, the interest table, the GRIP
//! publishes held for their predecessors, and when the ring settles. The
//! plane keeps it behind its one lock; frames leave through an [`Outlet`]
//! and the clock is passed in, so every rule here is tested without links.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use slip_proto::ids::NodeId;
use slip_proto::link_pb::{Deliver, Frame, Hello, Interest, Publish, Reply, Role, frame::Kind, reply};
use slip_proto::ring::Ring;
// A plain value passed in: tokio's, so a paused test clock drives it.
use tokio::time::Instant;

use crate::interest::InterestTable;
use crate::sequencer::{Sequence, Sequencer};

/// How long the ring must hold still before interest in channels owned
/// elsewhere is forgotten.
pub const RING_SETTLE: Duration = Duration::from_secs(10);

/// Where the routing's frames go: the plane's links, or a list in tests.
pub trait Outlet {
    /// Queues `frame` for node `to`; false if it could not be (no link, queue full).
    fn send(&mut self, to: &str, frame: Frame) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    /// The channel offset the owner gave this publish (0 if forwarded or nobody listens).
    pub offset: u64,
    pub edges: u32,
}

pub struct Routing {
    node_id: NodeId,
    /// This node's region, for `slip admin nodes`.
    region: String,
    /// Every control node that ever linked here. The ring is those of them
    /// with a live link, and this node.
    controls: HashSet<NodeId>,
    /// What each peer said of itself when it linked.
    hellos: HashMap<NodeId, Hello>,
    ring: Ring,
    /// When interest in channels owned elsewhere is next pruned: RING_SETTLE
    /// after the latest ring change, so a ring still moving prunes nothing.
    settle_at: Option<Instant>,
    interest: InterestTable,
    /// GRIP `id`/`prev-id` ordering of the channels this node owns.
    sequencer: Sequencer<Publish>,
}

impl Routing {
    pub fn new(node_id: NodeId) -> Self {
        Self {
            ring: Ring::new([node_id.clone()]),
            node_id,
            region: String::new(),
            controls: HashSet::new(),
            hellos: HashMap::new(),
            settle_at: None,
            interest: InterestTable::default(),
            sequencer: Sequencer::default(),
        }
    }

    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn set_region(&mut self, region: &str) {
        region.clone_into(&mut self.region);
    }

    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The channel's owner, when it is another node.
    pub fn owner_elsewhere(&self, channel: &str) -> Option<&NodeId> {
        self.ring.owner(channel).filter(|owner| **owner != self.node_id)
    }

    pub fn is_control(&self, node: &NodeId) -> bool {
        self.controls.contains(node)
    }

    pub fn hello(&self, node: &NodeId) -> Option<&Hello> {
        self.hellos.get(node)
    }

    /// A peer linked and said who it is; true if it is a control node.
    pub fn linked(&mut self, peer: &NodeId, hello: &Hello) -> bool {
        self.hellos.insert(peer.clone(), hello.clone());
        let is_control = hello.role == Role::Control as i32;
        if is_control {
            self.controls.insert(peer.clone());
        }
        is_control
    }

    /// Rebuilds the ring from the control nodes among `linked` (the peers
    /// with a live link) and this node. Interest in channels this node no
    /// longer owns is forgotten once the ring has held still for
    /// [`RING_SETTLE`]: while nodes are still finding each other, a passing
    /// view must not throw away interest the final one needs.
    pub fn rebuild_ring(&mut self, linked: &[NodeId], now: Instant) {
        let members = linked.iter().filter(|p| self.is_control(p)).cloned().chain([self.node_id.clone()]);
        self.ring = Ring::new(members);
        tracing::info!(members = self.ring.members().len(), "control ring changed");
        self.settle_at = Some(now + RING_SETTLE);
    }

    /// An edge's last link is gone: its interest goes with it.
    pub fn edge_gone(&mut self, edge: &NodeId) {
        let dropped = self.interest.drop_edge(edge);
        tracing::info!(edge = %edge, channels = dropped, "edge gone; its interest dropped");
    }

    /// An edge's first local subscriber joined a channel, or its last left.
    /// With an `ack`, the edge confirms a SUBSCRIBE through us to node
    /// `reply_to`: the confirmation leaves behind the interest it depends on.
    pub fn interest(&mut self, from: &NodeId, interest: Interest, out: &mut impl Outlet) {
        if interest.present {
            self.interest.add(from, &interest.channel);
        } else {
            self.interest.remove(from, &interest.channel);
        }
        if interest.ack != 0 {
            let reply = Reply { id: interest.ack, kind: Some(reply::Kind::Found(true)) };
            out.send(&interest.reply_to, Frame { kind: Some(Kind::Reply(reply)) });
        }
    }

    /// As the owner: stamps the publish and sends it once per interested edge,
    /// or holds it for its GRIP predecessor. A publish forwarded here by
    /// another control node comes here too, even if this node's view of the
    /// ring differs: one hop, never a loop.
    pub fn fan_out(&mut self, publish: Publish, now: Instant, out: &mut impl Outlet) -> Published {
        if publish.id.is_empty() && publish.prev_id.is_empty() {
            return self.stamp_and_send(publish, out);
        }
        let sequence = Sequence { id: publish.id.clone(), prev_id: publish.prev_id.clone() };
        let channel = publish.channel.clone();
        let ready = self.sequencer.offer(&channel, sequence, publish, now);
        // What this publish let out; held, it reports nothing sent yet.
        ready.into_iter().map(|p| self.stamp_and_send(p, out)).last().unwrap_or_default()
    }

    fn stamp_and_send(&mut self, publish: Publish, out: &mut impl Outlet) -> Published {
        let (ack, reply_to) = (publish.ack, publish.reply_to);
        let Some((offset, edges)) = self.interest.stamp(&publish.channel) else {
            confirm_publish(ack, &reply_to, out);
            return Published::default();
        };
        slip_metrics::metrics().publishes.inc();
        let mut sent = 0;
        let mut confirmed = ack == 0;
        let deliver = Deliver { channel: publish.channel, offset, event: publish.event, ack: 0 };
        for edge in &edges {
            let mut deliver = deliver.clone();
            // The edge that asked hears it on the Deliver itself, behind the message.
            if !confirmed && edge.as_str() == reply_to {
                (deliver.ack, confirmed) = (ack, true);
            }
            if out.send(edge.as_str(), Frame { kind: Some(Kind::Deliver(deliver)) }) {
                sent += 1;
            } else {
                tracing::warn!(edge = %edge, "delivery to edge dropped");
            }
        }
        if !confirmed {
            confirm_publish(ack, &reply_to, out);
        }
        Published { offset, edges: sent }
    }

    /// The earliest thing [`Routing::on_clock`] must do: a held publish
    /// falling due, or the ring settling.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.sequencer.next_deadline().into_iter().chain(self.settle_at).min()
    }

    /// What is due at `now`: held publishes that waited long enough go out;
    /// once the ring has held still, interest in channels owned elsewhere goes.
    pub fn on_clock(&mut self, now: Instant, out: &mut impl Outlet) {
        for (_, publish) in self.sequencer.expire(now) {
            self.stamp_and_send(publish, out);
        }
        if self.settle_at.take_if(|at| *at <= now).is_some() {
            let (ring, me) = (&self.ring, &self.node_id);
            let dropped = self.interest.retain(|channel| ring.owner(channel) == Some(me));
            if dropped > 0 {
                tracing::info!(channels = dropped, "interest in channels owned elsewhere dropped");
            }
        }
    }

    /// The edges interested in `channel`, and its last offset.
    pub fn channel(&self, channel: &str) -> (Vec<NodeId>, u64) {
        (self.interest.edges(channel).to_vec(), self.interest.last_offset(channel))
    }
}

/// Confirms publish `ack` to an edge with no subscriber of its channel.
fn confirm_publish(ack: u64, edge: &str, out: &mut impl Outlet) {
    if ack != 0 {
        let reply = Reply { id: ack, kind: Some(reply::Kind::Found(true)) };
        out.send(edge, Frame { kind: Some(Kind::Reply(reply)) });
    }
}

#[cfg(test)]
mod tests;
