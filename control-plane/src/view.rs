//! The ring view: which control nodes are in the cluster, which of them are
//! up (the ring is built from those), and the term that numbers it. It
//! changes only by decisions the consensus committed (`consensus.rs`), in
//! the order committed, so every control node and every edge that has seen
//! term T computes the same owners for every channel. Pure.
//!
//! The term is the raft log index of the last decision that changed the
//! view: it only grows, and two views with one term are the same view.

use std::collections::BTreeMap;

use slip_proto::ids::NodeId;
use slip_proto::link_pb::{View as ViewFrame, ViewMember, view_change};
use slip_proto::ring::Ring;

/// A control node in the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its id in the consensus (a voter).
    pub raft_id: u64,
    /// Where others dial its link.
    pub link_addr: String,
    /// In the ring; a member declared gone is not, but still votes.
    pub up: bool,
}

/// A decision about the view, as the consensus log carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A control node joins (as a voter), up.
    Admit { node: NodeId, raft_id: u64, link_addr: String },
    /// The voter `raft_id` leaves: its node is out of the view.
    Remove { raft_id: u64 },
    /// Declared gone: out of the ring.
    Down(NodeId),
    /// Back: in the ring again.
    Up(NodeId),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    term: u64,
    members: BTreeMap<NodeId, Member>,
}

impl View {
    /// The view a cluster forms with: `members`, all up, at `term`.
    pub fn formed(term: u64, members: impl IntoIterator<Item = (NodeId, Member)>) -> Self {
        Self { term, members: members.into_iter().collect() }
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    pub fn members(&self) -> &BTreeMap<NodeId, Member> {
        &self.members
    }

    pub fn member(&self, node: &NodeId) -> Option<&Member> {
        self.members.get(node)
    }

    /// The node a voter id belongs to.
    pub fn node_of(&self, raft_id: u64) -> Option<&NodeId> {
        self.members.iter().find(|(_, m)| m.raft_id == raft_id).map(|(n, _)| n)
    }

    /// Whether `node` is in the ring.
    pub fn is_up(&self, node: &NodeId) -> bool {
        self.members.get(node).is_some_and(|m| m.up)
    }

    /// The ring: the members that are up.
    pub fn ring(&self) -> Ring {
        Ring::new(self.members.iter().filter(|(_, m)| m.up).map(|(n, _)| n.clone()))
    }

    /// Applies the decision committed at log `index`; false (and the term
    /// unchanged) if it changes nothing, as a repeated decision does.
    pub fn apply(&mut self, index: u64, change: &Change) -> bool {
        let changed = match change {
            Change::Admit { node, raft_id, link_addr } => {
                let member = Member { raft_id: *raft_id, link_addr: link_addr.clone(), up: true };
                self.members.insert(node.clone(), member.clone()) != Some(member)
            }
            Change::Remove { raft_id } => {
                let before = self.members.len();
                self.members.retain(|_, m| m.raft_id != *raft_id);
                self.members.len() != before
            }
            Change::Down(node) => self.members.get_mut(node).is_some_and(|m| std::mem::replace(&mut m.up, false)),
            Change::Up(node) => self.members.get_mut(node).is_some_and(|m| !std::mem::replace(&mut m.up, true)),
        };
        if changed {
            self.term = self.term.max(index);
        }
        changed
    }

    /// As the link carries it to edges.
    pub fn to_frame(&self) -> ViewFrame {
        ViewFrame {
            term: self.term,
            members: self
                .members
                .iter()
                .map(|(node, m)| ViewMember {
                    node_id: node.to_string(),
                    link_addr: m.link_addr.clone(),
                    up: m.up,
                    raft_id: m.raft_id,
                })
                .collect(),
        }
    }

    /// From the link; members with ids that do not parse are left out.
    pub fn from_frame(frame: &ViewFrame) -> Self {
        let members = frame
            .members
            .iter()
            .filter_map(|m| {
                let node = NodeId::parse(&m.node_id).ok()?;
                Some((node, Member { raft_id: m.raft_id, link_addr: m.link_addr.clone(), up: m.up }))
            })
            .collect();
        Self { term: frame.term, members }
    }
}

impl Change {
    /// A Down or Up decision as a log entry's data.
    pub fn encode_entry(&self) -> Option<Vec<u8>> {
        use prost::Message;
        let change = match self {
            Change::Down(node) => view_change::Change::Down(node.to_string()),
            Change::Up(node) => view_change::Change::Up(node.to_string()),
            Change::Admit { .. } | Change::Remove { .. } => return None,
        };
        Some(slip_proto::link_pb::ViewChange { change: Some(change) }.encode_to_vec())
    }

    /// A log entry's data back into a decision; `None` for anything else.
    pub fn decode_entry(data: &[u8]) -> Option<Self> {
        use prost::Message;
        let change = slip_proto::link_pb::ViewChange::decode(data).ok()?.change?;
        Some(match change {
            view_change::Change::Down(node) => Change::Down(NodeId::parse(&node).ok()?),
            view_change::Change::Up(node) => Change::Up(NodeId::parse(&node).ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn id(name: &str) -> NodeId {
        NodeId::parse(name).unwrap()
    }

    fn admit(name: &str, raft_id: u64) -> Change {
        Change::Admit { node: id(name), raft_id, link_addr: format!("{name}:7071") }
    }

    #[test]
    fn decisions_move_the_term_and_the_ring_follows_the_members_up() {
        let mut view = View::default();
        assert!(view.apply(2, &admit("c0", 10)));
        assert!(view.apply(3, &admit("c1", 11)));
        assert!(view.apply(4, &admit("c2", 12)));
        assert_eq!(view.ring().members().len(), 3);
        assert!(view.apply(9, &Change::Down(id("c1"))));
        assert_eq!((view.term(), view.ring().members().len()), (9, 2));
        assert!(!view.apply(10, &Change::Down(id("c1"))), "said twice: nothing changes");
        assert_eq!(view.term(), 9);
        assert!(view.apply(11, &Change::Up(id("c1"))));
        assert!(view.is_up(&id("c1")));
        // A node restarted without its state: its old voter leaves, its new one comes.
        assert!(view.apply(12, &Change::Remove { raft_id: 11 }));
        assert!(view.member(&id("c1")).is_none());
        assert!(view.apply(13, &admit("c1", 21)));
        assert_eq!(view.node_of(21), Some(&id("c1")));
        assert_eq!(view.term(), 13);
    }

    #[test]
    fn a_view_survives_the_link_and_entries_their_encoding() {
        let mut view = View::default();
        view.apply(1, &admit("c0", 1));
        view.apply(2, &admit("c1", 2));
        view.apply(3, &Change::Down(id("c1")));
        assert_eq!(View::from_frame(&view.to_frame()), view);
        for change in [Change::Down(id("c1")), Change::Up(id("c0"))] {
            assert_eq!(Change::decode_entry(&change.encode_entry().unwrap()), Some(change));
        }
        assert_eq!(Change::decode_entry(b"\xff\xff garbage"), None);
        assert_eq!(Change::decode_entry(b""), None, "raft's own empty entries are no decision");
    }
}
