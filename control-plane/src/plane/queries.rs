//! Questions a control node asks other nodes, and the answers it puts
//! together: connection commands, connection and channel state, the nodes
//! and channels `slip admin` lists, draining an edge. Every question waits
//! at most its deadline; questions to many edges go at once.

use super::ChannelSummary;
use super::ControlError;
use super::ControlPlane;
use super::QUERY_TIMEOUT;
use crate::routing::ChannelView;
use slip_link::questions::Pending;
use slip_proto::channel;
use slip_proto::ids::ConnectionId;
use slip_proto::ids::NodeId;
use slip_proto::limits::MAX_POLL_TIMEOUT_MS;
use slip_proto::link_pb::ChannelCounts;
use slip_proto::link_pb::ChannelState;
use slip_proto::link_pb::ChannelStreams;
use slip_proto::link_pb::ConnectionCommand;
use slip_proto::link_pb::ConnectionState;
use slip_proto::link_pb::Drain;
use slip_proto::link_pb::EdgeStats;
use slip_proto::link_pb::Frame;
use slip_proto::link_pb::PresenceQuery;
use slip_proto::link_pb::Query;
use slip_proto::link_pb::WaitForConnection;
use slip_proto::link_pb::frame::Kind;
use slip_proto::link_pb::query;
use slip_proto::link_pb::reply;
use slip_proto::pb::NodeInfo;
use std::collections::HashMap;
use std::time::Duration;

/// Channels one question asks an owner about the streams of (the admin
/// page lists at most as many).
pub const MAX_STREAMS_ASKED: usize = 200;

impl ControlPlane {
    /// Sends a command to the connection's edge. With `confirm`, waits for the
    /// edge to say whether the connection exists (NOT_FOUND if not).
    pub async fn connection_command(&self, mut command: ConnectionCommand, confirm: bool) -> Result<(), ControlError> {
        let id = ConnectionId::parse(&command.connection_id).map_err(|e| ControlError::Invalid(e.to_string()))?;
        if !confirm {
            command.ack = 0;
            let frame = Frame { kind: Some(Kind::Command(command)) };
            return self.peers.send(&self.homes.of(&id), frame).map_err(|e| ControlError::Unavailable(e.to_string()));
        }
        let pending = self.expect_reply()?;
        command.ack = pending.id;
        let frame = Frame { kind: Some(Kind::Command(command)) };
        match self.ask(&self.homes.of(&id), pending, frame, QUERY_TIMEOUT).await? {
            reply::Kind::Found(true) => Ok(()),
            _ => Err(ControlError::NotFound(format!("connection {id}"))),
        }
    }

    pub async fn get_connection(&self, connection_id: &str) -> Result<ConnectionState, ControlError> {
        let id = ConnectionId::parse(connection_id).map_err(|e| ControlError::Invalid(e.to_string()))?;
        match self.ask_query(&self.homes.of(&id), query::Kind::Connection(id.to_string())).await? {
            reply::Kind::Connection(state) => Ok(state),
            _ => Err(ControlError::NotFound(format!("connection {id}"))),
        }
    }

    /// Waits up to `timeout_ms` for a connection to exist; true if it does.
    pub async fn poll_for_connection(&self, connection_id: &str, timeout_ms: u64) -> Result<bool, ControlError> {
        let id = ConnectionId::parse(connection_id).map_err(|e| ControlError::Invalid(e.to_string()))?;
        let timeout_ms = timeout_ms.min(MAX_POLL_TIMEOUT_MS);
        let wait = WaitForConnection { connection_id: id.to_string(), timeout_ms: timeout_ms as u32 };
        let patience = Duration::from_millis(timeout_ms) + QUERY_TIMEOUT;
        let answer = self.ask_query_within(&self.homes.of(&id), query::Kind::Wait(wait), patience).await?;
        Ok(matches!(answer, reply::Kind::Found(true)))
    }

    /// The channel as its owner sees it, with subscriber counts from each interested edge.
    pub async fn get_channel(&self, channel: &str) -> Result<ChannelSummary, ControlError> {
        channel::validate(channel).map_err(|e| ControlError::Invalid(e.to_string()))?;
        let owner = self.routing.lock().owner_elsewhere(channel).cloned();
        if let Some(owner) = owner {
            let question = query::Kind::Channel(channel.into());
            return match self.ask_query_within(owner.as_str(), question, QUERY_TIMEOUT * 2).await? {
                reply::Kind::Channel(state) => Ok(state.into()),
                _ => Err(ControlError::Unavailable(format!("owner {owner} gave no answer"))),
            };
        }
        self.owned_channel(channel).await
    }

    /// A channel's presence, from its owner: at most `limit` members (0:
    /// the default), ordered by connection id, and the exact count.
    pub async fn presence(&self, channel: &str, limit: u32) -> Result<(Vec<(String, String)>, u64), ControlError> {
        channel::validate(channel).map_err(|e| ControlError::Invalid(e.to_string()))?;
        let owner = self.routing.lock().owner_elsewhere(channel).cloned();
        let Some(owner) = owner else {
            let here = self.routing.lock().presence_of(channel, limit as usize);
            let listing =
                here.ok_or_else(|| ControlError::Unavailable("no owner of the channel is known yet".into()))?;
            let members = listing.members.into_iter().map(|(id, info)| (id, info.to_string())).collect();
            return Ok((members, listing.count));
        };
        let question = query::Kind::Presence(PresenceQuery { channel: channel.to_owned(), limit });
        match self.ask_query_within(owner.as_str(), question, QUERY_TIMEOUT * 2).await? {
            reply::Kind::Presence(answer) if !answer.not_owner => {
                Ok((answer.members.into_iter().map(|m| (m.connection_id, m.info)).collect(), answer.count))
            }
            _ => Err(ControlError::Unavailable(format!("owner {owner} gave no answer"))),
        }
    }

    /// The channel as its owner (this node) sees it.
    pub(super) async fn owned_channel(&self, channel: &str) -> Result<ChannelSummary, ControlError> {
        let owner = self.node_id.clone();
        let ChannelView { edges, epoch, top_offset, history, presence, replicas } =
            self.routing.lock().channel(channel);
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
            history,
            presence,
            replicas: replicas.iter().map(ToString::to_string).collect(),
        })
    }

    /// This node, the control nodes and the edges it links to.
    pub async fn nodes(&self) -> Vec<NodeInfo> {
        let (ring, region) = {
            let routing = self.routing.lock();
            (routing.ring().clone(), routing.region().to_owned())
        };
        let mut nodes = vec![with_control_stats(
            NodeInfo {
                node_id: self.node_id.to_string(),
                role: "control".into(),
                region,
                ring_share: ring.share(&self.node_id),
                linked: true,
                ..NodeInfo::default()
            },
            &self.control_stats(),
        )];
        let mut peers = self.peers.ids();
        peers.sort();
        // Every linked node is asked its counters at once: edges answer
        // theirs, control nodes theirs.
        let answers: HashMap<NodeId, reply::Kind> = peers
            .iter()
            .cloned()
            .zip(self.ask_each(&peers, || query::Kind::Stats(true)).await)
            .filter_map(|(node, answer)| Some((node, answer.ok()?)))
            .collect();
        for peer in peers {
            let (hello, is_control) = {
                let routing = self.routing.lock();
                (routing.hello(&peer).cloned().unwrap_or_default(), routing.is_control(&peer))
            };
            let rtt = self.peers.get(&peer).and_then(|l| l.rtt()).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
            let edge = match answers.get(&peer) {
                Some(reply::Kind::Stats(stats)) => stats.clone(),
                _ => EdgeStats::default(),
            };
            let info = NodeInfo {
                node_id: peer.to_string(),
                role: if is_control { "control" } else { "edge" }.into(),
                region: hello.region,
                ring_share: ring.share(&peer),
                connections: edge.connections,
                linked: true,
                rtt_ms: rtt,
                deliveries: edge.deliveries,
                stream_gaps: edge.stream_gaps,
                callback_errors: edge.callback_errors,
                parked_sessions: edge.parked_sessions,
                callback_latency: bounded_counts(edge.callback_latency),
                view_term: edge.view_term,
                ..NodeInfo::default()
            };
            nodes.push(match answers.get(&peer) {
                Some(reply::Kind::ControlStats(stats)) => with_control_stats(info, stats),
                _ => info,
            });
        }
        // Control nodes of the view this node has no link to (cut off, or
        // not yet declared gone).
        for member in ring.members() {
            if !nodes.iter().any(|n| n.node_id == member.as_str()) {
                nodes.push(NodeInfo {
                    node_id: member.to_string(),
                    role: "control".into(),
                    ring_share: ring.share(member),
                    linked: false,
                    ..NodeInfo::default()
                });
            }
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
        let asks = nodes.iter().map(|node| self.ask_query(node.as_str(), question()));
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
        let mut top: Vec<ChannelSummary> = {
            let routing = self.routing.lock();
            merged
                .into_iter()
                .map(|(channel, (subscribers, edges))| ChannelSummary {
                    owner: routing.ring().owner(&channel).map(|o| o.to_string()).unwrap_or_default(),
                    channel,
                    subscribers,
                    edges,
                    ..ChannelSummary::default()
                })
                .collect()
        };
        top.sort_unstable_by(|a, b| b.subscribers.cmp(&a.subscribers).then_with(|| a.channel.cmp(&b.channel)));
        top.truncate(limit);
        self.with_streams(&mut top).await;
        top
    }

    /// Each channel's stream (offset, epoch, history held) and presence
    /// count, from its owner: one question per owner, asked at once. A
    /// channel whose owner does not answer in time keeps zeros.
    async fn with_streams(&self, channels: &mut [ChannelSummary]) {
        let mut by_owner: HashMap<String, Vec<String>> = HashMap::new();
        for c in channels.iter() {
            by_owner.entry(c.owner.clone()).or_default().push(c.channel.clone());
        }
        let mine = by_owner.remove(self.node_id.as_str()).unwrap_or_default();
        let mut streams: HashMap<String, ChannelState> =
            self.owned_streams(mine).channels.into_iter().map(|s| (s.channel.clone(), s)).collect();
        let asked = by_owner.into_iter().map(|(owner, names)| async move {
            let question = query::Kind::ChannelStreams(ChannelStreams { channels: names });
            self.ask_query(&owner, question).await
        });
        for answer in futures_util::future::join_all(asked).await {
            if let Ok(reply::Kind::ChannelCounts(counts)) = answer {
                streams.extend(counts.channels.into_iter().map(|s| (s.channel.clone(), s)));
            }
        }
        for c in channels.iter_mut() {
            if let Some(s) = streams.remove(&c.channel) {
                (c.last_offset, c.epoch, c.history, c.presence, c.replicas) =
                    (s.last_offset, s.epoch, s.history, s.presence, s.replicas);
            }
        }
    }

    /// The streams of those of `channels` this node owns (at most
    /// [`MAX_STREAMS_ASKED`]), as it knows them without asking anyone.
    pub(super) fn owned_streams(&self, channels: Vec<String>) -> ChannelCounts {
        let routing = self.routing.lock();
        let channels = channels
            .into_iter()
            .take(MAX_STREAMS_ASKED)
            .filter(|c| routing.owns(c))
            .map(|channel| {
                let view = routing.channel(&channel);
                ChannelState {
                    owner: self.node_id.to_string(),
                    edges: view.edges.len() as u32,
                    last_offset: view.top_offset,
                    epoch: view.epoch,
                    history: view.history,
                    presence: view.presence,
                    replicas: view.replicas.iter().map(ToString::to_string).collect(),
                    channel,
                    subscribers: 0,
                }
            })
            .collect();
        ChannelCounts { channels }
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

    /// Asks `node` one question and waits up to [`QUERY_TIMEOUT`] for its answer.
    pub(super) async fn ask_query(&self, node: &str, question: query::Kind) -> Result<reply::Kind, ControlError> {
        self.ask_query_within(node, question, QUERY_TIMEOUT).await
    }

    async fn ask_query_within(
        &self,
        node: &str,
        question: query::Kind,
        patience: Duration,
    ) -> Result<reply::Kind, ControlError> {
        let pending = self.expect_reply()?;
        let frame = Frame { kind: Some(Kind::Query(Query { id: pending.id, kind: Some(question) })) };
        self.ask(node, pending, frame, patience).await
    }

    pub(super) fn expect_reply(&self) -> Result<Pending, ControlError> {
        self.questions.expect().ok_or_else(|| ControlError::Unavailable("too many questions to edges in flight".into()))
    }

    /// Sends `frame`, which carries question `pending`, to `node` and waits
    /// for the answer, at most `patience`.
    pub(super) async fn ask(
        &self,
        node: &str,
        pending: Pending,
        frame: Frame,
        patience: Duration,
    ) -> Result<reply::Kind, ControlError> {
        let answer = self.questions.send_and_wait(&self.peers, node, pending, frame, patience).await;
        answer.map_err(|e| ControlError::Unavailable(e.to_string()))
    }
}

/// A control node's counters on its line.
fn with_control_stats(info: NodeInfo, stats: &slip_proto::link_pb::ControlStats) -> NodeInfo {
    NodeInfo {
        publishes: stats.publishes,
        publishes_refused: stats.publishes_refused,
        stream_divergences: stats.stream_divergences,
        lease_held: stats.lease_held,
        publish_latency: bounded_counts(stats.publish_latency.clone()),
        view_term: stats.view_term,
        ..info
    }
}

/// Latency counts as another node gave them, cut to the buckets there are
/// (a newer node may count more).
fn bounded_counts(mut counts: Vec<u64>) -> Vec<u64> {
    counts.truncate(slip_metrics::LATENCY_COUNTS);
    counts
}
