//! The presence table a channel's owner keeps, as pure code: who is in each
//! channel, with what info, as each edge says (docs/presence.md).
//!
//! Edges are the source of their members, as they are of their interest:
//! the owner keeps them per edge, so an edge declared gone takes its
//! members with it (each one a leave), and an owner new to a channel
//! rebuilds its presence from what the edges announce to it (`announce`,
//! a whole edge's members at once) instead of from a copy. Every change
//! comes back as what changed, for join and leave frames.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use slip_proto::ids::NodeId;

/// Members listed when a presence question names no limit.
pub const DEFAULT_PRESENCE_LIMIT: usize = 1000;

/// A channel's members as listed: some of them, and how many in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// By connection id, with their info.
    pub members: Vec<(String, Arc<str>)>,
    /// Every member, listed or not.
    pub count: u64,
}

/// A change in a channel's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A connection is in the channel now, or its info changed.
    Join { channel: String, connection_id: String, info: Arc<str> },
    /// A connection left the channel.
    Leave { channel: String, connection_id: String },
}

/// One channel's members, by the edge that holds them.
#[derive(Default)]
struct Members {
    by_edge: HashMap<NodeId, BTreeMap<String, Arc<str>>>,
    count: usize,
}

/// Presence per channel, by edge.
#[derive(Default)]
pub struct PresenceTable {
    channels: HashMap<String, Members>,
    by_edge: HashMap<NodeId, HashSet<String>>,
}

impl PresenceTable {
    /// Connection `connection_id` on `edge` is in `channel` with `info`; the
    /// change, if it is one.
    pub fn join(&mut self, edge: &NodeId, channel: &str, connection_id: &str, info: Arc<str>) -> Option<Change> {
        let members = self.channels.entry(channel.to_owned()).or_default();
        let on_edge = members.by_edge.entry(edge.clone()).or_default();
        let before = on_edge.insert(connection_id.to_owned(), info.clone());
        if before.as_deref() == Some(&*info) {
            return None;
        }
        if before.is_none() {
            members.count += 1;
        }
        self.by_edge.entry(edge.clone()).or_default().insert(channel.to_owned());
        Some(Change::Join { channel: channel.to_owned(), connection_id: connection_id.to_owned(), info })
    }

    /// Connection `connection_id` on `edge` left `channel`; the change, if
    /// it was there.
    pub fn leave(&mut self, edge: &NodeId, channel: &str, connection_id: &str) -> Option<Change> {
        let members = self.channels.get_mut(channel)?;
        let on_edge = members.by_edge.get_mut(edge)?;
        on_edge.remove(connection_id)?;
        members.count -= 1;
        if on_edge.is_empty() {
            members.by_edge.remove(edge);
            if let Some(channels) = self.by_edge.get_mut(edge) {
                channels.remove(channel);
                if channels.is_empty() {
                    self.by_edge.remove(edge);
                }
            }
        }
        if members.count == 0 {
            self.channels.remove(channel);
        }
        Some(Change::Leave { channel: channel.to_owned(), connection_id: connection_id.to_owned() })
    }

    /// Everything `edge` holds of `channel`, at once (the edge linked, or
    /// this node became the channel's owner): members it no longer names
    /// leave, new ones join, changed info joins again.
    pub fn announce(
        &mut self,
        edge: &NodeId,
        channel: &str,
        now: impl IntoIterator<Item = (String, Arc<str>)>,
    ) -> Vec<Change> {
        let now: BTreeMap<String, Arc<str>> = now.into_iter().collect();
        let before: Vec<String> = self
            .channels
            .get(channel)
            .and_then(|m| m.by_edge.get(edge))
            .map(|on_edge| on_edge.keys().filter(|id| !now.contains_key(*id)).cloned().collect())
            .unwrap_or_default();
        let mut changes: Vec<Change> = before.iter().filter_map(|id| self.leave(edge, channel, id)).collect();
        changes.extend(now.into_iter().filter_map(|(id, info)| self.join(edge, channel, &id, info)));
        changes
    }

    /// `edge` is gone: every member it held leaves.
    pub fn edge_gone(&mut self, edge: &NodeId) -> Vec<Change> {
        let channels = self.by_edge.get(edge).cloned().unwrap_or_default();
        let mut changes = Vec::new();
        for channel in channels {
            changes.extend(self.announce(edge, &channel, []));
        }
        changes
    }

    /// This node no longer owns `channel`: its presence is the new owner's
    /// to rebuild. No change is reported (the members did not leave).
    pub fn forget(&mut self, channel: &str) {
        let Some(members) = self.channels.remove(channel) else { return };
        for edge in members.by_edge.keys() {
            if let Some(channels) = self.by_edge.get_mut(edge) {
                channels.remove(channel);
                if channels.is_empty() {
                    self.by_edge.remove(edge);
                }
            }
        }
    }

    /// Keeps only the channels `keep` says (the ring settled: the others
    /// are their owners' to rebuild).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self.channels.keys().filter(|c| !keep(c)).cloned().collect();
        for channel in gone {
            self.forget(&channel);
        }
    }

    /// The members of `channel`, at most `limit` (0: the default), ordered
    /// by connection id; and how many there are in all.
    pub fn members(&self, channel: &str, limit: usize) -> Listing {
        let Some(members) = self.channels.get(channel) else { return Listing::default() };
        let limit = if limit == 0 { DEFAULT_PRESENCE_LIMIT } else { limit };
        let mut all: Vec<(&String, &Arc<str>)> = members.by_edge.values().flat_map(|m| m.iter()).collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let listed = all.into_iter().take(limit).map(|(id, info)| (id.clone(), info.clone())).collect();
        Listing { members: listed, count: members.count as u64 }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use slip_proto::ids::NodeId;

    use super::{Change, PresenceTable};

    fn edge(name: &str) -> NodeId {
        NodeId::parse(name).unwrap()
    }

    fn info(json: &str) -> Arc<str> {
        Arc::from(json)
    }

    fn ids(table: &PresenceTable, channel: &str) -> (Vec<String>, u64) {
        let listing = table.members(channel, 0);
        (listing.members.into_iter().map(|(id, _)| id).collect(), listing.count)
    }

    #[test]
    fn a_join_is_a_change_once_and_again_when_its_info_changes() {
        let mut table = PresenceTable::default();
        let e1 = edge("e1");
        assert!(table.join(&e1, "room", "e1.a", info(r#"{"n":"ann"}"#)).is_some());
        assert_eq!(table.join(&e1, "room", "e1.a", info(r#"{"n":"ann"}"#)), None, "the same again");
        assert!(
            matches!(table.join(&e1, "room", "e1.a", info(r#"{"n":"anne"}"#)), Some(Change::Join { .. })),
            "new info"
        );
        assert_eq!(ids(&table, "room"), (vec!["e1.a".to_owned()], 1));
        assert!(table.leave(&e1, "room", "e1.a").is_some());
        assert_eq!(table.leave(&e1, "room", "e1.a"), None, "gone already");
        assert_eq!(ids(&table, "room"), (vec![], 0));
    }

    #[test]
    fn a_gone_edge_takes_its_members_and_only_its_own() {
        let mut table = PresenceTable::default();
        let (e1, e2) = (edge("e1"), edge("e2"));
        table.join(&e1, "room", "e1.a", info("{}"));
        table.join(&e1, "lobby", "e1.a", info("{}"));
        table.join(&e2, "room", "e2.b", info("{}"));
        let mut left = table.edge_gone(&e1);
        left.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            left,
            [
                Change::Leave { channel: "lobby".into(), connection_id: "e1.a".into() },
                Change::Leave { channel: "room".into(), connection_id: "e1.a".into() },
            ]
        );
        assert_eq!(ids(&table, "room"), (vec!["e2.b".to_owned()], 1));
        assert_eq!(ids(&table, "lobby"), (vec![], 0));
        assert!(table.edge_gone(&e1).is_empty(), "nothing left of it");
    }

    #[test]
    fn an_announcement_is_the_edges_whole_set() {
        let mut table = PresenceTable::default();
        let e1 = edge("e1");
        table.join(&e1, "room", "e1.a", info("{}"));
        table.join(&e1, "room", "e1.b", info("{}"));
        let changes = table.announce(&e1, "room", [("e1.b".into(), info("{}")), ("e1.c".into(), info("{}"))]);
        assert_eq!(
            changes,
            [
                Change::Leave { channel: "room".into(), connection_id: "e1.a".into() },
                Change::Join { channel: "room".into(), connection_id: "e1.c".into(), info: info("{}") },
            ]
        );
        assert_eq!(ids(&table, "room"), (vec!["e1.b".to_owned(), "e1.c".to_owned()], 2));
    }

    #[test]
    fn the_count_is_exact_and_the_list_stops_at_the_limit() {
        let mut table = PresenceTable::default();
        let (e1, e2) = (edge("e1"), edge("e2"));
        for i in 0..1500 {
            let on = if i % 2 == 0 { &e1 } else { &e2 };
            table.join(on, "big", &format!("{on}.{i:05}"), info("{}"));
        }
        let listing = table.members("big", 0);
        assert_eq!((listing.members.len(), listing.count), (1000, 1500));
        let listed: Vec<String> = table.members("big", 3).members.into_iter().map(|(id, _)| id).collect();
        assert_eq!(listed, ["e1.00000", "e1.00002", "e1.00004"], "in connection id order");
    }

    #[test]
    fn an_owner_that_lets_a_channel_go_forgets_it_without_leaves() {
        let mut table = PresenceTable::default();
        let e1 = edge("e1");
        table.join(&e1, "room", "e1.a", info("{}"));
        table.forget("room");
        assert_eq!(ids(&table, "room"), (vec![], 0));
        assert!(table.edge_gone(&e1).is_empty());
    }
}
