//! Copies of streams: the owner sends each publication to the channel's
//! replicas before it goes out, a replica refuses a copy from an owner
//! under an older view (fencing), and after a view change a node takes the
//! copies it now holds from the others (catch-up). History answers come
//! from here too, only from the owner that holds its lease, and only what
//! was confirmed.

use std::sync::Arc;

use slip_proto::ids::NodeId;
use slip_proto::link_pb::{Frame, Head, Replicate, Replicated, frame::Kind};
use tokio::time::Instant;

use super::{Outlet, Routing, holders};
use crate::catchup::HEADS_PER_PAGE;
use crate::streams::{CopyPage, History, Imported, Stored, StreamHead};

/// What a history question gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The stream as its owner holds it, confirmed publications only.
    History(History),
    /// This node does not own the channel now, or holds no lease: ask the owner.
    NotOwner,
}

impl Routing {
    /// The control nodes that keep copies of `channel`'s stream.
    pub(super) fn replica_set(&self, channel: &str) -> Vec<NodeId> {
        let me = &self.node_id;
        self.ring().successors(channel, self.replicas).into_iter().filter(|n| *n != me).cloned().collect()
    }

    /// Sends each replica of `channel` what waits that it has not stored.
    pub(super) fn replicate(&mut self, channel: &str, now: Instant, out: &mut impl Outlet) {
        let view = self.term();
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
                    view,
                };
                out.send(replica.as_str(), Frame { kind: Some(Kind::Replicate(copy)) });
            }
        }
    }

    /// As a replica: stores what a channel's owner sent, and says so. A copy
    /// from an owner under an older view than this node's is refused (that
    /// owner may have been paused or cut off while others took over), and
    /// so is one that another owner gave differently at the same offset.
    /// One past a hole here is not stored either: returns the offset after
    /// which the owner's copy is to be taken (then the owner's next sending
    /// of what it waits for is stored).
    pub fn store_replica(
        &mut self,
        from: &NodeId,
        copy: Replicate,
        now: Instant,
        out: &mut impl Outlet,
    ) -> Option<u64> {
        if copy.view < self.term() {
            tracing::debug!(from = %from, channel = copy.channel, view = copy.view, "copy from an older view refused");
            return None;
        }
        let event = copy.event.unwrap_or_default();
        // Ours from that offset on (or all of it, for another epoch) may give way.
        let gives_way = match self.streams.head(&copy.channel) {
            Some((epoch, top)) if *epoch == *copy.epoch => (copy.offset <= top).then_some(copy.offset),
            Some(_) => Some(0),
            None => None,
        };
        let stored =
            self.streams.store(&copy.channel, &copy.epoch, copy.offset, &event, &copy.idempotency_key, &copy.term, now);
        if stored == Stored::New
            && let Some(from) = gives_way
        {
            for waiting in self.replication.drop_from(&copy.channel, from) {
                for (ack, node) in waiting.confirm {
                    super::refuse_publish(ack, &node, "owner_changed", out);
                }
            }
        }
        match stored {
            Stored::Conflict => {
                tracing::warn!(from = %from, channel = copy.channel, offset = copy.offset, "copy of another owner's offset refused");
                return None;
            }
            Stored::Gap { top } => {
                tracing::debug!(from = %from, channel = copy.channel, offset = copy.offset, top, "copy past a hole: the owner's is taken");
                return Some(top);
            }
            Stored::New | Stored::Already => {}
        }
        self.report_bytes();
        let stored = Replicated { channel: copy.channel, epoch: copy.epoch, offset: copy.offset };
        out.send(from.as_str(), Frame { kind: Some(Kind::Replicated(stored)) });
        None
    }

    /// As the owner: a replica stored a publication; what it completes goes out.
    pub fn replicated(&mut self, from: &NodeId, stored: Replicated, now: Instant, out: &mut impl Outlet) {
        let same_epoch = self.streams.head(&stored.channel).is_some_and(|(epoch, _)| *epoch == *stored.epoch);
        if same_epoch {
            self.replication.stored(&stored.channel, stored.offset, from);
            self.release(&stored.channel, now, out);
        }
    }

    /// As asked by a node catching up: the streams held here that `asker`
    /// holds too in the ring of `members`, by name after `after`. Nothing
    /// (`same_view` false) while this node's ring is another: it may still
    /// give offsets in channels the asker is about to own.
    pub fn heads_for(&self, asker: &NodeId, members: &[String], after: &str) -> (bool, Vec<StreamHead>, bool) {
        let ring = self.ring();
        let mut ours: Vec<&str> = ring.members().iter().map(NodeId::as_str).collect();
        let mut theirs: Vec<&str> = members.iter().map(String::as_str).collect();
        ours.sort_unstable();
        theirs.sort_unstable();
        if ours != theirs {
            return (false, Vec::new(), false);
        }
        let (heads, more) = self
            .streams
            .heads(after, HEADS_PER_PAGE, |channel| holders(ring, self.replicas, channel).any(|n| n == asker));
        (true, heads, more)
    }

    /// As asked by a node catching up: a page of `channel`'s copy.
    pub fn copy_for(&self, channel: &str, after: u64, budget: usize, now: Instant) -> Option<CopyPage> {
        self.streams.export(channel, after, budget, now)
    }

    /// Catching up: whether the copy `from` holds of a stream is worth
    /// taking, and after which offset to ask. Ours is kept when it is as far
    /// along, holds as much history and ends in the same term. A copy of
    /// another epoch replaces ours when it was extended under a newer term
    /// (the epoch the majority started when it could reach no copy of ours,
    /// and confirmed publishes in since), or ours is nothing. One of the
    /// same epoch ending in another term is asked for from the start, to
    /// find where the two part.
    pub fn wants_copy(&self, from: &NodeId, head: &StreamHead) -> Option<u64> {
        let Some((epoch, top)) = self.streams.head(&head.channel) else { return Some(0) };
        if epoch != head.epoch {
            let ours = self.streams.term_at(&head.channel, top);
            return match crate::streams::term_is_newer(&head.term, &ours) {
                Some(newer) => newer.then_some(0),
                // Terms of an older version: the owner's copy is the stream.
                None => (self.ring().owner(&head.channel) == Some(from)).then_some(0),
            };
        }
        let first = self.streams.first(&head.channel);
        if head.first != 0 && (first == 0 || head.first < first) {
            // It holds history we lack: all of it (what we have is kept).
            return Some(0);
        }
        let same_term = *head.term == *self.streams.term_at(&head.channel, top);
        if !same_term {
            return Some(0);
        }
        (head.top > top).then_some(top)
    }

    /// Catching up: takes in a page of another node's copy of `channel`.
    /// Where two copies of one epoch part (two owners gave the same offsets
    /// under different views: one was paused or cut off), the newer view's
    /// copy is the stream from there on; the older owner never confirmed
    /// what it gave there (its replicas refused it, or its lease had ended).
    /// Once the last page is in, edges interested here hear where the
    /// stream is (they may have missed what the copy brought).
    pub fn import_copy(&mut self, channel: &str, page: CopyPage, now: Instant, out: &mut impl Outlet) -> Option<u64> {
        let last = !page.more;
        let imported = self.streams.import(channel, page, now);
        if let Imported::Taken { dropped_from: Some(from) } = imported {
            // What waited here for copies at those offsets is not the stream:
            // never to be confirmed, its publishers retry with their keys.
            for waiting in self.replication.drop_from(channel, from) {
                for (ack, node) in waiting.confirm {
                    super::refuse_publish(ack, &node, "owner_changed", out);
                }
            }
        }
        if imported == Imported::Diverged {
            // Terms that cannot be ordered (a node of an older version): as before, a new epoch.
            if self.ownership.owns(channel) {
                tracing::warn!(channel, "two owners extended this stream; it moves to a new epoch");
                slip_metrics::metrics().stream_divergences.inc();
                self.streams.restart(channel, now);
                return None;
            }
            self.streams.forget(channel);
            return Some(0);
        }
        self.report_bytes();
        if last && let Some((epoch, top)) = self.released_head(channel) {
            for edge in self.interest.edges(channel) {
                let head = Head {
                    channel: channel.to_owned(),
                    epoch: epoch.to_string(),
                    top,
                    view: self.term(),
                    ..Default::default()
                };
                out.send(edge.as_str(), Frame { kind: Some(Kind::Head(head)) });
            }
        }
        None
    }

    /// The stream's epoch and its last confirmed offset (what waits for
    /// copies or the lease is not told).
    pub(super) fn released_head(&self, channel: &str) -> Option<(Arc<str>, u64)> {
        let (epoch, top) = self.streams.head(channel)?;
        let waiting = self.replication.first_waiting(channel).map_or(top, |first| first - 1);
        Some((epoch, top.min(waiting)))
    }

    /// What history holds of `channel` after a point, as the channel's
    /// owner holding its lease and caught up: confirmed publications only.
    /// (Mid catch-up its copy may lack what the last owner confirmed.)
    pub fn history(&self, channel: &str, since_epoch: &str, since_offset: u64, limit: usize, now: Instant) -> Answer {
        if !self.ownership.owns(channel) || !self.ownership.leased(now) || self.acquiring(channel) {
            return Answer::NotOwner;
        }
        let mut history = self.streams.history(channel, since_epoch, since_offset, limit, now);
        if let Some(first) = self.replication.first_waiting(channel) {
            history.publications.retain(|p| p.offset < first);
            history.top_offset = history.top_offset.min(first - 1);
        }
        Answer::History(history)
    }
}
