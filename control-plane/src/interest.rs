//! The channel-interest table a channel's owner keeps, as pure code: which
//! edges have local subscribers of each channel (edge-level, never
//! per-connection). A channel's entry lives while some edge is interested;
//! its offsets are the stream's (`streams.rs`), which outlive it.

use std::collections::{HashMap, HashSet};

use slip_proto::ids::NodeId;

#[derive(Default)]
struct Channel {
    edges: Vec<NodeId>,
}

#[derive(Default)]
pub struct InterestTable {
    channels: HashMap<String, Channel>,
    by_edge: HashMap<NodeId, HashSet<String>>,
}

impl InterestTable {
    /// Its entries by structure (`slip_entries`).
    pub fn sizes(&self, out: &mut slip_metrics::Sizes) {
        out.push(("interest_channels", self.channels.len()));
        out.push(("interest_edges", self.by_edge.values().map(|c| c.len()).sum()));
    }

    /// Records that `edge` has subscribers of `channel`; true if that is new.
    pub fn add(&mut self, edge: &NodeId, channel: &str) -> bool {
        let entry = self.channels.entry(channel.to_owned()).or_default();
        if entry.edges.contains(edge) {
            return false;
        }
        entry.edges.push(edge.clone());
        self.by_edge.entry(edge.clone()).or_default().insert(channel.to_owned());
        true
    }

    /// Records that `edge` has no more subscribers of `channel`; true if it had.
    pub fn remove(&mut self, edge: &NodeId, channel: &str) -> bool {
        let Some(entry) = self.channels.get_mut(channel) else {
            return false;
        };
        let Some(at) = entry.edges.iter().position(|e| e == edge) else {
            return false;
        };
        entry.edges.swap_remove(at);
        if entry.edges.is_empty() {
            self.channels.remove(channel);
        }
        if let Some(channels) = self.by_edge.get_mut(edge) {
            channels.remove(channel);
            if channels.is_empty() {
                self.by_edge.remove(edge);
            }
        }
        true
    }

    /// Forgets everything about an edge (its link died); returns the channels it had.
    pub fn drop_edge(&mut self, edge: &NodeId) -> Vec<String> {
        let Some(channels) = self.by_edge.remove(edge) else {
            return Vec::new();
        };
        for channel in &channels {
            if let Some(entry) = self.channels.get_mut(channel) {
                entry.edges.retain(|e| e != edge);
                if entry.edges.is_empty() {
                    self.channels.remove(channel);
                }
            }
        }
        channels.into_iter().collect()
    }

    /// Keeps only the channels `keep` says yes to; returns how many went.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) -> usize {
        let gone: Vec<String> = self.channels.keys().filter(|c| !keep(c)).cloned().collect();
        for channel in &gone {
            if let Some(entry) = self.channels.remove(channel) {
                for edge in entry.edges {
                    if let Some(channels) = self.by_edge.get_mut(&edge) {
                        channels.remove(channel);
                        if channels.is_empty() {
                            self.by_edge.remove(&edge);
                        }
                    }
                }
            }
        }
        gone.len()
    }

    pub fn edges(&self, channel: &str) -> &[NodeId] {
        self.channels.get(channel).map_or(&[], |c| &c.edges)
    }

    pub fn channels(&self) -> usize {
        self.channels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }

    #[test]
    fn one_entry_per_edge() {
        let mut t = InterestTable::default();
        assert!(t.add(&node("e1"), "c"));
        assert!(!t.add(&node("e1"), "c"));
        assert!(t.add(&node("e2"), "c"));
        assert_eq!(t.edges("c"), &[node("e1"), node("e2")]);
        assert_eq!(t.edges("nobody"), &[] as &[NodeId]);
        assert!(t.remove(&node("e1"), "c"));
        assert!(!t.remove(&node("e1"), "c"));
        assert_eq!(t.edges("c"), &[node("e2")]);
        assert!(t.remove(&node("e2"), "c"));
        assert_eq!(t.channels(), 0);
    }

    #[test]
    fn a_dead_edge_leaves_nothing_behind() {
        let mut t = InterestTable::default();
        for i in 0..100 {
            t.add(&node("dead"), &format!("c{i}"));
        }
        t.add(&node("alive"), "c1");
        assert_eq!(t.drop_edge(&node("dead")).len(), 100);
        assert_eq!(t.channels(), 1);
        assert_eq!(t.edges("c1"), &[node("alive")]);
        assert!(t.drop_edge(&node("dead")).is_empty());
    }

    #[test]
    fn retain_forgets_channels_and_their_edges() {
        let mut t = InterestTable::default();
        t.add(&node("e1"), "keep");
        t.add(&node("e1"), "move");
        t.add(&node("e2"), "move");
        assert_eq!(t.retain(|c| c == "keep"), 1);
        assert_eq!(t.edges("move"), &[] as &[NodeId]);
        assert!(t.drop_edge(&node("e2")).is_empty());
        assert_eq!(t.drop_edge(&node("e1")).len(), 1);
    }
}
