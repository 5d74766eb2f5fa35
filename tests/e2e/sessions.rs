//! `slip.v1` sessions (DESIGN §10) with real clients: the subprotocol, the
//! session frame, publications and messages in their envelopes; a plain
//! client on the same channel sees no change.

use serde_json::{Value, json};
use slip_proto::callback::{CallbackRequest, Event};
use slip_proto::pb::{PublishRequest, publish_request};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

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
async fn session_client(url: &str) -> (Client, Option<String>) {
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "slip.v1".parse().unwrap());
    let (ws, response) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
    let protocol = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (Client { ws }, protocol)
}

async fn json_frame(client: &mut Client) -> Value {
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
