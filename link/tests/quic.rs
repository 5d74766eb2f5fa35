//! Real QUIC links on loopback: Hello both ways, frames in order per channel,
//! up/down events, and refusal of a peer from another CA or of one whose
//! Hello claims what its certificate does not give it.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use slip_link::framing;
use slip_link::quic::QuicNode;
use slip_link::tls::{ClusterCa, Identity, SERVER_NAME};
use slip_link::{FrameHandler, Link};
use slip_proto::ids::NodeId;
use slip_proto::link_pb::{Frame, Hello, Interest, Role, frame::Kind};

#[derive(Default)]
struct Recorder {
    frames: Mutex<Vec<(String, String)>>,
    links: Mutex<Vec<Arc<dyn Link>>>,
    downs: Mutex<Vec<String>>,
}

impl FrameHandler for Recorder {
    fn on_frame(&self, from: &NodeId, frame: Frame) {
        if let Some(Kind::Interest(i)) = frame.kind {
            self.frames.lock().push((from.to_string(), i.channel));
        }
    }
    fn on_link_up(&self, _hello: &Hello, link: Arc<dyn Link>) {
        self.links.lock().push(link);
    }
    fn on_link_down(&self, peer: &NodeId, _link: &Arc<dyn Link>) {
        self.downs.lock().push(peer.to_string());
    }
}

fn hello(id: &str, role: Role) -> Hello {
    Hello { node_id: id.into(), role: role as i32, region: String::new(), link_addr: String::new(), incarnation: 1 }
}

fn node(ca: &ClusterCa, id: &str, accept: bool, recorder: Arc<Recorder>) -> Arc<QuicNode> {
    let role = if accept { Role::Control } else { Role::Edge };
    let identity = ca.identity(role, &NodeId::parse(id).unwrap()).unwrap();
    QuicNode::bind("127.0.0.1:0".parse().unwrap(), accept, &identity, hello(id, role), recorder).unwrap()
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn frames_flow_both_ways_in_order() {
    let ca = ClusterCa::generate().unwrap();
    let (control_seen, edge_seen) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let control = node(&ca, "control-1", true, control_seen.clone());
    let edge = node(&ca, "edge-1", false, edge_seen.clone());
    edge.dial(control.local_addr().unwrap());

    eventually("both ends see the link", || {
        !control_seen.links.lock().is_empty() && !edge_seen.links.lock().is_empty()
    })
    .await;
    let to_control = edge_seen.links.lock()[0].clone();
    let to_edge = control_seen.links.lock()[0].clone();
    assert_eq!(to_control.peer().as_str(), "control-1");
    assert_eq!(to_edge.peer().as_str(), "edge-1");

    for i in 0..2000 {
        let frame = Frame {
            kind: Some(Kind::Interest(Interest {
                channel: format!("ch-{}", i % 7),
                present: true,
                ..Default::default()
            })),
        };
        to_control.send(frame).unwrap();
    }
    to_edge
        .send(Frame {
            kind: Some(Kind::Interest(Interest { channel: "back".into(), present: true, ..Default::default() })),
        })
        .unwrap();
    eventually("2000 frames at the control node", || control_seen.frames.lock().len() == 2000).await;
    eventually("the frame back at the edge", || edge_seen.frames.lock().len() == 1).await;
    let frames = control_seen.frames.lock().clone();
    assert!(frames.iter().all(|(from, _)| from == "edge-1"));
    // Per channel, the order is the order sent.
    for c in 0..7 {
        let name = format!("ch-{c}");
        let count = frames.iter().filter(|(_, ch)| *ch == name).count();
        assert_eq!(count, (0..2000).filter(|i| i % 7 == c).count());
    }
}

#[tokio::test]
async fn a_peer_from_another_ca_cannot_link() {
    let ca = ClusterCa::generate().unwrap();
    let other = ClusterCa::generate().unwrap();
    let (control_seen, stranger_seen) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let control = node(&ca, "control-1", true, control_seen.clone());
    let stranger = node(&other, "stranger", false, stranger_seen.clone());
    stranger.dial(control.local_addr().unwrap());
    // A peer of the right CA links in the same time.
    let friend_seen = Arc::new(Recorder::default());
    let friend = node(&ca, "friend", false, friend_seen.clone());
    friend.dial(control.local_addr().unwrap());
    eventually("the friend links", || !friend_seen.links.lock().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(stranger_seen.links.lock().is_empty());
    let peers: Vec<String> = control_seen.links.lock().iter().map(|l| l.peer().to_string()).collect();
    assert_eq!(peers, ["friend"]);
}

/// A control node and an edge, linked; what each end saw.
struct Pair {
    control: Arc<QuicNode>,
    edge: Arc<QuicNode>,
    control_seen: Arc<Recorder>,
    edge_seen: Arc<Recorder>,
}

async fn linked_pair() -> Pair {
    let ca = ClusterCa::generate().unwrap();
    let (control_seen, edge_seen) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let control = node(&ca, "control-1", true, control_seen.clone());
    let edge = node(&ca, "edge-1", false, edge_seen.clone());
    edge.dial(control.local_addr().unwrap());
    eventually("link up", || !edge_seen.links.lock().is_empty()).await;
    Pair { control, edge, control_seen, edge_seen }
}

#[tokio::test]
async fn link_down_is_reported_when_the_peer_goes() {
    let Pair { control, edge: _edge, edge_seen, .. } = linked_pair().await;
    control.close();
    eventually("link down at the edge", || edge_seen.downs.lock().iter().any(|p| p == "control-1")).await;
}

/// A node on its way out flushes its links: every frame it queued before
/// closing reaches the peer (a draining edge's last answer, say), where a
/// bare close drops what was not sent yet.
#[tokio::test]
async fn what_is_queued_before_a_flushed_close_arrives() {
    const FRAMES: usize = 3000;
    let Pair { control: _control, edge, control_seen, edge_seen } = linked_pair().await;
    let to_control = edge_seen.links.lock()[0].clone();
    // Big enough that they cannot all be on the wire by the time close runs.
    let padding = "x".repeat(4000);
    for i in 0..FRAMES {
        let channel = format!("ch-{}-{padding}", i % 7);
        to_control
            .send(Frame { kind: Some(Kind::Interest(Interest { channel, present: true, ..Default::default() })) })
            .unwrap();
    }
    edge.flush(Duration::from_secs(10)).await;
    edge.close();
    eventually("every frame at the peer", || control_seen.frames.lock().len() == FRAMES).await;
    eventually("then the link down", || control_seen.downs.lock().iter().any(|p| p == "edge-1")).await;
}

/// An attacker holding an edge's leaf: dials with it and says Hello as `hello`.
/// Returns the application close code the node answered with.
async fn hello_with(identity: &Identity, node: &QuicNode, hello: Hello) -> u64 {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(identity.client_config().unwrap());
    let connection = endpoint.connect(node.local_addr().unwrap(), SERVER_NAME).unwrap().await.unwrap();
    let mut stream = connection.open_uni().await.unwrap();
    let mut bytes = bytes::BytesMut::new();
    framing::encode(&Frame { kind: Some(Kind::Hello(hello)) }, &mut bytes).unwrap();
    stream.write_all(&bytes).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), connection.closed()).await.expect("refused in time") {
        quinn::ConnectionError::ApplicationClosed(close) => close.error_code.into_inner(),
        other => panic!("closed otherwise: {other}"),
    }
}

#[tokio::test]
async fn an_edge_certificate_cannot_join_as_a_control_node_or_pass_for_a_named_node() {
    let ca = ClusterCa::generate().unwrap();
    let control_seen = Arc::new(Recorder::default());
    let control = node(&ca, "control-1", true, control_seen.clone());

    // A leaf for any edge, as `slip gen-cert --role edge` writes it.
    let edge_leaf = ca.issue(Role::Edge, None).unwrap();
    let edge = Identity::load(&ca.cert_pem, &edge_leaf.cert_pem, &edge_leaf.key_pem).unwrap();
    assert_eq!(hello_with(&edge, &control, hello("control-9", Role::Control)).await, 3);
    // A leaf for one edge cannot pass for another.
    let e1_leaf = ca.issue(Role::Edge, Some(&NodeId::parse("edge-1").unwrap())).unwrap();
    let e1 = Identity::load(&ca.cert_pem, &e1_leaf.cert_pem, &e1_leaf.key_pem).unwrap();
    assert_eq!(hello_with(&e1, &control, hello("edge-2", Role::Edge)).await, 3);
    assert!(control_seen.links.lock().is_empty(), "no link came up");

    // Our own binary refuses to start that way at all.
    let refused = QuicNode::bind(
        "127.0.0.1:0".parse().unwrap(),
        true,
        &edge,
        hello("control-9", Role::Control),
        Arc::new(Recorder::default()),
    );
    assert!(refused.err().unwrap().to_string().contains("certificate is for the edge role"));

    // The same edge leaf, honest about its role, links.
    let edge_seen = Arc::new(Recorder::default());
    let honest =
        QuicNode::bind("127.0.0.1:0".parse().unwrap(), false, &edge, hello("edge-7", Role::Edge), edge_seen.clone())
            .unwrap();
    honest.dial(control.local_addr().unwrap());
    eventually("the honest edge links", || !edge_seen.links.lock().is_empty()).await;
    let peers: Vec<String> = control_seen.links.lock().iter().map(|l| l.peer().to_string()).collect();
    assert_eq!(peers, ["edge-7"]);
}

#[tokio::test]
async fn closing_a_node_stops_every_task_it_runs() {
    let ca = ClusterCa::generate().unwrap();
    let (control_seen, edge_seen) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let control = node(&ca, "control-1", true, control_seen.clone());
    let edge = node(&ca, "edge-1", false, edge_seen.clone());
    edge.dial(control.local_addr().unwrap());
    // A peer that never answers: its dialer retries until the node closes.
    edge.dial("127.0.0.1:9".parse().unwrap());
    eventually("link up", || !edge_seen.links.lock().is_empty()).await;
    edge.close();
    tokio::time::timeout(Duration::from_secs(10), edge.closed()).await.expect("every task ended");
    eventually("the control node hears it", || control_seen.downs.lock().iter().any(|p| p == "edge-1")).await;
}
