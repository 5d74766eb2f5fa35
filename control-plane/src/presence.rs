//! The presence table a channel's owner keeps, as pure code: who is in each
//! channel, with what info, as each edge says (docs/presence.md).
//!
//! Edges are the source of their members, as they are of their interest:
//! the owner keeps them per edge, so an edge declared gone takes its
//! members with it (each one a leave), and an owner new to a channel
//! rebuilds its presence from what the edges announce to it (`announce`,
//! a whole edge's members at once) instead of from a copy. Every change
//! comes back as what changed, for join and leave frames.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use slip_proto::ids::NodeId;
use slip_proto::link_pb::PresenceMember;
use tokio::time::Instant;

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

impl Listing {
    /// The members as the link carries them.
    pub fn link_members(self) -> Vec<PresenceMember> {
        self.members
            .into_iter()
            .map(|(connection_id, info)| PresenceMember {
                connection_id,
                info: info.to_string(),
                present: true,
                ..Default::default()
            })
            .collect()
    }
}

/// A change in a channel's presence: a member's info before and after
/// (`None`: not a member).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub channel: String,
    pub connection_id: String,
    pub before: Option<Arc<str>>,
    pub after: Option<Arc<str>>,
}

/// A member as an edge holds it.
#[derive(Debug, Clone)]
struct Held {
    info: Arc<str>,
    /// A `slip.v1` session: it may come back on another edge.
    session: bool,
}

/// One channel's members, by the edge that holds them. A session moving
/// between edges is held by both for a moment (the new edge's join may
/// come before the old one's leave), or by none (the other way round):
/// either way it is one member, throughout.
#[derive(Default)]
struct Members {
    by_edge: HashMap<NodeId, BTreeMap<String, Held>>,
    /// Per member, how many edges hold it.
    holders: HashMap<String, usize>,
    /// Sessions no edge holds now (handed over to another edge, or their
    /// edge gone) that may come back: members until then, with their info.
    away: HashMap<String, (Instant, Arc<str>)>,
}

impl Members {
    /// `id`'s info as any edge holds it, or as it had it when it went away.
    fn info_of(&self, id: &str) -> Option<Arc<str>> {
        let held = self.by_edge.values().find_map(|on_edge| on_edge.get(id)).map(|h| h.info.clone());
        held.or_else(|| self.away.get(id).map(|(_, info)| info.clone()))
    }

    fn is_empty(&self) -> bool {
        self.holders.is_empty() && self.away.is_empty()
    }
}

/// How long the owner remembers the channels a gone edge held members of:
/// if the edge comes back within it, the members it announces again are
/// joins (their leaves were told); after it, or from an edge never gone,
/// an announcement rebuilds silently (this node is new to the channel).
pub const GONE_EDGE_MEMORY: Duration = Duration::from_secs(600);
/// How long a session handed over to another edge stays a member with no
/// edge holding it: its new edge's join comes well within it.
pub const MOVE_GRACE: Duration = Duration::from_secs(10);

/// Presence per channel, by edge.
#[derive(Default)]
pub struct PresenceTable {
    channels: HashMap<String, Members>,
    by_edge: HashMap<NodeId, HashSet<String>>,
    /// Edges gone with members: when, and the channels they held members of.
    gone: HashMap<NodeId, (Instant, HashSet<String>)>,
    /// When each away member's time is up: (deadline, channel, id).
    away_until: BTreeSet<(Instant, String, String)>,
}

impl PresenceTable {
    /// Its entries by structure (`slip_entries`).
    pub fn sizes(&self, out: &mut slip_metrics::Sizes) {
        out.push(("presence_channels", self.channels.len()));
        out.push(("presence_members", self.channels.values().map(|m| m.holders.len()).sum()));
        out.push(("presence_away", self.away_until.len()));
        out.push(("presence_gone_edges", self.gone.len()));
    }

    /// Connection `connection_id` on `edge` (a `session` or not) is in
    /// `channel` with `info`; the change, if it is one.
    pub fn join(
        &mut self,
        edge: &NodeId,
        channel: &str,
        connection_id: &str,
        info: Arc<str>,
        session: bool,
    ) -> Option<Change> {
        let members = self.channels.entry(channel.to_owned()).or_default();
        let before = members.info_of(connection_id);
        if let Some((until, _)) = members.away.remove(connection_id) {
            // Back: no longer away.
            self.away_until.remove(&(until, channel.to_owned(), connection_id.to_owned()));
        }
        let on_edge = members.by_edge.entry(edge.clone()).or_default();
        let was_here = on_edge.insert(connection_id.to_owned(), Held { info: info.clone(), session });
        if was_here.is_none() {
            *members.holders.entry(connection_id.to_owned()).or_default() += 1;
        }
        self.by_edge.entry(edge.clone()).or_default().insert(channel.to_owned());
        (before.as_deref() != Some(&*info)).then(|| Change {
            channel: channel.to_owned(),
            connection_id: connection_id.to_owned(),
            before,
            after: Some(info),
        })
    }

    /// Connection `connection_id` on `edge` left `channel`; the change, if
    /// it was there (and is not held by another edge as it was).
    pub fn leave(&mut self, edge: &NodeId, channel: &str, connection_id: &str) -> Option<Change> {
        let held = self.remove(edge, channel, connection_id)?;
        self.left(channel, connection_id, held.info)
    }

    /// Session `connection_id` moved away from `edge` (handed over to
    /// another edge, or its edge is gone): unless another edge holds it, it
    /// stays a member, away, until `until`; if no edge joins it by then, it
    /// leaves ([`PresenceTable::expire`]).
    pub fn step_away(&mut self, edge: &NodeId, channel: &str, connection_id: &str, until: Instant) -> Option<Change> {
        let held = self.remove(edge, channel, connection_id)?;
        let members = self.channels.get_mut(channel)?;
        if members.holders.contains_key(connection_id) {
            return self.left(channel, connection_id, held.info);
        }
        members.away.insert(connection_id.to_owned(), (until, held.info));
        self.away_until.insert((until, channel.to_owned(), connection_id.to_owned()));
        None
    }

    /// Takes `connection_id` off `edge`'s members of `channel`.
    fn remove(&mut self, edge: &NodeId, channel: &str, connection_id: &str) -> Option<Held> {
        let members = self.channels.get_mut(channel)?;
        let on_edge = members.by_edge.get_mut(edge)?;
        let held = on_edge.remove(connection_id)?;
        if on_edge.is_empty() {
            members.by_edge.remove(edge);
            if let Some(channels) = self.by_edge.get_mut(edge) {
                channels.remove(channel);
                if channels.is_empty() {
                    self.by_edge.remove(edge);
                }
            }
        }
        if let Some(holders) = members.holders.get_mut(connection_id) {
            *holders -= 1;
            if *holders == 0 {
                members.holders.remove(connection_id);
            }
        }
        Some(held)
    }

    /// What `connection_id` going (with `info`) changed in `channel`: a
    /// leave, an info change (another edge holds it otherwise), or nothing.
    fn left(&mut self, channel: &str, connection_id: &str, info: Arc<str>) -> Option<Change> {
        let members = self.channels.get(channel)?;
        let after = members.info_of(connection_id);
        if members.is_empty() {
            self.channels.remove(channel);
        }
        (after.as_deref() != Some(&*info)).then(|| Change {
            channel: channel.to_owned(),
            connection_id: connection_id.to_owned(),
            before: Some(info),
            after,
        })
    }

    /// Away members whose time is up by `now` leave.
    pub fn expire(&mut self, now: Instant) -> Vec<Change> {
        let mut changes = Vec::new();
        while let Some((until, _, _)) = self.away_until.first() {
            if *until > now {
                break;
            }
            let Some((until, channel, id)) = self.away_until.pop_first() else { break };
            let Some(members) = self.channels.get_mut(&channel) else { continue };
            if members.away.get(&id).is_none_or(|(at, _)| *at != until) {
                continue;
            }
            if let Some((_, info)) = members.away.remove(&id) {
                changes.extend(self.left(&channel, &id, info));
            }
        }
        changes
    }

    /// When the next away member's time is up.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.away_until.first().map(|(at, _, _)| *at)
    }

    /// Everything `edge` holds of `channel`, at once (this node became the
    /// channel's owner, or linked to the edge again): members it no longer
    /// names leave, new ones join, changed info joins again. The changes
    /// are returned only where the edges were told what this replaces: the
    /// edge's members here already, or its leaves when it went. A new
    /// owner rebuilding a channel's presence reports nothing: nobody left.
    pub fn announce(
        &mut self,
        edge: &NodeId,
        channel: &str,
        now: impl IntoIterator<Item = (String, Arc<str>, bool)>,
    ) -> Vec<Change> {
        let known = self.channels.get(channel).is_some_and(|m| m.by_edge.contains_key(edge));
        let back = self.gone.get_mut(edge).is_some_and(|(_, channels)| channels.remove(channel));
        let now: BTreeMap<String, (Arc<str>, bool)> =
            now.into_iter().map(|(id, info, session)| (id, (info, session))).collect();
        let not_named: Vec<String> = self
            .channels
            .get(channel)
            .and_then(|m| m.by_edge.get(edge))
            .map(|on_edge| on_edge.keys().filter(|id| !now.contains_key(*id)).cloned().collect())
            .unwrap_or_default();
        let mut changes: Vec<Change> = not_named.iter().filter_map(|id| self.leave(edge, channel, id)).collect();
        for (id, (info, session)) in now {
            changes.extend(self.join(edge, channel, &id, info, session));
        }
        if known || back { changes } else { Vec::new() }
    }

    /// `edge` is gone: every member it held leaves, but its sessions,
    /// which may resume on another edge, only if none takes them by
    /// `sessions_until`. Remembered for [`GONE_EDGE_MEMORY`], so that its
    /// members coming back are joins.
    pub fn edge_gone(&mut self, edge: &NodeId, at: Instant, sessions_until: Instant) -> Vec<Change> {
        self.gone.retain(|_, (when, _)| at.saturating_duration_since(*when) < GONE_EDGE_MEMORY);
        let channels = self.by_edge.get(edge).cloned().unwrap_or_default();
        let mut changes = Vec::new();
        for channel in &channels {
            let held: Vec<(String, bool)> = self
                .channels
                .get(channel)
                .and_then(|m| m.by_edge.get(edge))
                .map(|on_edge| on_edge.iter().map(|(id, h)| (id.clone(), h.session)).collect())
                .unwrap_or_default();
            for (id, session) in held {
                let change = if session {
                    self.step_away(edge, channel, &id, sessions_until)
                } else {
                    self.leave(edge, channel, &id)
                };
                changes.extend(change);
            }
        }
        if !channels.is_empty() {
            let (when, remembered) = self.gone.entry(edge.clone()).or_insert_with(|| (at, HashSet::new()));
            *when = at;
            remembered.extend(channels);
        }
        changes
    }

    /// This node no longer owns `channel`: its presence is the new owner's
    /// to rebuild. No change is reported (the members did not leave).
    pub fn forget(&mut self, channel: &str) {
        for (_, channels) in self.gone.values_mut() {
            channels.remove(channel);
        }
        let Some(members) = self.channels.remove(channel) else { return };
        for (id, (until, _)) in members.away {
            self.away_until.remove(&(until, channel.to_owned(), id));
        }
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

    /// How many members `channel` has (away ones too), as [`Self::members`] counts them.
    pub fn count(&self, channel: &str) -> u64 {
        self.channels.get(channel).map_or(0, |m| (m.holders.len() + m.away.len()) as u64)
    }

    /// The members of `channel` (away ones too), at most `limit` (0: the
    /// default), ordered by connection id; and how many there are in all.
    pub fn members(&self, channel: &str, limit: usize) -> Listing {
        let Some(members) = self.channels.get(channel) else { return Listing::default() };
        let limit = if limit == 0 { DEFAULT_PRESENCE_LIMIT } else { limit };
        let held = members.by_edge.values().flat_map(|m| m.iter().map(|(id, h)| (id, &h.info)));
        let away = members.away.iter().map(|(id, (_, info))| (id, info));
        let mut all: Vec<(&String, &Arc<str>)> = held.chain(away).collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        // One moving between edges is listed once.
        all.dedup_by(|a, b| a.0 == b.0);
        let listed = all.into_iter().take(limit).map(|(id, info)| (id.clone(), info.clone())).collect();
        Listing { members: listed, count: (members.holders.len() + members.away.len()) as u64 }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use slip_proto::ids::NodeId;
    use tokio::time::Instant;

    use super::{Change, GONE_EDGE_MEMORY, MOVE_GRACE, PresenceTable};

    fn edge(name: &str) -> NodeId {
        NodeId::parse(name).unwrap()
    }

    fn info(json: &str) -> Arc<str> {
        Arc::from(json)
    }

    fn left(channel: &str, id: &str) -> Change {
        Change { channel: channel.into(), connection_id: id.into(), before: Some(info("{}")), after: None }
    }

    fn joined(channel: &str, id: &str) -> Change {
        Change { channel: channel.into(), connection_id: id.into(), before: None, after: Some(info("{}")) }
    }

    fn ids(table: &PresenceTable, channel: &str) -> (Vec<String>, u64) {
        let listing = table.members(channel, 0);
        (listing.members.into_iter().map(|(id, _)| id).collect(), listing.count)
    }

    #[test]
    fn a_join_is_a_change_once_and_again_when_its_info_changes() {
        let mut table = PresenceTable::default();
        let e1 = edge("e1");
        assert!(table.join(&e1, "room", "e1.a", info(r#"{"n":"ann"}"#), false).is_some());
        assert_eq!(table.join(&e1, "room", "e1.a", info(r#"{"n":"ann"}"#), false), None, "the same again");
        assert!(
            table.join(&e1, "room", "e1.a", info(r#"{"n":"anne"}"#), false).unwrap().before.as_deref()
                == Some(r#"{"n":"ann"}"#),
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
        table.join(&e1, "room", "e1.a", info("{}"), false);
        table.join(&e1, "lobby", "e1.a", info("{}"), false);
        table.join(&e2, "room", "e2.b", info("{}"), false);
        let mut gone = table.edge_gone(&e1, Instant::now(), Instant::now());
        gone.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(gone, [left("lobby", "e1.a"), left("room", "e1.a")]);
        assert_eq!(ids(&table, "room"), (vec!["e2.b".to_owned()], 1));
        assert_eq!(ids(&table, "lobby"), (vec![], 0));
        assert!(table.edge_gone(&e1, Instant::now(), Instant::now()).is_empty(), "nothing left of it");
    }

    #[test]
    fn an_announcement_is_the_edges_whole_set() {
        let mut table = PresenceTable::default();
        let e1 = edge("e1");
        table.join(&e1, "room", "e1.a", info("{}"), false);
        table.join(&e1, "room", "e1.b", info("{}"), false);
        let changes =
            table.announce(&e1, "room", [("e1.b".into(), info("{}"), false), ("e1.c".into(), info("{}"), false)]);
        assert_eq!(changes, [left("room", "e1.a"), joined("room", "e1.c")]);
        assert_eq!(ids(&table, "room"), (vec!["e1.b".to_owned(), "e1.c".to_owned()], 2));
    }

    #[test]
    fn the_count_is_exact_and_the_list_stops_at_the_limit() {
        let mut table = PresenceTable::default();
        let (e1, e2) = (edge("e1"), edge("e2"));
        for i in 0..1500 {
            let on = if i % 2 == 0 { &e1 } else { &e2 };
            table.join(on, "big", &format!("{on}.{i:05}"), info("{}"), false);
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
        table.join(&e1, "room", "e1.a", info("{}"), false);
        table.forget("room");
        assert_eq!(ids(&table, "room"), (vec![], 0));
        assert!(table.edge_gone(&e1, Instant::now(), Instant::now()).is_empty());
    }

    #[test]
    fn a_session_moving_between_edges_is_one_member_whichever_word_comes_first() {
        let mut table = PresenceTable::default();
        let (e1, e2) = (edge("e1"), edge("e2"));
        table.join(&e1, "room", "e1.a", info("{}"), false);
        // The new edge's join before the old edge's leave: no change at all.
        assert_eq!(table.join(&e2, "room", "e1.a", info("{}"), false), None);
        assert_eq!(ids(&table, "room"), (vec!["e1.a".to_owned()], 1), "listed and counted once");
        assert_eq!(table.leave(&e1, "room", "e1.a"), None, "still a member, on e2");
        assert_eq!(ids(&table, "room"), (vec!["e1.a".to_owned()], 1));
        // The other order: a leave, then the join (two changes, which the feed coalesces).
        assert_eq!(table.leave(&e2, "room", "e1.a"), Some(left("room", "e1.a")));
        assert_eq!(table.join(&e1, "room", "e1.a", info("{}"), false), Some(joined("room", "e1.a")));
        // Gone from one edge while the other holds it with other info: an info change.
        table.join(&e2, "room", "e1.a", info(r#"{"n":2}"#), false);
        let change = table.leave(&e2, "room", "e1.a").unwrap();
        assert_eq!((change.before.as_deref(), change.after.as_deref()), (Some(r#"{"n":2}"#), Some("{}")));
    }

    #[test]
    fn a_session_away_from_every_edge_stays_a_member_until_its_time_is_up() {
        let mut table = PresenceTable::default();
        let (e1, e2) = (edge("e1"), edge("e2"));
        let t0 = Instant::now();
        table.join(&e1, "room", "e1.s", info("{}"), true);
        table.join(&e1, "room", "e1.p", info("{}"), false);
        // Handed over: away, still a member, no change.
        assert_eq!(table.step_away(&e1, "room", "e1.s", t0 + MOVE_GRACE), None);
        assert_eq!(ids(&table, "room"), (vec!["e1.p".to_owned(), "e1.s".to_owned()], 2));
        assert_eq!(table.next_deadline(), Some(t0 + MOVE_GRACE));
        // Its new edge takes it: no change, and nothing falls due.
        assert_eq!(table.join(&e2, "room", "e1.s", info("{}"), true), None);
        assert!(table.expire(t0 + MOVE_GRACE).is_empty());
        assert_eq!(table.next_deadline(), None);
        // That edge dies: the plain member leaves now, the session when the window ends.
        table.join(&e2, "room", "e2.p", info("{}"), false);
        let window = t0 + std::time::Duration::from_secs(120);
        assert_eq!(table.edge_gone(&e2, t0, window), [left("room", "e2.p")]);
        assert_eq!(ids(&table, "room").1, 2, "e1.p here, e1.s away");
        assert!(table.expire(window - MOVE_GRACE).is_empty());
        assert_eq!(table.expire(window), [left("room", "e1.s")]);
        assert_eq!(ids(&table, "room"), (vec!["e1.p".to_owned()], 1));
        table.leave(&e1, "room", "e1.p");
        assert!(table.channels.is_empty() && table.away_until.is_empty(), "nothing kept");
    }

    #[test]
    fn a_new_owner_rebuilds_silently_but_an_edge_coming_back_brings_joins() {
        let mut table = PresenceTable::default();
        let (e1, e2) = (edge("e1"), edge("e2"));
        let t0 = Instant::now();
        // New to the channel: the edges' members were never told to leave.
        assert!(table.announce(&e1, "room", [("e1.a".into(), info("{}"), false)]).is_empty());
        assert_eq!(ids(&table, "room"), (vec!["e1.a".to_owned()], 1));
        // Its link dropped: its members left, and were told so.
        assert_eq!(table.edge_gone(&e1, t0, t0), [left("room", "e1.a")]);
        // Back: they join again, loudly; its next announcement is as usual.
        assert_eq!(table.announce(&e1, "room", [("e1.a".into(), info("{}"), false)]), [joined("room", "e1.a")]);
        // Gone long ago: what it announces then is a rebuild.
        table.edge_gone(&e1, t0, t0);
        table.join(&e2, "room", "e2.b", info("{}"), false);
        table.edge_gone(&e2, t0 + GONE_EDGE_MEMORY, t0);
        assert!(table.announce(&e1, "room", [("e1.a".into(), info("{}"), false)]).is_empty());
    }
}
