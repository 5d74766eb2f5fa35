//! The cluster in one process: control planes and edges wired by the
//! in-memory link, under tokio's paused clock, so the consensus on the view,
//! leases, failover and interest pruning run in milliseconds instead of
//! wall-clock seconds. The same routing code runs as across processes; only
//! the transport differs.
//! The last test wires the same parts by real QUIC on loopback instead, and
//! `tests/e2e/cluster.rs` runs them as separate processes.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use slip_control_plane::consensus::ConsensusConfig;
use slip_control_plane::consensus::lease::TAKEOVER_WAIT;
use slip_control_plane::consensus::steward::DOWN_AFTER;
use slip_control_plane::plane::RING_SETTLE;
use slip_control_plane::{ControlFrames, ControlPlane};
use slip_edge::outbox::{Outbox, OutboxLimits};
use slip_edge::{Edge, EdgeConfig, EdgeFrames};
use slip_link::Link;
use slip_link::memory;
use slip_proto::ids::NodeId;
use slip_proto::link_pb::{
    ChannelEvent, ConnectionCommand, Hello, Publish, Role, channel_event, connection_command::Op,
};

const SECRET: &str = "in-process-secret-of-32-bytes-or-more";

fn id(name: &str) -> NodeId {
    NodeId::parse(name).unwrap()
}

fn hello(node: &NodeId, role: Role) -> Hello {
    Hello { node_id: node.to_string(), role: role as i32, ..Default::default() }
}

/// A control node of a cluster that forms once `expect` control nodes meet.
fn plane(node: &NodeId, expect: usize) -> Arc<ControlPlane> {
    let config = ConsensusConfig {
        node_id: node.clone(),
        link_addr: String::new(),
        bootstrap_expect: expect,
        data_dir: None,
        discovery_wait: slip_control_plane::consensus::DISCOVERY_WAIT,
    };
    ControlPlane::clustered(Default::default(), config).unwrap()
}

/// Long enough for the others to declare a silent control node gone and
/// take its channels over.
const FAILOVER: Duration = Duration::from_secs(DOWN_AFTER.as_secs() + TAKEOVER_WAIT.as_secs() + 3);

/// Waits (on the paused clock) until `check` holds; at most a minute of it.
async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..600 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never: {what}");
}

/// Control nodes and one edge in this process, all linked both ways by
/// memory links, kept so a test can cut them. (`tests/e2e/cluster.rs` has
/// the other harness: the real binary as processes, over QUIC.)
struct MemoryCluster {
    controls: Vec<Arc<ControlPlane>>,
    edge: Arc<Edge>,
    /// The edge's link to each control node, by index.
    edge_links: Vec<Arc<dyn Link>>,
    /// Each control node's link to the edge.
    to_edge: Vec<Arc<dyn Link>>,
    /// Control node i's link to control node j.
    mesh: Vec<Vec<Option<Arc<dyn Link>>>>,
}

impl MemoryCluster {
    /// A cluster of `controls` control nodes, formed, and an edge that heard the view.
    async fn start(controls: usize) -> Self {
        let cluster = Self::wire(controls);
        cluster.formed(controls).await;
        cluster
    }

    fn wire(controls: usize) -> Self {
        let control_ids: Vec<NodeId> = (0..controls).map(|i| id(&format!("c{i}"))).collect();
        let edge_id = id("e0");
        let planes: Vec<Arc<ControlPlane>> = control_ids.iter().map(|c| plane(c, controls)).collect();
        // Nobody is called back: the edge only needs a target that parses.
        let edge = Edge::new(EdgeConfig::new(edge_id.clone(), "http://127.0.0.1:9/", SECRET)).unwrap();
        let mut mesh = vec![vec![None; controls]; controls];
        for (i, from) in planes.iter().enumerate() {
            for (j, to) in planes.iter().enumerate() {
                if i != j {
                    let link: Arc<dyn Link> = memory::link(
                        control_ids[i].clone(),
                        control_ids[j].clone(),
                        Arc::new(ControlFrames(to.clone())),
                    );
                    from.link_up(&hello(&control_ids[j], Role::Control), link.clone());
                    mesh[i][j] = Some(link);
                }
            }
        }
        let mut edge_links = Vec::new();
        let mut to_edges = Vec::new();
        for (i, plane) in planes.iter().enumerate() {
            let to_edge: Arc<dyn Link> =
                memory::link(control_ids[i].clone(), edge_id.clone(), Arc::new(EdgeFrames(edge.clone())));
            plane.link_up(&hello(&edge_id, Role::Edge), to_edge.clone());
            to_edges.push(to_edge);
            let to_control: Arc<dyn Link> =
                memory::link(edge_id.clone(), control_ids[i].clone(), Arc::new(ControlFrames(plane.clone())));
            edge.add_control_link(to_control.clone());
            edge_links.push(to_control);
        }
        Self { controls: planes, edge, edge_links, to_edge: to_edges, mesh }
    }

    /// Waits until the control nodes agreed on a view of `members` up, each
    /// is ready (lease, caught up), and the edge heard that view.
    async fn formed(&self, members: usize) {
        let all: Vec<usize> = (0..self.controls.len()).collect();
        self.formed_among(&all, members).await;
    }

    /// [`MemoryCluster::formed`] without control node `gone`, which is down.
    async fn formed_without(&self, gone: usize) {
        let alive: Vec<usize> = (0..self.controls.len()).filter(|i| *i != gone).collect();
        self.formed_among(&alive, alive.len()).await;
    }

    async fn formed_among(&self, alive: &[usize], members: usize) {
        let planes: Vec<&Arc<ControlPlane>> = alive.iter().map(|i| &self.controls[*i]).collect();
        until("the view formed", || {
            let term = planes[0].consensus_state().0;
            planes.iter().all(|p| p.is_ready() && p.members().len() == members && p.consensus_state().0 == term)
                && self.edge.view_term() == term
        })
        .await;
    }

    /// Control node `i` is gone: every link to and from it goes down, and it stops.
    fn kill_control(&self, i: usize) {
        self.partition(i);
        self.edge.remove_control_link(&self.edge_links[i]);
        self.controls[i].link_down(self.edge.node_id(), &self.to_edge[i]);
        let plane = self.controls[i].clone();
        tokio::spawn(async move { plane.shutdown().await });
    }

    /// Control node `i` loses its links to the other control nodes (not to
    /// the edge), and they theirs to it: each side goes on alone.
    fn partition(&self, i: usize) {
        let cut = self.controls[i].node_id().clone();
        for (j, plane) in self.controls.iter().enumerate() {
            if i == j {
                continue;
            }
            if let (Some(there), Some(back)) = (&self.mesh[i][j], &self.mesh[j][i]) {
                self.controls[i].link_down(plane.node_id(), there);
                plane.link_down(&cut, back);
            }
        }
    }

    /// Links control node `i` to every other control node again.
    fn heal(&mut self, i: usize) {
        for j in (0..self.controls.len()).filter(|j| *j != i) {
            let (a, b) = (self.controls[i].clone(), self.controls[j].clone());
            let here: Arc<dyn Link> =
                memory::link(a.node_id().clone(), b.node_id().clone(), Arc::new(ControlFrames(b.clone())));
            let back: Arc<dyn Link> =
                memory::link(b.node_id().clone(), a.node_id().clone(), Arc::new(ControlFrames(a.clone())));
            a.link_up(&hello(b.node_id(), Role::Control), here.clone());
            b.link_up(&hello(a.node_id(), Role::Control), back.clone());
            (self.mesh[i][j], self.mesh[j][i]) = (Some(here), Some(back));
        }
    }

    /// Control node `i` is cut off from every node, the edge too, and runs on.
    fn cut(&self, i: usize) {
        self.partition(i);
        self.edge.remove_control_link(&self.edge_links[i]);
        self.controls[i].link_down(self.edge.node_id(), &self.to_edge[i]);
    }

    /// Control node `i` reaches every node again.
    fn reconnect(&mut self, i: usize) {
        self.heal(i);
        let (me, edge_id) = (self.controls[i].node_id().clone(), self.edge.node_id().clone());
        let to_edge: Arc<dyn Link> = memory::link(me.clone(), edge_id.clone(), Arc::new(EdgeFrames(self.edge.clone())));
        self.controls[i].link_up(&hello(&edge_id, Role::Edge), to_edge.clone());
        self.to_edge[i] = to_edge;
        let to_control: Arc<dyn Link> = memory::link(edge_id, me, Arc::new(ControlFrames(self.controls[i].clone())));
        self.edge.add_control_link(to_control.clone());
        self.edge_links[i] = to_control;
    }

    /// Control node `i` starts again with nothing in memory (it was killed)
    /// and links to every other node, and the edge to it.
    fn restart_control(&mut self, i: usize) {
        let me = self.controls[i].node_id().clone();
        let plane = plane(&me, self.controls.len());
        self.controls[i] = plane.clone();
        self.heal(i);
        let edge_id = self.edge.node_id().clone();
        let to_edge: Arc<dyn Link> = memory::link(me.clone(), edge_id.clone(), Arc::new(EdgeFrames(self.edge.clone())));
        plane.link_up(&hello(&edge_id, Role::Edge), to_edge.clone());
        self.to_edge[i] = to_edge;
        let to_control: Arc<dyn Link> = memory::link(edge_id, me, Arc::new(ControlFrames(plane)));
        self.edge.add_control_link(to_control.clone());
        self.edge_links[i] = to_control;
    }

    /// A connection on the edge subscribed to `channels`; its outbox shows what it got.
    fn subscriber(&self, channels: &[String]) -> Arc<Outbox> {
        let connection = format!("{}.{:020x}", self.edge.node_id(), rand::random::<u64>());
        let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
        self.edge.hub.register(&connection, outbox.clone(), Arc::from("null"));
        for channel in channels {
            let command = ConnectionCommand {
                connection_id: connection.clone(),
                op: Some(Op::Subscribe(channel.clone())),
                ..Default::default()
            };
            self.edge.connection_command(command);
        }
        outbox
    }
}

fn publish(channel: &str, text: &str) -> Publish {
    Publish {
        channel: channel.into(),
        event: Some(ChannelEvent { body: Some(channel_event::Body::Text(text.into())) }),
        ..Default::default()
    }
}

/// Lets every queued frame be handed on (the links' tasks run on this runtime).
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// How many frames the outbox holds, taking them.
fn received(outbox: &Outbox) -> usize {
    outbox.take(usize::MAX).frames.len()
}

#[tokio::test(start_paused = true)]
async fn publishes_reach_the_edge_whichever_control_node_takes_them() {
    let cluster = MemoryCluster::start(3).await;
    settle().await;
    let channels: Vec<String> = (0..30).map(|i| format!("ch-{i}")).collect();
    let outbox = cluster.subscriber(&channels);
    settle().await;
    for (i, channel) in channels.iter().enumerate() {
        cluster.controls[i % 3].publish(publish(channel, "hi")).await.unwrap();
    }
    settle().await;
    assert_eq!(received(&outbox), 30, "one delivery per channel, whoever owns it");
}

#[tokio::test(start_paused = true)]
async fn a_lost_control_node_moves_its_channels_and_nothing_is_lost_after() {
    let cluster = MemoryCluster::start(3).await;
    settle().await;
    let channels: Vec<String> = (0..60).map(|i| format!("ch-{i}")).collect();
    let outbox = cluster.subscriber(&channels);
    settle().await;
    let owned_by_c2 =
        channels.iter().filter(|c| cluster.controls[0].members().len() == 3 && owner_of(&cluster, c) == "c2").count();
    assert!(owned_by_c2 > 0, "c2 owns some of the 60 channels");

    cluster.kill_control(2);
    tokio::time::sleep(FAILOVER).await;
    cluster.formed_without(2).await;
    // The survivors re-own c2's channels, and the edge re-announced its interest to them.
    for channel in &channels {
        cluster.controls[0].publish(publish(channel, "after")).await.unwrap();
    }
    settle().await;
    assert_eq!(received(&outbox), 60, "every channel delivers through the two left");

    // Long after, once the ring has held still: still delivered, nothing pruned wrongly.
    tokio::time::sleep(RING_SETTLE * 2).await;
    settle().await;
    for channel in &channels {
        cluster.controls[1].publish(publish(channel, "later")).await.unwrap();
    }
    settle().await;
    assert_eq!(received(&outbox), 60);
}

#[tokio::test(start_paused = true)]
async fn interest_left_with_a_former_owner_is_pruned_once_the_ring_settles() {
    let mut cluster = MemoryCluster::start(3).await;
    let channels: Vec<String> = (0..60).map(|i| format!("ch-{i}")).collect();
    let _outbox = cluster.subscriber(&channels);
    settle().await;
    let known = |plane: &ControlPlane| channels.iter().filter(|c| interested_edges(plane, c) > 0).count();
    // c2 is cut off (it runs on): the other two take its channels, and hear the edge's interest.
    cluster.cut(2);
    tokio::time::sleep(FAILOVER).await;
    cluster.formed_without(2).await;
    let while_away = channels.iter().filter(|c| owner_of(&cluster, c) == "c0").count();
    assert_eq!(known(&cluster.controls[0]), while_away);

    // c2 comes back: it owns its channels again; c0 keeps the interest it
    // no longer needs until the ring has held still for RING_SETTLE.
    cluster.reconnect(2);
    cluster.formed(3).await;
    let owned_by_c0 = channels.iter().filter(|c| owner_of(&cluster, c) == "c0").count();
    assert!(owned_by_c0 < while_away);
    assert_eq!(known(&cluster.controls[0]), while_away, "not pruned while the ring may still move");
    tokio::time::sleep(RING_SETTLE + Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(known(&cluster.controls[0]), owned_by_c0, "only what it owns is left");
}

/// Who owns `channel`, as control node 0 sees the ring.
fn owner_of(cluster: &MemoryCluster, channel: &str) -> String {
    slip_proto::ring::Ring::new(cluster.controls[0].members()).owner(channel).map(|o| o.to_string()).unwrap_or_default()
}

/// How many edges `plane`'s interest table lists for `channel`.
fn interested_edges(plane: &ControlPlane, channel: &str) -> usize {
    plane.interested_edges(channel)
}

/// The same wiring over real QUIC links on loopback (real clock): two control
/// nodes and an edge, each a `QuicNode` in this process; a publish taken by
/// the node that does not own the channel reaches the edge's subscriber.
#[tokio::test]
async fn over_quic_on_loopback_a_publish_reaches_the_edge_through_its_owner() {
    use slip_link::quic::QuicNode;
    use slip_link::tls::ClusterCa;

    let ca = ClusterCa::generate().unwrap();
    let control_ids = [id("c0"), id("c1")];
    let planes: Vec<Arc<ControlPlane>> = control_ids.iter().map(|c| plane(c, 2)).collect();
    let mut nodes = Vec::new();
    for (plane, node) in planes.iter().zip(&control_ids) {
        let identity = ca.identity(Role::Control, node).unwrap();
        let quic = QuicNode::bind(
            "127.0.0.1:0".parse().unwrap(),
            true,
            &identity,
            hello(node, Role::Control),
            Arc::new(ControlFrames(plane.clone())),
        )
        .unwrap();
        nodes.push(quic);
    }
    nodes[0].dial(nodes[1].local_addr().unwrap());
    let edge_id = id("e0");
    let edge = Edge::new(EdgeConfig::new(edge_id.clone(), "http://127.0.0.1:9/", SECRET)).unwrap();
    let identity = ca.identity(Role::Edge, &edge_id).unwrap();
    let edge_quic = QuicNode::bind(
        "127.0.0.1:0".parse().unwrap(),
        false,
        &identity,
        hello(&edge_id, Role::Edge),
        Arc::new(EdgeFrames(edge.clone())),
    )
    .unwrap();
    for node in &nodes {
        edge_quic.dial(node.local_addr().unwrap());
    }
    // Bounded waits on the real clock: links come up in milliseconds, the
    // view forms in about a second.
    let linked = || planes.iter().all(|p| p.members().len() == 2 && p.is_ready()) && edge.view_term() > 0;
    for _ in 0..1000 {
        if linked() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(linked(), "the ring formed and the edge linked");

    let channel = "quic-room".to_owned();
    let outbox = {
        let connection = format!("{}.{:020x}", edge.node_id(), 1u64);
        let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
        edge.hub.register(&connection, outbox.clone(), Arc::from("null"));
        let command = ConnectionCommand {
            connection_id: connection,
            op: Some(Op::Subscribe(channel.clone())),
            ..Default::default()
        };
        edge.connection_command(command);
        outbox
    };
    let interest_recorded = || planes.iter().map(|p| interested_edges(p, &channel)).sum::<usize>() == 1;
    for _ in 0..500 {
        if interest_recorded() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(interest_recorded(), "the edge's interest reached the channel's owner");

    // One publish through each control node: the owner's own, and one forwarded to it.
    for plane in &planes {
        plane.publish(publish(&channel, "hi")).await.unwrap();
    }
    let mut got = 0;
    for _ in 0..500 {
        got += received(&outbox);
        if got >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(got, 2, "both publishes arrived over QUIC, once each");
    for node in nodes.iter().chain([&edge_quic]) {
        node.close();
    }
}

/// A publication an edge missed is fetched from the owner's history before
/// anything after it goes out: the subscriber sees every offset once, in order.
#[tokio::test(start_paused = true)]
async fn a_missed_publication_is_fetched_from_history_before_the_next() {
    use slip_link::FrameHandler;
    use slip_proto::link_pb::{Frame, Interest, frame::Kind};

    let cluster = MemoryCluster::start(1).await;
    let channel = "room".to_owned();
    let outbox = cluster.subscriber(std::slice::from_ref(&channel));
    settle().await;
    let plane = &cluster.controls[0];
    plane.publish(publish(&channel, "m1")).await.unwrap();
    settle().await;

    // The owner loses the edge's interest for a moment (as a dropped frame
    // would make it miss a Deliver): m2 enters the stream, not the edge.
    let owner = ControlFrames(plane.clone());
    let interest = |present| Frame {
        kind: Some(Kind::Interest(Interest { channel: channel.clone(), present, ..Default::default() })),
    };
    owner.on_frame(cluster.edge.node_id(), interest(false));
    let missed = plane.publish(publish(&channel, "m2")).await.unwrap();
    assert_eq!(missed.edges, 0);
    owner.on_frame(cluster.edge.node_id(), interest(true));
    plane.publish(publish(&channel, "m3")).await.unwrap();
    settle().await;

    let frames: Vec<_> = outbox.take(usize::MAX).frames.into_iter().collect();
    let expected: Vec<_> = ["m1", "m2", "m3"].iter().map(|t| slip_edge::frame::text(t)).collect();
    assert_eq!(frames, expected, "m2 came from history, before m3");
}

/// A copy its replica never acknowledges is sent again on the plane's own
/// clock: the publish set a deadline the sleeping clock had not seen.
#[tokio::test(start_paused = true)]
async fn an_unacknowledged_copy_is_sent_again_by_the_clock() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use slip_link::FrameHandler;
    use slip_proto::link_pb::{Frame, frame::Kind};

    /// A control node that, once told to, takes copies and answers none.
    struct Silent {
        inner: ControlFrames,
        silent: AtomicBool,
        copies: AtomicUsize,
    }
    impl FrameHandler for Silent {
        fn on_frame(&self, from: &NodeId, frame: Frame) {
            if matches!(frame.kind, Some(Kind::Replicate(_))) && self.silent.load(Ordering::SeqCst) {
                self.copies.fetch_add(1, Ordering::SeqCst);
                return;
            }
            self.inner.on_frame(from, frame);
        }
    }

    let (owner, replica) = (id("c0"), id("c1"));
    let (a, b) = (plane(&owner, 2), plane(&replica, 2));
    let silent = Arc::new(Silent {
        inner: ControlFrames(b.clone()),
        silent: AtomicBool::new(false),
        copies: AtomicUsize::new(0),
    });
    a.link_up(&hello(&replica, Role::Control), memory::link(owner.clone(), replica.clone(), silent.clone()));
    b.link_up(
        &hello(&owner, Role::Control),
        memory::link(replica.clone(), owner.clone(), Arc::new(ControlFrames(a.clone()))),
    );
    until("the two formed a view", || a.is_ready() && b.is_ready() && a.members().len() == 2).await;
    let ring = slip_proto::ring::Ring::new([owner.clone(), replica.clone()]);
    let channel = (0..).map(|i| format!("room-{i}")).find(|c| ring.owner(c) == Some(&owner)).unwrap();
    silent.silent.store(true, Ordering::SeqCst);

    // Not waited on: it is never confirmed, since its copy never is.
    let _receipt = a.publish_start(publish(&channel, "m1")).unwrap();
    settle().await;
    assert_eq!(silent.copies.load(Ordering::SeqCst), 1);
    tokio::time::sleep(slip_control_plane::replication::RESEND_AFTER).await;
    settle().await;
    assert_eq!(silent.copies.load(Ordering::SeqCst), 2, "sent again after RESEND_AFTER");
}

/// A control node killed and started again takes back its channels only
/// once it has the stream from the node that owned them meanwhile: the
/// same epoch, the next offsets, the whole history; and when it dies again
/// its replica goes on from there too.
#[tokio::test(start_paused = true)]
async fn a_control_node_that_comes_back_catches_up_before_it_owns_anything() {
    let mut cluster = MemoryCluster::start(3).await;
    settle().await;
    let c0 = id("c0");
    let channel = (0..).map(|i| format!("room-{i}")).find(|c| owner_of(&cluster, c) == "c0").unwrap();
    let outbox = cluster.subscriber(std::slice::from_ref(&channel));
    settle().await;
    let mut sent = Vec::new();
    let mut confirmed = Vec::new();
    let mut send = async |cluster: &MemoryCluster, from: usize, n: usize| {
        for _ in 0..n {
            let text = format!("m{}", sent.len() + 1);
            let placed = cluster.controls[from].publish(publish(&channel, &text)).await.unwrap();
            sent.push(text);
            confirmed.push((placed.epoch, placed.offset));
        }
        settle().await;
    };
    send(&cluster, 1, 10).await;
    cluster.kill_control(0);
    tokio::time::sleep(FAILOVER).await;
    cluster.formed_without(0).await;
    send(&cluster, 1, 10).await;
    cluster.restart_control(0);
    // Without its state it is a new voter: admitted in place of the old one.
    cluster.formed(3).await;
    assert_eq!(owner_of(&cluster, &channel), "c0", "it owns the channel again");
    send(&cluster, 2, 10).await;
    let history = cluster.controls[0].history(&channel, "", 0, 0).await.unwrap();
    assert_eq!(history.publications.len(), 30, "the whole history, on the node that came back");
    assert!(history.complete);
    cluster.kill_control(0);
    tokio::time::sleep(FAILOVER).await;
    cluster.formed_without(0).await;
    send(&cluster, 1, 10).await;

    let epoch = confirmed[0].0.clone();
    let expected: Vec<_> = (1..=40).map(|offset| (epoch.clone(), offset)).collect();
    assert_eq!(confirmed, expected, "one epoch, consecutive offsets, across both changes of owner");
    let frames = outbox.take(usize::MAX).frames;
    let delivered: Vec<_> = sent.iter().map(|t| slip_edge::frame::text(t)).collect();
    assert_eq!(frames, delivered, "each once, in order");
    assert!(!cluster.controls[1].members().contains(&c0));
}

/// A partition: the owner of a channel is cut off from the other two
/// control nodes. Its lease ends before they may take the channel over, so
/// from then on it refuses publishes (its publishers retry elsewhere) while
/// the majority confirms them; when the two sides meet again there is one
/// stream, in one epoch, every offset given once, and the edge (on the
/// majority's side) got every confirmed publication once, in order.
#[tokio::test(start_paused = true)]
async fn in_a_partition_only_the_majority_confirms_and_the_stream_stays_one() {
    let mut cluster = MemoryCluster::start(3).await;
    let channel = (0..).map(|i| format!("room-{i}")).find(|c| owner_of(&cluster, c) == "c0").unwrap();
    let outbox = cluster.subscriber(std::slice::from_ref(&channel));
    settle().await;
    let mut confirmed = Vec::new();
    for i in 1..=3 {
        confirmed.push(cluster.controls[1].publish(publish(&channel, &format!("m{i}"))).await.unwrap());
    }
    let epoch = confirmed[0].epoch.clone();
    cluster.partition(0);
    tokio::time::sleep(FAILOVER).await;
    cluster.formed_without(0).await;
    let alone = cluster.controls[0].publish(publish(&channel, "a4")).await;
    assert!(alone.is_err(), "no lease on the minority side: refused, {alone:?}");
    for i in 4..=6 {
        confirmed.push(cluster.controls[1].publish(publish(&channel, &format!("m{i}"))).await.unwrap());
    }
    cluster.heal(0);
    cluster.formed(3).await;
    assert_eq!(owner_of(&cluster, &channel), "c0");
    confirmed.push(cluster.controls[2].publish(publish(&channel, "m7")).await.unwrap());
    let places: Vec<(String, u64)> = confirmed.iter().map(|p| (p.epoch.clone(), p.offset)).collect();
    let expected: Vec<(String, u64)> = (1..=7).map(|o| (epoch.clone(), o)).collect();
    assert_eq!(places, expected, "one epoch, each offset once");
    let history = cluster.controls[0].history(&channel, "", 0, 0).await.unwrap();
    let texts: Vec<String> = history
        .publications
        .iter()
        .map(|p| match &p.event.body {
            Some(channel_event::Body::Text(t)) => t.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(texts, (1..=7).map(|i| format!("m{i}")).collect::<Vec<_>>(), "a4 is nowhere");
    settle().await;
    let delivered: Vec<_> = (1..=7).map(|i| slip_edge::frame::text(&format!("m{i}"))).collect();
    assert_eq!(outbox.take(usize::MAX).frames, delivered, "each once, in order");
}

/// Two control nodes cut apart while both reach the third (the leader of
/// the consensus, which sees both, so neither is declared gone): a publish
/// taken by one for a channel the other owns goes through the third, so one
/// node alone gives the channel's offsets and its stream does not fork.
#[tokio::test(start_paused = true)]
async fn a_publish_reaches_the_owner_through_another_control_node_when_the_two_are_cut_apart() {
    let cluster = MemoryCluster::start(3).await;
    let leader = (0..3).find(|i| cluster.controls[*i].consensus_state().2).unwrap();
    let (owner, via) = {
        let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        (others[0], others[1])
    };
    let owner_id = cluster.controls[owner].node_id().clone();
    let channel = (0..).map(|i| format!("room-{i}")).find(|c| owner_of(&cluster, c) == owner_id.as_str()).unwrap();
    let (a, b) = (owner_id, cluster.controls[via].node_id().clone());
    if let (Some(there), Some(back)) = (&cluster.mesh[via][owner], &cluster.mesh[owner][via]) {
        cluster.controls[via].link_down(&a, there);
        cluster.controls[owner].link_down(&b, back);
    }
    settle().await;
    for (i, through) in [via, owner, via, leader].into_iter().enumerate() {
        // Through `via` it is not confirmed (the owner cannot reach it to say so); it is in the stream all the same.
        let _receipt = cluster.controls[through].publish_start(publish(&channel, &format!("m{i}"))).unwrap();
        settle().await;
    }
    let history = cluster.controls[owner].history(&channel, "", 0, 0).await.unwrap();
    let texts: Vec<(u64, String)> = history
        .publications
        .iter()
        .map(|p| match &p.event.body {
            Some(channel_event::Body::Text(t)) => (p.offset, t.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    let expected: Vec<(u64, String)> = (0..4).map(|i| (i + 1, format!("m{i}"))).collect();
    assert_eq!(texts, expected, "one stream, given its offsets by its owner alone");
}
