//! Join and leave, as a channel's owner tells them to the edges, as pure
//! code (docs/presence.md). A channel's presence changes wait at most
//! [`PRESENCE_FLUSH`], or until the channel's next publication goes out
//! (they go just before it, so they stay in order with it), and go out
//! coalesced: per member, only what differs between what the edges were
//! last told and now. A reconnect storm that takes members away and gives
//! them back within one flush sends nothing for them.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use slip_proto::link_pb::PresenceMember;
use tokio::time::Instant;

use crate::presence::Change;

/// Longest a presence change waits to be coalesced with others.
pub const PRESENCE_FLUSH: Duration = Duration::from_millis(100);
/// Members with changes waiting in one channel, at most: at the bound the
/// channel's changes go out at once (one frame per edge, never a queue
/// without end).
pub const MAX_PENDING_CHANGES: usize = 1024;

/// One member's change since the edges were last told: what they were
/// told (`None`: not a member) and what it is now.
struct Net {
    told: Option<Arc<str>>,
    now: Option<Arc<str>>,
}

/// A channel's changes waiting, in the order members first changed.
struct Pending {
    due: Instant,
    order: Vec<String>,
    by_member: HashMap<String, Net>,
}

/// Changes waiting per channel, and when each channel is due.
#[derive(Default)]
pub struct PresenceFeed {
    pending: HashMap<String, Pending>,
    /// (due, channel), in the order they fell due; an entry whose channel
    /// went out early is skipped when it comes up.
    due: VecDeque<(Instant, String)>,
}

impl PresenceFeed {
    /// Its entries by structure (`slip_entries`).
    pub fn sizes(&self, out: &mut slip_metrics::Sizes) {
        out.push(("presence_feed_channels", self.pending.len()));
        out.push(("presence_feed_due", self.due.len()));
    }

    /// A change to a channel's presence; the channel's batch if it is full
    /// and must go out now.
    pub fn push(&mut self, change: Change, now: Instant) -> Option<(String, Vec<PresenceMember>)> {
        let Change { channel, connection_id, before, after } = change;
        let pending = match self.pending.get_mut(&channel) {
            Some(pending) => pending,
            None => {
                let due = now + PRESENCE_FLUSH;
                self.due.push_back((due, channel.clone()));
                let fresh = Pending { due, order: Vec::new(), by_member: HashMap::new() };
                self.pending.entry(channel.clone()).or_insert(fresh)
            }
        };
        match pending.by_member.get_mut(&connection_id) {
            Some(net) => net.now = after,
            None => {
                pending.order.push(connection_id.clone());
                pending.by_member.insert(connection_id, Net { told: before, now: after });
            }
        }
        (pending.order.len() >= MAX_PENDING_CHANGES).then(|| {
            let members = self.take(&channel);
            (channel, members)
        })
    }

    /// The changes of `channel` waiting, coalesced (empty: none, or none
    /// left after coalescing). Called before each of its publications.
    pub fn take(&mut self, channel: &str) -> Vec<PresenceMember> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let Some(Pending { order, mut by_member, .. }) = self.pending.remove(channel) else { return Vec::new() };
        order
            .into_iter()
            .filter_map(|id| {
                let Net { told, now } = by_member.remove(&id)?;
                (told != now).then(|| match now {
                    Some(info) => PresenceMember {
                        connection_id: id,
                        info: info.to_string(),
                        present: true,
                        ..Default::default()
                    },
                    None => PresenceMember { connection_id: id, present: false, ..Default::default() },
                })
            })
            .collect()
    }

    /// The channels whose changes waited [`PRESENCE_FLUSH`], with them.
    pub fn due(&mut self, now: Instant) -> Vec<(String, Vec<PresenceMember>)> {
        let mut out = Vec::new();
        while let Some((at, _)) = self.due.front() {
            if *at > now {
                break;
            }
            let Some((at, channel)) = self.due.pop_front() else { break };
            // Only if that entry is still the channel's (not sent early and begun again).
            if self.pending.get(&channel).is_some_and(|p| p.due == at) {
                let members = self.take(&channel);
                out.push((channel, members));
            }
        }
        out
    }

    /// When the next channel falls due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.due.front().map(|(at, _)| *at)
    }

    /// Keeps only the channels `keep` says (the ring settled: what waited
    /// of the others is not this node's to tell).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.pending.retain(|channel, _| keep(channel));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use tokio::time::Instant;

    use super::{MAX_PENDING_CHANGES, PRESENCE_FLUSH, PresenceFeed};
    use crate::presence::Change;

    fn change(id: &str, before: Option<&str>, after: Option<&str>) -> Change {
        Change {
            channel: "room".into(),
            connection_id: id.into(),
            before: before.map(Arc::from),
            after: after.map(Arc::from),
        }
    }

    fn named(members: &[slip_proto::link_pb::PresenceMember]) -> Vec<String> {
        members.iter().map(|m| format!("{}{}", if m.present { "+" } else { "-" }, m.connection_id)).collect()
    }

    #[test]
    fn changes_wait_for_the_flush_and_go_out_in_first_change_order() {
        let mut feed = PresenceFeed::default();
        let t0 = Instant::now();
        assert!(feed.push(change("b", None, Some("{}")), t0).is_none());
        assert!(feed.push(change("a", Some("{}"), None), t0).is_none());
        assert!(feed.due(t0 + PRESENCE_FLUSH / 2).is_empty(), "not yet");
        assert_eq!(feed.next_deadline(), Some(t0 + PRESENCE_FLUSH));
        let due = feed.due(t0 + PRESENCE_FLUSH);
        assert_eq!(due.len(), 1);
        assert_eq!(named(&due[0].1), ["+b", "-a"]);
        assert!(feed.due(t0 + PRESENCE_FLUSH * 3).is_empty(), "sent once");
        assert_eq!(feed.next_deadline(), None);
    }

    #[test]
    fn a_member_that_comes_and_goes_within_a_flush_is_not_named_and_new_info_is() {
        let mut feed = PresenceFeed::default();
        let t0 = Instant::now();
        feed.push(change("a", None, Some("{}")), t0);
        feed.push(change("a", Some("{}"), None), t0);
        feed.push(change("b", Some("{}"), None), t0);
        feed.push(change("b", None, Some("{}")), t0);
        feed.push(change("c", Some("{}"), None), t0);
        feed.push(change("c", None, Some(r#"{"n":1}"#)), t0);
        let members = feed.take("room");
        assert_eq!(named(&members), ["+c"], "a joined and left, b left and came back as it was");
        assert_eq!(members[0].info, r#"{"n":1}"#);
    }

    #[test]
    fn a_publication_takes_the_changes_before_it_and_the_flush_then_finds_none() {
        let mut feed = PresenceFeed::default();
        let t0 = Instant::now();
        feed.push(change("a", None, Some("{}")), t0);
        assert_eq!(named(&feed.take("room")), ["+a"]);
        feed.push(change("b", None, Some("{}")), t0 + PRESENCE_FLUSH / 2);
        let due = feed.due(t0 + PRESENCE_FLUSH);
        assert!(due.is_empty(), "the first batch went with the publication; the second is not due: {due:?}");
        assert_eq!(named(&feed.due(t0 + PRESENCE_FLUSH * 2)[0].1), ["+b"]);
    }

    #[test]
    fn a_full_channel_goes_out_at_once() {
        let mut feed = PresenceFeed::default();
        let t0 = Instant::now();
        for i in 0..MAX_PENDING_CHANGES - 1 {
            assert!(feed.push(change(&format!("m{i}"), None, Some("{}")), t0).is_none());
        }
        let (channel, members) = feed.push(change("last", None, Some("{}")), t0).unwrap();
        assert_eq!((channel.as_str(), members.len()), ("room", MAX_PENDING_CHANGES));
        assert!(feed.due(t0 + PRESENCE_FLUSH).is_empty());
    }
}
