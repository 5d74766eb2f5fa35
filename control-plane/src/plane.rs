//! The control plane as a node: owns channels on the ring, keeps the
//! interest table, stamps and forwards publishes once per interested edge,
//! and routes connection commands to the edge named in the connection id.
//! Both control APIs (gRPC, HTTP JSON) call into this; it does no I/O
//! beyond queueing frames on links.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use slip_link::{FrameHandler, Link, Peers};
use slip_proto::channel;
use slip_proto::ids::{ConnectionId, NodeId};
use slip_proto::limits::MAX_POLL_TIMEOUT_MS;
use slip_proto::link_pb::{
    ChannelState, ConnectionCommand, ConnectionState, Deliver, Drain, Frame, Hello, Publish, Query, Reply, Role,
    WaitForConnection, frame::Kind, query, reply,
};
use slip_proto::ring::Ring;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::interest::InterestTable;
use crate::sequencer::{Sequence, Sequencer};
pub use slip_proto::pb::NodeInfo;

/// How long a question to an edge may take before the caller gets UNAVAILABLE.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the ring must hold still before interest in channels owned
/// elsewhere is forgotten.
pub const RING_SETTLE: Duration = Duration::from_secs(10);
/// Questions to edges awaiting an answer, at most.
pub const MAX_PENDING_QUERIES: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    /// The channel offset the owner gave this publish (0 if forwarded or nobody listens).
    pub offset: u64,
    pub edges: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSummary {
    pub channel: String,
    pub subscribers: u64,
    pub edges: u32,
    pub owner: String,
    pub last_offset: u64,
}

pub struct ControlPlane {
    node_id: NodeId,
    /// Links to edges and to other control nodes.
    peers: Peers,
    /// Every control node that ever linked here. The ring is those of them
    /// with a live link, and this node: derived from `peers` each time, so
    /// links coming and going at once cannot leave the two disagreeing.
    controls: RwLock<HashSet<NodeId>>,
    /// What each peer said of itself when it linked.
    hellos: RwLock<HashMap<NodeId, Hello>>,
    /// This node's region, for `slip admin nodes`.
    region: RwLock<String>,
    ring: RwLock<Ring>,
    /// When interest in channels owned elsewhere is next pruned: RING_SETTLE
    /// after the latest ring change, so a ring still moving prunes nothing.
    settle_at: Mutex<Option<Instant>>,
    interest: Mutex<InterestTable>,
    /// GRIP `id`/`prev-id` ordering of the channels this node owns.
    sequencer: Mutex<Sequencer<Publish>>,
    /// Wakes the plane's clock task (see `new`): a deadline was set, or (on
    /// drop) the plane is gone.
    clock: Arc<tokio::sync::Notify>,
    pending: Mutex<HashMap<u64, oneshot::Sender<reply::Kind>>>,
    next_query: AtomicU64,
}

impl ControlPlane {
    /// A control plane; its clock task runs on the current tokio runtime.
    pub fn new(node_id: NodeId) -> Arc<Self> {
        let plane = Arc::new(Self {
            ring: RwLock::new(Ring::new([node_id.clone()])),
            node_id,
            controls: RwLock::new(HashSet::new()),
            hellos: RwLock::new(HashMap::new()),
            region: RwLock::new(String::new()),
            settle_at: Mutex::new(None),
            peers: Peers::default(),
            interest: Mutex::new(InterestTable::default()),
            sequencer: Mutex::new(Sequencer::default()),
            clock: Arc::new(tokio::sync::Notify::new()),
            pending: Mutex::new(HashMap::new()),
            next_query: AtomicU64::new(1),
        });
        // The plane's one clock: asleep until its next deadline (a held
        // publish falling due, the ring settling), woken when one is set.
        let (weak, wake) = (Arc::downgrade(&plane), plane.clock.clone());
        tokio::spawn(async move {
            loop {
                let next = match weak.upgrade() {
                    Some(plane) => plane.next_deadline(),
                    None => return,
                };
                match next {
                    Some(at) => {
                        tokio::select! {
                            _ = tokio::time::sleep_until(at) => {}
                            _ = wake.notified() => continue,
                        }
                    }
                    None => {
                        wake.notified().await;
                        continue;
                    }
                }
                let Some(plane) = weak.upgrade() else { return };
                plane.on_clock(Instant::now());
            }
        });
        plane
    }

    /// The earliest thing the clock must do.
    fn next_deadline(&self) -> Option<Instant> {
        let held = self.sequencer.lock().next_deadline();
        let settle = *self.settle_at.lock();
        held.into_iter().chain(settle).min()
    }

    /// What is due at `now`: held publishes that waited long enough, and the
    /// pruning of interest once the ring has held still.
    fn on_clock(&self, now: Instant) {
        let due = self.sequencer.lock().expire(now);
        for (_, publish) in due {
            self.stamp_and_send(publish);
        }
        if self.settle_at.lock().take_if(|at| *at <= now).is_some() {
            let ring = self.ring.read().clone();
            let dropped = self.interest.lock().retain(|channel| ring.owner(channel) == Some(&self.node_id));
            if dropped > 0 {
                tracing::info!(channels = dropped, "interest in channels owned elsewhere dropped");
            }
        }
    }

    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    pub fn add_edge_link(&self, link: Arc<dyn Link>) {
        self.peers.insert(link);
    }

    /// A link is up. Another control node joins the ring.
    pub fn set_region(&self, region: &str) {
        *self.region.write() = region.to_owned();
    }

    pub fn link_up(self: &Arc<Self>, hello: &Hello, link: Arc<dyn Link>) {
        self.hellos.write().insert(link.peer().clone(), hello.clone());
        let is_control = hello.role == Role::Control as i32;
        if is_control {
            self.controls.write().insert(link.peer().clone());
        }
        if self.peers.insert(link) && is_control {
            self.ring_changed();
        }
    }

    /// A link is down. When it was the peer's last: an edge's interest goes
    /// with it; a control node leaves the ring.
    pub fn link_down(self: &Arc<Self>, peer: &NodeId, link: &Arc<dyn Link>) {
        if !self.peers.remove_link(link) {
            return;
        }
        if self.is_control(peer) {
            self.ring_changed();
            return;
        }
        // Under the interest lock: a new link from the same edge is in
        // `peers` before any of its frames is handled, so if it is there now
        // its interest is fresh and must stay.
        let mut interest = self.interest.lock();
        if !self.peers.contains(peer) {
            let dropped = interest.drop_edge(peer);
            tracing::info!(edge = %peer, channels = dropped, "edge gone; its interest dropped");
        }
    }

    fn is_control(&self, node: &NodeId) -> bool {
        self.controls.read().contains(node)
    }

    /// Rebuilds the ring and forgets interest in channels this node no
    /// longer owns (the edges announce it to the new owners).
    fn ring_changed(&self) {
        {
            // Under the ring's lock, so the last of two concurrent changes saw both.
            let mut ring = self.ring.write();
            let members: Vec<NodeId> =
                self.peers.ids().into_iter().filter(|p| self.is_control(p)).chain([self.node_id.clone()]).collect();
            *ring = Ring::new(members);
            tracing::info!(members = ring.members().len(), "control ring changed");
            // Forget interest in channels this node no longer owns once the
            // ring has held still: while nodes are still finding each other,
            // a passing view must not throw away interest the final one needs.
            *self.settle_at.lock() = Some(Instant::now() + RING_SETTLE);
        }
        self.clock.notify_one();
    }

    /// How many edges this node's interest table lists for `channel`.
    pub fn interested_edges(&self, channel: &str) -> usize {
        self.interest.lock().edges(channel).len()
    }

    /// Control nodes in the ring, this one included.
    pub fn members(&self) -> Vec<NodeId> {
        self.ring.read().members().to_vec()
    }

    /// Publishes to a channel (text, binary, or close-channel).
    pub fn publish(&self, publish: Publish) -> Result<Published, ControlError> {
        channel::validate(&publish.channel).map_err(|e| ControlError::Invalid(e.to_string()))?;
        if publish.event.as_ref().and_then(|e| e.body.as_ref()).is_none() {
            return Err(ControlError::Invalid("publish without a message".into()));
        }
        let owner = self.ring.read().owner(&publish.channel).cloned();
        match owner {
            Some(owner) if owner != self.node_id => {
                self.peers
                    .send(owner.as_str(), Frame { kind: Some(Kind::Publish(publish)) })
                    .map_err(|e| ControlError::Unavailable(e.to_string()))?;
                Ok(Published::default())
            }
            _ => Ok(self.fan_out(publish)),
        }
    }

    /// As the owner: stamp the publish and forward it once per interested edge.
    /// A publish another control node forwarded here comes straight here, even
    /// if this node's view of the ring differs: one hop, never a loop.
    fn fan_out(&self, publish: Publish) -> Published {
        if publish.id.is_empty() && publish.prev_id.is_empty() {
            return self.stamp_and_send(publish);
        }
        let sequence = Sequence { id: publish.id.clone(), prev_id: publish.prev_id.clone() };
        let channel = publish.channel.clone();
        let ready = self.sequencer.lock().offer(&channel, sequence, publish, Instant::now());
        self.clock.notify_one();
        // What this publish let out; held, it reports nothing sent yet.
        ready.into_iter().map(|p| self.stamp_and_send(p)).last().unwrap_or_default()
    }

    fn stamp_and_send(&self, publish: Publish) -> Published {
        let (ack, reply_to) = (publish.ack, publish.reply_to);
        let Some((offset, edges)) = self.interest.lock().stamp(&publish.channel) else {
            self.confirm_publish(ack, &reply_to);
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
            match self.peers.send(edge.as_str(), Frame { kind: Some(Kind::Deliver(deliver)) }) {
                Ok(()) => sent += 1,
                Err(e) => tracing::warn!(edge = %edge, error = %e, "delivery to edge dropped"),
            }
        }
        if !confirmed {
            self.confirm_publish(ack, &reply_to);
        }
        Published { offset, edges: sent }
    }

    /// Confirms publish `ack` to an edge with no subscriber of its channel.
    fn confirm_publish(&self, ack: u64, edge: &str) {
        if ack != 0 {
            self.answer(edge, Reply { id: ack, kind: Some(reply::Kind::Found(true)) });
        }
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
        let owner = self.ring.read().owner(channel).cloned().unwrap_or_else(|| self.node_id.clone());
        if owner != self.node_id {
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
                }),
                _ => Err(ControlError::Unavailable(format!("owner {owner} gave no answer"))),
            };
        }
        self.owned_channel(channel).await
    }

    /// The channel as its owner (this node) sees it.
    async fn owned_channel(&self, channel: &str) -> Result<ChannelSummary, ControlError> {
        let owner = self.node_id.clone();
        let (edges, last_offset) = {
            let table = self.interest.lock();
            (table.edges(channel).to_vec(), table.last_offset(channel))
        };
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
            last_offset,
        })
    }

    /// This node, the control nodes and the edges it links to.
    pub async fn nodes(&self) -> Vec<NodeInfo> {
        let ring = self.ring.read().clone();
        let mut nodes = vec![NodeInfo {
            node_id: self.node_id.to_string(),
            role: "control".into(),
            region: self.region.read().clone(),
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
            let hello = self.hellos.read().get(&peer).cloned().unwrap_or_default();
            let is_control = self.is_control(&peer);
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
        let ring = self.ring.read().clone();
        let table = self.interest.lock();
        let mut top: Vec<ChannelSummary> = merged
            .into_iter()
            .map(|(channel, (subscribers, edges))| ChannelSummary {
                owner: ring.owner(&channel).map(|o| o.to_string()).unwrap_or_default(),
                last_offset: table.last_offset(&channel),
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
        let mut pending = self.pending.lock();
        if pending.len() >= MAX_PENDING_QUERIES {
            return Err(ControlError::Unavailable("too many questions to edges in flight".into()));
        }
        let id = self.next_query.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        pending.insert(id, tx);
        Ok((id, rx))
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
            self.pending.lock().remove(&id);
            return Err(ControlError::Unavailable(e.to_string()));
        }
        let answered = tokio::time::timeout(patience, answer).await;
        self.pending.lock().remove(&id);
        match answered {
            Ok(Ok(kind)) => Ok(kind),
            _ => Err(ControlError::Unavailable(format!("node {node} did not answer"))),
        }
    }
}

impl ControlPlane {
    /// Hands a reply to whoever waits for it here.
    fn resolve(&self, reply: Reply) {
        let waiter = self.pending.lock().remove(&reply.id);
        if let (Some(waiter), Some(kind)) = (waiter, reply.kind) {
            let _ = waiter.send(kind);
        }
    }

    /// Delivers a reply to node `to`: here, or over the link to it.
    fn answer(&self, to: &str, reply: Reply) {
        if to == self.node_id.as_str() {
            self.resolve(reply);
        } else if let Err(e) = self.peers.send(to, Frame { kind: Some(Kind::Reply(reply)) }) {
            tracing::debug!(error = %e, "reply for another control node dropped");
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
                {
                    let mut table = plane.interest.lock();
                    if interest.present {
                        table.add(from, &interest.channel);
                    } else {
                        table.remove(from, &interest.channel);
                    }
                }
                // An edge confirming a SUBSCRIBE through us: now it counts.
                if interest.ack != 0 {
                    let reply = Reply { id: interest.ack, kind: Some(reply::Kind::Found(true)) };
                    plane.answer(&interest.reply_to, reply);
                }
            }
            Some(Kind::Publish(publish)) => {
                if plane.is_control(from) {
                    plane.fan_out(publish);
                } else if let Err(e) = plane.publish(publish) {
                    tracing::warn!(from = %from, error = %e, "publish from peer dropped");
                }
            }
            Some(Kind::Query(Query { id, kind: Some(query::Kind::Channel(channel)) })) => {
                // Another control node asks the owner about a channel.
                let plane = plane.clone();
                let from = from.clone();
                tokio::spawn(async move {
                    let Ok(summary) = plane.owned_channel(&channel).await else { return };
                    let state = ChannelState {
                        channel: summary.channel,
                        subscribers: summary.subscribers,
                        edges: summary.edges,
                        owner: summary.owner,
                        last_offset: summary.last_offset,
                    };
                    let reply = Reply { id, kind: Some(reply::Kind::Channel(state)) };
                    let _ = plane.peers.send(from.as_str(), Frame { kind: Some(Kind::Reply(reply)) });
                });
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
            Some(Kind::Reply(reply)) => plane.resolve(reply),
            Some(Kind::Hello(_) | Kind::Deliver(_) | Kind::Query(_) | Kind::Members(_) | Kind::Drain(_)) | None => {
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
