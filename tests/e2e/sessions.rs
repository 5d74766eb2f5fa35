//! `slip.v1` sessions (docs/sessions.md) with real clients: the subprotocol, the
//! session frame, publications and messages in their envelopes; a plain
//! client on the same channel sees no change.

use serde_json::{Value, json};
use slip_proto::callback::{CallbackRequest, Event};
use slip_proto::pb::{PublishRequest, publish_request};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::free_port;
use crate::support::*;

/// Accepts everyone into "room" and greets them; `me:TEXT` comes back to its sender.
fn room(request: &CallbackRequest) -> Reply {
    let mut out = Vec::new();
    for event in &request.events {
        match event {
            Event::Open { connection_id } => {
                out.push(json!({"type": "ACCEPT", "connectionId": connection_id}));
                out.push(json!({"type": "SUBSCRIBE", "connectionId": connection_id, "channel": "room"}));
                out.push(json!({"type": "TEXT", "connectionId": connection_id, "data": "hello"}));
            }
            Event::Text { connection_id, data } => {
                if let Some(text) = data.strip_prefix("me:") {
                    out.push(json!({"type": "TEXT", "connectionId": connection_id, "data": text}));
                }
            }
            _ => {}
        }
    }
    Reply::commands(out)
}

/// A client offering `slip.v1`; the subprotocol the gateway chose.
pub(crate) async fn session_client(url: &str) -> (Client, Option<String>) {
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "slip.v1".parse().unwrap());
    let (ws, response) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
    let protocol = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (Client { ws }, protocol)
}

pub(crate) async fn json_frame(client: &mut Client) -> Value {
    serde_json::from_str(&client.text().await).unwrap()
}

#[tokio::test]
async fn a_slip_v1_client_gets_a_session_and_envelopes_while_a_plain_one_sees_no_change() {
    let backend = Backend::start(room).await;
    let gateway = Gateway::start(&backend.url).await;
    let (mut session, protocol) = session_client(&gateway.ws).await;
    assert_eq!(protocol.as_deref(), Some("slip.v1"));
    let mut plain = Client::connect(&gateway).await;

    let first = json_frame(&mut session).await;
    assert_eq!((first["type"].as_str(), first["resumed"].as_bool()), (Some("session"), Some(false)));
    let id = first["connectionId"].as_str().unwrap().to_owned();
    let token = first["session"].as_str().unwrap();
    assert!(slip_proto::session::verify(token, SECRET.as_bytes()).is_ok_and(|c| c.connection_id == id));
    assert_eq!(json_frame(&mut session).await, json!({"type": "message", "seq": 1, "data": "hello"}));
    assert_eq!(plain.text().await, "hello");

    // The backend sees the same events as ever, the metadata naming the protocol.
    let opened = backend.seen().into_iter().find(|r| r.connection_id == id).unwrap();
    assert_eq!(opened.metadata["protocol"], "slip.v1");
    assert!(backend.seen().iter().filter(|r| r.connection_id != id).all(|r| r.metadata.get("protocol").is_none()));

    wait_for_subscribers(&gateway, "room", 2).await;
    let mut grpc = gateway.grpc().await;
    for text in ["one", "two"] {
        let message = Some(publish_request::Message::Text(text.into()));
        grpc.publish(PublishRequest { channel: "room".into(), message, ..Default::default() }).await.unwrap();
    }
    let one = json_frame(&mut session).await;
    let epoch = one["epoch"].as_str().unwrap().to_owned();
    assert_eq!(one, json!({"type": "publication", "channel": "room", "epoch": epoch, "offset": 1, "data": "one"}));
    assert_eq!(json_frame(&mut session).await["offset"], 2);
    assert_eq!(plain.texts(2).await, ["one", "two"]);

    // Its own frames are TEXT events as before; what comes back is message 2.
    session.send("me:again").await;
    assert_eq!(json_frame(&mut session).await, json!({"type": "message", "seq": 2, "data": "again"}));
    plain.send("me:plain").await;
    assert_eq!(plain.text().await, "plain");
}

fn publish(channel: &str, text: &str) -> PublishRequest {
    PublishRequest {
        channel: channel.into(),
        message: Some(publish_request::Message::Text(text.into())),
        ..Default::default()
    }
}

/// A session's opening: its token and connection id, and the greeting read.
async fn opened(client: &mut Client) -> (String, String) {
    let first = json_frame(client).await;
    assert_eq!(first["type"], "session");
    let greeting = json_frame(client).await;
    assert_eq!(greeting["data"], "hello");
    (first["session"].as_str().unwrap().to_owned(), first["connectionId"].as_str().unwrap().to_owned())
}

fn events_named(backend: &Backend, id: &str, kind: &str) -> usize {
    backend
        .events_of(id)
        .iter()
        .filter(|e| matches!((e, kind), (Event::Open { .. }, "OPEN") | (Event::Close { .. }, "CLOSE")))
        .count()
}

/// The client vanishes (no close frame); while it is away, two publications
/// and a message; it comes back with its token and its places: it gets
/// exactly what it missed, in order, then live ones, under the same
/// connection id, and the backend saw one OPEN and no CLOSE.
#[tokio::test]
async fn a_session_resumed_on_its_edge_misses_nothing_and_the_backend_sees_no_close() {
    let backend = Backend::start(room).await;
    let gateway = Gateway::start(&backend.url).await;
    let (mut client, _) = session_client(&gateway.ws).await;
    let (token, id) = opened(&mut client).await;
    wait_for_subscribers(&gateway, "room", 1).await;
    let mut grpc = gateway.grpc().await;
    let mut epoch = String::new();
    for i in 1..=3 {
        grpc.publish(publish("room", &format!("p{i}"))).await.unwrap();
        let got = json_frame(&mut client).await;
        epoch = got["epoch"].as_str().unwrap().to_owned();
        assert_eq!(got["offset"], i);
    }
    drop(client);
    // Parked: the subscription holds, the backend is not told.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for i in 4..=5 {
        grpc.publish(publish("room", &format!("p{i}"))).await.unwrap();
    }
    let send = slip_proto::pb::SendRequest {
        connection_id: id.clone(),
        message: Some(slip_proto::pb::send_request::Message::Text("while away".into())),
    };
    grpc.send(send).await.unwrap();

    let (mut back, protocol) = session_client(&format!("{}/?slip_resume={token}", gateway.ws)).await;
    assert_eq!(protocol.as_deref(), Some("slip.v1"));
    back.send(&json!({"type": "resume", "seq": 1, "channels": {"room": {"epoch": epoch, "offset": 3}}}).to_string())
        .await;
    let session = json_frame(&mut back).await;
    assert_eq!(
        (&session["type"], &session["connectionId"], &session["resumed"], &session["recovered"], &session["lost"]),
        (&json!("session"), &json!(id), &json!(true), &json!(true), &json!([]))
    );
    assert_ne!(session["session"], json!(token), "a new token each resume");
    let replayed: Vec<Value> =
        [json_frame(&mut back).await, json_frame(&mut back).await, json_frame(&mut back).await].into();
    assert_eq!(
        replayed,
        [
            json!({"type": "publication", "channel": "room", "epoch": epoch, "offset": 4, "data": "p4"}),
            json!({"type": "publication", "channel": "room", "epoch": epoch, "offset": 5, "data": "p5"}),
            json!({"type": "message", "seq": 2, "data": "while away"}),
        ]
    );
    grpc.publish(publish("room", "p6")).await.unwrap();
    assert_eq!(json_frame(&mut back).await["offset"], 6, "then live");
    back.send("me:back").await;
    assert_eq!(json_frame(&mut back).await, json!({"type": "message", "seq": 3, "data": "back"}));
    backend
        .wait_until("the TEXT after the resume", |seen| {
            seen.iter().any(|r| {
                r.connection_id == id
                    && r.events.iter().any(|e| matches!(e, Event::Text { data, .. } if data == "me:back"))
            })
        })
        .await;
    assert_eq!((events_named(&backend, &id, "OPEN"), events_named(&backend, &id, "CLOSE")), (1, 0));
}

/// A token altered by one character, and a token already used to resume,
/// each get a fresh session: a new connection id, an OPEN to the backend.
#[tokio::test]
async fn forged_and_replayed_tokens_get_a_fresh_session_never_someone_elses() {
    let backend = Backend::start(room).await;
    let gateway = Gateway::start(&backend.url).await;
    let (mut client, _) = session_client(&gateway.ws).await;
    let (token, id) = opened(&mut client).await;
    drop(client);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for bad in [forged.as_str(), "garbage", ""] {
        let (mut other, _) = session_client(&format!("{}/?slip_resume={bad}", gateway.ws)).await;
        let first = json_frame(&mut other).await;
        assert_eq!(first["resumed"], false, "{bad}");
        assert_ne!(first["connectionId"], json!(id));
    }
    // The real token resumes once; used again, it is a stranger's.
    let (mut back, _) = session_client(&format!("{}/?slip_resume={token}", gateway.ws)).await;
    back.send(r#"{"type":"resume"}"#).await;
    let resumed = json_frame(&mut back).await;
    assert_eq!((&resumed["resumed"], &resumed["connectionId"]), (&json!(true), &json!(id)));
    let (mut replayed, _) = session_client(&format!("{}/?slip_resume={token}", gateway.ws)).await;
    let first = json_frame(&mut replayed).await;
    assert_eq!(first["resumed"], false);
    assert_ne!(first["connectionId"], json!(id));
    assert_eq!(events_named(&backend, &id, "OPEN"), 1);
}

/// Nobody comes back within `SLIP_RESUME_SECS`: the backend gets the
/// session's CLOSE then, once.
#[tokio::test]
async fn a_session_not_resumed_in_time_ends_with_exactly_one_close() {
    let backend = Backend::start(room).await;
    let gateway = Gateway::start_with(&backend.url, &["--resume-secs", "1"]).await;
    let (mut client, _) = session_client(&gateway.ws).await;
    let (token, id) = opened(&mut client).await;
    drop(client);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(events_named(&backend, &id, "CLOSE"), 0, "parked, not closed");
    backend.wait_until("the CLOSE after the window", |_| events_named(&backend, &id, "CLOSE") > 0).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(events_named(&backend, &id, "CLOSE"), 1);
    // It names itself: the same id whoever sends a connection's CLOSE, for a backend to drop a repeat.
    let close = backend.events_of(&id).into_iter().find(|e| matches!(e, Event::Close { .. })).unwrap();
    assert!(matches!(close, Event::Close { event_id: Some(ref e), .. } if *e == format!("close:{id}")), "{close:?}");
    let (mut late, _) = session_client(&format!("{}/?slip_resume={token}", gateway.ws)).await;
    assert_eq!(json_frame(&mut late).await["resumed"], false, "too late: a fresh session");
}

/// `slip dev` keeps sessions and history in memory: restarted, it knows
/// neither (docs/decisions.md). A client coming back with its token gets a
/// fresh session (an OPEN to the backend), and, in the channels the backend
/// subscribes it to, what they published since that it has not seen: a
/// chat loses no line across the restart. Its resume frame is not a
/// message to the backend.
#[tokio::test]
async fn after_a_restart_a_returning_client_gets_a_fresh_session_and_what_its_channels_published_since() {
    let backend = Backend::start(room).await;
    let (listen, control) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let gateway = Gateway::start_at(&backend.url, &listen, &control, &[]).await;
    let (mut client, _) = session_client(&gateway.ws).await;
    let (token, id) = opened(&mut client).await;
    wait_for_subscribers(&gateway, "room", 1).await;
    gateway.grpc().await.publish(publish("room", "before")).await.unwrap();
    let before = json_frame(&mut client).await;
    assert_eq!((&before["offset"], &before["data"]), (&json!(1), &json!("before")));
    gateway.stop().await;
    drop(client);

    let gateway = Gateway::start_at(&backend.url, &listen, &control, &[]).await;
    // Someone else is back first, and something is said.
    let (mut other, _) = session_client(&gateway.ws).await;
    opened(&mut other).await;
    wait_for_subscribers(&gateway, "room", 1).await;
    let mut grpc = gateway.grpc().await;
    grpc.publish(publish("room", "since")).await.unwrap();
    let since = json_frame(&mut other).await;
    assert_eq!(since["data"], "since");
    assert_ne!(since["epoch"], before["epoch"], "a restarted gateway starts its streams afresh");

    let (mut back, _) = session_client(&format!("{}/?slip_resume={token}", gateway.ws)).await;
    let places = json!({"type": "resume", "seq": 1, "channels": {"room": {"epoch": before["epoch"], "offset": 1}}});
    back.send(&places.to_string()).await;
    let session = json_frame(&mut back).await;
    assert_eq!(session["resumed"], false);
    let new_id = session["connectionId"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id);
    assert_eq!(json_frame(&mut back).await, since, "what the channel published since the restart");
    assert_eq!(json_frame(&mut back).await, json!({"type": "message", "seq": 1, "data": "hello"}));
    grpc.publish(publish("room", "after")).await.unwrap();
    let after = json_frame(&mut back).await;
    assert_eq!((&after["offset"], &after["data"]), (&json!(2), &json!("after")), "then live");
    back.send("me:back").await;
    assert_eq!(json_frame(&mut back).await, json!({"type": "message", "seq": 2, "data": "back"}));
    assert_eq!(events_named(&backend, &new_id, "OPEN"), 1);
    let texts: Vec<String> = backend
        .events_of(&new_id)
        .into_iter()
        .filter_map(|e| match e {
            Event::Text { data, .. } => Some(data),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["me:back"], "the resume frame is not the backend's");
}

/// A token lives `SLIP_RESUME_SECS` past its issue: a live session's client
/// is sent a fresh one every third of that (`refresh: true`), and a token
/// older than the window no longer takes the session; the fresh session it
/// gets never shows the failed token to the backend.
#[tokio::test]
async fn an_old_token_of_a_live_session_expires_and_a_refreshed_one_resumes() {
    let backend = Backend::start(room).await;
    let gateway = Gateway::start_with(&backend.url, &["--resume-secs", "3"]).await;
    let (mut client, _) = session_client(&gateway.ws).await;
    let (first, id) = opened(&mut client).await;
    let issued = std::time::Instant::now();
    // The welcome message, then a refresh within a third of the window.
    let mut latest = None;
    while latest.is_none() {
        let frame = json_frame(&mut client).await;
        if frame["refresh"] == json!(true) {
            assert_eq!((&frame["connectionId"], &frame["resumed"]), (&json!(id), &json!(true)), "{frame}");
            latest = frame["session"].as_str().map(str::to_owned);
        }
        assert!(issued.elapsed() < std::time::Duration::from_secs(3), "no refresh within the window");
    }
    // Past the window, the first token is too old while the session lives.
    tokio::time::sleep(std::time::Duration::from_secs(5).saturating_sub(issued.elapsed())).await;
    let (mut stale, _) = session_client(&format!("{}/?a=1&slip_resume={first}", gateway.ws)).await;
    let fresh = json_frame(&mut stale).await;
    assert_eq!(fresh["resumed"], false, "{fresh}");
    let fresh_id = fresh["connectionId"].as_str().unwrap().to_owned();
    assert_ne!(fresh_id, id);
    let opened = backend.seen().into_iter().find(|r| r.connection_id == fresh_id).unwrap();
    assert_eq!(opened.metadata["query"], "a=1", "the failed token never reaches the backend");
    // The newest refreshed token still takes it (the refreshes went on meanwhile).
    let mut newest = latest.unwrap();
    while let Ok(text) = tokio::time::timeout(std::time::Duration::from_millis(200), client.text()).await {
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["refresh"] == json!(true) {
            newest = frame["session"].as_str().unwrap().to_owned();
        }
    }
    let (mut back, _) = session_client(&format!("{}/?slip_resume={newest}", gateway.ws)).await;
    back.send(r#"{"type":"resume"}"#).await;
    let resumed = json_frame(&mut back).await;
    assert_eq!((&resumed["resumed"], &resumed["connectionId"]), (&json!(true), &json!(id)), "{resumed}");
}
