//! Catching up after a view change: the async shell around
//! [`crate::catchup`]. The node asks every other control node in the ring,
//! all at once, which streams it holds that this node now holds too, and
//! takes a copy of each that is further along than its own, page by page.
//! (Channels taken over from a node that left the ring are, besides, not
//! owned before that node's lease must have ended: `ownership.rs`.)
//!
//! Every node of the ring must answer, whole: a node that went on without
//! the copy of one that did not answer (its link not up yet, a question
//! lost) would give offsets that node's copy already holds. So a question
//! that fails is asked again until it is answered, or the view changes (a
//! node that cannot answer for long is declared gone, and the next view's
//! catch-up does not ask it). Meanwhile the channels taken over stay held.

use super::ControlPlane;
use super::Links;
use crate::catchup::{CATCHUP_DEADLINE, VIEW_RETRY};
use crate::streams::CopyPage;
use slip_proto::ids::NodeId;
use slip_proto::link_pb::query;
use slip_proto::link_pb::reply;
use slip_proto::link_pb::{CopyQuery, HeadsQuery};
use std::sync::Arc;
use tokio::time::Instant;

impl ControlPlane {
    /// Starts catching up with the ring of `members` (stopping any catch-up
    /// still running for an earlier ring); `generation` ends it.
    pub(super) fn catch_up(self: &Arc<Self>, generation: u64, members: Vec<NodeId>) {
        let stop = self.shutdown.child_token();
        if let Some(earlier) = self.catching_up.lock().replace(stop.clone()) {
            earlier.cancel();
        }
        let plane = self.clone();
        self.tasks.spawn(stop.run_until_cancelled_owned(async move {
            let names: Vec<String> = members.iter().map(NodeId::to_string).collect();
            let others = members.iter().filter(|m| **m != plane.node_id);
            let asked = futures_util::future::join_all(others.map(|peer| plane.catch_up_from(peer, &names)));
            tokio::pin!(asked);
            if tokio::time::timeout(CATCHUP_DEADLINE, &mut asked).await.is_err() {
                tracing::warn!("catching up takes long: a control node of the ring does not answer; still asking");
                asked.await;
            }
            let mut routing = plane.routing.lock();
            plane.timed(&mut routing, |r| r.finish_catch_up(generation, Instant::now(), &mut Links(&plane)));
            drop(routing);
            plane.caught_up.notify_waiters();
        }));
    }

    /// Takes from `peer` the copies it holds that are worth having, asking
    /// again whatever was not answered, until all was.
    async fn catch_up_from(&self, peer: &NodeId, members: &[String]) {
        while self.catch_up_once(peer, members).await.is_err() {
            tracing::info!(peer = %peer, "a control node did not say what it holds; asking again");
            tokio::time::sleep(ASK_AGAIN).await;
        }
    }

    /// One pass over what `peer` holds; `Err` if a question went unanswered.
    async fn catch_up_once(&self, peer: &NodeId, members: &[String]) -> Result<(), ()> {
        let mut after = String::new();
        loop {
            let question = HeadsQuery { members: members.to_vec(), after: after.clone() };
            let Ok(reply::Kind::Heads(answer)) = self.ask_query(peer.as_str(), query::Kind::Heads(question)).await
            else {
                return Err(());
            };
            if !answer.same_view {
                // It has not seen this ring yet; it will soon, or the ring changes again.
                tokio::time::sleep(VIEW_RETRY).await;
                continue;
            }
            tracing::debug!(peer = %peer, heads = answer.heads.len(), more = answer.more, "heads answered");
            for head in answer.heads {
                let head = head.into();
                let wanted = self.routing.lock().wants_copy(peer, &head);
                tracing::debug!(
                    peer = %peer,
                    channel = &*head.channel,
                    top = head.top,
                    term = &*head.term,
                    wanted = ?wanted,
                    "a copy held there"
                );
                if let Some(since) = wanted {
                    self.copy_stream(peer, &head.channel, since).await?;
                }
                after = head.channel.to_string();
            }
            if !answer.more {
                return Ok(());
            }
        }
    }

    /// As a replica that got a copy past a hole: takes the owner's copy
    /// after `after` (once at a time per channel, at most
    /// [`MAX_FILLING`] channels at once). The owner sends again what it
    /// waits for, and then it is stored.
    pub(super) fn fill_copy(self: &Arc<Self>, owner: &NodeId, channel: String, after: u64) {
        {
            let mut filling = self.filling.lock();
            if filling.len() >= MAX_FILLING || !filling.insert(channel.clone()) {
                return;
            }
        }
        let (plane, owner) = (self.clone(), owner.clone());
        let stop = self.shutdown.clone();
        self.tasks.spawn(stop.run_until_cancelled_owned(async move {
            if plane.copy_stream(&owner, &channel, after).await.is_err() {
                tracing::debug!(owner = %owner, channel, "the owner's copy was not had; asked again at its next sending");
            }
            plane.filling.lock().remove(&channel);
        }));
    }

    /// Takes `peer`'s copy of `channel` after offset `after`, page by page;
    /// `Err` if a page went unanswered.
    async fn copy_stream(&self, peer: &NodeId, channel: &str, mut after: u64) -> Result<(), ()> {
        let mut restarted = false;
        loop {
            let question = CopyQuery { channel: channel.to_owned(), after };
            let Ok(reply::Kind::Copy(copy)) = self.ask_query(peer.as_str(), query::Kind::Copy(question)).await else {
                return Err(());
            };
            if copy.epoch.is_empty() {
                // It no longer holds the stream: nothing to take.
                return Ok(());
            }
            let page = CopyPage::from(copy);
            let last = page.entries.iter().map(|(p, _)| p.offset).chain(page.keys.iter().map(|k| k.1)).max();
            let more = page.more && last.is_some_and(|last| last > after);
            let mut routing = self.routing.lock();
            let again = self.timed(&mut routing, |r| r.import_copy(channel, page, Instant::now(), &mut Links(self)));
            tracing::debug!(peer = %peer, channel, after, last = ?last, now = ?routing.stream_head(channel), "copy page taken");
            drop(routing);
            match (again, last) {
                // Ours was dropped for theirs: from the start, once.
                (Some(start), _) if !restarted => (after, restarted) = (start, true),
                (None, Some(last)) if more => after = last,
                _ => return Ok(()),
            }
        }
    }
}

/// Channels a replica takes its owner's copy of at once, at most.
const MAX_FILLING: usize = 256;
/// How soon a question of a catch-up that went unanswered is asked again.
const ASK_AGAIN: std::time::Duration = std::time::Duration::from_millis(200);
