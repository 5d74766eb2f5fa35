//! Which control node owns a channel: a consistent-hash ring with virtual nodes.
//!
//! Every node builds the ring from the same member list and so computes the
//! same owner; adding one member of N moves about 1/N of the channels.

use sha2::{Digest, Sha256};

use crate::ids::NodeId;

/// Virtual nodes per member: enough that shares stay within a few percent.
pub const VIRTUAL_NODES: usize = 128;

/// The control nodes on the consistent-hash ring, and which owns what.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    members: Vec<NodeId>,
    /// (point on the ring, index into `members`), sorted by point.
    points: Vec<(u64, usize)>,
}

fn point(data: &[u8]) -> u64 {
    let digest = Sha256::digest(data);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

impl Ring {
    /// A ring of `members` (order does not matter: every node computes the same owners).
    pub fn new(members: impl IntoIterator<Item = NodeId>) -> Self {
        let mut members: Vec<NodeId> = members.into_iter().collect();
        members.sort();
        members.dedup();
        let mut points = Vec::with_capacity(members.len() * VIRTUAL_NODES);
        for (index, member) in members.iter().enumerate() {
            for v in 0..VIRTUAL_NODES {
                points.push((point(format!("{member}#{v}").as_bytes()), index));
            }
        }
        points.sort_unstable();
        Self { members, points }
    }

    /// Its members, sorted.
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// The share of the ring `member` owns, 0..1.
    pub fn share(&self, member: &NodeId) -> f64 {
        let Some(index) = self.members.iter().position(|m| m == member) else { return 0.0 };
        if self.points.is_empty() {
            return 0.0;
        }
        let mut owned = 0u128;
        for (i, (point, owner)) in self.points.iter().enumerate() {
            // A point owns the arc from the previous point (exclusive) to itself.
            let previous = if i == 0 { self.points[self.points.len() - 1].0 } else { self.points[i - 1].0 };
            if *owner == index {
                owned += u128::from(point.wrapping_sub(previous));
            }
        }
        if self.points.len() == 1 { 1.0 } else { owned as f64 / 2f64.powi(64) }
    }

    /// The members after `channel`'s owner, clockwise, at most `n`, each once:
    /// the nodes that own it next if those before them die.
    pub fn successors(&self, channel: &str, n: usize) -> Vec<&NodeId> {
        let mut found: Vec<usize> = Vec::with_capacity(n + 1);
        if self.points.is_empty() {
            return Vec::new();
        }
        let at = self.points.partition_point(|(q, _)| *q < point(channel.as_bytes()));
        for i in 0..self.points.len() {
            let (_, index) = self.points[(at + i) % self.points.len()];
            if !found.contains(&index) {
                found.push(index);
                if found.len() > n {
                    break;
                }
            }
        }
        found.into_iter().skip(1).filter_map(|i| self.members.get(i)).collect()
    }

    /// The owner of `channel`, or `None` for an empty ring.
    pub fn owner(&self, channel: &str) -> Option<&NodeId> {
        if self.points.is_empty() {
            return None;
        }
        let p = point(channel.as_bytes());
        let at = self.points.partition_point(|(q, _)| *q < p);
        let (_, index) = self.points[at % self.points.len()];
        self.members.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<NodeId> {
        (0..n).map(|i| NodeId::parse(&format!("control-{i}")).unwrap()).collect()
    }

    #[test]
    fn shares_add_up_to_one() {
        let ring = Ring::new(nodes(3));
        let total: f64 = nodes(3).iter().map(|n| ring.share(n)).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        assert!(nodes(3).iter().all(|n| (0.2..0.5).contains(&ring.share(n))));
        assert_eq!(ring.share(&NodeId::parse("stranger").unwrap()), 0.0);
    }

    #[test]
    fn successors_are_the_next_owners() {
        let ring = Ring::new(nodes(4));
        for i in 0..200 {
            let ch = format!("ch-{i}");
            let owner = ring.owner(&ch).unwrap();
            let next = ring.successors(&ch, 2);
            assert_eq!(next.len(), 2);
            assert!(!next.contains(&owner) && next[0] != next[1]);
            // Without the owner, the first successor owns the channel.
            let without: Vec<NodeId> = nodes(4).into_iter().filter(|n| n != owner).collect();
            assert_eq!(Ring::new(without.clone()).owner(&ch), Some(next[0]));
            // And without it too, the second.
            let fewer: Vec<NodeId> = without.into_iter().filter(|n| n != next[0]).collect();
            assert_eq!(Ring::new(fewer).owner(&ch), Some(next[1]));
        }
        assert_eq!(ring.successors("a", 10).len(), 3, "at most the other members");
        assert!(Ring::new(nodes(1)).successors("a", 1).is_empty());
        assert!(Ring::new([]).successors("a", 1).is_empty());
    }

    #[test]
    fn single_member_owns_everything() {
        let ring = Ring::new(nodes(1));
        assert_eq!(ring.owner("a").map(NodeId::as_str), Some("control-0"));
        assert_eq!(Ring::new([]).owner("a"), None);
    }

    #[test]
    fn same_members_same_owner_in_any_order() {
        let mut reversed = nodes(3);
        reversed.reverse();
        let (a, b) = (Ring::new(nodes(3)), Ring::new(reversed));
        for i in 0..1000 {
            let ch = format!("ch-{i}");
            assert_eq!(a.owner(&ch), b.owner(&ch));
        }
    }

    #[test]
    fn adding_a_member_moves_about_one_nth() {
        let before = Ring::new(nodes(4));
        let after = Ring::new(nodes(5));
        let total = 20_000;
        let moved = (0..total)
            .filter(|i| {
                let ch = format!("ch-{i}");
                before.owner(&ch) != after.owner(&ch)
            })
            .count();
        let share = moved as f64 / total as f64;
        assert!((0.12..0.28).contains(&share), "moved {share} of channels, expected about 1/5");
        // Everything that moved went to the new member.
        for i in 0..total {
            let ch = format!("ch-{i}");
            if before.owner(&ch) != after.owner(&ch) {
                assert_eq!(after.owner(&ch).map(NodeId::as_str), Some("control-4"));
            }
        }
    }
}
