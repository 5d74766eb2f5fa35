//! Real QUIC links on loopback: Hello both ways, frames in order per channel,
//! up/down events, and refusal of a peer from another CA.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use slip_link::quic::QuicNode;
use slip_link::tls::ClusterCa;
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
    Hello { node_id: id.into(), role: role as i32, region: String::new(), link_addr: String::new() }
}

fn node(ca: &ClusterCa, id: &str, accept: bool, recorder: Arc<Recorder>) -> Arc<QuicNode> {
    let identity = ca.issue(&NodeId::parse(id).unwrap()).unwrap();
    let role = if accept { Role::Control } else { Role::Edge };
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
        let frame = Frame { kind: Some(Kind::Interest(Interest { channel: format!("ch-{}", i % 7), present: true })) };
        to_control.send(frame).unwrap();
    }
    to_edge.send(Frame { kind: Some(Kind::Interest(Interest { channel: "back".into(), present: true })) }).unwrap();
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

#[tokio::test]
async fn link_down_is_reported_when_the_peer_goes() {
    let ca = ClusterCa::generate().unwrap();
    let (control_seen, edge_seen) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let control = node(&ca, "control-1", true, control_seen.clone());
    let edge = node(&ca, "edge-1", false, edge_seen.clone());
    edge.dial(control.local_addr().unwrap());
    eventually("link up", || !edge_seen.links.lock().is_empty()).await;
    control.close();
    eventually("link down at the edge", || edge_seen.downs.lock().iter().any(|p| p == "control-1")).await;
}
