//! The SLIP v4 HTTP JSON control API.

use serde_json::{Value, json};

use crate::support::*;

fn subscribe_to(channel: &'static str) -> impl Fn(&slip_proto::callback::CallbackRequest) -> Reply {
    move |request| {
        let mut reply = accept_all(request);
        if let Some(slip_proto::callback::Event::Open { connection_id }) = request.events.first() {
            let commands = reply.body["events"].as_array_mut().unwrap();
            commands.push(json!({"type": "SUBSCRIBE", "connectionId": connection_id, "channel": channel}));
        }
        reply
    }
}

#[tokio::test]
async fn publish_send_and_errors() {
    let backend = Backend::start(subscribe_to("news")).await;
    let gateway = Gateway::start(&backend.url).await;
    let mut client = Client::connect(&gateway).await;
    let id = nth_open(&backend, 0).await;
    let token = control_token();

    let body = json!({"events": [
        {"type": "PUBLISH_TEXT", "channelId": "news", "data": "extra!"},
        {"type": "TEXT", "connectionId": id, "data": "just you"},
    ]});
    let (status, reply) = gateway.control_post(&token, &body.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&reply).unwrap(), json!({"message": "processed successfully"}));
    assert_eq!(client.texts(2).await, ["extra!", "just you"]);

    // A bad token is refused.
    let wrong = slip_proto::jwt::sign(b"not the secret", slip_proto::jwt::AUD_CONTROL_EVENT, slip_proto::jwt::now());
    let (status, reply) = gateway.control_post(&wrong, &body.to_string()).await;
    assert_eq!((status, reply.as_str()), (403, "Invalid token"));
    let callback_audience =
        slip_proto::jwt::sign(SECRET.as_bytes(), slip_proto::jwt::AUD_WEBSOCKET_EVENT, slip_proto::jwt::now());
    assert_eq!(gateway.control_post(&callback_audience, &body.to_string()).await.0, 403);

    // Bad JSON is a 400.
    let (status, reply) = gateway.control_post(&token, "{not json").await;
    assert_eq!(status, 400);
    assert_eq!(serde_json::from_str::<Value>(&reply).unwrap()["message"], "invalid commands");

    // An unknown type rejects the whole batch: the TEXT before it never runs.
    let mixed = json!({"events": [
        {"type": "TEXT", "connectionId": id, "data": "must not arrive"},
        {"type": "SHOUT", "connectionId": id},
    ]});
    let (status, _) = gateway.control_post(&token, &mixed.to_string()).await;
    assert_eq!(status, 400);
    let marker = json!({"events": [{"type": "TEXT", "connectionId": id, "data": "marker"}]});
    assert_eq!(gateway.control_post(&token, &marker.to_string()).await.0, 200);
    assert_eq!(client.text().await, "marker");
}

#[tokio::test]
async fn commands_run_in_order_and_poll_waits() {
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start(&backend.url).await;
    let mut client = Client::connect(&gateway).await;
    let id = nth_open(&backend, 0).await;
    let token = control_token();

    let body = json!({"events": [
        {"type": "POLL_FOR_CONNECTION", "connectionId": id, "timeout": 1000},
        {"type": "SUBSCRIBE", "connectionId": id, "channel": "a"},
        {"type": "PUBLISH_TEXT", "channelId": "a", "data": "one"},
        {"type": "UNSUBSCRIBE", "connectionId": id, "channel": "a"},
        {"type": "PUBLISH_TEXT", "channelId": "a", "data": "not for you"},
        {"type": "TEXT", "connectionId": id, "data": "two"},
        {"type": "CLOSE", "connectionId": id},
    ]});
    assert_eq!(gateway.control_post(&token, &body.to_string()).await.0, 200);
    assert_eq!(client.texts(2).await, ["one", "two"]);
    assert_eq!(client.close_code().await, 1000);

    // Commands for a connection that is gone are skipped, not an error.
    let gone = json!({"events": [{"type": "TEXT", "connectionId": id, "data": "x"}]});
    assert_eq!(gateway.control_post(&token, &gone.to_string()).await.0, 200);
}

/// The URL the gateway prints for its control API, opened in a browser:
/// it says what it is and how it is called.
#[tokio::test]
async fn a_get_of_the_control_api_says_what_it_is() {
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start(&backend.url).await;
    let response = reqwest::get(format!("{}/", gateway.control)).await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let text = response.text().await.unwrap();
    assert!(text.contains("SLIP Sockets control API") && text.contains("Bearer"), "{text}");
}
