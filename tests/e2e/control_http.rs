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
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["message"], "processed successfully");
    // Where the publish went in: the stream's epoch and its offset.
    let publishes = reply["publishes"].as_array().unwrap();
    assert_eq!(publishes.len(), 1, "{reply}");
    assert_eq!((&publishes[0]["channel"], &publishes[0]["offset"]), (&json!("news"), &json!(1)));
    let epoch = publishes[0]["epoch"].as_str().unwrap().to_owned();
    assert_eq!(client.texts(2).await, ["extra!", "just you"]);

    // A key seen before answers the first publish's place and is not delivered again;
    // a CLOSE_CHANNEL is no publication.
    let keyed = json!({"events": [
        {"type": "PUBLISH_TEXT", "channelId": "news", "data": "once", "idempotencyKey": "k1"},
        {"type": "PUBLISH_TEXT", "channelId": "news", "data": "once", "idempotencyKey": "k1"},
        {"type": "PUBLISH_BINARY", "channelId": "news", "data": "AQI="},
    ]});
    let (status, reply) = gateway.control_post(&token, &keyed.to_string()).await;
    assert_eq!(status, 200);
    let offsets: Vec<(String, u64)> = serde_json::from_str::<Value>(&reply).unwrap()["publishes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["epoch"].as_str().unwrap().to_owned(), p["offset"].as_u64().unwrap()))
        .collect();
    assert_eq!(offsets, [(epoch.clone(), 2), (epoch.clone(), 2), (epoch.clone(), 3)]);
    assert_eq!(client.text().await, "once");
    assert_eq!(client.binary().await, [1, 2]);

    // History over HTTP: what the stream holds after offset 1, binary as base64.
    let history: Value = reqwest::Client::new()
        .get(format!("{}/history?channel=news&sinceEpoch={epoch}&sinceOffset=1", gateway.control))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        history,
        json!({"channel": "news", "epoch": epoch, "topOffset": 3, "complete": true,
            "publications": [{"offset": 2, "text": "once"}, {"offset": 3, "binary": "AQI="}]})
    );
    let unauthorized = reqwest::get(format!("{}/history?channel=news", gateway.control)).await.unwrap();
    assert_eq!(unauthorized.status(), 403);
    let bad = reqwest::Client::new().get(format!("{}/history", gateway.control)).bearer_auth(&token).send();
    assert_eq!(bad.await.unwrap().status(), 400);

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
