//! Presence (docs/presence.md): members that a SUBSCRIBE with `"presence"`
//! makes, counted and listed by the channel's owner over gRPC and
//! `slip admin presence`, gone with their connection, their subscription
//! or their edge, and rebuilt from the edges when the owner dies; join and
//! leave frames to the `slip.v1` clients that asked, in order with the
//! channel's publications.

use std::time::Duration;

use serde_json::{Value, json};
use slip_proto::callback::{CallbackRequest, Event};
use slip_proto::pb::{PresenceRequest, SubscriptionRequest};
use tokio::time::Instant;

use crate::cluster::{Cluster, admin_json};
use crate::sessions::{json_frame, session_client};
use crate::support::*;

/// Accepts every connection into the channel its path names, a member of
/// its presence with its connection id as info; `/quiet` subscribes to
/// "room" with no presence, `/watch` to "room" as a member that gets its
/// join and leave frames.
fn with_presence(request: &CallbackRequest) -> Reply {
    let mut out = Vec::new();
    for event in &request.events {
        if let Event::Open { connection_id } = event {
            let path = request.metadata["path"].as_str().unwrap_or("/").trim_start_matches('/').to_owned();
            out.push(json!({"type": "ACCEPT", "connectionId": connection_id}));
            if path == "quiet" {
                out.push(json!({"type": "SUBSCRIBE", "connectionId": connection_id, "channel": "room"}));
            } else if path == "watch" {
                let presence = json!({"who": connection_id});
                out.push(json!({"type": "SUBSCRIBE", "connectionId": connection_id, "channel": "room",
                    "presence": presence, "joinLeave": true}));
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
        join_leave: false,
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

/// The next join, leave, publication or presence snapshot a session gets,
/// as `+id`, `-id`, `=data` or `*id,id…` (other frames skipped).
async fn next_change(client: &mut Client) -> String {
    loop {
        let frame = json_frame(client).await;
        match frame["type"].as_str() {
            Some("presence") => {
                let members = frame["members"].as_array().unwrap();
                assert_eq!(frame["count"].as_u64(), Some(members.len() as u64), "{frame}");
                let ids: Vec<&str> = members.iter().map(|m| m["connectionId"].as_str().unwrap()).collect();
                assert!(members.iter().all(|m| m["info"] == json!({"who": m["connectionId"]})), "{frame}");
                return format!("*{}", ids.join(","));
            }
            Some("join") => {
                let id = frame["connectionId"].as_str().unwrap();
                assert_eq!(frame["info"], json!({"who": id}), "{frame}");
                assert_eq!(frame["channel"], "room");
                return format!("+{id}");
            }
            Some("leave") => return format!("-{}", frame["connectionId"].as_str().unwrap()),
            Some("publication") => return format!("={}", frame["data"].as_str().unwrap()),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_session_that_asked_gets_joins_and_leaves_in_order_with_publications() {
    let backend = Backend::start(with_presence).await;
    let mut cluster = Cluster::start(&backend.url, 2, 3).await;
    let (mut watcher, _) = session_client(&format!("{}/watch", cluster.edges[0].ws)).await;
    let me = json_frame(&mut watcher).await["connectionId"].as_str().unwrap().to_owned();
    assert_eq!(next_change(&mut watcher).await, format!("+{me}"), "its own join first");
    assert_eq!(next_change(&mut watcher).await, format!("*{me}"), "then the members as they stand");
    let mut grpc = cluster.grpc(1).await;
    let publish = |text: &str| slip_proto::pb::PublishRequest {
        channel: "room".into(),
        message: Some(slip_proto::pb::publish_request::Message::Text(text.into())),
        ..Default::default()
    };

    // Members on two other edges join, a publication follows them.
    let a = Client::connect_url(&format!("{}/room", cluster.edges[1].ws)).await;
    let a_id = nth_open(&backend, 1).await;
    assert_eq!(next_change(&mut watcher).await, format!("+{a_id}"));
    let _b = Client::connect_url(&format!("{}/room", cluster.edges[2].ws)).await;
    let b_id = nth_open(&backend, 2).await;
    assert_eq!(next_change(&mut watcher).await, format!("+{b_id}"));
    // A subscriber with no presence is nobody's join.
    let _quiet = Client::connect_url(&format!("{}/quiet", cluster.edges[1].ws)).await;
    nth_open(&backend, 3).await;
    wait_for_presence(&cluster, 0, "room", 3).await;
    grpc.publish(publish("one")).await.unwrap();
    assert_eq!(next_change(&mut watcher).await, "=one", "the quiet subscriber joined nothing");
    // A second watcher begins with everyone there (in connection id order), then its own join.
    let (mut second, _) = session_client(&format!("{}/watch", cluster.edges[1].ws)).await;
    let second_id = json_frame(&mut second).await["connectionId"].as_str().unwrap().to_owned();
    assert_eq!(next_change(&mut watcher).await, format!("+{second_id}"));
    let mut everyone = [me.clone(), a_id.clone(), b_id.clone(), second_id.clone()];
    everyone.sort();
    assert_eq!(next_change(&mut second).await, format!("+{second_id}"));
    assert_eq!(next_change(&mut second).await, format!("*{}", everyone.join(",")));
    // A session that ends with a close frame leaves (one whose socket just
    // drops is parked, and stays a member until its session ends).
    second.ws.close(None).await.unwrap();
    assert_eq!(next_change(&mut watcher).await, format!("-{second_id}"));

    // One leaves and a publication follows at once: the leave comes first,
    // though the owner coalesces changes for a while.
    drop(a);
    wait_for_presence(&cluster, 1, "room", 2).await;
    grpc.publish(publish("two")).await.unwrap();
    assert_eq!(next_change(&mut watcher).await, format!("-{a_id}"));
    assert_eq!(next_change(&mut watcher).await, "=two");

    // An edge dies: its members leave.
    cluster.kill_edge(2).await;
    assert_eq!(next_change(&mut watcher).await, format!("-{b_id}"));
    assert_eq!(wait_for_presence(&cluster, 0, "room", 1).await, [(me.clone(), json!({"who": me}))]);
    grpc.publish(publish("three")).await.unwrap();
    assert_eq!(next_change(&mut watcher).await, "=three", "nothing else came in between");
}

/// A `/watch` session on `ws`: its connection id and token, its own join and the members it begins with read.
async fn watching(ws: &str) -> (Client, String, String) {
    let (mut client, _) = session_client(&format!("{ws}/watch")).await;
    let first = json_frame(&mut client).await;
    let (id, token) =
        (first["connectionId"].as_str().unwrap().to_owned(), first["session"].as_str().unwrap().to_owned());
    assert_eq!(next_change(&mut client).await, format!("+{id}"));
    assert!(next_change(&mut client).await.starts_with('*'));
    (client, id, token)
}

fn text(channel: &str, text: &str) -> slip_proto::pb::PublishRequest {
    slip_proto::pb::PublishRequest {
        channel: channel.into(),
        message: Some(slip_proto::pb::publish_request::Message::Text(text.into())),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_session_keeps_its_place_in_presence_as_it_moves_to_another_edge() {
    let backend = Backend::start(with_presence).await;
    let cluster = Cluster::start(&backend.url, 2, 2).await;
    let (mut watcher, w, _) = watching(&cluster.edges[0].ws).await;
    let (mover, m, token) = watching(&cluster.edges[1].ws).await;
    assert_eq!(next_change(&mut watcher).await, format!("+{m}"));

    // Its socket drops (parked: still a member), and it resumes on the other edge.
    drop(mover);
    wait_for_gauge(&cluster.edges[1].metrics, "slip_session_deadlines", 1.0).await;
    let (mut back, _) = session_client(&format!("{}/watch?slip_resume={token}", cluster.edges[0].ws)).await;
    back.send(r#"{"type":"resume","seq":0,"channels":{}}"#).await;
    let session = json_frame(&mut back).await;
    assert_eq!((&session["connectionId"], &session["resumed"]), (&json!(m), &json!(true)), "{session}");
    // Back, it gets the members as they stand (it may have missed changes while away).
    let mut both = [w.clone(), m.clone()];
    both.sort();
    assert_eq!(next_change(&mut back).await, format!("*{}", both.join(",")));
    let members = wait_for_presence(&cluster, 1, "room", 2).await;
    assert_eq!(members.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), both);

    // Nobody saw it leave or join: the next thing either session gets is a publication.
    cluster.grpc(0).await.publish(text("room", "after the move")).await.unwrap();
    assert_eq!(next_change(&mut watcher).await, "=after the move");
    assert_eq!(next_change(&mut back).await, "=after the move");
    // It is watching from its new edge: a close frame ends it, and it leaves.
    back.ws.close(None).await.unwrap();
    assert_eq!(next_change(&mut watcher).await, format!("-{m}"));
    wait_for_presence(&cluster, 0, "room", 1).await;
}

#[tokio::test]
async fn a_dead_edges_plain_members_leave_at_once_and_its_sessions_when_their_window_ends() {
    let backend = Backend::start(with_presence).await;
    // Control nodes keep a session of a gone edge as a member for 3 s.
    let mut cluster = Cluster::start_with(&backend.url, 2, 2, &["--resume-secs", "3"]).await;
    let (mut watcher, _, _) = watching(&cluster.edges[0].ws).await;
    let _plain = Client::connect_url(&format!("{}/room", cluster.edges[1].ws)).await;
    let plain = nth_open(&backend, 1).await;
    assert_eq!(next_change(&mut watcher).await, format!("+{plain}"));
    let (_session, s, _) = watching(&cluster.edges[1].ws).await;
    assert_eq!(next_change(&mut watcher).await, format!("+{s}"));

    cluster.kill_edge(1).await;
    assert_eq!(next_change(&mut watcher).await, format!("-{plain}"));
    assert_eq!(wait_for_presence(&cluster, 0, "room", 2).await.len(), 2, "the session is away, still a member");
    assert_eq!(next_change(&mut watcher).await, format!("-{s}"), "its window ended");
    wait_for_presence(&cluster, 0, "room", 1).await;
}

#[tokio::test]
async fn presence_is_read_over_http_json_with_a_control_token() {
    let backend = Backend::start(with_presence).await;
    let gateway = Gateway::start(&backend.url).await;
    let _a = Client::connect_path(&gateway, "/room").await;
    let id = nth_open(&backend, 0).await;
    let http = reqwest::Client::new();
    let get = |token: Option<String>, query: &str| {
        let mut request = http.get(format!("{}/presence?{query}", gateway.control));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let deadline = Instant::now() + PATIENCE;
    loop {
        let response = get(Some(control_token()), "channel=room").await.unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        if body["count"] == 1 {
            assert_eq!(
                body,
                json!({"channel": "room", "members": [{"connectionId": id, "info": {"who": id}}], "count": 1})
            );
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(None, "channel=room").await.unwrap().status(), 403, "no token");
    assert_eq!(get(Some(control_token()), "limit=3").await.unwrap().status(), 400, "no channel");
    assert_eq!(get(Some(control_token()), "channel=").await.unwrap().status(), 400, "not a channel name");
}
