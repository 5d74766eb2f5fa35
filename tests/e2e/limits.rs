//! Limits and bad input: each closes only the offending connection, with the
//! right code, while everyone else keeps receiving.

use futures_util::SinkExt;
use serde_json::json;
use slip_proto::pb::{PublishRequest, publish_request};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::support::*;

/// Accepts and subscribes everyone to "all".
fn everyone_in_all(request: &slip_proto::callback::CallbackRequest) -> Reply {
    let mut reply = accept_all(request);
    if let Some(slip_proto::callback::Event::Open { connection_id }) = request.events.first() {
        reply.body["events"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "SUBSCRIBE", "connectionId": connection_id, "channel": "all"}));
    }
    reply
}

async fn bystander_still_hears(gateway: &Gateway, bystander: &mut Client, text: &str) {
    // Its subscription (in the reply to its OPEN) reaches the channel's owner on its own time.
    wait_for_subscribers(gateway, "all", 1).await;
    let mut grpc = gateway.grpc().await;
    let request = PublishRequest {
        channel: "all".into(),
        message: Some(publish_request::Message::Text(text.into())),
        ..Default::default()
    };
    grpc.publish(request).await.unwrap();
    assert_eq!(bystander.text().await, text);
}

#[tokio::test]
async fn oversized_message_closes_with_1009() {
    let backend = Backend::start(everyone_in_all).await;
    let gateway = Gateway::start(&backend.url).await;
    let mut bystander = Client::connect(&gateway).await;
    let mut offender = Client::connect(&gateway).await;
    offender.send(&"x".repeat(128 * 1024 + 1)).await;
    assert_eq!(offender.close_code().await, 1009);
    bystander_still_hears(&gateway, &mut bystander, "still here").await;
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let backend = Backend::start(everyone_in_all).await;
    let gateway = Gateway::start(&backend.url).await;
    let mut bystander = Client::connect(&gateway).await;
    let mut offender = Client::connect(&gateway).await;
    let frame = Frame::message(vec![0xff, 0xfe, 0xfd], OpCode::Data(Data::Text), true);
    offender.ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(offender.close_code().await, 1007);
    bystander_still_hears(&gateway, &mut bystander, "still here").await;
}

#[tokio::test]
async fn binary_without_opt_in_closes_with_1003() {
    let backend = Backend::start(everyone_in_all).await;
    let gateway = Gateway::start(&backend.url).await;
    let mut bystander = Client::connect(&gateway).await;
    let mut offender = Client::connect(&gateway).await;
    offender.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(offender.close_code().await, 1003);
    bystander_still_hears(&gateway, &mut bystander, "still here").await;
    // The backend never saw a BINARY event it did not ask for.
    assert!(
        backend
            .seen()
            .iter()
            .flat_map(|r| r.events.iter())
            .all(|e| !matches!(e, slip_proto::callback::Event::Binary { .. }))
    );
}

#[tokio::test]
async fn binary_with_opt_in_reaches_the_backend_as_base64() {
    let backend = Backend::start(everyone_in_all).await;
    let gateway = Gateway::start_with(&backend.url, &["--target-binary"]).await;
    let mut client = Client::connect(&gateway).await;
    client.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    backend
        .wait_until("a BINARY event", |seen| {
            seen.iter()
                .flat_map(|r| r.events.iter())
                .any(|e| matches!(e, slip_proto::callback::Event::Binary { data, .. } if data == "AQID"))
        })
        .await;
}

#[tokio::test]
async fn slow_consumer_is_closed_with_1013_and_others_keep_receiving() {
    let backend = Backend::start(everyone_in_all).await;
    let gateway = Gateway::start_with(&backend.url, &["--outbox-max-bytes", "1048576"]).await;
    let mut fast = Client::connect(&gateway).await;
    // Never read from this one until the end: its kernel buffers fill, then its outbox.
    let mut slow = Client::connect(&gateway).await;
    let mut grpc = gateway.grpc().await;
    let payload = "p".repeat(64 * 1024);
    for i in 0..400 {
        let text = format!("{i}:{payload}");
        let request = PublishRequest {
            channel: "all".into(),
            message: Some(publish_request::Message::Text(text.clone())),
            ..Default::default()
        };
        grpc.publish(request).await.unwrap();
        assert_eq!(fast.text().await, text, "the fast client missed publish {i}");
    }
    assert_eq!(slow.close_code().await, 1013);
    bystander_still_hears(&gateway, &mut fast, "after").await;
}

#[tokio::test]
async fn a_client_over_its_message_rate_closes_with_1008() {
    let backend = Backend::start(everyone_in_all).await;
    let gateway = Gateway::start_with(&backend.url, &["--message-rate", "5", "--message-burst", "10"]).await;
    let mut bystander = Client::connect(&gateway).await;
    let mut flooder = Client::connect(&gateway).await;
    for i in 0..50 {
        // The socket may already be closing under us: later sends can fail.
        if flooder.ws.send(Message::text(i.to_string())).await.is_err() {
            break;
        }
    }
    assert_eq!(flooder.close_code().await, 1008);
    bystander_still_hears(&gateway, &mut bystander, "still here").await;
    // Only the burst reached the backend.
    let texts = backend
        .seen()
        .iter()
        .flat_map(|r| r.events.iter())
        .filter(|e| matches!(e, slip_proto::callback::Event::Text { .. }))
        .count();
    assert!(texts <= 11, "{texts} messages got through a burst of 10");
}

/// Messages to clients are bounded by `--max-outbound-bytes` wherever they
/// enter: a callback reply's TEXT and a gRPC publish of 200 KiB pass under
/// a 256 KiB limit; over it, or under the default 128 KiB, they are refused.
#[tokio::test]
async fn messages_to_clients_are_bounded_by_the_outbound_limit() {
    const BIG: usize = 200 * 1024;
    let backend = Backend::start(|request| {
        let mut reply = everyone_in_all(request);
        if let Some(slip_proto::callback::Event::Text { data, .. }) = request.events.first()
            && data == "big please"
        {
            let text = json!({"type": "TEXT", "connectionId": request.connection_id, "data": "y".repeat(BIG)});
            reply.body["events"].as_array_mut().unwrap().push(text);
        }
        reply
    })
    .await;
    let big = |n: usize| PublishRequest {
        channel: "all".into(),
        message: Some(publish_request::Message::Text("x".repeat(n))),
        ..Default::default()
    };

    let roomy = Gateway::start_with(&backend.url, &["--max-outbound-bytes", "262144"]).await;
    let mut client = Client::connect(&roomy).await;
    wait_for_subscribers(&roomy, "all", 1).await;
    roomy.grpc().await.publish(big(BIG)).await.unwrap();
    assert_eq!(client.text().await.len(), BIG, "a publish over 128 KiB");
    client.send("big please").await;
    assert_eq!(client.text().await.len(), BIG, "a callback reply's TEXT over 128 KiB");
    let over = roomy.grpc().await.publish(big(300 * 1024)).await.unwrap_err();
    assert_eq!(over.code(), tonic::Code::InvalidArgument);

    let default = Gateway::start(&backend.url).await;
    let status = default.grpc().await.publish(big(BIG)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
}
