//! What the consensus leader proposes about the view, as pure code: admit
//! a control node that asks to join, replace a voter whose node came back
//! without its state, declare gone a member not heard from for
//! [`DOWN_AFTER`], and bring back one heard from again. One decision at a
//! time per node, proposed again after [`PROPOSE_RETRY`] if it has not
//! been applied by then. Only the leader asks; the consensus commits.

use std::collections::HashMap;
use std::time::Duration;

use slip_proto::ids::NodeId;
use tokio::time::Instant;

use crate::view::{Change, View};

/// Silence after which the leader declares a member gone: beyond a lease
/// (2 s), and about the time a link takes to be taken for dead.
pub const DOWN_AFTER: Duration = Duration::from_millis(3_000);
/// A member declared gone comes back once heard from within this.
pub const UP_WITHIN: Duration = Duration::from_millis(1_000);
/// A decision not applied this long after it was proposed is proposed again.
pub const PROPOSE_RETRY: Duration = Duration::from_secs(2);
/// Control nodes a node keeps track of, at most (a cluster has a handful;
/// past this, new ones are not heard).
pub const MAX_CONTROL_NODES: usize = 256;

/// What a control node says of itself (its latest `Status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub raft_id: u64,
    pub link_addr: String,
    /// It holds consensus state.
    pub member: bool,
    pub at: Instant,
}

#[derive(Default)]
pub struct Steward {
    /// Every control node heard from, and what it last said of itself.
    seen: HashMap<NodeId, Seen>,
    /// Since when this node leads (members not heard from since count from then).
    leading_since: Option<Instant>,
    /// Decisions proposed, by node, and when.
    proposed: HashMap<NodeId, (Change, Instant)>,
}

impl Steward {
    /// `node` said this of itself at `seen.at`.
    pub fn heard(&mut self, node: &NodeId, seen: Seen) {
        if self.seen.len() >= MAX_CONTROL_NODES && !self.seen.contains_key(node) {
            return;
        }
        self.seen.insert(node.clone(), seen);
    }

    /// What `node` last said of itself.
    pub fn seen(&self, node: &NodeId) -> Option<&Seen> {
        self.seen.get(node)
    }

    /// Every node heard from, with what it said.
    pub fn all_seen(&self) -> impl Iterator<Item = (&NodeId, &Seen)> {
        self.seen.iter()
    }

    /// Whether this node leads now.
    pub fn leading(&mut self, leads: bool, now: Instant) {
        match (leads, self.leading_since) {
            (true, None) => self.leading_since = Some(now),
            (false, _) => {
                self.leading_since = None;
                self.proposed.clear();
            }
            _ => {}
        }
    }

    /// The next decision to propose, if any. `conf_pending`: a change of
    /// voters is under way (raft-rs takes one at a time).
    pub fn next(&mut self, view: &View, me: &NodeId, conf_pending: bool, now: Instant) -> Option<Change> {
        let since = self.leading_since?;
        let fresh = |seen: &Seen| now.saturating_duration_since(seen.at) < DOWN_AFTER;
        // Joining and coming back without state: voters change, one at a time.
        if !conf_pending {
            let asking: Vec<(NodeId, Seen)> = self
                .seen
                .iter()
                .filter(|(_, s)| fresh(s) && s.raft_id != 0)
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect();
            for (node, seen) in &asking {
                let change = match view.member(node) {
                    None if !seen.member => {
                        Change::Admit { node: node.clone(), raft_id: seen.raft_id, link_addr: seen.link_addr.clone() }
                    }
                    Some(m) if m.raft_id != seen.raft_id && !seen.member => Change::Remove { raft_id: m.raft_id },
                    _ => continue,
                };
                if let Some(change) = self.propose(node, change, now) {
                    return Some(change);
                }
            }
        }
        for (node, member) in view.members() {
            if node == me {
                continue;
            }
            let heard = self.seen.get(node).filter(|s| s.raft_id == member.raft_id).map(|s| s.at);
            let silent_for = now.saturating_duration_since(heard.unwrap_or(since).max(since));
            let change = if member.up && silent_for >= DOWN_AFTER {
                Change::Down(node.clone())
            } else if !member.up && heard.is_some_and(|at| now.saturating_duration_since(at) < UP_WITHIN) {
                Change::Up(node.clone())
            } else {
                continue;
            };
            if let Some(change) = self.propose(node, change, now) {
                return Some(change);
            }
        }
        None
    }

    /// `change` about `node`, unless the same was proposed lately.
    fn propose(&mut self, node: &NodeId, change: Change, now: Instant) -> Option<Change> {
        if let Some((last, at)) = self.proposed.get(node)
            && *last == change
            && now.saturating_duration_since(*at) < PROPOSE_RETRY
        {
            return None;
        }
        self.proposed.insert(node.clone(), (change.clone(), now));
        Some(change)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::view::Member;

    fn id(name: &str) -> NodeId {
        NodeId::parse(name).unwrap()
    }

    fn view(members: &[(&str, u64, bool)]) -> View {
        View::formed(
            5,
            members.iter().map(|(n, r, up)| (id(n), Member { raft_id: *r, link_addr: format!("{n}:1"), up: *up })),
        )
    }

    fn seen(raft_id: u64, member: bool, at: Instant) -> Seen {
        Seen { raft_id, link_addr: "x:1".into(), member, at }
    }

    #[test]
    fn only_a_leader_decides_and_a_silent_member_goes_down_after_the_silence() {
        let t0 = Instant::now();
        let v = view(&[("c0", 1, true), ("c1", 2, true), ("c2", 3, true)]);
        let mut steward = Steward::default();
        assert_eq!(steward.next(&v, &id("c0"), false, t0), None, "not leading");
        steward.leading(true, t0);
        steward.heard(&id("c1"), seen(2, true, t0));
        // c2 was never heard from: its silence counts from when this node began to lead.
        assert_eq!(steward.next(&v, &id("c0"), false, t0 + DOWN_AFTER / 2), None);
        steward.heard(&id("c1"), seen(2, true, t0 + DOWN_AFTER));
        let at = t0 + DOWN_AFTER;
        assert_eq!(steward.next(&v, &id("c0"), false, at), Some(Change::Down(id("c2"))));
        assert_eq!(steward.next(&v, &id("c0"), false, at), None, "proposed already");
        assert_eq!(steward.next(&v, &id("c0"), false, at + PROPOSE_RETRY), Some(Change::Down(id("c2"))));
    }

    #[test]
    fn a_member_heard_again_comes_back_up() {
        let t0 = Instant::now();
        let v = view(&[("c0", 1, true), ("c1", 2, false)]);
        let mut steward = Steward::default();
        steward.leading(true, t0);
        steward.heard(&id("c1"), seen(2, true, t0));
        assert_eq!(steward.next(&v, &id("c0"), false, t0 + UP_WITHIN / 2), Some(Change::Up(id("c1"))));
        // Heard under another voter id: not the member that went down.
        let mut steward = Steward::default();
        steward.leading(true, t0);
        steward.heard(&id("c1"), seen(9, true, t0));
        assert_eq!(steward.next(&v, &id("c0"), false, t0), None);
    }

    #[test]
    fn a_newcomer_is_admitted_and_a_node_back_without_state_replaced_one_change_at_a_time() {
        let t0 = Instant::now();
        let v = view(&[("c0", 1, true), ("c1", 2, true)]);
        let mut steward = Steward::default();
        steward.leading(true, t0);
        steward.heard(&id("c1"), seen(2, true, t0));
        steward.heard(&id("c2"), seen(7, false, t0));
        let admit = Change::Admit { node: id("c2"), raft_id: 7, link_addr: "x:1".into() };
        assert_eq!(steward.next(&v, &id("c0"), true, t0), None, "a change of voters is under way");
        assert_eq!(steward.next(&v, &id("c0"), false, t0), Some(admit));
        // c1 restarted without its state: a new voter id, no state.
        let mut steward = Steward::default();
        steward.leading(true, t0);
        steward.heard(&id("c1"), seen(8, false, t0));
        assert_eq!(steward.next(&v, &id("c0"), false, t0), Some(Change::Remove { raft_id: 2 }));
    }
}
