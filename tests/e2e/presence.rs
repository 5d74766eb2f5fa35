//! Presence (docs/presence.md): members that a SUBSCRIBE with `"presence"`
//! makes, counted and listed by the channel's owner over gRPC and
//! `slip admin presence`, gone with their connection, their subscription
//! or their edge, and rebuilt from the edges when the owner dies.

use std::time::Duration;

use serde_json::{Value, json};
use slip_proto::callback::{CallbackRequest, Event};
use slip_proto::pb::{PresenceRequest, SubscriptionRequest};
use tokio::time::Instant;

use crate::cluster::{Cluster, admin_json};
use crate::support::*;

/// Accepts every connection into the channel its path names, a member of
/// its presence with its connection id as info; `/quiet` subscribes with
/// no presence.
fn with_presence(request: &CallbackRequest) -> Reply {
    let mut out = Vec::new();
    for event in &request.events {
        if let Event::Open { connection_id } = event {
            let path = request.metadata["path"].as_str().unwrap_or("/").trim_start_matches('/').to_owned();
            out.push(json!({"type": "ACCEPT", "connectionId": connection_id}));
            if path == "quiet" {
                out.push(json!({"type": "SUBSCRIBE", "connectionId": connection_id, "channel": "room"}));
            } else {
                let presence = json!({"who": connection_id});
                out.push(
                    json!({"type": "SUBSCRIBE", "connectionId": connection_id, "channel": path, "presence": presence}),
                );
            }
        }
    }
    Reply::commands(out)
}

/// Waits until control node `via` counts `count` members in `channel`; the members then.
async fn wait_for_presence(cluster: &Cluster, via: usize, channel: &str, count: u64) -> Vec<(String, Value)> {
    let deadline = Instant::now() + PATIENCE * 2;
    loop {
        let mut grpc = cluster.grpc(via).await;
        let reply = grpc.presence(PresenceRequest { channel: channel.into(), limit: 0 }).await.map(|r| r.into_inner());
        if let Ok(reply) = &reply
            && reply.count == count
        {
            return reply
                .members
                .iter()
                .map(|m| (m.connection_id.clone(), serde_json::from_str(&m.info).unwrap()))
                .collect();
        }
        assert!(Instant::now() < deadline, "{channel} never had {count} members via control-{via}: {reply:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn members_come_with_their_subscription_and_go_with_their_connection_or_edge() {
    let backend = Backend::start(with_presence).await;
    let mut cluster = Cluster::start(&backend.url, 1, 2).await;
    let a = Client::connect_url(&format!("{}/room", cluster.edges[0].ws)).await;
    let _b = Client::connect_url(&format!("{}/room", cluster.edges[0].ws)).await;
    let _c = Client::connect_url(&format!("{}/room", cluster.edges[1].ws)).await;
    let _quiet = Client::connect_url(&format!("{}/quiet", cluster.edges[1].ws)).await;
    let opened = backend.opened();
    let members = wait_for_presence(&cluster, 0, "room", 3).await;
    let mut expected: Vec<(String, Value)> = opened[..3].iter().map(|id| (id.clone(), json!({"who": id}))).collect();
    expected.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(members, expected, "ordered by connection id, each with its info; the quiet one is not a member");
    let listed = admin_json(&cluster.control_api(0), &["presence", "room"]).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");

    // Its connection closes: it leaves.
    drop(a);
    wait_for_presence(&cluster, 0, "room", 2).await;
    // Unsubscribed through the control API: it leaves; subscribed again with presence: it is back.
    let c = opened[2].clone();
    let mut grpc = cluster.grpc(0).await;
    let request = |presence_json: &str| SubscriptionRequest {
        connection_id: c.clone(),
        channel: "room".into(),
        presence_json: presence_json.into(),
    };
    grpc.unsubscribe(request("")).await.unwrap();
    wait_for_presence(&cluster, 0, "room", 1).await;
    grpc.subscribe(request(r#"{"who":"c again"}"#)).await.unwrap();
    let members = wait_for_presence(&cluster, 0, "room", 2).await;
    assert!(members.contains(&(c.clone(), json!({"who": "c again"}))), "{members:?}");
    // Presence that is not an object, or too large, is refused with the reason.
    let refused = grpc.subscribe(request("[1]")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    let large = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1100));
    assert_eq!(grpc.subscribe(request(&large)).await.unwrap_err().code(), tonic::Code::InvalidArgument);

    // Its edge is killed: its members go with it.
    cluster.kill_edge(0).await;
    let members = wait_for_presence(&cluster, 0, "room", 1).await;
    assert_eq!(members, [(c, json!({"who": "c again"}))]);
}

#[tokio::test]
async fn presence_is_rebuilt_from_the_edges_when_its_owner_dies() {
    let backend = Backend::start(with_presence).await;
    let mut cluster = Cluster::start(&backend.url, 3, 2).await;
    let mut clients = Vec::new();
    for edge in 0..2 {
        for _ in 0..2 {
            clients.push(Client::connect_url(&format!("{}/lobby", cluster.edges[edge].ws)).await);
        }
    }
    let before = wait_for_presence(&cluster, 0, "lobby", 4).await;
    let owner = cluster.wait_for_edges(0, "lobby", 2).await.owner;
    let dead: usize = owner.trim_start_matches("control-").parse().unwrap();
    cluster.kill_control(dead).await;
    let alive = (dead + 1) % 3;
    // The new owner hears every member from the edges that hold them.
    let deadline = Instant::now() + PATIENCE * 3;
    loop {
        let info =
            cluster.grpc(alive).await.get_channel(slip_proto::pb::GetChannelRequest { channel: "lobby".into() }).await;
        if info.is_ok_and(|i| i.into_inner().owner != owner) {
            break;
        }
        assert!(Instant::now() < deadline, "no new owner of lobby");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(wait_for_presence(&cluster, alive, "lobby", 4).await, before);
}
