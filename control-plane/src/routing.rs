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
    Deliver, Frame, Head, Hello, Interest, Publish, Published as PublishedFrame, Replicate, Replicated, Reply, Role,
    frame::Kind, reply,
};
use slip_proto::ring::Ring;
// A plain value passed in: tokio's, so a paused test clock drives it.
use tokio::time::Instant;

use crate::catchup::{CatchUp, HEADS_PER_PAGE};
use crate::interest::InterestTable;
use crate::replication::{MAX_WAITING_PER_CHANNEL, Replication, Waiting};
use crate::sequencer::{Sequence, Sequencer};
use crate::streams::{self, Appended, CopyPage, History, Imported, StreamHead, StreamLimits, Streams};

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

// The same answer as the link carries it to whoever asked.
impl From<PublishedFrame> for Published {
    fn from(p: PublishedFrame) -> Self {
        Self { offset: p.offset, epoch: p.epoch, edges: p.edges }
    }
}

impl From<&Published> for PublishedFrame {
    fn from(p: &Published) -> Self {
        Self { offset: p.offset, epoch: p.epoch.clone(), edges: p.edges }
    }
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
    /// Offsets, history and idempotency keys of the channels this node owns
    /// (and copies of those it is a replica of).
    streams: Streams,
    /// Publications stamped here, waiting for their replicas' copies.
    replication: Replication,
    /// Copies of each stream beyond this node's.
    replicas: usize,
    /// Learning, after a ring change, the streams this node now holds.
    catch_up: CatchUp,
}

impl Routing {
    /// A node's routing; a node that `joining` others holds publishes until
    /// it has caught up with them (see [`CatchUp`]).
    pub fn new(node_id: NodeId, limits: StreamLimits, joining: bool, now: Instant) -> Self {
        let ring = Ring::new([node_id.clone()]);
        Self {
            catch_up: CatchUp::new(joining, &ring, now),
            replicas: limits.replicas,
            replication: Replication::default(),
            streams: Streams::new(limits, streams::random_epoch, now),
            ring,
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
    /// view must not throw away interest the final one needs. A catch-up
    /// starts: returns its generation, for [`Routing::finish_catch_up`].
    pub fn rebuild_ring(&mut self, linked: &[NodeId], now: Instant, out: &mut impl Outlet) -> u64 {
        let members = linked.iter().filter(|p| self.is_control(p)).cloned().chain([self.node_id.clone()]);
        self.ring = Ring::new(members);
        tracing::info!(members = self.ring.members().len(), "control ring changed");
        self.settle_at = Some(now + RING_SETTLE);
        // Offsets given under this view of the ring are of a term of their own.
        self.streams.set_term(&streams::random_epoch());
        // What waits for copies goes to the replicas the new ring names; a
        // replica that left no longer holds anything up.
        for channel in self.replication.channels() {
            self.replicate(&channel, now, out);
            self.release(&channel, out);
        }
        self.catch_up.begin(now)
    }

    /// As asked by a node catching up: the streams held here that `asker`
    /// holds too in the ring of `members`, by name after `after`. Nothing
    /// (`same_view` false) while this node's ring is another: it may still
    /// give offsets in channels the asker is about to own.
    pub fn heads_for(&self, asker: &NodeId, members: &[String], after: &str) -> (bool, Vec<StreamHead>, bool) {
        let mut ours: Vec<&str> = self.ring.members().iter().map(NodeId::as_str).collect();
        let mut theirs: Vec<&str> = members.iter().map(String::as_str).collect();
        ours.sort_unstable();
        theirs.sort_unstable();
        if ours != theirs {
            return (false, Vec::new(), false);
        }
        let (heads, more) = self
            .streams
            .heads(after, HEADS_PER_PAGE, |channel| holders(&self.ring, self.replicas, channel).any(|n| n == asker));
        (true, heads, more)
    }

    /// As asked by a node catching up: a page of `channel`'s copy.
    pub fn copy_for(&self, channel: &str, after: u64, budget: usize, now: Instant) -> Option<CopyPage> {
        self.streams.export(channel, after, budget, now)
    }

    /// Catching up: whether the copy `from` holds of a stream is worth
    /// taking, and after which offset to ask. Ours is kept when it is as far
    /// along, holds as much history and ends in the same term; a copy of
    /// another epoch replaces ours only when ours is nothing or `from` owns
    /// the channel. One of the same epoch ending in another term is asked
    /// for (if only for its terms) to learn whether the two diverged.
    pub fn wants_copy(&self, from: &NodeId, head: &StreamHead) -> Option<u64> {
        let Some((epoch, top)) = self.streams.head(&head.channel) else { return Some(0) };
        if epoch != head.epoch {
            return (self.ring.owner(&head.channel) == Some(from)).then_some(0);
        }
        let first = self.streams.first(&head.channel);
        if head.first != 0 && (first == 0 || head.first < first) {
            // It holds history we lack: all of it (what we have is kept).
            return Some(0);
        }
        let same_term = *head.term == *self.streams.term_at(&head.channel, top);
        (head.top > top || !same_term).then_some(top)
    }

    /// Catching up: takes in a page of another node's copy of `channel`.
    /// Once the last page is in, edges interested here hear where the
    /// stream is (they may have missed what the copy brought).
    ///
    /// Two copies of one epoch that two owners extended (each side of a
    /// partition) must never both be presented: the channel's owner moves
    /// the stream to a new epoch; another node drops its copy and asks for
    /// the other's from the start (the offset returned).
    pub fn import_copy(&mut self, channel: &str, page: CopyPage, now: Instant, out: &mut impl Outlet) -> Option<u64> {
        let last = !page.more;
        if self.streams.import(channel, page, now) == Imported::Diverged {
            if self.ring.owner(channel) == Some(&self.node_id) {
                tracing::warn!(channel, "two owners extended this stream; it moves to a new epoch");
                slip_metrics::metrics().stream_divergences.inc();
                self.streams.restart(channel, now);
                return None;
            }
            self.streams.forget(channel);
            return Some(0);
        }
        slip_metrics::metrics().history_bytes.set(self.streams.bytes() as i64);
        if last && let Some((epoch, top)) = self.streams.head(channel) {
            for edge in self.interest.edges(channel) {
                let head = Head { channel: channel.to_owned(), epoch: epoch.to_string(), top, ..Default::default() };
                out.send(edge.as_str(), Frame { kind: Some(Kind::Head(head)) });
            }
        }
        None
    }

    /// Whether this node is still catching up on `channel`, which it owns
    /// now and did not before: what it would say of it may not be so yet.
    pub fn acquiring(&self, channel: &str) -> bool {
        self.catch_up.must_hold(channel, &self.node_id) && self.ring.owner(channel) == Some(&self.node_id)
    }

    /// Catch-up `generation` is over: the publishes it held go on.
    pub fn finish_catch_up(&mut self, generation: u64, now: Instant, out: &mut impl Outlet) {
        let Some(held) = self.catch_up.finish(generation, &self.ring) else { return };
        tracing::info!(held = held.len(), "caught up after the ring changed");
        for publish in held {
            self.fan_out(publish, now, out);
        }
    }

    /// The control nodes that keep copies of `channel`'s stream.
    fn replica_set(&self, channel: &str) -> Vec<NodeId> {
        let me = &self.node_id;
        self.ring.successors(channel, self.replicas).into_iter().filter(|n| *n != me).cloned().collect()
    }

    /// Sends each replica of `channel` what waits that it has not stored.
    fn replicate(&mut self, channel: &str, now: Instant, out: &mut impl Outlet) {
        for replica in self.replica_set(channel) {
            for waiting in self.replication.unstored(channel, &replica, now) {
                let d = waiting.deliver;
                let copy = Replicate {
                    term: self.streams.term_at(&d.channel, d.offset),
                    channel: d.channel,
                    epoch: d.epoch,
                    offset: d.offset,
                    event: d.event,
                    idempotency_key: waiting.key,
                };
                out.send(replica.as_str(), Frame { kind: Some(Kind::Replicate(copy)) });
            }
        }
    }

    /// As a replica: stores what a channel's owner sent, and says so.
    pub fn store_replica(&mut self, from: &NodeId, copy: Replicate, now: Instant, out: &mut impl Outlet) {
        let event = copy.event.unwrap_or_default();
        self.streams.store(&copy.channel, &copy.epoch, copy.offset, &event, &copy.idempotency_key, &copy.term, now);
        slip_metrics::metrics().history_bytes.set(self.streams.bytes() as i64);
        let stored = Replicated { channel: copy.channel, epoch: copy.epoch, offset: copy.offset };
        out.send(from.as_str(), Frame { kind: Some(Kind::Replicated(stored)) });
    }

    /// As the owner: a replica stored a publication; what it completes goes out.
    pub fn replicated(&mut self, from: &NodeId, stored: Replicated, out: &mut impl Outlet) {
        let same_epoch = self.streams.head(&stored.channel).is_some_and(|(epoch, _)| *epoch == *stored.epoch);
        if same_epoch {
            self.replication.stored(&stored.channel, stored.offset, from);
            self.release(&stored.channel, out);
        }
    }

    /// Delivers and confirms, in order, what every replica of `channel` has stored.
    fn release(&mut self, channel: &str, out: &mut impl Outlet) -> u32 {
        let replicas = self.replica_set(channel);
        let mut sent = 0;
        for waiting in self.replication.release(channel, &replicas) {
            sent = self.deliver(waiting, out);
        }
        sent
    }

    /// Sends a publication once to each interested edge and confirms it to
    /// whoever waits; returns how many edges it went to.
    fn deliver(&mut self, waiting: Waiting, out: &mut impl Outlet) -> u32 {
        let Waiting { deliver, confirm, .. } = waiting;
        let edges = self.interest.edges(&deliver.channel).to_vec();
        slip_metrics::metrics().publishes.inc();
        let mut confirm = confirm.into_iter().peekable();
        let mut sent = 0;
        for edge in &edges {
            let mut deliver = deliver.clone();
            // The edge that asked hears it on the Deliver itself, behind the message.
            if let Some((ack, _)) = confirm.next_if(|(_, node)| node == edge.as_str()) {
                deliver.ack = ack;
            }
            if out.send(edge.as_str(), Frame { kind: Some(Kind::Deliver(deliver)) }) {
                sent += 1;
            } else {
                tracing::warn!(edge = %edge, "delivery to edge dropped");
            }
        }
        let published = Published { offset: deliver.offset, epoch: deliver.epoch, edges: sent };
        for (ack, node) in confirm {
            confirm_publish(ack, &node, &published, out);
        }
        sent
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
            // Where the stream is, so an edge that was behind catches up.
            if let Some((epoch, top)) = self.streams.head(&interest.channel) {
                let head =
                    Head { channel: interest.channel.clone(), epoch: epoch.to_string(), top, ..Default::default() };
                out.send(from.as_str(), Frame { kind: Some(Kind::Head(head)) });
            }
        } else {
            self.interest.remove(from, &interest.channel);
        }
        if interest.ack != 0 {
            let reply = Reply { id: interest.ack, kind: Some(reply::Kind::Found(true)) };
            out.send(&interest.reply_to, Frame { kind: Some(Kind::Reply(reply)) });
        }
    }

    /// As the owner: stamps the publish and sends it once per interested edge,
    /// or holds it for its GRIP predecessor. Only the channel's owner in this
    /// node's view calls it (see `ControlPlane::forwarded`).
    pub fn fan_out(&mut self, mut publish: Publish, now: Instant, out: &mut impl Outlet) -> Published {
        if self.catch_up.must_hold(&publish.channel, &self.node_id) {
            // Confirmed once it is out, after the catch-up; refused, never.
            if !self.catch_up.hold(publish) {
                tracing::warn!("publish refused: too many held while catching up");
            }
            return Published::default();
        }
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
    /// idempotency key), has it copied to the channel's replicas, and once
    /// they have it, sends it to each interested edge and confirms it to
    /// whoever asked. A closing order takes no place in the stream but waits
    /// its turn behind what was published before it.
    fn stamp_and_send(&mut self, publish: Publish, now: Instant, out: &mut impl Outlet) -> Published {
        let Publish { channel, event, ack, reply_to, idempotency_key, .. } = publish;
        if self.replication.waiting(&channel) >= MAX_WAITING_PER_CHANNEL {
            // Not confirmed: the publisher hears UNAVAILABLE and may retry with its key.
            tracing::warn!(channel, "publish refused: too many waiting for their replicas");
            return Published::default();
        }
        let event = event.unwrap_or_default();
        let (epoch, offset) = if streams::is_message(&event) {
            match self.streams.append(&channel, &event, &idempotency_key, now) {
                Appended::New { epoch, offset } => (epoch, offset),
                Appended::Duplicate { epoch, offset } => {
                    // In the stream already: confirmed once it is out, or now.
                    if !self.replication.also_confirm(&channel, offset, ack, &reply_to) {
                        let published = Published { offset, epoch: epoch.to_string(), edges: 0 };
                        confirm_publish(ack, &reply_to, &published, out);
                    }
                    return Published { offset, epoch: epoch.to_string(), edges: 0 };
                }
            }
        } else {
            (Arc::from(""), 0)
        };
        slip_metrics::metrics().history_bytes.set(self.streams.bytes() as i64);
        let deliver =
            Deliver { channel: channel.clone(), offset, event: Some(event), ack: 0, epoch: epoch.to_string() };
        let confirm = if ack != 0 { vec![(ack, reply_to)] } else { Vec::new() };
        self.replication.push(deliver, idempotency_key, confirm, now);
        self.replicate(&channel, now, out);
        // Out at once when nothing needs copying; else once the copies are in.
        let edges = self.release(&channel, out);
        Published { offset, epoch: epoch.to_string(), edges }
    }

    /// The earliest thing [`Routing::on_clock`] must do: a held publish
    /// falling due, or the ring settling.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.sequencer.next_deadline(),
            self.settle_at,
            self.streams.next_deadline(),
            self.replication.next_deadline(),
            self.catch_up.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// What is due at `now`: held publishes that waited long enough go out;
    /// once the ring has held still, interest in channels owned elsewhere goes.
    pub fn on_clock(&mut self, now: Instant, out: &mut impl Outlet) {
        if let Some(generation) = self.catch_up.overdue(now) {
            tracing::warn!("catching up took too long; going on with what this node has");
            self.finish_catch_up(generation, now, out);
        }
        for (_, publish) in self.sequencer.expire(now) {
            self.stamp_and_send(publish, now, out);
        }
        self.streams.expire(now);
        // Copies not acknowledged in time are sent again.
        for channel in self.replication.due(now) {
            self.replicate(&channel, now, out);
        }
        slip_metrics::metrics().history_bytes.set(self.streams.bytes() as i64);
        if self.settle_at.take_if(|at| *at <= now).is_some() {
            let (ring, me) = (&self.ring, &self.node_id);
            let dropped = self.interest.retain(|channel| ring.owner(channel) == Some(me));
            if dropped > 0 {
                tracing::info!(channels = dropped, "interest in channels owned elsewhere dropped");
            }
            // Copies of streams this node no longer keeps: a stale copy must
            // not be taken for the stream if the ring gives it back later.
            let replicas = self.replicas;
            let forgotten = self.streams.retain(|channel| holders(ring, replicas, channel).any(|n| n == me));
            if forgotten > 0 {
                tracing::info!(streams = forgotten, "copies of streams held elsewhere now dropped");
                slip_metrics::metrics().history_bytes.set(self.streams.bytes() as i64);
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

/// The control nodes that keep `channel`'s stream: its owner, then its replicas.
fn holders<'a>(ring: &'a Ring, replicas: usize, channel: &str) -> impl Iterator<Item = &'a NodeId> {
    ring.owner(channel).into_iter().chain(ring.successors(channel, replicas))
}

/// Confirms publish `ack` to the node that asked: a control node taking a
/// publish for another's channel, or an edge with no subscriber of it.
fn confirm_publish(ack: u64, to: &str, published: &Published, out: &mut impl Outlet) {
    if ack != 0 {
        let reply = Reply { id: ack, kind: Some(reply::Kind::Published(published.into())) };
        out.send(to, Frame { kind: Some(Kind::Reply(reply)) });
    }
}

#[cfg(test)]
mod tests;
