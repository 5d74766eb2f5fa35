//! Connection metadata: the defaults from the handshake, SET_METADATA, and
//! what later callbacks carry.

use serde_json::json;
use slip_proto::callback::Event;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::*;

#[tokio::test]
async fn default_metadata_then_set_metadata_comes_back() {
    let backend = Backend::start(|request| {
        let mut out = Vec::new();
        for event in &request.events {
            match event {
                Event::Open { connection_id } => out.push(json!({"type": "ACCEPT", "connectionId": connection_id})),
                Event::Text { connection_id, data } if data == "login" => out
                    .push(json!({"type": "SET_METADATA", "connectionId": connection_id, "metadata": {"user": "ann"}})),
                Event::Text { connection_id, data } if data == "logout" => {
                    out.push(json!({"type": "SET_METADATA", "connectionId": connection_id, "metadata": null}))
                }
                _ => {}
            }
        }
        Reply::commands(out)
    })
    .await;
    let gateway = Gateway::start(&backend.url).await;
    let mut request = format!("{}/room/7?name=ann&x=1", gateway.ws).into_client_request().unwrap();
    request.headers_mut().insert("x-custom", "hello".parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut client = Client { ws };
    let id = nth_open(&backend, 0).await;

    let open = &backend.seen()[0];
    assert_eq!(open.connection_id, id);
    assert_eq!(open.metadata["headers"]["x-custom"], "hello");
    assert_eq!(open.metadata["ip"], "127.0.0.1");
    assert_eq!(open.metadata["path"], "/room/7");
    assert_eq!(open.metadata["query"], "name=ann&x=1");

    client.send("login").await;
    client.send("after login").await;
    backend
        .wait_until("the text after login", |seen| {
            seen.iter().any(|r| r.events.iter().any(|e| matches!(e, Event::Text { data, .. } if data == "after login")))
        })
        .await;
    let after = backend
        .seen()
        .into_iter()
        .find(|r| r.events.iter().any(|e| matches!(e, Event::Text { data, .. } if data == "after login")))
        .unwrap();
    assert_eq!(after.metadata, json!({"user": "ann"}));

    // The control plane sees the same metadata.
    let mut grpc = gateway.grpc().await;
    let info = grpc
        .get_connection(slip_proto::pb::GetConnectionRequest { connection_id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&info.metadata_json).unwrap(), json!({"user": "ann"}));

    client.send("logout").await;
    client.send("after logout").await;
    backend
        .wait_until("the text after logout", |seen| {
            seen.iter()
                .any(|r| r.events.iter().any(|e| matches!(e, Event::Text { data, .. } if data == "after logout")))
        })
        .await;
    let last = backend.seen().pop().unwrap();
    assert_eq!(last.metadata, serde_json::Value::Null);

    // The CLOSE event carries the metadata the connection had.
    client.send("login").await;
    client.send("again").await;
    backend
        .wait_until("the text after the second login", |seen| {
            seen.iter().any(|r| r.events.iter().any(|e| matches!(e, Event::Text { data, .. } if data == "again")))
        })
        .await;
    drop(client);
    backend
        .wait_until("the CLOSE event", |seen| {
            seen.iter().any(|r| r.events.iter().any(|e| matches!(e, Event::Close { .. })))
        })
        .await;
    let close = backend.seen().into_iter().find(|r| r.events.iter().any(|e| matches!(e, Event::Close { .. }))).unwrap();
    assert_eq!(close.metadata, json!({"user": "ann"}));
}
