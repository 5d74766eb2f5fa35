//! The control plane as a node: its links, its routing state (`routing.rs`)
//! behind one lock, its clock, and publishing. Both control APIs (gRPC, HTTP
//! JSON) call into this; it does no I/O beyond queueing frames on links.
//! Questions to other nodes are in `plane/queries.rs`, what arriving frames
//! do in `plane/frames.rs`.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use slip_link::{Link, Peers};
use slip_proto::channel;
use slip_proto::ids::NodeId;
use slip_proto::link_pb::{ChannelState, Frame, Hello, HistoryQuery, Publish, frame::Kind, query, reply};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::consensus::{self, Consensus, ConsensusConfig, ConsensusError};
use crate::routing::copies::Answer;
pub use crate::routing::{ChannelView, MAX_PUBLISH_HOPS, Published, RING_SETTLE};
use crate::routing::{Outlet, Routing};
use crate::streams::{History, MAX_IDEMPOTENCY_KEY_BYTES, StreamLimits};
use crate::view::View;
use slip_link::questions::{Pending, Questions};
pub use slip_proto::pb::NodeInfo;

/// How long a question to an edge may take before the caller gets UNAVAILABLE.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelSummary {
    pub channel: String,
    pub subscribers: u64,
    pub edges: u32,
    pub owner: String,
    pub last_offset: u64,
    pub epoch: String,
    /// Publications its owner's history holds.
    pub history: u64,
    /// Its presence members.
    pub presence: u64,
    /// The control nodes that keep copies of its stream.
    pub replicas: Vec<String>,
}

// The same channel as the link (`ChannelState`) and the API (`ChannelInfo`)
// carry it, converted here once.
impl From<ChannelState> for ChannelSummary {
    fn from(s: ChannelState) -> Self {
        let ChannelState { channel, subscribers, edges, owner, last_offset, epoch, history, presence, replicas } = s;
        Self { channel, subscribers, edges, owner, last_offset, epoch, history, presence, replicas }
    }
}

impl From<ChannelSummary> for ChannelState {
    fn from(s: ChannelSummary) -> Self {
        let ChannelSummary { channel, subscribers, edges, owner, last_offset, epoch, history, presence, replicas } = s;
        Self { channel, subscribers, edges, owner, last_offset, epoch, history, presence, replicas }
    }
}

impl From<ChannelSummary> for slip_proto::pb::ChannelInfo {
    fn from(s: ChannelSummary) -> Self {
        let ChannelSummary { channel, subscribers, edges, owner, last_offset, epoch, history, presence, replicas } = s;
        Self { channel, subscribers, edges, owner, last_offset, epoch, history, presence, replicas }
    }
}

/// A control node: its links, what it knows (one [`Routing`] behind one
/// lock, which is only ever taken before the links' own, never after), the
/// questions it waits on, and the tasks it runs.
pub struct ControlPlane {
    node_id: NodeId,
    /// Links to edges and to other control nodes.
    peers: Peers,
    /// The ring view agreed with the other control nodes, and the lease.
    /// Its lock is never held with the routing's: what it decides is
    /// carried out after it is let go (`carry_out`).
    consensus: Mutex<Consensus>,
    routing: Mutex<Routing>,
    questions: Questions,
    /// Wakes the clock task (see `new`): a deadline moved.
    clock: Arc<Notify>,
    /// Wakes the lifecycle events' sender (`plane/lifecycle.rs`): events wait.
    lifecycle_wake: Arc<Notify>,
    /// Wakes the CLOSE sender (`plane/closes.rs`): CLOSEs wait.
    closes_wake: Arc<Notify>,
    /// The clock and the answers to other control nodes' questions.
    tasks: TaskTracker,
    /// Stops the catch-up under way when the ring changes again.
    catching_up: Mutex<Option<CancellationToken>>,
    /// Wakes whoever waits to answer about a channel until the catch-up is over.
    caught_up: Notify,
    /// Channels whose copy, as a replica behind its owner, is being taken.
    filling: Mutex<std::collections::HashSet<String>>,
    /// Largest message its control APIs take for clients (`SLIP_MAX_OUTBOUND_BYTES`).
    max_message_bytes: usize,
    /// Sessions resumed away from the edge their connection id names.
    homes: crate::homes::Homes,
    /// Subscriptions and metadata of the sessions whose ids this node owns.
    records: crate::records::Records,
    shutdown: CancellationToken,
}

/// What [`ControlPlane::publish_start`] leaves to wait on: the owner's
/// answer to question `id` (this node's own routing, when it is the owner).
pub struct Receipt {
    pending: Pending,
    started: Instant,
}

impl Receipt {
    /// Where the publish went; UNAVAILABLE when its owner did not say in time.
    pub async fn wait(self, plane: &ControlPlane) -> Result<Published, ControlError> {
        match plane.questions.wait(self.pending, QUERY_TIMEOUT).await {
            Some(reply::Kind::Published(p)) => {
                slip_metrics::metrics().publish_seconds.observe(self.started.elapsed().as_secs_f64());
                Ok(p.into())
            }
            _ => Err(ControlError::Unavailable("the channel's owner did not confirm the publish".into())),
        }
    }
}

/// The plane's links as the routing's outlet; a reply addressed to this node
/// (a SUBSCRIBE it asked an edge for, confirmed through it as the owner)
/// resolves here.
struct Links<'a>(&'a ControlPlane);

impl Outlet for Links<'_> {
    fn send(&mut self, to: &str, frame: Frame) -> bool {
        let plane = self.0;
        if let Some(Kind::Reply(reply)) = &frame.kind
            && to == plane.node_id.as_str()
        {
            plane.questions.resolve(reply.clone());
            return true;
        }
        match plane.peers.send(to, frame) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(to, error = %e, "frame dropped");
                false
            }
        }
    }
}

impl ControlPlane {
    /// Largest message its control APIs take for clients, in bytes.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// A control plane with the default stream limits; see [`ControlPlane::with_limits`].
    pub fn new(node_id: NodeId) -> Arc<Self> {
        Self::with_limits(node_id, StreamLimits::default())
    }

    /// A control plane on its own (`slip dev`, or a cluster of one): it
    /// forms a cluster of itself at once. Its clock task runs on the
    /// current tokio runtime until [`ControlPlane::shutdown`] or the plane
    /// is dropped.
    pub fn with_limits(node_id: NodeId, limits: StreamLimits) -> Arc<Self> {
        let config = ConsensusConfig {
            node_id: node_id.clone(),
            link_addr: String::new(),
            bootstrap_expect: 1,
            data_dir: None,
            discovery_wait: std::time::Duration::ZERO,
        };
        match Self::clustered(limits, config) {
            Ok(plane) => plane,
            // Nothing is read from disk without a data dir: this cannot fail.
            Err(e) => unreachable!("a consensus without a data dir: {e}"),
        }
    }

    /// A control node of a cluster: it owns nothing until the control nodes
    /// agreed on a view (forming the first cluster with `bootstrap_expect`
    /// of them, or admitting it to one that runs) and it caught up.
    pub fn clustered(limits: StreamLimits, config: ConsensusConfig) -> Result<Arc<Self>, ConsensusError> {
        let node_id = config.node_id.clone();
        let now = Instant::now();
        let consensus = Consensus::new(config, now)?;
        let max_message_bytes = limits.max_message_bytes;
        let plane = Arc::new(Self {
            routing: Mutex::new(Routing::new(node_id.clone(), limits, now)),
            consensus: Mutex::new(consensus),
            catching_up: Mutex::new(None),
            caught_up: Notify::new(),
            filling: Default::default(),
            max_message_bytes,
            homes: Default::default(),
            records: Default::default(),
            node_id,
            peers: Peers::default(),
            questions: Questions::default(),
            clock: Arc::new(Notify::new()),
            lifecycle_wake: Arc::new(Notify::new()),
            closes_wake: Arc::new(Notify::new()),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        });
        // A view saved under the data dir is the one to start from.
        let saved = plane.consensus.lock().view().clone();
        if saved.term() > 0 {
            plane.view_changed(saved, now);
        }
        // The plane's one clock: asleep until the routing's or the
        // consensus's next deadline, woken when one moves.
        let (weak, wake) = (Arc::downgrade(&plane), plane.clock.clone());
        let stop = plane.shutdown.clone();
        plane.tasks.spawn(stop.clone().run_until_cancelled_owned(async move {
            loop {
                let Some(plane) = weak.upgrade() else { return };
                let routing = plane.routing.lock().next_deadline();
                let consensus = plane.consensus.lock().next_deadline();
                let next = routing.map_or(consensus, |r| r.min(consensus));
                // Not holding the plane while asleep: dropping it ends the task.
                drop(plane);
                // A wake-up in between is kept as a permit: nothing is missed.
                let woken = wake.notified();
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = woken => continue,
                }
                let Some(plane) = weak.upgrade() else { return };
                let now = Instant::now();
                let out = plane.consensus.lock().on_clock(now);
                plane.carry_out(out, now);
                let leased = {
                    let mut routing = plane.routing.lock();
                    routing.on_clock(now, &mut Links(&plane));
                    plane.lifecycle_poke(routing.lifecycle_waiting());
                    plane.closes_poke(routing.closes_waiting());
                    routing.leased(now)
                };
                slip_metrics::metrics().lease_held.set(i64::from(leased));
                // A catch-up past its deadline ended there.
                plane.caught_up.notify_waiters();
            }
        }));
        Ok(plane)
    }

    /// Stops the plane's tasks and waits for them; links are closed by their owner.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    /// What each of its structures holds now (`slip_entries`).
    pub fn sizes(&self) -> slip_metrics::Sizes {
        let mut out = Vec::new();
        self.routing.lock().sizes(&mut out);
        out.push(("control_questions", self.questions.len()));
        out.push(("session_records", self.records.held()));
        out.push(("moved_sessions", self.homes.remembered()));
        out
    }

    /// This node's counters, and whether it holds its lease.
    pub fn control_stats(&self) -> slip_proto::link_pb::ControlStats {
        let metrics = slip_metrics::metrics();
        // One lock for both: a second lock inside the literal would deadlock.
        let (lease_held, view_term) = {
            let routing = self.routing.lock();
            (routing.leased(Instant::now()), routing.term())
        };
        slip_proto::link_pb::ControlStats {
            publishes: metrics.publishes.get(),
            publishes_refused: slip_metrics::publishes_refused_total(),
            stream_divergences: metrics.stream_divergences.get(),
            lease_held,
            publish_latency: metrics.publish_seconds.counts(),
            view_term,
        }
    }

    /// The term of the ring view this node applied.
    pub fn view_term(&self) -> u64 {
        self.routing.lock().term()
    }

    /// An edge linked (inside `slip dev`, by hand): it hears the view.
    pub fn add_edge_link(&self, link: Arc<dyn Link>) {
        let view = self.consensus.lock().view().to_frame();
        if view.term > 0 {
            let _ = link.send(Frame { kind: Some(Kind::View(view)) });
        }
        self.peers.insert(link);
    }

    pub fn set_region(&self, region: &str) {
        self.routing.lock().set_region(region);
    }

    /// A link is up. A control node hears who this one is in the
    /// consensus; an edge hears the view.
    pub fn link_up(self: &Arc<Self>, hello: &Hello, link: Arc<dyn Link>) {
        let peer = link.peer().clone();
        let is_control = {
            let mut routing = self.routing.lock();
            if routing.restarted(&peer, hello) {
                let now = Instant::now();
                self.timed(&mut routing, |routing| routing.edge_gone(&peer, now, &mut Links(self)));
            }
            routing.linked(&peer, hello)
        };
        if is_control {
            self.peers.insert(link);
            let out = self.consensus.lock().link_up();
            self.carry_out(out, Instant::now());
        } else {
            self.add_edge_link(link);
            self.routing.lock().edge_back(&peer, &mut Links(self));
        }
    }

    /// What the consensus decided, carried out: its frames sent, a new view
    /// applied (the routing, a catch-up, the edges told), the lease passed on.
    fn carry_out(self: &Arc<Self>, out: consensus::Output, now: Instant) {
        let consensus::Output { send, broadcast, view, lease } = out;
        for (to, frame) in send {
            let _ = self.peers.send(to.as_str(), Frame { kind: Some(Kind::Consensus(frame)) });
        }
        if let Some(frame) = broadcast {
            for peer in self.control_peers() {
                let _ = self.peers.send(peer.as_str(), Frame { kind: Some(Kind::Consensus(frame.clone())) });
            }
        }
        if let Some(view) = view {
            self.view_changed(view, now);
        }
        if let Some((view, until)) = lease {
            let mut routing = self.routing.lock();
            self.timed(&mut routing, |r| r.set_lease(view, until, now, &mut Links(self)));
        }
    }

    /// The control nodes linked to this one.
    fn control_peers(&self) -> Vec<NodeId> {
        let routing = self.routing.lock();
        self.peers.ids().into_iter().filter(|p| routing.is_control(p)).collect()
    }

    /// A newer view was applied: the routing follows, a catch-up starts,
    /// and every edge linked here hears it.
    fn view_changed(self: &Arc<Self>, view: View, now: Instant) {
        let (generation, members) = {
            let mut routing = self.routing.lock();
            let generation = self.timed(&mut routing, |r| r.set_view(&view, now, &mut Links(self)));
            (generation, routing.ring().members().to_vec())
        };
        self.catch_up(generation, members);
        slip_metrics::metrics().view_term.set(view.term() as i64);
        let frame = view.to_frame();
        let edges: Vec<NodeId> = {
            let routing = self.routing.lock();
            self.peers.ids().into_iter().filter(|p| !routing.is_control(p)).collect()
        };
        for edge in edges {
            let _ = self.peers.send(edge.as_str(), Frame { kind: Some(Kind::View(frame.clone())) });
        }
    }

    /// A frame of the consensus from control node `from`.
    pub(super) fn consensus_frame(self: &Arc<Self>, from: &NodeId, frame: slip_proto::link_pb::Consensus) {
        let now = Instant::now();
        let out = self.consensus.lock().on_frame(from, frame, now);
        self.carry_out(out, now);
        self.clock.notify_one();
    }

    /// A link is down. When it was the peer's last: an edge's interest goes
    /// with it; nobody waits for answers from it. A control node stays in
    /// the view until the consensus decides otherwise.
    pub fn link_down(self: &Arc<Self>, peer: &NodeId, link: &Arc<dyn Link>) {
        if !self.peers.remove_link(link) {
            return;
        }
        // Nobody waits out a deadline for an answer from a node that is gone.
        if !self.peers.contains(peer) {
            self.questions.node_gone(peer.as_str());
        }
        let mut routing = self.routing.lock();
        if routing.is_control(peer) {
            return;
        }
        // Under the routing lock: a new link from the same edge is in `peers`
        // before any of its frames is handled, so if it is there now its
        // interest is fresh and must stay.
        if !self.peers.contains(peer) {
            let now = Instant::now();
            self.timed(&mut routing, |routing| routing.edge_gone(peer, now, &mut Links(self)));
        }
    }

    /// Ready for traffic: a member of the committed view, in the ring, with
    /// its lease, and caught up on the streams it holds.
    pub fn is_ready(&self) -> bool {
        self.readiness().is_ok()
    }

    /// [`ControlPlane::is_ready`], saying why not.
    pub fn readiness(&self) -> Result<(), String> {
        {
            let consensus = self.consensus.lock();
            if let Some(failure) = consensus.failure() {
                return Err(format!("consensus state not saved ({failure}): restart with a writable SLIP_DATA_DIR"));
            }
            if !consensus.is_member() {
                return Err("not a member of the cluster yet (waiting to form or to be admitted)".into());
            }
            if !consensus.view().is_up(&self.node_id) {
                return Err(format!("not in the ring of view {}", consensus.view().term()));
            }
        }
        let routing = self.routing.lock();
        if !routing.leased(Instant::now()) {
            return Err("no lease from a majority of the control nodes".into());
        }
        if routing.catching_up() {
            return Err("catching up on the streams it holds".into());
        }
        Ok(())
    }

    /// The consensus as `slip admin` shows it: the view's term, this node's
    /// voter id, whether it leads, and whether it holds its lease.
    pub fn consensus_state(&self) -> (u64, u64, bool, bool) {
        let (term, raft_id, leader) = {
            let consensus = self.consensus.lock();
            (consensus.view().term(), consensus.raft_id(), consensus.is_leader())
        };
        (term, raft_id, leader, self.routing.lock().leased(Instant::now()))
    }

    fn is_control(&self, node: &NodeId) -> bool {
        self.routing.lock().is_control(node)
    }

    /// How many edges this node's interest table lists for `channel`.
    pub fn interested_edges(&self, channel: &str) -> usize {
        self.routing.lock().channel(channel).edges.len()
    }

    /// Control nodes in the ring, this one included.
    pub fn members(&self) -> Vec<NodeId> {
        self.routing.lock().ring().members().to_vec()
    }

    /// Publishes to a channel (text, binary, or close-channel) and waits for
    /// its owner to say where it went in the stream.
    pub async fn publish(&self, publish: Publish) -> Result<Published, ControlError> {
        self.publish_start(publish)?.wait(self).await
    }

    /// Sends a publish on its way now and returns what to wait on: callers
    /// that publish many in a row start them in order and wait together.
    pub fn publish_start(&self, mut publish: Publish) -> Result<Receipt, ControlError> {
        let started = Instant::now();
        channel::validate(&publish.channel).map_err(|e| ControlError::Invalid(e.to_string()))?;
        if publish.event.as_ref().and_then(|e| e.body.as_ref()).is_none() {
            return Err(ControlError::Invalid("publish without a message".into()));
        }
        if publish.idempotency_key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
            return Err(ControlError::Invalid(format!(
                "idempotency key of {} bytes; at most {MAX_IDEMPOTENCY_KEY_BYTES}",
                publish.idempotency_key.len()
            )));
        }
        // The owner answers it once its replicas have it: here, or elsewhere.
        let pending = self.expect_reply()?;
        let id = pending.id;
        (publish.ack, publish.reply_to) = (id, self.node_id.to_string());
        if let Err(e) = self.place(publish, Some(id)) {
            self.questions.forget(id);
            return Err(ControlError::Unavailable(e.to_string()));
        }
        Ok(Receipt { pending, started })
    }

    /// Fans a publish out here when this node owns its channel; else sends
    /// it to the owner (whose leaving ends question `confirm`, if any), or,
    /// with no link to the owner, through another control node that passes
    /// it on (a cut between two control nodes only).
    fn place(&self, mut publish: Publish, confirm: Option<u64>) -> Result<(), slip_link::LinkError> {
        let mut routing = self.routing.lock();
        let Some(owner) = routing.owner_elsewhere(&publish.channel).cloned() else {
            self.fan_out_locked(&mut routing, publish);
            return Ok(());
        };
        let relay = routing
            .ring()
            .members()
            .iter()
            .find(|m| **m != owner && **m != self.node_id && self.peers.contains(m))
            .cloned();
        drop(routing);
        if let Some(id) = confirm {
            self.questions.asked(id, owner.as_str());
        }
        publish.hops = 1;
        let frame = Frame { kind: Some(Kind::Publish(publish)) };
        match (self.peers.contains(&owner), relay) {
            (false, Some(relay)) => self.peers.send(relay.as_str(), frame),
            _ => self.peers.send(owner.as_str(), frame),
        }
    }

    /// A publish another control node passed here as to the channel's
    /// owner. Only the owner may give it an offset: a node whose view names
    /// another owner (views differ for a moment) passes it on, once (see
    /// [`Routing::fan_out`]). Two nodes giving the same offset would fork the stream.
    fn forwarded(&self, mut routing: parking_lot::MutexGuard<'_, Routing>, publish: Publish) {
        self.fan_out_locked(&mut routing, publish);
    }

    /// A publish from an edge (a callback reply's PUBLISH), as it came: to the
    /// owner, or fanned out here. Its `ack`, if any, is the edge's.
    fn route(&self, publish: Publish) {
        if channel::validate(&publish.channel).is_err() {
            return;
        }
        if let Err(e) = self.place(publish, None) {
            tracing::warn!(error = %e, "publish from an edge dropped");
        }
    }

    /// A channel's history, from its owner.
    pub async fn history(
        &self,
        channel: &str,
        since_epoch: &str,
        since_offset: u64,
        limit: u32,
    ) -> Result<History, ControlError> {
        channel::validate(channel).map_err(|e| ControlError::Invalid(e.to_string()))?;
        let owner = self.routing.lock().owner_elsewhere(channel).cloned();
        let Some(owner) = owner else {
            self.until_caught_up(channel).await;
            let answer =
                self.routing.lock().history(channel, since_epoch, since_offset, limit as usize, Instant::now());
            return match answer {
                Answer::History(history) => Ok(history),
                Answer::NotOwner => {
                    Err(ControlError::Unavailable("this control node holds no lease for the channel".into()))
                }
            };
        };
        let question = HistoryQuery { channel: channel.into(), since_epoch: since_epoch.into(), since_offset, limit };
        match self.ask_query(owner.as_str(), query::Kind::History(question)).await? {
            reply::Kind::History(answer) if !answer.not_owner => Ok(answer.into()),
            _ => Err(ControlError::Unavailable(format!("owner {owner} gave no history"))),
        }
    }

    /// Waits (at most `CATCHUP_DEADLINE`) until this node knows `channel`'s
    /// stream, if it is catching up on it: an edge asking for history must
    /// not hear "nothing" from an owner that has not yet taken the copy.
    pub(super) async fn until_caught_up(&self, channel: &str) {
        let deadline = Instant::now() + crate::catchup::CATCHUP_DEADLINE;
        loop {
            let caught_up = self.caught_up.notified();
            if !self.routing.lock().acquiring(channel) {
                return;
            }
            if tokio::time::timeout_at(deadline, caught_up).await.is_err() {
                return;
            }
        }
    }

    /// As the owner (or as told by another control node): fan out here.
    fn fan_out_locked(&self, routing: &mut Routing, publish: Publish) {
        self.timed(routing, |routing| routing.fan_out(publish, Instant::now(), &mut Links(self)));
    }

    /// Changes the routing and wakes the clock if that brought its next
    /// deadline forward (a held GRIP publish, a copy to send again, history
    /// to expire): the clock sleeps until the deadline it last saw.
    fn timed<T>(&self, routing: &mut Routing, change: impl FnOnce(&mut Routing) -> T) -> T {
        let before = routing.next_deadline();
        let result = change(routing);
        if routing.next_deadline().is_some_and(|at| before.is_none_or(|was| at < was)) {
            self.clock.notify_one();
        }
        self.lifecycle_poke(routing.lifecycle_waiting());
        self.closes_poke(routing.closes_waiting());
        result
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The clock task holds only a weak reference: let it see we are gone.
        self.clock.notify_one();
    }
}

mod catchup;
mod closes;
pub use closes::DEFAULT_CLOSE_RETRY;
mod frames;
mod lifecycle;
mod queries;
mod sessions;

pub use frames::ControlFrames;
