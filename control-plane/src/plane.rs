//! The control plane as a node: owns channels on the ring, keeps the
//! interest table, stamps and forwards publishes once per interested edge,
//! and routes connection commands to the edge named in the connection id.
//! Both control APIs (gRPC, HTTP JSON) call into this; it does no I/O
//! beyond queueing frames on links.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use slip_link::{FrameHandler, Link, Peers};
use slip_proto::channel;
use slip_proto::ids::{ConnectionId, NodeId};
use slip_proto::limits::MAX_POLL_TIMEOUT_MS;
use slip_proto::link_pb::{
    ChannelState, ConnectionCommand, ConnectionState, Drain, Frame, Hello, HistoryAnswer, HistoryEntry, HistoryQuery,
    Publish, Query, Reply, WaitForConnection, frame::Kind, query, reply,
};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::questions::MAX_PENDING_QUERIES;
use crate::questions::Questions;
pub use crate::routing::{ChannelView, Published, RING_SETTLE};
use crate::routing::{Outlet, Routing};
use crate::streams::{self, History, MAX_IDEMPOTENCY_KEY_BYTES, StreamLimits};
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSummary {
    pub channel: String,
    pub subscribers: u64,
    pub edges: u32,
    pub owner: String,
    pub last_offset: u64,
    pub epoch: String,
}

/// A control node: its links, what it knows (one [`Routing`] behind one
/// lock, which is only ever taken before the links' own, never after), the
/// questions it waits on, and the tasks it runs.
pub struct ControlPlane {
    node_id: NodeId,
    /// Links to edges and to other control nodes.
    peers: Peers,
    routing: Mutex<Routing>,
    questions: Questions,
    /// Wakes the clock task (see `new`): a deadline moved.
    clock: Arc<Notify>,
    /// The clock and the answers to other control nodes' questions.
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// What [`ControlPlane::publish_start`] leaves to wait on.
pub enum Receipt {
    /// Published here, by this node as the channel's owner.
    Done(Published),
    /// The owner answers `id`.
    Waiting { id: u64, answer: oneshot::Receiver<reply::Kind>, patience: Duration },
}

impl Receipt {
    /// Where the publish went; UNAVAILABLE when its owner did not say in time.
    pub async fn wait(self, plane: &ControlPlane) -> Result<Published, ControlError> {
        let (id, answer, patience) = match self {
            Receipt::Done(published) => return Ok(published),
            Receipt::Waiting { id, answer, patience } => (id, answer, patience),
        };
        let answered = tokio::time::timeout(patience, answer).await;
        plane.questions.forget(id);
        match answered {
            Ok(Ok(reply::Kind::Published(p))) => Ok(Published { offset: p.offset, epoch: p.epoch, edges: p.edges }),
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
    /// A control plane with the default stream limits; see [`ControlPlane::with_limits`].
    pub fn new(node_id: NodeId) -> Arc<Self> {
        Self::with_limits(node_id, StreamLimits::default())
    }

    /// A control plane; its clock task runs on the current tokio runtime
    /// until [`ControlPlane::shutdown`] or the plane is dropped.
    pub fn with_limits(node_id: NodeId, limits: StreamLimits) -> Arc<Self> {
        let plane = Arc::new(Self {
            routing: Mutex::new(Routing::new(node_id.clone(), limits, Instant::now())),
            node_id,
            peers: Peers::default(),
            questions: Questions::default(),
            clock: Arc::new(Notify::new()),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        });
        // The plane's one clock: asleep until the routing's next deadline (a
        // held publish falling due, the ring settling), woken when one moves.
        let (weak, wake) = (Arc::downgrade(&plane), plane.clock.clone());
        let stop = plane.shutdown.clone();
        plane.tasks.spawn(stop.clone().run_until_cancelled_owned(async move {
            loop {
                let Some(plane) = weak.upgrade() else { return };
                let next = plane.routing.lock().next_deadline();
                // Not holding the plane while asleep: dropping it ends the task.
                drop(plane);
                // A wake-up in between is kept as a permit: nothing is missed.
                let woken = wake.notified();
                match next {
                    Some(at) => {
                        tokio::select! {
                            _ = tokio::time::sleep_until(at) => {}
                            _ = woken => continue,
                        }
                    }
                    None => {
                        woken.await;
                        continue;
                    }
                }
                let Some(plane) = weak.upgrade() else { return };
                plane.routing.lock().on_clock(Instant::now(), &mut Links(&plane));
            }
        }));
        plane
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

    pub fn add_edge_link(&self, link: Arc<dyn Link>) {
        self.peers.insert(link);
    }

    pub fn set_region(&self, region: &str) {
        self.routing.lock().set_region(region);
    }

    /// A link is up. Another control node joins the ring.
    pub fn link_up(&self, hello: &Hello, link: Arc<dyn Link>) {
        let peer = link.peer().clone();
        let first = self.peers.insert(link);
        let mut routing = self.routing.lock();
        if routing.linked(&peer, hello) && first {
            routing.rebuild_ring(&self.peers.ids(), Instant::now(), &mut Links(self));
            drop(routing);
            self.clock.notify_one();
        }
    }

    /// A link is down. When it was the peer's last: an edge's interest goes
    /// with it; a control node leaves the ring.
    pub fn link_down(&self, peer: &NodeId, link: &Arc<dyn Link>) {
        if !self.peers.remove_link(link) {
            return;
        }
        let mut routing = self.routing.lock();
        if routing.is_control(peer) {
            routing.rebuild_ring(&self.peers.ids(), Instant::now(), &mut Links(self));
            drop(routing);
            self.clock.notify_one();
            return;
        }
        // Under the routing lock: a new link from the same edge is in `peers`
        // before any of its frames is handled, so if it is there now its
        // interest is fresh and must stay.
        if !self.peers.contains(peer) {
            routing.edge_gone(peer);
        }
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
        let (id, answer) = self.expect_reply()?;
        (publish.ack, publish.reply_to) = (id, self.node_id.to_string());
        if let Err(e) = self.place(publish) {
            self.questions.forget(id);
            return Err(ControlError::Unavailable(e.to_string()));
        }
        Ok(Receipt::Waiting { id, answer, patience: QUERY_TIMEOUT })
    }

    /// Fans a publish out here when this node owns its channel; else sends it to the owner.
    fn place(&self, publish: Publish) -> Result<(), slip_link::LinkError> {
        let mut routing = self.routing.lock();
        let Some(owner) = routing.owner_elsewhere(&publish.channel).cloned() else {
            self.fan_out_locked(&mut routing, publish);
            return Ok(());
        };
        drop(routing);
        self.peers.send(owner.as_str(), Frame { kind: Some(Kind::Publish(publish)) })
    }

    /// A publish from an edge (a callback reply's PUBLISH), as it came: to the
    /// owner, or fanned out here. Its `ack`, if any, is the edge's.
    fn route(&self, publish: Publish) {
        if channel::validate(&publish.channel).is_err() {
            return;
        }
        if let Err(e) = self.place(publish) {
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
            return Ok(self.routing.lock().history(channel, since_epoch, since_offset, limit as usize, Instant::now()));
        };
        let (qid, answer) = self.expect_reply()?;
        let question = HistoryQuery { channel: channel.into(), since_epoch: since_epoch.into(), since_offset, limit };
        let frame = Frame { kind: Some(Kind::Query(Query { id: qid, kind: Some(query::Kind::History(question)) })) };
        match self.ask(owner.as_str(), qid, frame, answer, QUERY_TIMEOUT).await? {
            reply::Kind::History(answer) => Ok(History {
                epoch: answer.epoch.into(),
                top_offset: answer.top_offset,
                publications: answer
                    .publications
                    .into_iter()
                    .map(|p| streams::Publication { offset: p.offset, event: p.event.unwrap_or_default() })
                    .collect(),
                complete: answer.complete,
            }),
            _ => Err(ControlError::Unavailable(format!("owner {owner} gave no history"))),
        }
    }

    /// As the owner (or as told by another control node): fan out here.
    fn fan_out_locked(&self, routing: &mut Routing, publish: Publish) -> Published {
        let held = !publish.prev_id.is_empty() || !publish.id.is_empty();
        let published = routing.fan_out(publish, Instant::now(), &mut Links(self));
        if held {
            // A held publish may have set the clock's next deadline.
            self.clock.notify_one();
        }
        published
    }

    /// Sends a command to the connection's edge. With `confirm`, waits for the
    /// edge to say whether the connection exists (NOT_FOUND if not).
    pub async fn connection_command(&self, mut command: ConnectionCommand, confirm: bool) -> Result<(), ControlError> {
        let id = ConnectionId::parse(&command.connection_id).map_err(|e| ControlError::Invalid(e.to_string()))?;
        if !confirm {
            command.ack = 0;
            let frame = Frame { kind: Some(Kind::Command(command)) };
            return self.peers.send(id.edge(), frame).map_err(|e| ControlError::Unavailable(e.to_string()));
        }
        let (ack, answer) = self.expect_reply()?;
        command.ack = ack;
        let frame = Frame { kind: Some(Kind::Command(command)) };
        match self.ask(id.edge(), ack, frame, answer, QUERY_TIMEOUT).await? {
            reply::Kind::Found(true) => Ok(()),
            _ => Err(ControlError::NotFound(format!("connection {id}"))),
        }
    }

    pub async fn get_connection(&self, connection_id: &str) -> Result<ConnectionState, ControlError> {
        let id = ConnectionId::parse(connection_id).map_err(|e| ControlError::Invalid(e.to_string()))?;
        let (qid, answer) = self.expect_reply()?;
        let query = Query { id: qid, kind: Some(query::Kind::Connection(id.to_string())) };
        let frame = Frame { kind: Some(Kind::Query(query)) };
        match self.ask(id.edge(), qid, frame, answer, QUERY_TIMEOUT).await? {
            reply::Kind::Connection(state) => Ok(state),
            _ => Err(ControlError::NotFound(format!("connection {id}"))),
        }
    }

    /// Waits up to `timeout_ms` for a connection to exist; true if it does.
    pub async fn poll_for_connection(&self, connection_id: &str, timeout_ms: u64) -> Result<bool, ControlError> {
        let id = ConnectionId::parse(connection_id).map_err(|e| ControlError::Invalid(e.to_string()))?;
        let timeout_ms = timeout_ms.min(MAX_POLL_TIMEOUT_MS);
        let (qid, answer) = self.expect_reply()?;
        let wait = WaitForConnection { connection_id: id.to_string(), timeout_ms: timeout_ms as u32 };
        let frame = Frame { kind: Some(Kind::Query(Query { id: qid, kind: Some(query::Kind::Wait(wait)) })) };
        let patience = Duration::from_millis(timeout_ms) + QUERY_TIMEOUT;
        Ok(matches!(self.ask(id.edge(), qid, frame, answer, patience).await?, reply::Kind::Found(true)))
    }

    /// The channel as its owner sees it, with subscriber counts from each interested edge.
    pub async fn get_channel(&self, channel: &str) -> Result<ChannelSummary, ControlError> {
        channel::validate(channel).map_err(|e| ControlError::Invalid(e.to_string()))?;
        let owner = self.routing.lock().owner_elsewhere(channel).cloned();
        if let Some(owner) = owner {
            let (qid, answer) = self.expect_reply()?;
            let frame =
                Frame { kind: Some(Kind::Query(Query { id: qid, kind: Some(query::Kind::Channel(channel.into())) })) };
            return match self.ask(owner.as_str(), qid, frame, answer, QUERY_TIMEOUT * 2).await? {
                reply::Kind::Channel(state) => Ok(ChannelSummary {
                    channel: state.channel,
                    subscribers: state.subscribers,
                    edges: state.edges,
                    owner: state.owner,
                    last_offset: state.last_offset,
                    epoch: state.epoch,
                }),
                _ => Err(ControlError::Unavailable(format!("owner {owner} gave no answer"))),
            };
        }
        self.owned_channel(channel).await
    }

    /// The channel as its owner (this node) sees it.
    async fn owned_channel(&self, channel: &str) -> Result<ChannelSummary, ControlError> {
        let owner = self.node_id.clone();
        let ChannelView { edges, epoch, top_offset } = self.routing.lock().channel(channel);
        let mut subscribers = 0;
        for answer in self.ask_each(&edges, || query::Kind::Channel(channel.into())).await {
            if let reply::Kind::Channel(state) = answer? {
                subscribers += state.subscribers;
            }
        }
        Ok(ChannelSummary {
            channel: channel.to_owned(),
            subscribers,
            edges: edges.len() as u32,
            owner: owner.to_string(),
            last_offset: top_offset,
            epoch,
        })
    }

    /// This node, the control nodes and the edges it links to.
    pub async fn nodes(&self) -> Vec<NodeInfo> {
        let (ring, region) = {
            let routing = self.routing.lock();
            (routing.ring().clone(), routing.region().to_owned())
        };
        let mut nodes = vec![NodeInfo {
            node_id: self.node_id.to_string(),
            role: "control".into(),
            region,
            ring_share: ring.share(&self.node_id),
            connections: 0,
            linked: true,
            rtt_ms: 0.0,
        }];
        let mut peers = self.peers.ids();
        peers.sort();
        let edges: Vec<NodeId> = peers.iter().filter(|p| !self.is_control(p)).cloned().collect();
        let stats: HashMap<NodeId, u64> = edges
            .iter()
            .cloned()
            .zip(self.ask_each(&edges, || query::Kind::Stats(true)).await)
            .filter_map(|(edge, answer)| match answer {
                Ok(reply::Kind::Stats(stats)) => Some((edge, stats.connections)),
                _ => None,
            })
            .collect();
        for peer in peers {
            let (hello, is_control) = {
                let routing = self.routing.lock();
                (routing.hello(&peer).cloned().unwrap_or_default(), routing.is_control(&peer))
            };
            let rtt = self.peers.get(&peer).and_then(|l| l.rtt()).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
            let connections = stats.get(&peer).copied().unwrap_or(0);
            nodes.push(NodeInfo {
                node_id: peer.to_string(),
                role: if is_control { "control" } else { "edge" }.into(),
                region: hello.region,
                ring_share: ring.share(&peer),
                connections,
                linked: true,
                rtt_ms: rtt,
            });
        }
        nodes
    }

    /// Asks every node in `nodes` the same question at once, so all the
    /// answers come within one [`QUERY_TIMEOUT`]; answers in `nodes`' order.
    async fn ask_each(
        &self,
        nodes: &[NodeId],
        question: impl Fn() -> query::Kind,
    ) -> Vec<Result<reply::Kind, ControlError>> {
        let asks = nodes.iter().map(|node| {
            let asked = self.expect_reply().map(|(qid, answer)| {
                let frame = Frame { kind: Some(Kind::Query(Query { id: qid, kind: Some(question()) })) };
                (qid, frame, answer)
            });
            async move {
                let (qid, frame, answer) = asked?;
                self.ask(node.as_str(), qid, frame, answer, QUERY_TIMEOUT).await
            }
        });
        futures_util::future::join_all(asks).await
    }

    /// The channels with the most subscribers across every edge this node links to.
    pub async fn top_channels(&self, limit: usize) -> Vec<ChannelSummary> {
        let mut merged: HashMap<String, (u64, u32)> = HashMap::new();
        let edges: Vec<NodeId> = self.peers.ids().into_iter().filter(|p| !self.is_control(p)).collect();
        for answer in self.ask_each(&edges, || query::Kind::ChannelCounts(limit as u32)).await {
            if let Ok(reply::Kind::ChannelCounts(counts)) = answer {
                for state in counts.channels {
                    let entry = merged.entry(state.channel).or_default();
                    entry.0 += state.subscribers;
                    entry.1 += 1;
                }
            }
        }
        let routing = self.routing.lock();
        let mut top: Vec<ChannelSummary> = merged
            .into_iter()
            .map(|(channel, (subscribers, edges))| ChannelSummary {
                owner: routing.ring().owner(&channel).map(|o| o.to_string()).unwrap_or_default(),
                // Known here only for channels this node owns.
                last_offset: routing.channel(&channel).top_offset,
                epoch: routing.channel(&channel).epoch,
                channel,
                subscribers,
                edges,
            })
            .collect();
        top.sort_unstable_by(|a, b| b.subscribers.cmp(&a.subscribers).then_with(|| a.channel.cmp(&b.channel)));
        top.truncate(limit);
        top
    }

    /// Asks an edge to drain and exit; returns how many connections it had.
    pub async fn drain_edge(&self, edge: &str) -> Result<u64, ControlError> {
        let id = NodeId::parse(edge).map_err(|e| ControlError::Invalid(e.to_string()))?;
        if self.is_control(&id) || id == self.node_id {
            return Err(ControlError::Invalid(format!("{edge} is a control node; only edges drain")));
        }
        if !self.peers.contains(&id) {
            return Err(ControlError::NotFound(format!("no edge {edge} is linked to this control node")));
        }
        let stats = self.ask_each(std::slice::from_ref(&id), || query::Kind::Stats(true)).await.pop();
        let connections = match stats {
            Some(Ok(reply::Kind::Stats(stats))) => stats.connections,
            _ => 0,
        };
        self.peers
            .send(edge, Frame { kind: Some(Kind::Drain(Drain {})) })
            .map_err(|e| ControlError::Unavailable(e.to_string()))?;
        Ok(connections)
    }

    fn expect_reply(&self) -> Result<(u64, oneshot::Receiver<reply::Kind>), ControlError> {
        self.questions.expect().ok_or_else(|| ControlError::Unavailable("too many questions to edges in flight".into()))
    }

    async fn ask(
        &self,
        node: &str,
        id: u64,
        frame: Frame,
        answer: oneshot::Receiver<reply::Kind>,
        patience: Duration,
    ) -> Result<reply::Kind, ControlError> {
        if let Err(e) = self.peers.send(node, frame) {
            self.questions.forget(id);
            return Err(ControlError::Unavailable(e.to_string()));
        }
        let answered = tokio::time::timeout(patience, answer).await;
        self.questions.forget(id);
        match answered {
            Ok(Ok(kind)) => Ok(kind),
            _ => Err(ControlError::Unavailable(format!("node {node} did not answer"))),
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The clock task holds only a weak reference: let it see we are gone.
        self.clock.notify_one();
    }
}

/// Frames from edges and other control nodes.
pub struct ControlFrames(pub Arc<ControlPlane>);

impl FrameHandler for ControlFrames {
    fn on_frame(&self, from: &NodeId, frame: Frame) {
        let plane = &self.0;
        match frame.kind {
            Some(Kind::Interest(interest)) => {
                if channel::validate(&interest.channel).is_err() {
                    return;
                }
                plane.routing.lock().interest(from, interest, &mut Links(plane));
            }
            Some(Kind::Publish(publish)) => {
                let mut routing = plane.routing.lock();
                if routing.is_control(from) {
                    plane.fan_out_locked(&mut routing, publish);
                    return;
                }
                drop(routing);
                plane.route(publish);
            }
            Some(Kind::Query(Query { id, kind: Some(query::Kind::Channel(channel)) })) => {
                // Another control node asks the owner about a channel.
                let (asker, from) = (plane.clone(), from.clone());
                let stop = plane.shutdown.clone();
                plane.tasks.spawn(stop.run_until_cancelled_owned(async move {
                    let plane = asker;
                    let Ok(summary) = plane.owned_channel(&channel).await else { return };
                    let state = ChannelState {
                        channel: summary.channel,
                        subscribers: summary.subscribers,
                        edges: summary.edges,
                        owner: summary.owner,
                        last_offset: summary.last_offset,
                        epoch: summary.epoch,
                    };
                    let reply = Reply { id, kind: Some(reply::Kind::Channel(state)) };
                    let _ = plane.peers.send(from.as_str(), Frame { kind: Some(Kind::Reply(reply)) });
                }));
            }
            Some(Kind::Query(Query { id, kind: Some(query::Kind::History(question)) })) => {
                // Another control node asks the owner for history.
                let history = plane.routing.lock().history(
                    &question.channel,
                    &question.since_epoch,
                    question.since_offset,
                    question.limit as usize,
                    Instant::now(),
                );
                let answer = HistoryAnswer {
                    epoch: history.epoch.to_string(),
                    top_offset: history.top_offset,
                    publications: history
                        .publications
                        .into_iter()
                        .map(|p| HistoryEntry { offset: p.offset, event: Some(p.event) })
                        .collect(),
                    complete: history.complete,
                };
                let reply = Reply { id, kind: Some(reply::Kind::History(answer)) };
                let _ = plane.peers.send(from.as_str(), Frame { kind: Some(Kind::Reply(reply)) });
            }
            Some(Kind::Command(command)) => {
                // An edge addressing a connection on another edge: pass it on.
                if let Ok(id) = ConnectionId::parse(&command.connection_id) {
                    let frame = Frame { kind: Some(Kind::Command(command)) };
                    if let Err(e) = plane.peers.send(id.edge(), frame) {
                        tracing::debug!(error = %e, "command for a connection dropped");
                    }
                }
            }
            Some(Kind::Reply(reply)) => plane.questions.resolve(reply),
            Some(Kind::Replicate(copy)) => {
                let mut routing = plane.routing.lock();
                // Only a control node may write a stream's history.
                if routing.is_control(from) && channel::validate(&copy.channel).is_ok() {
                    routing.store_replica(from, copy, Instant::now(), &mut Links(plane));
                }
            }
            Some(Kind::Replicated(stored)) => {
                let mut routing = plane.routing.lock();
                if routing.is_control(from) {
                    routing.replicated(from, stored, &mut Links(plane));
                }
            }
            Some(
                Kind::Hello(_) | Kind::Deliver(_) | Kind::Query(_) | Kind::Members(_) | Kind::Drain(_) | Kind::Head(_),
            )
            | None => {
                tracing::debug!(from = %from, "unexpected frame on a control node ignored");
            }
        }
    }

    fn on_link_up(&self, hello: &Hello, link: Arc<dyn Link>) {
        self.0.link_up(hello, link);
    }

    fn on_link_down(&self, peer: &NodeId, link: &Arc<dyn Link>) {
        self.0.link_down(peer, link);
    }
}
