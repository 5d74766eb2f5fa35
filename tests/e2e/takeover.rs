//! Who may take a `slip.v1` session over: only its newest token, on every
//! edge, whether the session's edge lives or died. An older token (one a
//! resume replaced) gets a fresh session of its own, never the victim's
//! connection id, messages or history.

use serde_json::{Value, json};
use slip_proto::callback::Event;
use slip_proto::pb::{SendRequest, send_request};

use crate::cluster::{Cluster, cluster_backend, publish};
use crate::sessions::{json_frame, session_client};
use crate::support::*;

/// A session on `ws`/room: its client, first token and connection id.
async fn open_session(ws: &str) -> (Client, String, String) {
    let (mut client, _) = session_client(&format!("{ws}/room")).await;
    let first = json_frame(&mut client).await;
    let token = first["session"].as_str().unwrap().to_owned();
    let id = first["connectionId"].as_str().unwrap().to_owned();
    (client, token, id)
}

/// Resumes with `token` on `ws`; the session frame it gets.
async fn resume(ws: &str, token: &str) -> (Client, Value) {
    let (mut client, _) = session_client(&format!("{ws}/room?slip_resume={token}")).await;
    client.send(&json!({"type": "resume", "seq": 0, "channels": {}}).to_string()).await;
    let frame = json_frame(&mut client).await;
    (client, frame)
}

/// The victim's session on edge 0, dropped and resumed there once: its
/// first token is old now. Returns the victim, the old token, the newest
/// token and the connection id.
async fn victim_resumed_once(cluster: &Cluster) -> (Client, String, String, String) {
    let (client, old, id) = open_session(&cluster.edges[0].ws).await;
    cluster.wait_for_edges(0, "room", 1).await;
    drop(client);
    // Parked once the edge sees the socket go.
    wait_for_gauge(&cluster.edges[0].metrics, "slip_session_deadlines", 1.0).await;
    let (victim, session) = resume(&cluster.edges[0].ws, &old).await;
    assert_eq!((&session["connectionId"], &session["resumed"]), (&json!(id), &json!(true)), "{session}");
    let newest = session["session"].as_str().unwrap().to_owned();
    (victim, old, newest, id)
}

/// A token that did not resume: a fresh session under a new id, with a
/// normal OPEN to the backend.
async fn assert_fresh(backend: &Backend, session: &Value, victim: &str) {
    assert_eq!(session["resumed"], json!(false), "{session}");
    let id = session["connectionId"].as_str().unwrap().to_owned();
    assert_ne!(id, victim, "an old token must never get the victim's connection id");
    backend.wait_until("the fresh session's OPEN", |seen| seen.iter().any(|r| r.connection_id == id)).await;
}

#[tokio::test]
async fn an_old_token_gets_a_fresh_session_on_another_edge_while_the_sessions_edge_lives() {
    let backend = Backend::start(cluster_backend).await;
    let cluster = Cluster::start(&backend.url, 1, 2).await;
    let (mut victim, old, _newest, id) = victim_resumed_once(&cluster).await;

    let (mut attacker, session) = resume(&cluster.edges[1].ws, &old).await;
    assert_fresh(&backend, &session, &id).await;

    // The victim's session still lives on its edge, and only the victim hears what is sent to it.
    let mut grpc = cluster.grpc(0).await;
    let text = SendRequest { connection_id: id.clone(), message: Some(send_request::Message::Text("private".into())) };
    grpc.send(text).await.unwrap();
    assert_eq!(json_frame(&mut victim).await["data"], "private");
    // The attacker's subscription starts live once the channel's owner hears of it.
    cluster.wait_for_edges(0, "room", 2).await;
    grpc.publish(publish("room", "for everyone")).await.unwrap();
    assert_eq!(json_frame(&mut victim).await["data"], "for everyone");
    // The attacker's fresh session is in the room too (its own OPEN subscribed it), under its own id.
    let next = json_frame(&mut attacker).await;
    assert_eq!(next["data"], "for everyone", "the attacker got something else: {next}");
    let state = grpc.get_connection(slip_proto::pb::GetConnectionRequest { connection_id: id.clone() }).await.unwrap();
    assert_eq!(state.into_inner().edge, "edge-0");
    let closes = backend.events_of(&id).iter().filter(|e| matches!(e, Event::Close { .. })).count();
    assert_eq!(closes, 0);
}

#[tokio::test]
async fn once_the_sessions_edge_is_killed_only_its_newest_token_takes_it_and_only_once() {
    let backend = Backend::start(cluster_backend).await;
    let mut cluster = Cluster::start(&backend.url, 1, 2).await;
    let (victim, old, newest, id) = victim_resumed_once(&cluster).await;
    drop(victim);
    cluster.kill_edge(0).await;
    cluster.wait_for_edges(0, "room", 0).await;

    let (_attacker, session) = resume(&cluster.edges[1].ws, &old).await;
    assert_fresh(&backend, &session, &id).await;

    let (mut back, session) = resume(&cluster.edges[1].ws, &newest).await;
    assert_eq!(
        (&session["connectionId"], &session["resumed"], &session["recovered"]),
        (&json!(id), &json!(true), &json!(false)),
        "the newest token goes on from the record: {session}"
    );
    let mut grpc = cluster.grpc(0).await;
    grpc.publish(publish("room", "live")).await.unwrap();
    assert_eq!(json_frame(&mut back).await["data"], "live");

    // The token just used is spent: a second copy of it gets a fresh session.
    let (_copy, session) = resume(&cluster.edges[1].ws, &newest).await;
    assert_fresh(&backend, &session, &id).await;
    let opens = backend.events_of(&id).iter().filter(|e| matches!(e, Event::Open { .. })).count();
    assert_eq!(opens, 1);
}
