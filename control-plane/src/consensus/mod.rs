//! The ring view, agreed by a majority of the control nodes: raft-rs
//! (sans-IO, as our cores are) driven the way it asks. `on_clock` ticks it,
//! `on_frame` steps what arrives, and after each the `Ready` is taken: its
//! messages go out over our links, its entries and hard state are stored
//! (and saved under `SLIP_DATA_DIR`), committed decisions change the view,
//! then `advance`. What the decisions are is ours: `steward.rs` (the
//! leader's), `view.rs` (what they do), `lease.rs` (who may own channels
//! under the view). No I/O here; frames leave in an [`Output`].
//!
//! Forming the first cluster: a control node without state announces
//! itself (`Status`) to every control node it links to. Once it sees
//! `SLIP_BOOTSTRAP_EXPECT` such nodes, itself included, and none that
//! already holds state, the one with the lowest node id forms the cluster
//! with all of them as voters; the others learn it from the leader. A node
//! without state that sees one with state waits to be admitted.

pub mod lease;
pub mod steward;
pub mod store;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeType, Entry, EntryType, Message as RaftMessage};
use raft::{RawNode, StateRole};
use slip_proto::ids::NodeId;
use slip_proto::link_pb::{Consensus as Frame, LeaseGrant, Status, ViewMember, consensus};
use tokio::time::Instant;

use self::lease::{Lease, RENEW_EVERY};
use self::steward::{Seen, Steward};
use self::store::{Store, StoreError};
use crate::view::{Change, Member, View};

/// One raft tick: elections and heartbeats are counted in these.
pub const TICK: Duration = Duration::from_millis(100);
/// Ticks without a leader before a follower stands (raft-rs randomizes
/// between this and twice this).
pub const ELECTION_TICKS: usize = 10;
/// Ticks between a leader's heartbeats.
pub const HEARTBEAT_TICKS: usize = 2;
/// How often a node says who it is to every control node (and asks for its lease).
pub const STATUS_EVERY: Duration = RENEW_EVERY;
/// Ticks a late clock catches up at most in one go.
const MAX_TICKS_AT_ONCE: u32 = 50;

/// How a control node takes part.
#[derive(Debug, Clone)]
pub struct ConsensusConfig {
    pub node_id: NodeId,
    /// Where other nodes dial this one (in the view, for edges to find it).
    pub link_addr: String,
    /// Control nodes the first cluster forms with (`SLIP_BOOTSTRAP_EXPECT`).
    pub bootstrap_expect: usize,
    /// Where the consensus state is kept (`SLIP_DATA_DIR`); none: in memory,
    /// and a restarted node joins as a new voter.
    pub data_dir: Option<PathBuf>,
    /// How long a node without state listens for a cluster that already
    /// runs before it forms one ([`DISCOVERY_WAIT`]; zero for a node that
    /// has no peers to hear from).
    pub discovery_wait: Duration,
}

/// How long a control node without state, with peers to find, listens for
/// a running cluster before it may form a new one: long enough to link to
/// its peers and hear one status from each.
pub const DISCOVERY_WAIT: Duration = Duration::from_secs(2);

/// What a step of the consensus leaves to do.
#[derive(Debug, Default)]
pub struct Output {
    /// Frames for particular control nodes.
    pub send: Vec<(NodeId, Frame)>,
    /// A frame for every control node linked.
    pub broadcast: Option<Frame>,
    /// The view changed: this is the one applied now.
    pub view: Option<View>,
    /// The lease changed: the view it is for, and when it ends.
    pub lease: Option<(u64, Instant)>,
}

/// A peer's id in the consensus, as its `Status` said.
#[derive(Debug, Clone, Copy)]
struct Peer {
    raft_id: u64,
    /// Its newest applied view.
    view: u64,
}

pub struct Consensus {
    config: ConsensusConfig,
    raft_id: u64,
    raw: Option<RawNode<Store>>,
    /// The view as of the last applied decision.
    view: View,
    /// Indexes of view decisions in the log, appended, applied or not: a
    /// lease is granted only to an asker at least as new as the newest.
    log_views: BTreeSet<u64>,
    peers: HashMap<NodeId, Peer>,
    steward: Steward,
    lease: Lease,
    next_tick: Instant,
    next_status: Instant,
    /// Before this, a node without state does not form a cluster.
    form_after: Instant,
    logger: slog::Logger,
    /// The state changed since it was last saved.
    dirty: bool,
    /// Saving the state failed: this node takes no further part (a vote it
    /// could not keep across a restart must not be given), and the others
    /// soon declare it gone.
    failed: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("consensus: {0}")]
    Raft(#[from] raft::Error),
}

impl Consensus {
    /// This node's consensus: as saved under the data dir, if anything was;
    /// else without state, waiting to form or join a cluster (a cluster of
    /// one forms at the first clock).
    pub fn new(config: ConsensusConfig, now: Instant) -> Result<Self, ConsensusError> {
        let logger = slog::Logger::root(TracingDrain, slog::o!());
        let saved = match &config.data_dir {
            Some(dir) => {
                // A dir that cannot be made is said at start, not at the first vote.
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Write(dir.clone(), e))?;
                Store::load(dir)?
            }
            None => None,
        };
        let mut consensus = Self {
            raft_id: 0,
            raw: None,
            view: View::default(),
            log_views: BTreeSet::new(),
            peers: HashMap::new(),
            steward: Steward::default(),
            lease: Lease::default(),
            next_tick: now,
            next_status: now,
            form_after: now + config.discovery_wait,
            logger,
            dirty: false,
            failed: None,
            config,
        };
        match saved {
            Some((raft_id, store, view)) => {
                consensus.raft_id = raft_id;
                consensus.view = decode_view(&view);
                let applied = store.first_index().saturating_sub(1);
                consensus.raw = Some(consensus.raw_node(store, applied)?);
                tracing::info!(raft_id, term = consensus.view.term(), "consensus state loaded");
            }
            None => consensus.raft_id = new_raft_id(),
        }
        Ok(consensus)
    }

    fn raw_node(&self, store: Store, applied: u64) -> Result<RawNode<Store>, ConsensusError> {
        let config = raft::Config {
            id: self.raft_id,
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            applied,
            pre_vote: true,
            check_quorum: true,
            max_inflight_msgs: 256,
            max_size_per_msg: 1024 * 1024,
            ..Default::default()
        };
        Ok(RawNode::new(&config, store, &self.logger)?)
    }

    pub fn node_id(&self) -> &NodeId {
        &self.config.node_id
    }

    pub fn raft_id(&self) -> u64 {
        self.raft_id
    }

    /// The view as of the last applied decision.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Whether this node is a voter in the view it applied.
    pub fn is_member(&self) -> bool {
        self.failed.is_none()
            && self.raw.is_some()
            && self.view.member(&self.config.node_id).is_some_and(|m| m.raft_id == self.raft_id)
    }

    /// Why this node takes no part any more, if it does not.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Whether this node leads the consensus now.
    pub fn is_leader(&self) -> bool {
        self.raw.as_ref().is_some_and(|r| r.raft.state == StateRole::Leader)
    }

    /// The voter ids now.
    fn voters(&self) -> Vec<u64> {
        self.raw.as_ref().map(|r| r.store().conf_state().voters).unwrap_or_default()
    }

    /// Whether this node's lease holds for `view` at `now`.
    pub fn lease_holds(&self, view: u64, now: Instant) -> bool {
        self.lease.holds(view, now)
    }

    /// The newest view decision in the log, applied or not.
    fn newest_in_log(&self) -> u64 {
        self.view.term().max(self.log_views.last().copied().unwrap_or(0))
    }

    /// When [`Consensus::on_clock`] wants to run next.
    pub fn next_deadline(&self) -> Instant {
        self.next_tick.min(self.next_status)
    }

    /// A control node linked: it hears who this one is at once.
    pub fn link_up(&mut self) -> Output {
        Output { broadcast: Some(self.status(0)), ..Default::default() }
    }

    /// The clock: raft's ticks, this node's status and lease ask, forming a
    /// cluster, and the leader's decisions.
    pub fn on_clock(&mut self, now: Instant) -> Output {
        let mut out = Output::default();
        if self.failed.is_some() {
            self.next_tick = now + TICK;
            return out;
        }
        let mut ticks = 0;
        while self.next_tick <= now && ticks < MAX_TICKS_AT_ONCE {
            if let Some(raw) = &mut self.raw {
                raw.tick();
            }
            self.next_tick += TICK;
            ticks += 1;
        }
        if self.next_tick <= now {
            // Far behind (the process was paused): no burst of ticks.
            self.next_tick = now + TICK;
        }
        if self.raw.is_none() {
            self.form_if_due(now, &mut out);
        }
        if self.next_status <= now {
            self.next_status = now + STATUS_EVERY;
            let number = if self.is_member() { self.ask_lease(now, &mut out) } else { 0 };
            out.broadcast = Some(self.status(number));
        }
        self.steward.leading(self.is_leader(), now);
        if self.is_leader() {
            self.propose_next(now);
        }
        self.ready(now, &mut out);
        out
    }

    /// A frame from control node `from`.
    pub fn on_frame(&mut self, from: &NodeId, frame: Frame, now: Instant) -> Output {
        let mut out = Output::default();
        if self.failed.is_some() {
            return out;
        }
        match frame.kind {
            Some(consensus::Kind::Raft(bytes)) => self.step(from, &bytes, now),
            Some(consensus::Kind::Status(status)) => self.on_status(from, status, now, &mut out),
            Some(consensus::Kind::LeaseGrant(grant)) => {
                let Some(peer) = self.peers.get(from) else { return out };
                let voters = self.voters();
                if self.lease.answered(grant.lease, peer.raft_id, grant.granted, &voters) {
                    out.lease = self.lease.held();
                }
            }
            None => {}
        }
        self.ready(now, &mut out);
        out
    }

    /// A raft message from `from`, stepped if it really is from the voter
    /// that node said it is, and for this one.
    fn step(&mut self, from: &NodeId, bytes: &[u8], _now: Instant) {
        let Ok(message) = RaftMessage::parse_from_bytes(bytes) else {
            tracing::debug!(from = %from, "garbage raft message dropped");
            return;
        };
        let sender = self.peers.get(from).map(|p| p.raft_id);
        tracing::trace!(from = %from, kind = ?message.get_msg_type(), index = message.index, "raft message in");
        if sender != Some(message.from) || message.to != self.raft_id {
            tracing::debug!(from = %from, "raft message not from the voter its sender is, or not for us");
            return;
        }
        if self.raw.is_none() {
            // Admitted by the leader (or named in the cluster another node
            // formed): the log comes from it.
            match self.raw_node(Store::empty(), 0) {
                Ok(raw) => self.raw = Some(raw),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the consensus");
                    return;
                }
            }
        }
        if let Some(raw) = &mut self.raw
            && let Err(e) = raw.step(message)
        {
            tracing::debug!(from = %from, error = %e, "raft message refused");
        }
    }

    fn on_status(&mut self, from: &NodeId, status: Status, now: Instant, out: &mut Output) {
        if status.raft_id == 0 || (self.peers.len() >= steward::MAX_CONTROL_NODES && !self.peers.contains_key(from)) {
            return;
        }
        self.peers.insert(from.clone(), Peer { raft_id: status.raft_id, view: status.view });
        let seen = Seen { raft_id: status.raft_id, link_addr: status.link_addr, member: status.member, at: now };
        self.steward.heard(from, seen);
        if status.lease != 0 {
            let votes = self.voters().contains(&status.raft_id);
            let granted = self.raw.is_some() && lease::grants(status.view, self.newest_in_log(), votes);
            let grant = LeaseGrant { lease: status.lease, view: self.newest_in_log(), granted };
            out.send.push((from.clone(), Frame { kind: Some(consensus::Kind::LeaseGrant(grant)) }));
        }
    }

    /// This node's status, with a lease ask numbered `lease` (0: none).
    fn status(&self, lease: u64) -> Frame {
        let status = Status {
            raft_id: self.raft_id,
            link_addr: self.config.link_addr.clone(),
            member: self.raw.is_some(),
            view: self.view.term(),
            lease,
        };
        Frame { kind: Some(consensus::Kind::Status(status)) }
    }

    /// Asks every voter (this one too) for a lease for the view applied now.
    fn ask_lease(&mut self, now: Instant, out: &mut Output) -> u64 {
        let view = self.view.term();
        let number = self.lease.ask(view, now);
        let voters = self.voters();
        let own = lease::grants(view, self.newest_in_log(), voters.contains(&self.raft_id));
        if self.lease.answered(number, self.raft_id, own, &voters) {
            out.lease = self.lease.held();
        }
        number
    }

    /// Without state: forms the first cluster if this node is the one to.
    fn form_if_due(&mut self, now: Instant, out: &mut Output) {
        if now < self.form_after {
            return;
        }
        let fresh = |seen: &Seen| now.saturating_duration_since(seen.at) < steward::DOWN_AFTER;
        let mut candidates: Vec<(NodeId, Seen)> = Vec::new();
        for (node, seen) in self.steward.all_seen() {
            if !fresh(seen) {
                continue;
            }
            if seen.member {
                // A cluster exists: this node waits to be admitted.
                return;
            }
            candidates.push((node.clone(), seen.clone()));
        }
        if candidates.len() + 1 < self.config.bootstrap_expect.max(1)
            || candidates.iter().any(|(node, _)| *node < self.config.node_id)
        {
            return;
        }
        let me = (
            self.config.node_id.clone(),
            Member { raft_id: self.raft_id, link_addr: self.config.link_addr.clone(), up: true },
        );
        let members = candidates
            .into_iter()
            .map(|(node, seen)| (node, Member { raft_id: seen.raft_id, link_addr: seen.link_addr, up: true }))
            .chain([me]);
        let view = View::formed(1, members);
        let voters = view.members().values().map(|m| m.raft_id).collect();
        let store = Store::formed(voters, encode_view(&view));
        match self.raw_node(store, 1) {
            Ok(mut raw) => {
                tracing::info!(members = view.members().len(), "forming the cluster");
                let _ = raw.campaign();
                self.raw = Some(raw);
                self.view = view.clone();
                self.dirty = true;
                out.view = Some(view);
            }
            Err(e) => tracing::warn!(error = %e, "cannot form the cluster"),
        }
    }

    /// The leader's next decision about the view, proposed.
    fn propose_next(&mut self, now: Instant) {
        let Some(raw) = &mut self.raw else { return };
        let pending = raw.raft.has_pending_conf();
        let Some(change) = self.steward.next(&self.view, &self.config.node_id, pending, now) else { return };
        tracing::info!(?change, "proposing a view change");
        let proposed = match &change {
            Change::Admit { node, raft_id, link_addr } => {
                let member =
                    ViewMember { node_id: node.to_string(), link_addr: link_addr.clone(), up: true, raft_id: *raft_id };
                let mut cc = ConfChange::default();
                cc.set_change_type(ConfChangeType::AddNode);
                cc.node_id = *raft_id;
                cc.context = member.encode_to_vec().into();
                raw.propose_conf_change(Vec::new(), cc)
            }
            Change::Remove { raft_id } => {
                let mut cc = ConfChange::default();
                cc.set_change_type(ConfChangeType::RemoveNode);
                cc.node_id = *raft_id;
                raw.propose_conf_change(Vec::new(), cc)
            }
            Change::Down(_) | Change::Up(_) => raw.propose(Vec::new(), change.encode_entry().unwrap_or_default()),
        };
        if let Err(e) = proposed {
            tracing::debug!(error = %e, "view change not proposed");
        }
    }

    /// Takes raft's `Ready`s until there is none: sends, stores, saves, applies.
    fn ready(&mut self, now: Instant, out: &mut Output) {
        loop {
            let Some(raw) = &mut self.raw else { return };
            if !raw.has_ready() {
                break;
            }
            let mut ready = raw.ready();
            let messages = ready.take_messages();
            self.send_raft(messages, out);
            let Some(raw) = &mut self.raw else { return };
            let store = raw.store().clone();
            if !ready.snapshot().is_empty() {
                let snapshot = ready.snapshot().clone();
                let index = snapshot.get_metadata().index;
                let view = decode_view(&snapshot.data);
                if let Err(e) = store.apply_snapshot(snapshot) {
                    tracing::warn!(error = %e, "snapshot not applied");
                } else {
                    self.log_views = self.log_views.split_off(&(index + 1));
                    self.set_view(view, out);
                    self.dirty = true;
                }
            }
            let committed = ready.take_committed_entries();
            self.apply(committed, out);
            let entries = ready.entries();
            if !entries.is_empty() {
                // Appended (maybe replacing a tail another leader wrote): the
                // view decisions among them count for leases from now on.
                let first = entries[0].index;
                let _ = self.log_views.split_off(&first);
                self.log_views.extend(entries.iter().filter(|e| is_view_decision(e)).map(|e| e.index));
                if let Err(e) = store.append(entries) {
                    tracing::warn!(error = %e, "raft entries not stored");
                }
                self.dirty = true;
            }
            if let Some(hs) = ready.hs() {
                store.set_hard_state(hs.clone());
                self.dirty = true;
            }
            self.save();
            let persisted = ready.take_persisted_messages();
            self.send_raft(persisted, out);
            let Some(raw) = &mut self.raw else { return };
            let mut light = raw.advance(ready);
            if let Some(commit) = light.commit_index() {
                store.set_commit(commit);
                self.dirty = true;
            }
            let messages = light.take_messages();
            let committed = light.take_committed_entries();
            self.send_raft(messages, out);
            self.apply(committed, out);
            if let Some(raw) = &mut self.raw {
                raw.advance_apply();
            }
        }
        self.save();
        let _ = now;
    }

    /// Committed entries change the view, in order.
    fn apply(&mut self, entries: Vec<Entry>, out: &mut Output) {
        let mut changed = false;
        for entry in entries {
            let Some(raw) = &mut self.raw else { return };
            match entry.get_entry_type() {
                EntryType::EntryConfChange => {
                    let Ok(cc) = ConfChange::parse_from_bytes(&entry.data) else { continue };
                    match raw.apply_conf_change(&cc) {
                        Ok(cs) => raw.store().set_conf_state(cs),
                        Err(e) => tracing::warn!(error = %e, "conf change not applied"),
                    }
                    let change = match cc.get_change_type() {
                        ConfChangeType::AddNode => ViewMember::decode(cc.context.as_ref()).ok().and_then(|m| {
                            Some(Change::Admit {
                                node: NodeId::parse(&m.node_id).ok()?,
                                raft_id: cc.node_id,
                                link_addr: m.link_addr,
                            })
                        }),
                        ConfChangeType::RemoveNode => Some(Change::Remove { raft_id: cc.node_id }),
                        ConfChangeType::AddLearnerNode => None,
                    };
                    if let Some(change) = change {
                        changed |= self.view.apply(entry.index, &change);
                    }
                }
                EntryType::EntryNormal => {
                    if let Some(change) = Change::decode_entry(&entry.data) {
                        changed |= self.view.apply(entry.index, &change);
                    }
                }
                EntryType::EntryConfChangeV2 => {}
            }
            self.log_views.remove(&entry.index);
            if let Some(raw) = &self.raw {
                raw.store().applied(entry.index, entry.term, encode_view(&self.view));
            }
            self.dirty = true;
        }
        if changed {
            tracing::info!(term = self.view.term(), up = self.view.ring().members().len(), "view changed");
            out.view = Some(self.view.clone());
        }
    }

    fn set_view(&mut self, view: View, out: &mut Output) {
        if view != self.view {
            self.view = view.clone();
            out.view = Some(view);
        }
    }

    fn send_raft(&self, messages: Vec<RaftMessage>, out: &mut Output) {
        for message in messages {
            let Some(node) = self.node_of(message.to) else {
                tracing::debug!(to = message.to, "raft message for a voter not known yet");
                continue;
            };
            tracing::trace!(to = %node, kind = ?message.get_msg_type(), index = message.index, "raft message out");
            let Ok(bytes) = message.write_to_bytes() else { continue };
            out.send.push((node, Frame { kind: Some(consensus::Kind::Raft(bytes.into())) }));
        }
    }

    /// The control node a voter id belongs to: as the view says, or its own status.
    fn node_of(&self, raft_id: u64) -> Option<NodeId> {
        self.view
            .node_of(raft_id)
            .cloned()
            .or_else(|| self.peers.iter().find(|(_, p)| p.raft_id == raft_id).map(|(n, _)| n.clone()))
    }

    fn save(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let (Some(dir), Some(raw)) = (&self.config.data_dir, &self.raw) else { return };
        if let Err(e) = raw.store().save(dir, self.raft_id) {
            // Not saved: this node must not go on as if it were.
            tracing::error!(error = %e, "consensus state not saved; this node takes no further part");
            self.failed = Some(e.to_string());
        }
    }

    /// The views peers said they applied, for readiness checks and `slip admin`.
    pub fn peer_views(&self) -> impl Iterator<Item = (&NodeId, u64)> {
        self.peers.iter().map(|(n, p)| (n, p.view))
    }
}

/// Whether a log entry decides something about the view.
fn is_view_decision(entry: &Entry) -> bool {
    match entry.get_entry_type() {
        EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => true,
        EntryType::EntryNormal => Change::decode_entry(&entry.data).is_some(),
    }
}

fn encode_view(view: &View) -> Vec<u8> {
    view.to_frame().encode_to_vec()
}

fn decode_view(bytes: &[u8]) -> View {
    slip_proto::link_pb::View::decode(bytes).map(|f| View::from_frame(&f)).unwrap_or_default()
}

/// A voter id never used before: random, not zero.
fn new_raft_id() -> u64 {
    rand::random::<u64>() | 1
}

/// raft-rs logs through slog; ours go through `tracing`.
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record<'_>, _values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => tracing::warn!(target: "raft", "{}", record.msg()),
            slog::Level::Warning | slog::Level::Info => tracing::debug!(target: "raft", "{}", record.msg()),
            slog::Level::Debug | slog::Level::Trace => tracing::trace!(target: "raft", "{}", record.msg()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
