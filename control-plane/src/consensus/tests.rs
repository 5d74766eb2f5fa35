//! Control nodes' consensus with no network: frames are handed from one
//! `Consensus` to another in order, the clock is a number, and a test can
//! pause a node (it neither runs nor hears) or cut two apart.

#![allow(clippy::unwrap_used)]

use std::collections::{HashSet, VecDeque};

use super::*;
use crate::consensus::lease::{LEASE, TAKEOVER_WAIT};
use crate::consensus::steward::DOWN_AFTER;

fn id(name: &str) -> NodeId {
    NodeId::parse(name).unwrap()
}

struct Net {
    nodes: Vec<Consensus>,
    t0: Instant,
    now: Instant,
    queue: VecDeque<(usize, usize, Frame)>,
    paused: HashSet<usize>,
    cut: HashSet<(usize, usize)>,
}

impl Net {
    fn new(n: usize, expect: usize) -> Self {
        let t0 = Instant::now();
        let nodes = (0..n).map(|i| node(i, expect, None, t0)).collect();
        Self { nodes, t0, now: t0, queue: VecDeque::new(), paused: HashSet::new(), cut: HashSet::new() }
    }

    fn index(&self, node: &NodeId) -> usize {
        self.nodes.iter().position(|c| c.node_id() == node).unwrap()
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        !self.cut.contains(&(a.min(b), a.max(b)))
    }

    fn push(&mut self, from: usize, out: Output) {
        for (to, frame) in out.send {
            let to = self.index(&to);
            self.queue.push_back((from, to, frame));
        }
        if let Some(frame) = out.broadcast {
            for to in 0..self.nodes.len() {
                if to != from {
                    self.queue.push_back((from, to, frame.clone()));
                }
            }
        }
    }

    /// Runs the clock on by `by`, a tick at a time, delivering every frame.
    fn run(&mut self, by: Duration) {
        let end = self.now + by;
        while self.now < end {
            self.now += TICK;
            for i in 0..self.nodes.len() {
                if !self.paused.contains(&i) {
                    let out = self.nodes[i].on_clock(self.now);
                    self.push(i, out);
                }
            }
            while let Some((from, to, frame)) = self.queue.pop_front() {
                if self.paused.contains(&to) || self.paused.contains(&from) || !self.reachable(from, to) {
                    continue;
                }
                let sender = self.nodes[from].node_id().clone();
                let out = self.nodes[to].on_frame(&sender, frame, self.now);
                self.push(to, out);
            }
        }
    }

    fn views(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.view().term()).collect()
    }

    fn up(&self, i: usize) -> Vec<String> {
        self.nodes[i].view().ring().members().iter().map(|m| m.to_string()).collect()
    }
}

fn node(i: usize, expect: usize, dir: Option<PathBuf>, now: Instant) -> Consensus {
    let config = ConsensusConfig {
        node_id: id(&format!("c{i}")),
        link_addr: format!("10.0.0.{i}:7071"),
        bootstrap_expect: expect,
        data_dir: dir,
        discovery_wait: Duration::ZERO,
    };
    Consensus::new(config, now).unwrap()
}

#[test]
fn three_nodes_form_one_cluster_once_all_three_meet() {
    let mut net = Net::new(3, 3);
    net.paused.insert(2);
    net.run(Duration::from_secs(3));
    assert!(net.nodes.iter().all(|n| !n.is_member()), "two of the three expected: nobody forms");
    net.paused.clear();
    net.run(Duration::from_secs(3));
    assert!(net.nodes.iter().all(Consensus::is_member));
    assert_eq!(net.nodes.iter().filter(|n| n.is_leader()).count(), 1);
    let views = net.views();
    assert!(views.iter().all(|v| *v == views[0]), "{views:?}");
    assert_eq!(net.up(0), ["c0", "c1", "c2"]);
    for i in 0..3 {
        assert!(net.nodes[i].lease_holds(views[0], net.now), "node {i} holds its lease");
    }
}

#[test]
fn a_paused_node_loses_its_lease_before_the_others_take_it_out_and_comes_back() {
    let mut net = Net::new(3, 3);
    net.run(Duration::from_secs(4));
    let before = net.views()[0];
    // The paused node: not the leader, so the cluster goes on without an election.
    let paused = (0..3).find(|i| !net.nodes[*i].is_leader()).unwrap();
    net.paused.insert(paused);
    let paused_at = net.now;
    net.run(DOWN_AFTER + Duration::from_secs(2));
    let others: Vec<usize> = (0..3).filter(|i| *i != paused).collect();
    for &i in &others {
        assert!(net.nodes[i].view().term() > before);
        assert!(!net.nodes[i].view().is_up(net.nodes[paused].node_id()), "declared gone");
        assert!(net.nodes[i].lease_holds(net.nodes[i].view().term(), net.now), "the majority goes on");
    }
    // In its own eyes, the paused node's lease ended before that view could be acted on.
    let lease_end = net.nodes[paused].lease.held().unwrap().1;
    assert!(lease_end <= paused_at + LEASE);
    let _ = TAKEOVER_WAIT;
    assert!(!net.nodes[paused].lease_holds(before, net.now));
    net.paused.clear();
    net.run(Duration::from_secs(3));
    let term = net.views()[others[0]];
    assert!(net.views().iter().all(|v| *v == term), "{:?}", net.views());
    assert!(net.nodes[others[0]].view().is_up(net.nodes[paused].node_id()), "back up");
    assert!(net.nodes[paused].lease_holds(term, net.now));
}

#[test]
fn the_minority_side_of_a_cut_holds_no_lease_and_changes_nothing() {
    let mut net = Net::new(5, 5);
    net.run(Duration::from_secs(4));
    let before = net.views()[0];
    // c0 and c1 on one side, c2..c4 on the other.
    for a in 0..2 {
        for b in 2..5 {
            net.cut.insert((a, b));
        }
    }
    // The majority may first have to elect a leader (the old one may be cut
    // off), which then counts the silence from when it began to lead.
    net.run(DOWN_AFTER + Duration::from_secs(6));
    for minority in 0..2 {
        assert!(!net.nodes[minority].lease_holds(net.nodes[minority].view().term(), net.now));
        assert_eq!(net.nodes[minority].view().term(), before, "the minority commits nothing");
    }
    for majority in 2..5 {
        let view = net.nodes[majority].view();
        assert_eq!(view.ring().members().len(), 3, "c0 and c1 declared gone");
        assert!(net.nodes[majority].lease_holds(view.term(), net.now));
    }
    net.cut.clear();
    net.run(Duration::from_secs(4));
    let views = net.views();
    assert!(views.iter().all(|v| *v == views[0]) && net.up(0).len() == 5, "{views:?}");
}

#[test]
fn a_node_back_without_its_state_is_a_new_voter_and_one_with_it_the_same() {
    let dir = std::env::temp_dir().join(format!("slip-consensus-{:x}", rand::random::<u64>()));
    let mut net = Net::new(2, 3);
    net.nodes.push(node(2, 3, Some(dir.clone()), net.now));
    net.run(Duration::from_secs(4));
    assert!(net.nodes.iter().all(Consensus::is_member));
    let saved_id = net.nodes[2].raft_id();
    // Restarted with its data dir: the same voter, at once a member.
    net.nodes[2] = node(2, 3, Some(dir.clone()), net.now);
    assert_eq!(net.nodes[2].raft_id(), saved_id);
    assert!(net.nodes[2].is_member());
    net.run(Duration::from_secs(2));
    // Restarted without: a new voter replaces the old one.
    let old = net.nodes[1].raft_id();
    net.nodes[1] = node(1, 3, None, net.now);
    net.run(Duration::from_secs(6));
    assert!(net.nodes[1].is_member());
    assert_ne!(net.nodes[1].raft_id(), old);
    for n in &net.nodes {
        assert_eq!(n.view().member(&id("c1")).unwrap().raft_id, net.nodes[1].raft_id());
        assert!(!n.voters().contains(&old));
    }
    let _ = std::fs::remove_dir_all(dir);
    let _ = net.t0;
}

#[test]
fn alone_a_node_forms_at_once_and_always_holds_its_lease() {
    let mut net = Net::new(1, 1);
    net.run(TICK * 2);
    assert!(net.nodes[0].is_member());
    assert!(net.nodes[0].lease_holds(net.nodes[0].view().term(), net.now));
}

#[test]
fn nodes_that_come_later_join_the_running_cluster_one_by_one() {
    let mut net = Net::new(1, 1);
    net.run(Duration::from_secs(1));
    assert!(net.nodes[0].is_member());
    for i in 1..3 {
        let mut config = node(i, 1, None, net.now).config.clone();
        config.discovery_wait = steward::DOWN_AFTER;
        net.nodes.push(Consensus::new(config, net.now).unwrap());
        net.run(Duration::from_secs(3));
        assert!(net.nodes[i].is_member(), "node {i} admitted, not alone");
        let views = net.views();
        assert!(views.iter().all(|v| *v == views[0]), "{views:?}");
        assert_eq!(net.up(0).len(), i + 1);
    }
    // Three voters: one can go, and the two left go on.
    net.paused.insert(2);
    net.run(DOWN_AFTER + Duration::from_secs(2));
    assert_eq!(net.up(0).len(), 2);
}
