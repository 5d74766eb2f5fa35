//! What a control node knows, as plain data and pure code: which peers are
//! control nodes, the view it applied and what it may own under it
//! (`ownership.rs`), the interest table, the streams and their copies, the
//! publishes waiting (for their GRIP predecessor, for their replicas, for a
//! catch-up or a lease), and when the ring settles. The plane keeps it
//! behind its one lock; frames leave through an [`Outlet`] and the clock is
//! passed in, so every rule here is tested without links. Publishing is in
//! `routing/publish.rs`, copies of streams in `routing/copies.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use slip_proto::ids::NodeId;
use slip_proto::link_pb::{
    Frame, Head, Hello, Interest, Presence, PresenceChanges, PresenceMember, Publish, Published as PublishedFrame,
    Reply, Role, frame::Kind, reply,
};
use slip_proto::ring::Ring;
// A plain value passed in: tokio's, so a paused test clock drives it.
use tokio::time::Instant;

use crate::catchup::CatchUp;
use crate::held::Held;
use crate::interest::InterestTable;
use crate::ownership::Ownership;
use crate::presence::{Listing, PresenceTable};
use crate::presence_feed::PresenceFeed;
use crate::replication::Replication;
use crate::sequencer::Sequencer;
use crate::streams::{self, StreamLimits, Streams};
use crate::view::View;
use slip_proto::limits::MAX_PRESENCE_INFO_BYTES;

/// How long the ring must hold still before interest in channels owned
/// elsewhere is forgotten.
pub const RING_SETTLE: Duration = Duration::from_secs(10);
/// Times a publish may be passed between control nodes on its way to the
/// channel's owner: a node whose view names another owner passes it on,
/// once; past this it is refused, and its publisher retries.
pub const MAX_PUBLISH_HOPS: u32 = 2;
/// Members a session watching a channel's presence gets when it begins
/// (the count it gets is exact).
pub const PRESENCE_SNAPSHOT_LIMIT: usize = 1000;

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
    /// Publications its history holds here.
    pub history: u64,
    /// Its presence members.
    pub presence: u64,
    /// The control nodes that keep copies of its stream.
    pub replicas: Vec<NodeId>,
}

/// What a control node knows, as plain data (see the top of this file).
pub struct Routing {
    node_id: NodeId,
    /// This node's region, for `slip admin nodes`.
    region: String,
    /// Every control node that ever linked here (frames that only control
    /// nodes may send are taken from these).
    controls: HashSet<NodeId>,
    /// What each peer said of itself when it linked.
    hellos: HashMap<NodeId, Hello>,
    /// The view applied, its ring, the lease: what this node may own.
    ownership: Ownership,
    /// When interest in channels owned elsewhere is next pruned: RING_SETTLE
    /// after the latest view change, so a ring still moving prunes nothing.
    settle_at: Option<Instant>,
    interest: InterestTable,
    /// Members of the presence of channels this node owns, by edge.
    presence: PresenceTable,
    /// Presence changes waiting to be told to the edges, coalesced.
    presence_feed: PresenceFeed,
    /// Channel lifecycle, when `SLIP_EVENTS_URL` is set.
    lifecycle: Option<lifecycle::LifecycleState>,
    /// Records of accepted connections, for the CLOSE of a lost edge's.
    closes: crate::closes::Closes,
    /// CLOSEs due, waiting for the plane's sender.
    closes_waiting: closes::Waiting,
    /// How long a session whose edge is gone may resume elsewhere: its
    /// presence stays that long (`SLIP_RESUME_SECS`).
    session_window: Duration,
    /// GRIP `id`/`prev-id` ordering of the channels this node owns.
    sequencer: Sequencer<Publish>,
    /// Offsets, history and idempotency keys of the channels this node owns
    /// (and copies of those it is a replica of).
    streams: Streams,
    /// Publications stamped here, waiting for their replicas' copies.
    replication: Replication,
    /// Copies of each stream beyond the owner's, as configured
    /// (`SLIP_STREAM_REPLICAS`), and as the view makes it (see [`copies_for`]).
    configured_replicas: usize,
    replicas: usize,
    /// Learning, after a view change, the streams this node now holds.
    catch_up: CatchUp,
    /// Publishes waiting for the catch-up or the lease.
    held: Held,
}

impl Routing {
    /// Its entries by structure (`slip_entries`).
    pub fn sizes(&self, out: &mut slip_metrics::Sizes) {
        self.interest.sizes(out);
        self.presence.sizes(out);
        self.presence_feed.sizes(out);
        self.closes.sizes(out);
        out.push(("close_waiting", self.closes_waiting.len()));
        self.sequencer.sizes(out);
        self.streams.sizes(out);
        self.replication.sizes(out);
        out.push(("held_publishes", self.held.len()));
        if let Some(lifecycle) = &self.lifecycle {
            out.push(("lifecycle_waiting", lifecycle.waiting.len()));
            out.push(("lifecycle_recheck", lifecycle.recheck.len()));
        }
    }

    /// A node's routing: it owns nothing until it applies a view and holds
    /// a lease for it, and holds publishes until then.
    pub fn new(node_id: NodeId, limits: StreamLimits, now: Instant) -> Self {
        let session_window = limits.resume_window;
        Self {
            catch_up: CatchUp::default(),
            configured_replicas: limits.replicas,
            replicas: limits.replicas,
            replication: Replication::default(),
            streams: Streams::new(limits, streams::random_epoch, now),
            ownership: Ownership::new(node_id.clone()),
            node_id,
            region: String::new(),
            controls: HashSet::new(),
            hellos: HashMap::new(),
            settle_at: None,
            interest: InterestTable::default(),
            presence: PresenceTable::default(),
            presence_feed: PresenceFeed::default(),
            session_window,
            lifecycle: None,
            closes: crate::closes::Closes::default(),
            closes_waiting: closes::Waiting::new(),
            sequencer: Sequencer::default(),
            held: Held::default(),
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
        self.ownership.ring()
    }

    /// The term of the view applied.
    /// What history and keys hold here, to the gauges.
    fn report_bytes(&self) {
        let metrics = slip_metrics::metrics();
        metrics.history_bytes.set(self.streams.bytes() as i64);
        metrics.idempotency_key_bytes.set(self.streams.key_bytes() as i64);
    }

    /// `channel`'s stream here: its epoch, top offset and the term of that offset.
    pub fn stream_head(&self, channel: &str) -> Option<(Arc<str>, u64, String)> {
        let (epoch, top) = self.streams.head(channel)?;
        Some((epoch, top, self.streams.term_at(channel, top)))
    }

    pub fn term(&self) -> u64 {
        self.ownership.term()
    }

    /// Whether this node owns `channel` under the view applied.
    pub fn owns(&self, channel: &str) -> bool {
        self.ownership.owns(channel)
    }

    /// The channel's owner, when it is another node.
    pub fn owner_elsewhere(&self, channel: &str) -> Option<&NodeId> {
        self.ownership.owner_elsewhere(channel)
    }

    pub fn is_control(&self, node: &NodeId) -> bool {
        self.controls.contains(node)
    }

    pub fn hello(&self, node: &NodeId) -> Option<&Hello> {
        self.hellos.get(node)
    }

    /// Whether `hello` comes from a new process of an edge this node knew:
    /// it restarted, and its predecessor's connections died with it, whether
    /// or not this node saw that one's link drop (a restart quicker than
    /// the link's timeout is a new link beside the old one).
    pub fn restarted(&self, peer: &NodeId, hello: &Hello) -> bool {
        hello.role != Role::Control as i32 && self.hellos.get(peer).is_some_and(|h| h.incarnation != hello.incarnation)
    }

    /// A peer linked and said who it is; true if it is a control node.
    pub fn linked(&mut self, peer: &NodeId, hello: &Hello) -> bool {
        self.hellos.insert(peer.clone(), hello.clone());
        let is_control = hello.role == Role::Control as i32;
        if is_control {
            self.controls.insert(peer.clone());
        } else {
            self.closes.edge_linked(peer.as_str(), hello.incarnation);
        }
        is_control
    }

    /// A newer view is applied. Channels that now belong elsewhere lose
    /// what waited here for copies (their publishers retry with the new
    /// owner); what is still ours goes to the replicas the new ring names.
    /// Interest in channels this node no longer owns is forgotten once the
    /// ring has held still for [`RING_SETTLE`]. A catch-up starts: returns
    /// its generation, for [`Routing::finish_catch_up`].
    pub fn set_view(&mut self, view: &View, now: Instant, out: &mut impl Outlet) -> u64 {
        let old = self.ownership.ring().clone();
        self.ownership.set_view(view, now);
        self.replicas = copies_for(self.configured_replicas, view.members().len());
        tracing::info!(term = view.term(), members = self.ring().members().len(), "ring view applied");
        self.settle_at = Some(now + RING_SETTLE);
        // Offsets given from now on are of this view's term: no other node
        // gives offsets in a channel under the same view.
        self.streams.set_term(&view.term().to_string());
        let generation = self.catch_up.begin();
        for channel in self.replication.channels() {
            if self.ownership.owns(&channel) {
                self.replicate(&channel, now, out);
                self.release(&channel, now, out);
            } else {
                for waiting in self.replication.drop_channel(&channel) {
                    for (ack, node) in waiting.confirm {
                        refuse_publish(ack, &node, "owner_changed", out);
                    }
                }
            }
        }
        self.retry_held(now, out);
        if self.lifecycle.is_some() {
            self.lifecycle_view_changed(&old, now, out);
        }
        self.closes_view_changed(&old, out);
        let ownership = &self.ownership;
        self.closes.taking_over(now, now + self.session_window, |id| ownership.owns(id));
        generation
    }

    /// The consensus gave (or renewed) this node's lease for view `view`
    /// until `until`: what waited for it goes on.
    pub fn set_lease(&mut self, view: u64, until: Instant, now: Instant, out: &mut impl Outlet) {
        let had = self.ownership.leased(now);
        self.ownership.set_lease(view, until);
        if !had && self.ownership.leased(now) {
            for channel in self.replication.channels() {
                self.release(&channel, now, out);
            }
            self.retry_held(now, out);
            self.lifecycle_lease_back(now, out);
        }
    }

    /// Whether this node holds its lease for the view it applied.
    pub fn leased(&self, now: Instant) -> bool {
        self.ownership.leased(now)
    }

    /// When channels taken over from a node that left may be owned.
    pub fn taking_over(&self, now: Instant) -> Option<Instant> {
        self.ownership.taking_over(now)
    }

    /// Whether this node is still catching up on `channel`, which it owns
    /// now and did not before: what it would say of it may not be so yet.
    pub fn acquiring(&self, channel: &str) -> bool {
        self.catch_up.must_hold() && self.ownership.owns(channel)
    }

    /// Whether a catch-up runs.
    pub fn catching_up(&self) -> bool {
        self.catch_up.is_running()
    }

    /// Catch-up `generation` is over: the publishes it held go on.
    pub fn finish_catch_up(&mut self, generation: u64, now: Instant, out: &mut impl Outlet) {
        if !self.catch_up.finish(generation) {
            return;
        }
        tracing::info!(held = self.held.len(), "caught up after the view changed");
        // What waited for the catch-up as well as its copies goes out.
        for channel in self.replication.channels() {
            self.release(&channel, now, out);
        }
        self.retry_held(now, out);
    }

    /// An edge's last link is gone: its interest goes with it, and its
    /// presence members leave.
    pub fn edge_gone(&mut self, edge: &NodeId, now: Instant, out: &mut impl Outlet) {
        let dropped = self.interest.drop_edge(edge);
        let left = self.presence.edge_gone(edge, now, now + self.session_window);
        let channels = dropped.len();
        tracing::info!(edge = %edge, channels, members = left.len(), "edge gone; its interest and presence dropped");
        self.feed_presence(left, now, out);
        for channel in dropped {
            self.occupancy_changed(&channel, false, now, out);
        }
        let ownership = &self.ownership;
        self.closes.edge_gone(edge.as_str(), now, now + self.session_window, |id| ownership.owns(id));
        tracing::debug!(edge = %edge, records = self.closes.size().0, next = ?self.closes.next_deadline(), "CLOSEs of the edge's connections scheduled");
    }

    /// Presence members an edge holds of a channel: changes, or its whole set.
    pub fn presence(&mut self, from: &NodeId, presence: Presence, now: Instant, out: &mut impl Outlet) {
        let Presence { channel, members, whole, snapshot_for } = presence;
        let valid = |m: &PresenceMember| {
            m.info.len() <= MAX_PRESENCE_INFO_BYTES && slip_proto::ids::ConnectionId::parse(&m.connection_id).is_ok()
        };
        let changes = if whole {
            let now = members
                .into_iter()
                .filter(|m| m.present && valid(m))
                .map(|m| (m.connection_id, Arc::from(m.info), m.session));
            self.presence.announce(from, &channel, now)
        } else {
            let mut changes = Vec::new();
            for member in members.into_iter().filter(valid) {
                let id = &member.connection_id;
                let change = if member.present {
                    self.presence.join(from, &channel, id, Arc::from(member.info), member.session)
                } else if member.moving {
                    self.presence.step_away(from, &channel, id, now + crate::presence::MOVE_GRACE)
                } else {
                    self.presence.leave(from, &channel, id)
                };
                changes.extend(change);
            }
            changes
        };
        self.feed_presence(changes, now, out);
        if !snapshot_for.is_empty() && slip_proto::ids::ConnectionId::parse(&snapshot_for).is_ok() {
            self.send_snapshot(from, channel, snapshot_for, now, out);
        }
    }

    /// A session on `edge` watches `channel`'s presence from now on: it
    /// gets the members as they stand, behind every change told before
    /// (those waiting go out first), so the changes after it apply to it.
    fn send_snapshot(&mut self, edge: &NodeId, channel: String, to: String, now: Instant, out: &mut impl Outlet) {
        if !self.ownership.owns(&channel) || !self.ownership.leased(now) {
            return;
        }
        let waiting = self.presence_feed.take(&channel);
        self.tell_presence(channel.clone(), waiting, now, out);
        let listing = self.presence.members(&channel, PRESENCE_SNAPSHOT_LIMIT);
        let count = listing.count;
        let members = listing.link_members();
        let snapshot = PresenceChanges { channel, members, view: self.term(), to, count };
        out.send(edge.as_str(), Frame { kind: Some(Kind::PresenceChanges(snapshot)) });
    }

    /// Changes to the presence of channels this node owns wait to be told
    /// to the edges, coalesced; a channel with too many waiting goes now.
    fn feed_presence(&mut self, changes: Vec<crate::presence::Change>, now: Instant, out: &mut impl Outlet) {
        for change in changes {
            if !self.ownership.owns(&change.channel) {
                continue;
            }
            if let Some((channel, members)) = self.presence_feed.push(change, now) {
                self.tell_presence(channel, members, now, out);
            }
        }
    }

    /// Tells the edges interested in `channel` of its presence changes,
    /// under this node's view, as long as it owns the channel and holds its
    /// lease: a node cut off from the majority tells nothing (a new owner
    /// rebuilds the presence from the edges).
    pub(crate) fn tell_presence(
        &mut self,
        channel: String,
        members: Vec<PresenceMember>,
        now: Instant,
        out: &mut impl Outlet,
    ) {
        if members.is_empty() || !self.ownership.owns(&channel) || !self.ownership.leased(now) {
            return;
        }
        let changes = PresenceChanges { channel, members, view: self.term(), ..Default::default() };
        for edge in self.interest.edges(&changes.channel) {
            if !out.send(edge.as_str(), Frame { kind: Some(Kind::PresenceChanges(changes.clone())) }) {
                tracing::warn!(edge = %edge, channel = changes.channel, "presence changes to edge dropped");
            }
        }
    }

    /// `channel`'s presence, as its owner (`None`: this node is not).
    pub fn presence_of(&self, channel: &str, limit: usize) -> Option<Listing> {
        self.ownership.owns(channel).then(|| self.presence.members(channel, limit))
    }

    /// An edge's first local subscriber joined a channel, or its last left.
    /// With an `ack`, the edge confirms a SUBSCRIBE through us to node
    /// `reply_to`: the confirmation leaves behind the interest it depends on.
    pub fn interest(&mut self, from: &NodeId, interest: Interest, now: Instant, out: &mut impl Outlet) {
        if interest.present {
            self.interest.add(from, &interest.channel);
            self.occupancy_changed(&interest.channel, !interest.again, now, out);
            // Where the stream is, so an edge that was behind catches up.
            if let Some((epoch, top)) = self.released_head(&interest.channel) {
                let head = Head {
                    channel: interest.channel.clone(),
                    epoch: epoch.to_string(),
                    top,
                    view: self.term(),
                    ..Default::default()
                };
                out.send(from.as_str(), Frame { kind: Some(Kind::Head(head)) });
            }
        } else {
            self.interest.remove(from, &interest.channel);
            self.occupancy_changed(&interest.channel, false, now, out);
        }
        if interest.ack != 0 {
            let reply = Reply { id: interest.ack, kind: Some(reply::Kind::Found(true)) };
            out.send(&interest.reply_to, Frame { kind: Some(Kind::Reply(reply)) });
        }
    }

    /// The earliest thing [`Routing::on_clock`] must do: a held publish
    /// falling due, or the ring settling.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.sequencer.next_deadline(),
            self.settle_at,
            self.streams.next_deadline(),
            self.replication.next_deadline(),
            self.held.next_deadline(),
            self.presence_feed.next_deadline(),
            self.presence.next_deadline(),
            self.lifecycle_deadline(),
            self.closes.next_deadline(),
            // Held publishes of channels taken over go on when the wait ends.
            self.ownership.takeover_ends(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// What is due at `now`: held publishes that waited long enough go out
    /// (GRIP) or are refused (held for a lease or a catch-up); once the ring
    /// has held still, interest in channels owned elsewhere goes.
    pub fn on_clock(&mut self, now: Instant, out: &mut impl Outlet) {
        if self.ownership.end_takeover(now) {
            self.retry_held(now, out);
        }
        for (_, publish) in self.sequencer.expire(now) {
            self.stamp_and_send(publish, now, out);
        }
        for publish in self.held.expired(now) {
            refuse_publish(publish.ack, &publish.reply_to, "held_too_long", out);
        }
        self.streams.expire(now);
        self.lifecycle_clock(now, out);
        self.closes_clock(now);
        let away = self.presence.expire(now);
        self.feed_presence(away, now, out);
        for (channel, members) in self.presence_feed.due(now) {
            self.tell_presence(channel, members, now, out);
        }
        // Copies not acknowledged in time are sent again.
        for channel in self.replication.due(now) {
            self.replicate(&channel, now, out);
        }
        self.report_bytes();
        if self.settle_at.take_if(|at| *at <= now).is_some() {
            let ownership = &self.ownership;
            let dropped = self.interest.retain(|channel| ownership.owns(channel));
            self.presence.retain(|channel| ownership.owns(channel));
            self.presence_feed.retain(|channel| ownership.owns(channel));
            {
                let (ring, me, replicas) = (self.ownership.ring(), &self.node_id, self.replicas);
                self.closes.retain(|id| holders(ring, replicas, id).any(|n| n == me));
            }
            if let Some(lifecycle) = self.lifecycle.as_mut() {
                let (ring, me, replicas) = (self.ownership.ring(), &self.node_id, self.replicas);
                let ownership = &self.ownership;
                lifecycle.occupancy.retain(|c| ownership.owns(c), |c| holders(ring, replicas, c).any(|n| n == me));
            }
            if dropped > 0 {
                tracing::info!(channels = dropped, "interest in channels owned elsewhere dropped");
            }
            // Copies of streams this node no longer keeps: a stale copy must
            // not be taken for the stream if the ring gives it back later.
            let (ring, me, replicas) = (self.ownership.ring(), &self.node_id, self.replicas);
            let forgotten = self.streams.retain(|channel| holders(ring, replicas, channel).any(|n| n == me));
            if forgotten > 0 {
                tracing::info!(streams = forgotten, "copies of streams held elsewhere now dropped");
                self.report_bytes();
            }
        }
    }

    /// The edges interested in `channel`, and its stream's epoch and top offset.
    pub fn channel(&self, channel: &str) -> ChannelView {
        let (epoch, top_offset) = self.released_head(channel).unwrap_or_else(|| (Arc::from(""), 0));
        ChannelView {
            edges: self.interest.edges(channel).to_vec(),
            epoch: epoch.to_string(),
            top_offset,
            history: self.streams.held(channel),
            presence: self.presence.count(channel),
            replicas: self.replica_set(channel),
        }
    }
}

/// Copies of each stream beyond the owner's under a view of `voters`
/// control nodes: at least as configured, and enough that every majority of
/// the voters holds one (a minority cut off with the owner and all its
/// replicas would leave the majority no copy, and it would start the stream
/// over while the old one still exists). `0` configured: no copies at all.
pub fn copies_for(configured: usize, voters: usize) -> usize {
    if configured == 0 { 0 } else { configured.max(voters.saturating_sub(1) / 2) }
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

/// Tells whoever waits for publish `ack` that it was not taken (the
/// publisher hears UNAVAILABLE at once, and retries with its key); counted
/// by `why` (`slip_publishes_refused_total`).
fn refuse_publish(ack: u64, to: &str, why: &'static str, out: &mut impl Outlet) {
    slip_metrics::metrics().publishes_refused.get_or_create(&slip_metrics::kind(why)).inc();
    if ack != 0 {
        let reply = Reply { id: ack, kind: Some(reply::Kind::Found(false)) };
        out.send(to, Frame { kind: Some(Kind::Reply(reply)) });
    }
}

mod closes;
pub use closes::{EDGE_LOST_CODE, EDGE_LOST_REASON, MAX_WAITING_CLOSES};
pub mod copies;
mod lifecycle;
mod publish;
#[cfg(test)]
mod tests;
