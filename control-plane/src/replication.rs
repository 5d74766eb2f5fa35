//! Publications a channel's owner has stamped but not yet delivered, waiting
//! until each replica (the next control nodes on the ring) has stored them,
//! as pure code. They leave in offset order: a publication is delivered and
//! confirmed only once every current replica has said it stored that very
//! offset, and never before one stamped earlier. Closing orders wait their
//! turn too, but for nobody's copy.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use slip_proto::ids::NodeId;
use slip_proto::link_pb::Deliver;
use tokio::time::Instant;

/// How long a publication waits for a replica before it is sent again.
pub const RESEND_AFTER: Duration = Duration::from_secs(1);
/// Publications waiting per channel at most; past it new publishes are refused.
pub const MAX_WAITING_PER_CHANNEL: usize = 65_536;

/// One publication waiting for its copies.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    /// What the edges get; offset 0 for a closing order.
    pub deliver: Deliver,
    pub key: String,
    /// Who waits to hear it is in: `(ack, node)`, the publisher first, then
    /// anyone who sent the same key again meanwhile.
    pub confirm: Vec<(u64, String)>,
    /// The replicas that said they stored it.
    stored: Vec<NodeId>,
    /// When it was last sent to the replicas.
    sent: Instant,
}

#[derive(Default)]
pub struct Replication {
    channels: HashMap<String, VecDeque<Waiting>>,
}

impl Replication {
    /// Its entries by structure (`slip_entries`).
    pub fn sizes(&self, out: &mut slip_metrics::Sizes) {
        out.push(("replication_waiting", self.channels.values().map(VecDeque::len).sum()));
    }

    /// Publications waiting on `channel`.
    pub fn waiting(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, VecDeque::len)
    }

    /// Queues a publication (sent to the replicas at `now`).
    pub fn push(&mut self, deliver: Deliver, key: String, confirm: Vec<(u64, String)>, now: Instant) {
        let channel = deliver.channel.clone();
        let waiting = Waiting { deliver, key, confirm, stored: Vec::new(), sent: now };
        self.channels.entry(channel).or_default().push_back(waiting);
    }

    /// Someone else waits for publication `offset` of `channel`, if it still
    /// waits; false when it is out already.
    pub fn also_confirm(&mut self, channel: &str, offset: u64, ack: u64, node: &str) -> bool {
        let Some(entry) = self.find(channel, offset) else { return false };
        if ack != 0 {
            entry.confirm.push((ack, node.to_owned()));
        }
        true
    }

    /// `replica` stored publication `offset` of `channel`.
    pub fn stored(&mut self, channel: &str, offset: u64, replica: &NodeId) {
        if let Some(entry) = self.find(channel, offset)
            && !entry.stored.contains(replica)
        {
            entry.stored.push(replica.clone());
        }
    }

    fn find(&mut self, channel: &str, offset: u64) -> Option<&mut Waiting> {
        if offset == 0 {
            return None;
        }
        self.channels.get_mut(channel)?.iter_mut().find(|w| w.deliver.offset == offset)
    }

    /// What may go now, in order: the publications at the front of the
    /// channel's queue that every one of `replicas` has stored.
    pub fn release(&mut self, channel: &str, replicas: &[NodeId]) -> Vec<Waiting> {
        let Some(queue) = self.channels.get_mut(channel) else { return Vec::new() };
        let mut out = Vec::new();
        while let Some(front) = queue.front() {
            let copied = front.deliver.offset == 0 || replicas.iter().all(|r| front.stored.contains(r));
            if !copied {
                break;
            }
            out.extend(queue.pop_front());
        }
        if queue.is_empty() {
            self.channels.remove(channel);
        }
        out
    }

    /// The lowest offset of `channel` still waiting (closing orders aside):
    /// history shows nothing from there on.
    pub fn first_waiting(&self, channel: &str) -> Option<u64> {
        self.channels.get(channel)?.iter().map(|w| w.deliver.offset).find(|&o| o != 0)
    }

    /// What waits on `channel` from offset `from` on, taken out: the stream
    /// there is another's now.
    pub fn drop_from(&mut self, channel: &str, from: u64) -> Vec<Waiting> {
        let Some(queue) = self.channels.get_mut(channel) else { return Vec::new() };
        let keep = queue.iter().take_while(|w| w.deliver.offset == 0 || w.deliver.offset < from).count();
        let dropped: Vec<Waiting> = queue.drain(keep..).collect();
        if queue.is_empty() {
            self.channels.remove(channel);
        }
        dropped
    }

    /// Everything waiting on `channel`, taken out: this node no longer owns it.
    pub fn drop_channel(&mut self, channel: &str) -> Vec<Waiting> {
        self.channels.remove(channel).map(Vec::from).unwrap_or_default()
    }

    /// The channels with something waiting.
    pub fn channels(&self) -> Vec<String> {
        self.channels.keys().cloned().collect()
    }

    /// Publications of `channel` that `replica` has not stored, to send (again).
    pub fn unstored(&mut self, channel: &str, replica: &NodeId, now: Instant) -> Vec<Waiting> {
        let Some(queue) = self.channels.get_mut(channel) else { return Vec::new() };
        queue
            .iter_mut()
            .filter(|w| w.deliver.offset != 0 && !w.stored.contains(replica))
            .map(|w| {
                w.sent = now;
                w.clone()
            })
            .collect()
    }

    /// The channels whose oldest waiting publication is due to be sent again.
    pub fn due(&self, now: Instant) -> Vec<String> {
        self.channels
            .iter()
            .filter(|(_, q)| q.front().is_some_and(|w| w.sent + RESEND_AFTER <= now))
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// When a waiting publication is next due to be sent again.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.channels.values().filter_map(|q| q.front().map(|w| w.sent + RESEND_AFTER)).min()
    }
}
