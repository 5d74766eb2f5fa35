//! The edge as a node: routes commands to local connections or over links,
//! keeps channel owners told of local interest, and answers frames from
//! control nodes. Nothing here blocks, and only a reply's commands wait (for
//! a publish's confirmation, [`CONFIRM_TIMEOUT`]); sockets live in
//! `connection` and `server`. One clock task (`node/clock.rs`) keeps every
//! deadline of the node: gaps being fetched, parked sessions.
//!
//! Lock order, the one rule for the node's locks: the state (cursors and
//! parked sessions, `node/state.rs`), then the hub, then a session's cell,
//! then an outbox. Fan-out runs under the state lock, so that whatever comes
//! next for a channel goes out after; parking, resuming and handing over
//! take the state before the session. Nothing takes the state while it
//! holds a session, the hub or an outbox. The ring is a snapshot read with
//! no lock (every command of a callback reply looks an owner up, and must
//! not wait behind a fan-out). The question registry and the links are
//! taken last and call out to nothing.
//!
//! Questions to control nodes go through the link's registry
//! ([`slip_link::questions`]), which ends them when the link to the node
//! asked drops; the cursors' fetches carry their own ids
//! ([`crate::cursor::FETCH_ID_BIT`]) and deadlines.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use parking_lot::Mutex;
use slip_link::questions::Questions;
use slip_link::{FrameHandler, Link, LinkError, Peers};
use slip_proto::close::CloseCode;
use slip_proto::command::Command;
use slip_proto::ids::NodeId;
use slip_proto::limits::MAX_POLL_TIMEOUT_MS;
use slip_proto::link_pb::{
    ChannelCounts, ChannelState, ConnectionCommand, ConnectionState, Deliver, EdgeStats, Frame, Hello, HistoryAnswer,
    HistoryQuery, Interest, Publish, Query, Reply, Role, channel_event, connection_command::Op, frame::Kind, message,
    query, reply,
};
use slip_proto::ring::Ring;
use slip_proto::route::{self, Action};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::callback::CallbackClient;
use crate::config::ConfigError;
use crate::config::EdgeConfig;
use crate::cursor::{Cursors, Steps};
use crate::hub::{Hub, Subscribed, Unsubscribed};
use crate::outbox::Push;
use crate::session::{self, Direct};
use slip_proto::session::Payload;
use state::EdgeState;

/// Most channels one edge lists for `slip admin channels`.
const MAX_CHANNEL_COUNTS: usize = 1000;
/// Close code sent to subscribers of a closed channel.
const CHANNEL_CLOSED_CODE: CloseCode = CloseCode::NORMAL;

/// Longest a reply's next command waits for a publish before it to come
/// back. A reply's commands run in order (docs/protocol.md, "The reply"):
/// after `PUBLISH_TEXT` then `TEXT` to a subscriber here, that subscriber
/// gets the publish first. The publish travels to the channel's owner and
/// back, the `TEXT` would not, so the edge sends the publish as a question
/// (its `ack`) and waits until the owner's `Deliver` carrying it has been
/// fanned out here (or, when this edge has no subscriber of the channel,
/// until the owner's `Reply`); then the next command runs. With too many
/// questions waiting, the publish goes out unconfirmed.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// An edge node: its configuration, the hub of local connections, the
/// callback client, admission, the control links and what it knows of the
/// cluster (the ring, the cursors, the parked sessions). Shared as
/// `Arc<Edge>` by every connection task, the listener and the clock.
pub struct Edge {
    pub config: EdgeConfig,
    pub hub: Hub,
    pub callbacks: CallbackClient,
    pub admission: Arc<Admission>,
    /// Signalled when a control node asks this edge to drain (`slip admin drain`).
    pub drain_requested: tokio::sync::Notify,
    /// Links to control nodes.
    control: Peers,
    /// Owners of channels among the control nodes: the ring of the newest
    /// view the control nodes agreed on that this edge has heard of (its
    /// term is in the state). A snapshot, replaced whole under the state
    /// lock and read with no lock: every command of a callback reply looks
    /// an owner up, and must not wait behind a fan-out.
    ring: ArcSwap<Ring>,
    /// Questions to control nodes: publishes a reply's next command waits
    /// for, and what resumes ask.
    questions: Questions,
    /// Wakes the clock task (`node/clock.rs`): a deadline came earlier.
    clock: tokio::sync::Notify,
    clock_started: std::sync::atomic::AtomicBool,
    /// Per channel, the last offset delivered here and the gaps being
    /// fetched; the sessions waiting to be resumed (`node/state.rs`).
    state: Mutex<EdgeState>,
    /// The outbox every parked session has: it takes nothing, and one serves all.
    parked_sink: std::sync::OnceLock<Arc<crate::outbox::Outbox>>,
    /// Every task the edge runs: the listener's HTTP connections, the
    /// WebSocket connections and their writers, waiting queries.
    pub(crate) tasks: TaskTracker,
    /// Cancelled by [`Edge::shutdown`]: the listener stops accepting, HTTP
    /// connections finish their request and close, waiting queries end.
    /// WebSocket connections end through their outbox (`drain.rs`).
    pub(crate) stopping: CancellationToken,
}

impl Edge {
    /// An edge for `config`, which is validated first.
    pub fn new(config: EdgeConfig) -> Result<Arc<Self>, ConfigError> {
        config.validate()?;
        slip_metrics::metrics().parked_bytes_limit.set(i64::try_from(config.max_parked_bytes).unwrap_or(i64::MAX));
        let callbacks = CallbackClient::new(
            &config.target_url,
            &config.jwt_secret,
            &config.grip_sig_issuer,
            config.callback_timeout,
        )
        .map_err(|e| ConfigError::Client(e.to_string()))?
        .with_max_outbound(config.max_outbound_bytes);
        Ok(Arc::new(Self {
            hub: Hub::new(config.max_subscriptions),
            callbacks,
            admission: Admission::new(config.max_connections),
            drain_requested: tokio::sync::Notify::new(),
            control: Peers::default(),
            ring: ArcSwap::from_pointee(Ring::default()),
            questions: Questions::default(),
            clock: tokio::sync::Notify::new(),
            clock_started: std::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(EdgeState::default()),
            parked_sink: std::sync::OnceLock::new(),
            tasks: TaskTracker::new(),
            stopping: CancellationToken::new(),
            config,
        }))
    }

    /// Stops the edge's tasks and waits for them, for at most `grace`; run it
    /// after [`crate::drain::drain`] has closed the connections. Returns how
    /// many tasks were still running when the wait ended.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.stopping.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(grace, self.tasks.wait()).await;
        self.tasks.len()
    }

    pub fn node_id(&self) -> &NodeId {
        &self.config.node_id
    }

    /// Ready for traffic: not draining, linked to the control plane, and
    /// told the view the control nodes agreed on (so it knows the owners).
    pub fn is_ready(&self) -> bool {
        !self.admission.is_draining() && !self.control.ids().is_empty() && self.view_term() > 0
    }

    /// A link to a control node is up: it is told of every local channel it
    /// owns, and of the sessions whose records it keeps.
    pub fn add_control_link(self: &Arc<Self>, link: Arc<dyn Link>) {
        let peer = link.peer().clone();
        if self.control.insert(link) {
            self.count_control_links();
            let ring = self.ring.load_full();
            self.reannounce(&ring, &ring, Some(&peer));
        }
    }

    /// `slip_control_links`: control nodes linked now (none: the edge is
    /// cut off, and refuses new clients).
    fn count_control_links(&self) {
        slip_metrics::metrics().control_links.set(self.control.ids().len() as i64);
    }

    /// A link to a control node is down. Owners do not change with links,
    /// only with views; what was sent on it is asked again where needed.
    pub fn remove_control_link(self: &Arc<Self>, link: &Arc<dyn Link>) {
        let peer = link.peer().clone();
        self.control.remove_link(link);
        self.count_control_links();
        if !self.control.contains(&peer) {
            // Nobody waits out a deadline for an answer that cannot come.
            self.questions.node_gone(peer.as_str());
            let mut state = self.state.lock();
            let steps = state.cursors.ask_again(Instant::now());
            self.carry_out(&mut state.cursors, steps);
        }
    }

    /// A view from a control node: a newer one than this edge knew gives
    /// the owners, and the new owners are told of local interest.
    pub fn view(self: &Arc<Self>, view: &slip_proto::link_pb::View) {
        // The term read and the ring replaced under the state lock: of two
        // views at once, the newer stays.
        let (old, new) = {
            let mut state = self.state.lock();
            if view.term <= state.view_term {
                return;
            }
            state.view_term = view.term;
            slip_metrics::metrics().view_term.set(view.term as i64);
            let members = view.members.iter().filter(|m| m.up).filter_map(|m| NodeId::parse(&m.node_id).ok());
            let new = Arc::new(Ring::new(members));
            (self.ring.swap(new.clone()), new)
        };
        tracing::info!(term = view.term, members = new.members().len(), "control view applied");
        self.reannounce(&old, &new, None);
    }

    /// What each of its structures holds now (`slip_entries`).
    pub fn sizes(&self) -> slip_metrics::Sizes {
        let mut out = Vec::new();
        self.hub.sizes(&mut out);
        self.state.lock().sizes(&mut out);
        out.push(("edge_questions", self.questions.len()));
        out
    }

    /// The newest view term this edge has heard of.
    pub fn view_term(&self) -> u64 {
        self.state.lock().view_term
    }

    /// Re-announces local interest wherever a channel's owner changed from
    /// `old` to `new` (or is the node `joined`, just linked), moves session
    /// records the same way, and asks gaps being fetched again.
    fn reannounce(self: &Arc<Self>, old: &Ring, new: &Ring, joined: Option<&NodeId>) {
        let mut moved = 0;
        for channel in self.hub.channels() {
            let owner = new.owner(&channel);
            if owner != old.owner(&channel) || (owner.is_some() && owner == joined) {
                moved += 1;
                let interest = Interest { channel: channel.clone(), present: true, again: true, ..Default::default() };
                self.send_to(owner.cloned(), Frame { kind: Some(Kind::Interest(interest)) });
                // Behind the interest: the new owner rebuilds the presence from the edges.
                self.announce_presence(&channel);
            }
        }
        // Session records, and every connection's, go to the control node
        // owning its id now.
        for id in self.hub.session_ids() {
            if new.owner(&id) != old.owner(&id) || (new.owner(&id).is_some() && new.owner(&id) == joined) {
                self.record_session(&id);
            }
        }
        for id in self.hub.connection_ids() {
            if new.owner(&id) != old.owner(&id) || (new.owner(&id).is_some() && new.owner(&id) == joined) {
                self.record_connection(&id);
            }
        }
        // Gaps being fetched are asked of their channels' owners now: a
        // question to a node that left would go unanswered.
        {
            let mut state = self.state.lock();
            let steps = state.cursors.ask_again(Instant::now());
            self.carry_out(&mut state.cursors, steps);
        }
        if moved > 0 {
            tracing::info!(reannounced = moved, "interest told to new owners");
        }
    }

    /// Runs one command of a reply; with `more` (later commands follow), a
    /// publish returns only once it is delivered here ([`CONFIRM_TIMEOUT`]).
    pub async fn run(&self, command: Command, more: bool) {
        match route::action(command) {
            Action::Connection(command) => self.connection_command(command),
            // Boxed: its timer would otherwise sit in every connection task's
            // state, idle or not (measured: half a KiB per idle connection).
            Action::Channel(publish) if more => Box::pin(self.publish_confirmed(publish)).await,
            Action::Channel(publish) => self.publish(publish),
            Action::Accept => tracing::debug!("ACCEPT outside a reply to OPEN ignored"),
            Action::Poll { .. } => {}
        }
    }

    /// Sends a publish and waits, at most [`CONFIRM_TIMEOUT`], until it is
    /// delivered here (or its owner said it had no subscriber here).
    async fn publish_confirmed(&self, mut publish: Publish) {
        let owner = self.ring.load().owner(&publish.channel).cloned();
        let (Some(owner), Some(pending)) = (owner, self.questions.expect()) else {
            return self.publish(publish);
        };
        let ack = pending.id;
        publish.ack = ack;
        publish.reply_to = self.node_id().to_string();
        self.questions.asked(ack, owner.as_str());
        match self.send_via(&owner, Frame { kind: Some(Kind::Publish(publish)) }) {
            Ok(()) => {
                if self.questions.wait(pending, CONFIRM_TIMEOUT).await.is_none() {
                    tracing::debug!(ack, "publish not confirmed in time; going on");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "frame to control plane dropped");
                self.questions.forget(ack);
            }
        }
    }

    /// Publish `ack` was fanned out here: whatever waited for it may go on.
    fn confirmed(&self, ack: u64) {
        if ack != 0 {
            self.questions.answer(ack, reply::Kind::Found(true));
        }
    }

    /// Runs a command on a local connection, or sends it toward the edge holding it.
    pub fn connection_command(&self, command: ConnectionCommand) {
        if self.is_local(&command.connection_id) {
            self.run_local(&command);
        } else {
            let via = self.ring.load().owner(&command.connection_id).cloned();
            let frame = Frame { kind: Some(Kind::Command(command)) };
            self.send_onward(via, frame);
        }
    }

    /// Sends a publish (or CLOSE_CHANNEL) to the channel's owner.
    pub fn publish(&self, publish: Publish) {
        let owner = self.ring.load().owner(&publish.channel).cloned();
        self.send_onward(owner, Frame { kind: Some(Kind::Publish(publish)) });
    }

    /// Sends a frame any control node passes on (a publish, a command) to
    /// `node`, or, with no link to it, to another control node.
    fn send_via(&self, node: &NodeId, frame: Frame) -> Result<(), LinkError> {
        match self.control.send(node.as_str(), frame.clone()) {
            Err(LinkError::NoPeer(_)) => {
                let other = self.control.ids().into_iter().next().ok_or(LinkError::NoPeer(node.to_string()))?;
                self.control.send(other.as_str(), frame)
            }
            sent => sent,
        }
    }

    fn send_onward(&self, node: Option<NodeId>, frame: Frame) {
        let result = match &node {
            Some(node) => self.send_via(node, frame),
            None => Err(LinkError::NoPeer("(no control node)".into())),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "frame to control plane dropped");
        }
    }

    /// A connection ended: forget it and withdraw interest where it was the
    /// last. A session that had moved here from another edge is no longer
    /// here for the control nodes either.
    pub fn connection_closed(&self, connection_id: &str) {
        if let Some(session) = self.hub.session(connection_id) {
            let generation = session.lock().generation;
            self.record_ended(connection_id, generation);
        }
        self.leave_all_presence(connection_id, false);
        for channel in self.hub.unregister(connection_id) {
            self.interest(channel, false);
        }
        let named_here = connection_id.rsplit_once('.').is_some_and(|(node, _)| node == self.node_id().as_str());
        if !named_here {
            self.session_moved(connection_id, "");
        }
    }

    /// Tells every control node where session `id` lives now ("" once it ended).
    pub(crate) fn session_moved(&self, id: &str, edge: &str) {
        let moved = slip_proto::link_pb::SessionMoved { connection_id: id.to_owned(), edge: edge.to_owned() };
        for control in self.control.ids() {
            let frame = Frame { kind: Some(Kind::SessionMoved(moved.clone())) };
            if let Err(e) = self.control.send(control.as_str(), frame) {
                tracing::debug!(error = %e, "session move not told");
            }
        }
    }

    /// Whether the connection is held here: by its id, or a session resumed here from another edge.
    fn is_local(&self, connection_id: &str) -> bool {
        self.hub.contains(connection_id)
    }

    /// Applies a connection command here; false if the connection is not here.
    fn run_local(&self, command: &ConnectionCommand) -> bool {
        let id = command.connection_id.as_str();
        let Some(op) = &command.op else {
            return self.hub.contains(id);
        };
        let found = match op {
            Op::Send(msg) => {
                let payload = match &msg.body {
                    Some(message::Body::Text(text)) => Payload::Text(text),
                    Some(message::Body::Binary(data)) => Payload::Binary(data),
                    None => return self.hub.contains(id),
                };
                match self.hub.send(id, &Direct(payload)) {
                    Some(Push::Overflowed) => {
                        slip_metrics::metrics().slow_consumer_closes.inc();
                        tracing::info!(connection = id, "slow consumer closed");
                    }
                    Some(_) => {}
                    None => return false,
                }
                true
            }
            Op::Close(close) => {
                let code = CloseCode::from_u32(close.code).unwrap_or(route::DEFAULT_CLOSE_CODE);
                self.hub.close(id, code, &close.reason)
            }
            Op::Subscribe(channel) => match self.hub.subscribe(id, channel) {
                Subscribed::First => {
                    self.interest(channel.clone(), true);
                    self.join_presence(id, channel, &command.presence);
                    if command.join_leave {
                        self.watch_presence(id, channel);
                    }
                    true
                }
                Subscribed::TooMany => {
                    tracing::warn!(connection = id, channel, "subscription limit reached");
                    true
                }
                Subscribed::Added | Subscribed::Already => {
                    self.join_presence(id, channel, &command.presence);
                    if command.join_leave {
                        self.watch_presence(id, channel);
                    }
                    true
                }
                Subscribed::NoConnection => false,
            },
            Op::Unsubscribe(channel) => {
                self.leave_presence(id, channel);
                match self.hub.unsubscribe(id, channel) {
                    Unsubscribed::Last => {
                        self.interest(channel.clone(), false);
                        true
                    }
                    Unsubscribed::Removed | Unsubscribed::NotSubscribed => true,
                    Unsubscribed::NoConnection => false,
                }
            }
            Op::SetMetadata(json) => {
                let found = self.hub.set_metadata(id, Arc::from(json.as_str()));
                if found {
                    self.record_connection(id);
                }
                found
            }
        };
        if found && self.hub.session(id).is_some() && !matches!(op, Op::Send(_) | Op::Close(_)) {
            self.record_session(id);
        }
        found
    }

    fn interest(&self, channel: String, present: bool) {
        if !present {
            self.state.lock().cursors.forget(&channel);
        }
        let owner = self.ring.load().owner(&channel).cloned();
        self.send_to(owner, Frame { kind: Some(Kind::Interest(Interest { channel, present, ..Default::default() })) });
    }

    /// Confirms a SUBSCRIBE to the control node that asked (`to`) through the
    /// channel's owner: on the channel's lane, behind the interest the
    /// subscription announced, so by the time the asker hears "done", the
    /// owner knows this edge wants the channel's publishes.
    fn confirm_subscribe(&self, channel: &str, to: &NodeId, ack: u64) {
        if self.hub.subscribers(channel) == 0 {
            // Refused here (the subscription limit): no interest to wait for.
            self.reply(to, ack, reply::Kind::Found(true));
            return;
        }
        let owner = self.ring.load().owner(channel).cloned();
        let interest =
            Interest { channel: channel.to_owned(), present: true, ack, reply_to: to.to_string(), again: false };
        self.send_to(owner, Frame { kind: Some(Kind::Interest(interest)) });
    }

    fn send_to(&self, node: Option<NodeId>, frame: Frame) {
        let result = match &node {
            Some(node) => self.control.send(node.as_str(), frame),
            None => Err(LinkError::NoPeer("(no control node)".into())),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "frame to control plane dropped");
        }
    }

    /// A Deliver from a channel's owner, in offset order: one past a gap
    /// waits while the gap is fetched from the owner's history.
    fn deliver(self: &Arc<Self>, deliver: Deliver) {
        let mut state = self.state.lock();
        // The hub is asked only for a channel no cursor follows yet (its
        // first Deliver here): the common case costs no extra lock.
        let read = state.cursors.follows(&deliver.channel) || self.hub.subscribers(&deliver.channel) > 0;
        let steps = if read {
            state.cursors.deliver(deliver, Instant::now())
        } else {
            state.cursors.deliver_unread(deliver, Instant::now())
        };
        // Fanned out under the lock: whatever comes next goes out after.
        self.carry_out(&mut state.cursors, steps);
    }

    /// The owner's answer to a fetch of a gap (`None`: none came).
    fn history_answered(self: &Arc<Self>, id: u64, answer: Option<HistoryAnswer>) {
        if let Some(a) = &answer {
            tracing::debug!(
                id,
                epoch = a.epoch,
                top = a.top_offset,
                first = a.publications.first().map(|p| p.offset),
                count = a.publications.len(),
                view = a.view,
                not_owner = a.not_owner,
                "history answered"
            );
        }
        let mut state = self.state.lock();
        let steps = state.cursors.answered(id, answer, Instant::now());
        self.carry_out(&mut state.cursors, steps);
    }

    /// Does what the cursors said, with the state lock held.
    fn carry_out(self: &Arc<Self>, cursors: &mut Cursors, steps: Steps) {
        for deliver in steps.deliver {
            if let Some(body) = deliver.event.and_then(|e| e.body) {
                self.deliver_body(&deliver.channel, &deliver.epoch, deliver.offset, body);
            }
            self.confirmed(deliver.ack);
        }
        self.confirmed(steps.repeat_ack);
        if steps.stale > 0 {
            slip_metrics::metrics().stale_frames.inc_by(steps.stale);
        }
        if steps.lost > 0 {
            slip_metrics::metrics().stream_gaps.inc_by(steps.lost);
        }
        for gap in &steps.gaps {
            tracing::warn!(
                channel = gap.channel,
                after = gap.after,
                lost = gap.count,
                cause = gap.cause.as_str(),
                "publications missed for good"
            );
        }
        if !steps.fetch.is_empty() {
            let now = Instant::now();
            for (id, query) in steps.fetch {
                if !self.fetch(id, query) {
                    cursors.unsent(id, now);
                }
            }
            // The clock keeps their deadlines.
            self.wake_clock();
        }
    }

    /// Asks the channel's owner for a gap; false if it could not be sent
    /// (no owner known, no link). Unsent, it is asked again after
    /// [`FETCH_RETRY`](crate::cursor::FETCH_RETRY); unanswered within
    /// [`FETCH_TIMEOUT`](crate::cursor::FETCH_TIMEOUT), again too; the
    /// cursors give it up in the end.
    fn fetch(&self, id: u64, query: HistoryQuery) -> bool {
        let owner = self.ring.load().owner(&query.channel).cloned();
        tracing::debug!(id, channel = query.channel, since = query.since_offset, limit = query.limit, owner = ?owner, "history asked");
        let frame = Frame { kind: Some(Kind::Query(Query { id, kind: Some(query::Kind::History(query)) })) };
        owner.is_some_and(|owner| self.control.send(owner.as_str(), frame).is_ok())
    }

    /// A reply from a control node: to one of the cursors' fetches, or to a
    /// question in the registry.
    fn reply_arrived(self: &Arc<Self>, reply: Reply) {
        if !Cursors::is_fetch(reply.id) {
            self.questions.resolve(reply);
            return;
        }
        if let Some(reply::Kind::History(answer)) = reply.kind {
            self.history_answered(reply.id, Some(answer));
        }
    }

    fn deliver_body(&self, channel: &str, epoch: &str, offset: u64, body: channel_event::Body) {
        match &body {
            channel_event::Body::CloseChannel(_) => {
                self.hub.close_channel(channel, CHANNEL_CLOSED_CODE, "channel closed");
            }
            channel_event::Body::CloseSubscribers(close) => {
                let code = CloseCode::from_u32(close.code).unwrap_or(CHANNEL_CLOSED_CODE);
                self.hub.close_channel(channel, code, &close.reason);
            }
            publication => {
                if let Some(payload) = session::payload_of(publication) {
                    let envelope = || session::publication(channel, epoch, offset, payload);
                    self.fan_out(channel, (epoch, offset), session::plain(payload), envelope);
                }
            }
        }
    }

    fn fan_out(&self, channel: &str, place: (&str, u64), frame: Bytes, envelope: impl FnOnce() -> Bytes) {
        let delivered = self.hub.deliver(channel, place, &frame, envelope);
        let metrics = slip_metrics::metrics();
        metrics.deliveries.inc_by(delivered.queued as u64);
        metrics.slow_consumer_closes.inc_by(delivered.overflowed as u64);
        if delivered.overflowed > 0 {
            tracing::info!(channel, slow_consumers = delivered.overflowed, "slow consumers closed");
        }
    }

    fn answer(self: &Arc<Self>, from: &NodeId, query: Query) {
        let id = query.id;
        let kind = match query.kind {
            Some(query::Kind::TakeSession(take)) => {
                self.hand_over(from, id, &take);
                return;
            }
            Some(query::Kind::Connection(connection_id)) => match self.hub.view(&connection_id) {
                Some(view) => reply::Kind::Connection(ConnectionState {
                    connection_id,
                    metadata_json: view.metadata.to_string(),
                    channels: view.channels,
                    edge: self.node_id().to_string(),
                    region: self.config.region.clone(),
                }),
                None => reply::Kind::Found(false),
            },
            Some(query::Kind::Channel(channel)) => {
                let subscribers = self.hub.subscribers(&channel) as u64;
                reply::Kind::Channel(ChannelState { channel, subscribers, ..Default::default() })
            }
            Some(query::Kind::ChannelCounts(limit)) => {
                let limit = (limit as usize).min(MAX_CHANNEL_COUNTS);
                let channels = self
                    .hub
                    .channel_counts(limit)
                    .into_iter()
                    .map(|(channel, n)| ChannelState { channel, subscribers: n as u64, ..Default::default() })
                    .collect();
                reply::Kind::ChannelCounts(ChannelCounts { channels })
            }
            Some(query::Kind::Stats(_)) => {
                let metrics = slip_metrics::metrics();
                // One lock for both: a guard held to the end of the literal
                // and a second lock inside it would deadlock this node.
                let (parked_sessions, view_term) = {
                    let state = self.state.lock();
                    (state.parking.len() as u64, state.view_term)
                };
                reply::Kind::Stats(EdgeStats {
                    connections: self.hub.connections() as u64,
                    channels: self.hub.channel_count() as u64,
                    deliveries: metrics.deliveries.get(),
                    stream_gaps: metrics.stream_gaps.get(),
                    callback_errors: slip_metrics::callback_errors_total(),
                    parked_sessions,
                    callback_latency: metrics.callback_seconds.counts(),
                    view_term,
                })
            }
            Some(query::Kind::Wait(wait)) => {
                // Waiting must not hold up the link's other frames.
                let edge = self.clone();
                let from = from.clone();
                let stopping = self.stopping.clone();
                self.tasks.spawn(stopping.run_until_cancelled_owned(async move {
                    let timeout = Duration::from_millis(u64::from(wait.timeout_ms).min(MAX_POLL_TIMEOUT_MS));
                    let found = edge.hub.wait_for(&wait.connection_id, timeout).await;
                    edge.reply(&from, id, reply::Kind::Found(found));
                }));
                return;
            }
            // Histories and presence are kept by control nodes.
            Some(
                query::Kind::History(_)
                | query::Kind::Heads(_)
                | query::Kind::Copy(_)
                | query::Kind::Presence(_)
                | query::Kind::EdgeLinked(_)
                | query::Kind::ChannelStreams(_),
            )
            | None => reply::Kind::Found(false),
        };
        self.reply(from, id, kind);
    }

    pub(super) fn reply(&self, to: &NodeId, id: u64, kind: reply::Kind) {
        let frame = Frame { kind: Some(Kind::Reply(Reply { id, kind: Some(kind) })) };
        self.send_to(Some(to.clone()), frame);
    }
}

/// Frames from control nodes. Implemented on `Arc<Edge>` so waiting queries
/// can keep the edge alive.
pub struct EdgeFrames(pub Arc<Edge>);

impl FrameHandler for EdgeFrames {
    fn on_frame(&self, from: &NodeId, frame: Frame) {
        let edge = &self.0;
        match frame.kind {
            Some(Kind::Deliver(deliver)) => edge.deliver(deliver),
            Some(Kind::Command(command)) => {
                let ack = command.ack;
                let found = if edge.is_local(&command.connection_id) { edge.run_local(&command) } else { false };
                match (&command.op, found, ack) {
                    (_, _, 0) => {}
                    (Some(Op::Subscribe(channel)), true, _) => edge.confirm_subscribe(channel, from, ack),
                    _ => edge.reply(from, ack, reply::Kind::Found(found)),
                }
            }
            Some(Kind::Query(query)) => edge.answer(from, query),
            Some(Kind::Drain(_)) => {
                tracing::info!(from = %from, "drain requested by a control node");
                edge.drain_requested.notify_one();
            }
            // The owner confirming a publish this edge had no subscriber for.
            Some(Kind::Head(head)) => {
                tracing::debug!(from = %from, channel = head.channel, epoch = head.epoch, top = head.top, view = head.view, "head");
                let mut state = edge.state.lock();
                let steps = state.cursors.head(&head.channel, &head.epoch, head.top, head.view, Instant::now());
                edge.carry_out(&mut state.cursors, steps);
            }
            Some(Kind::Reply(reply)) => edge.reply_arrived(reply),
            Some(Kind::PresenceChanges(changes)) => edge.presence_changes(changes),
            Some(Kind::View(view)) => edge.view(&view),
            // A session this edge reported lives elsewhere now: this copy goes.
            Some(Kind::SessionMoved(moved)) if moved.edge != edge.node_id().as_str() => {
                edge.let_go(&moved.connection_id, "taken over elsewhere");
            }
            Some(
                Kind::Hello(_)
                | Kind::Interest(_)
                | Kind::Publish(_)
                | Kind::Members(_)
                | Kind::Replicate(_)
                | Kind::Replicated(_)
                | Kind::SessionMoved(_)
                | Kind::SessionRecord(_)
                | Kind::Presence(_)
                | Kind::Occupancy(_)
                | Kind::ConnectionRecord(_)
                | Kind::Consensus(_),
            )
            | None => {
                tracing::debug!(from = %from, "unexpected frame on an edge ignored");
            }
        }
    }

    fn on_link_up(&self, hello: &Hello, link: Arc<dyn Link>) {
        if hello.role == Role::Control as i32 {
            self.0.add_control_link(link);
        }
    }

    fn on_link_down(&self, _peer: &NodeId, link: &Arc<dyn Link>) {
        self.0.remove_control_link(link);
    }
}

mod clock;
mod closes;
mod presence;
mod resume;
mod state;
#[cfg(test)]
mod tests;
pub(crate) use resume::Ticket;
