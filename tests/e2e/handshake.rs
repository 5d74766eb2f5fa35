//! The OPEN callback decides the handshake; only ACCEPT yields a 101.

use std::time::Duration;

use serde_json::json;
use slip_proto::callback::Event;
use tonic::Code;

use crate::support::*;

/// Accepts connections to "/watch", refuses all others while trying to run
/// commands that must not run.
fn refuse_unless_watcher(request: &slip_proto::callback::CallbackRequest) -> Reply {
    let Some(Event::Open { connection_id }) = request.events.first() else {
        return Reply::commands(vec![]);
    };
    if request.metadata["path"] == "/watch" {
        return Reply::commands(vec![
            json!({"type": "ACCEPT", "connectionId": connection_id}),
            json!({"type": "SUBSCRIBE", "connectionId": connection_id, "channel": "watch"}),
        ]);
    }
    Reply::commands(vec![
        json!({"type": "SUBSCRIBE", "connectionId": connection_id, "channel": "leak"}),
        json!({"type": "PUBLISH_TEXT", "channelId": "watch", "data": "must not run"}),
        json!({"type": "TEXT", "connectionId": connection_id, "data": "must not run"}),
    ])
}

#[tokio::test]
async fn refusal_never_yields_101_and_runs_nothing() {
    let backend = Backend::start(refuse_unless_watcher).await;
    let gateway = Gateway::start(&backend.url).await;
    let mut watcher = Client::connect_path(&gateway, "/watch").await;

    assert_eq!(Client::refused_status(&gateway).await, 403);

    let refused = nth_open(&backend, 1).await;
    let mut grpc = gateway.grpc().await;
    let channel = grpc.get_channel(slip_proto::pb::GetChannelRequest { channel: "leak".into() }).await.unwrap();
    assert_eq!(channel.into_inner().subscribers, 0);
    let gone =
        grpc.get_connection(slip_proto::pb::GetConnectionRequest { connection_id: refused.clone() }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    watcher.silent_for(Duration::from_millis(300)).await;
    // A refused connection never opened, so the backend hears no CLOSE for it.
    assert!(backend.events_of(&refused).iter().all(|e| !matches!(e, Event::Close { .. })));
}

#[tokio::test]
async fn a_command_for_the_connection_before_accept_refuses_it() {
    let backend = Backend::start(|request| {
        let id = request.connection_id.clone();
        Reply::commands(vec![
            json!({"type": "TEXT", "connectionId": id, "data": "too early"}),
            json!({"type": "ACCEPT", "connectionId": id}),
        ])
    })
    .await;
    let gateway = Gateway::start(&backend.url).await;
    assert_eq!(Client::refused_status(&gateway).await, 403);
}

#[tokio::test]
async fn backend_down_is_502_and_nothing_leaks() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("http://{}/callback", closed.local_addr().unwrap());
    drop(closed);
    let gateway = Gateway::start(&target).await;
    assert_eq!(Client::refused_status(&gateway).await, 502);
    assert_eq!(Client::refused_status(&gateway).await, 502);
}

#[tokio::test]
async fn backend_error_and_bad_reply_are_502() {
    let backend = Backend::start(|request| {
        if request.metadata["path"] == "/garbage" {
            Reply { status: 200, body: json!({"events": [{"type": "NOPE"}]}), delay: Duration::ZERO }
        } else {
            Reply::status(500)
        }
    })
    .await;
    let gateway = Gateway::start(&backend.url).await;
    assert_eq!(Client::refused_status(&gateway).await, 502);
    let garbage = tokio_tungstenite::connect_async(format!("{}/garbage", gateway.ws)).await;
    match garbage {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 502),
        other => panic!("expected 502, got {other:?}"),
    }
}

#[tokio::test]
async fn backend_timeout_is_504() {
    let backend = Backend::start(|request| accept_all(request).after(Duration::from_secs(3))).await;
    let gateway = Gateway::start_with(&backend.url, &["--callback-timeout-ms", "300"]).await;
    assert_eq!(Client::refused_status(&gateway).await, 504);
}

#[tokio::test]
async fn accept_can_choose_a_subprotocol() {
    let backend = Backend::start(|request| {
        let id = request.connection_id.clone();
        Reply::commands(vec![json!({"type": "ACCEPT", "connectionId": id, "protocol": "chat.v2"})])
    })
    .await;
    let gateway = Gateway::start(&backend.url).await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("{}/", gateway.ws).into_client_request().unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "chat.v1, chat.v2".parse().unwrap());
    let (_ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat.v2");
}

#[tokio::test]
async fn plain_http_gets_health_and_426() {
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start(&backend.url).await;
    let http = gateway.ws.replace("ws://", "http://");
    let health = reqwest::get(format!("{http}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let other = reqwest::get(format!("{http}/anything")).await.unwrap();
    assert_eq!(other.status(), 426);
    assert!(backend.seen().is_empty());
}
