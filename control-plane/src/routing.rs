//! What a control node knows, as plain data and pure code: which peers are
//! control nodes, the ring built from them, the interest table, the GRIP
//! publishes held for their predecessors, and when the ring settles. The
//! plane keeps it behind its one lock; frames leave through an [`Outlet`]
//! and the clock is passed in, so every rule here is tested without links.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use slip_proto::ids::NodeId;
use slip_proto::link_pb::{
    Deliver, Frame, Hello, Interest, Publish, Published as PublishedFrame, Reply, Role, frame::Kind, reply,
};
use slip_proto::ring::Ring;
// A plain value passed in: tokio's, so a paused test clock drives it.
use tokio::time::Instant;

use crate::interest::InterestTable;
use crate::sequencer::{Sequence, Sequencer};
use crate::streams::{self, Appended, History, StreamLimits, Streams};

/// How long the ring must hold still before interest in channels owned
/// elsewhere is forgotten.
pub const RING_SETTLE: Duration = Duration::from_secs(10);

/// Where the routing's frames go: the plane's links, or a list in tests.
pub trait Outlet {
    /// Queues `frame` for node `to`; false if it could not be (no link, queue full).
    fn send(&mut self, to: &str, frame: Frame) -> bool;
}

/// Where a publish went in its channel's stream, and to how many edges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Published {
    /// The offset the owner gave it (0 for closing orders, which are not publications).
    pub offset: u64,
    pub epoch: String,
    /// Edges it was sent to (0 for a repeated idempotency key).
    pub edges: u32,
}

/// A channel as its owner knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelView {
    pub edges: Vec<NodeId>,
    pub epoch: String,
    pub top_offset: u64,
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
    /// Offsets, history and idempotency keys of the channels this node owns.
    streams: Streams,
}

impl Routing {
    pub fn new(node_id: NodeId, limits: StreamLimits, now: Instant) -> Self {
        Self {
            streams: Streams::new(limits, streams::random_epoch, now),
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
    pub fn fan_out(&mut self, mut publish: Publish, now: Instant, out: &mut impl Outlet) -> Published {
        if publish.id.is_empty() && publish.prev_id.is_empty() {
            return self.stamp_and_send(publish, now, out);
        }
        // A GRIP publish is confirmed as soon as it is taken, held or not, as
        // Pushpin answers: a publisher must not wait for the predecessor it
        // may be about to send.
        let ack = std::mem::take(&mut publish.ack);
        let reply_to = std::mem::take(&mut publish.reply_to);
        let sequence = Sequence { id: publish.id.clone(), prev_id: publish.prev_id.clone() };
        let channel = publish.channel.clone();
        let ready = self.sequencer.offer(&channel, sequence, publish, now);
        // What this publish let out; held, it reports nothing sent yet.
        let published = ready.into_iter().map(|p| self.stamp_and_send(p, now, out)).last().unwrap_or_default();
        confirm_publish(ack, &reply_to, &published, out);
        published
    }

    /// Gives a message its place in the stream (or finds it there, by its
    /// idempotency key) and sends it to each interested edge; confirms it to
    /// whoever asked. A closing order takes no place in the stream.
    fn stamp_and_send(&mut self, publish: Publish, now: Instant, out: &mut impl Outlet) -> Published {
        let (ack, reply_to) = (publish.ack, publish.reply_to);
        let event = publish.event.unwrap_or_default();
        let (epoch, offset, new) = if streams::is_message(&event) {
            match self.streams.append(&publish.channel, &event, &publish.idempotency_key, now) {
                Appended::New { epoch, offset } => (epoch, offset, true),
                Appended::Duplicate { epoch, offset } => (epoch, offset, false),
            }
        } else {
            (Arc::from(""), 0, true)
        };
        let edges = if new { self.interest.edges(&publish.channel).to_vec() } else { Vec::new() };
        if new {
            slip_metrics::metrics().publishes.inc();
        }
        let mut sent = 0;
        let mut confirmed = ack == 0;
        let deliver =
            Deliver { channel: publish.channel, offset, event: Some(event), ack: 0, epoch: epoch.to_string() };
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
        slip_metrics::metrics().history_bytes.set(self.streams.bytes() as i64);
        let published = Published { offset, epoch: epoch.to_string(), edges: sent };
        if !confirmed {
            confirm_publish(ack, &reply_to, &published, out);
        }
        published
    }

    /// The earliest thing [`Routing::on_clock`] must do: a held publish
    /// falling due, or the ring settling.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.sequencer.next_deadline().into_iter().chain(self.settle_at).chain(self.streams.next_deadline()).min()
    }

    /// What is due at `now`: held publishes that waited long enough go out;
    /// once the ring has held still, interest in channels owned elsewhere goes.
    pub fn on_clock(&mut self, now: Instant, out: &mut impl Outlet) {
        for (_, publish) in self.sequencer.expire(now) {
            self.stamp_and_send(publish, now, out);
        }
        self.streams.expire(now);
        slip_metrics::metrics().history_bytes.set(self.streams.bytes() as i64);
        if self.settle_at.take_if(|at| *at <= now).is_some() {
            let (ring, me) = (&self.ring, &self.node_id);
            let dropped = self.interest.retain(|channel| ring.owner(channel) == Some(me));
            if dropped > 0 {
                tracing::info!(channels = dropped, "interest in channels owned elsewhere dropped");
            }
        }
    }

    /// The edges interested in `channel`, and its stream's epoch and top offset.
    pub fn channel(&self, channel: &str) -> ChannelView {
        let (epoch, top_offset) = self.streams.head(channel).unwrap_or_else(|| (Arc::from(""), 0));
        ChannelView { edges: self.interest.edges(channel).to_vec(), epoch: epoch.to_string(), top_offset }
    }

    /// What history holds of `channel` after a point (see [`Streams::history`]).
    pub fn history(&self, channel: &str, since_epoch: &str, since_offset: u64, limit: usize, now: Instant) -> History {
        self.streams.history(channel, since_epoch, since_offset, limit, now)
    }
}

/// Confirms publish `ack` to the node that asked: a control node taking a
/// publish for another's channel, or an edge with no subscriber of it.
fn confirm_publish(ack: u64, to: &str, published: &Published, out: &mut impl Outlet) {
    if ack != 0 {
        let answer =
            PublishedFrame { offset: published.offset, epoch: published.epoch.clone(), edges: published.edges };
        let reply = Reply { id: ack, kind: Some(reply::Kind::Published(answer)) };
        out.send(to, Frame { kind: Some(Kind::Reply(reply)) });
    }
}

#[cfg(test)]
mod tests;
