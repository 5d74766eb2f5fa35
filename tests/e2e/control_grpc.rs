//! The gRPC control API, through the generated client.

use serde_json::json;
use slip_proto::pb::{
    CloseRequest, GetChannelRequest, GetConnectionRequest, PublishRequest, SendRequest, SubscriptionRequest,
    publish_request, send_request,
};
use tonic::Code;

use crate::support::*;

fn publish(channel: &str, text: &str) -> PublishRequest {
    PublishRequest {
        channel: channel.into(),
        message: Some(publish_request::Message::Text(text.into())),
        ..Default::default()
    }
}

fn send(id: &str, text: &str) -> SendRequest {
    SendRequest { connection_id: id.into(), message: Some(send_request::Message::Text(text.into())) }
}

#[tokio::test]
async fn every_unary_method_works() {
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start(&backend.url).await;
    let mut client = Client::connect(&gateway).await;
    let id = nth_open(&backend, 0).await;
    let mut grpc = gateway.grpc().await;

    grpc.subscribe(SubscriptionRequest { connection_id: id.clone(), channel: "scores".into(), ..Default::default() })
        .await
        .unwrap();
    let published = grpc.publish(publish("scores", "1-0")).await.unwrap().into_inner();
    assert_eq!((published.offset, published.edges), (1, 1));
    assert_eq!(client.text().await, "1-0");
    assert_eq!(grpc.publish(publish("scores", "2-0")).await.unwrap().into_inner().offset, 2);
    assert_eq!(client.text().await, "2-0");

    grpc.send(send(&id, "direct")).await.unwrap();
    assert_eq!(client.text().await, "direct");

    let info = grpc.get_connection(GetConnectionRequest { connection_id: id.clone() }).await.unwrap().into_inner();
    assert_eq!(info.channels, ["scores"]);
    assert_eq!(id.split('.').next(), Some(info.edge.as_str()));
    let metadata: serde_json::Value = serde_json::from_str(&info.metadata_json).unwrap();
    assert_eq!(metadata["ip"], "127.0.0.1");

    let channel = grpc.get_channel(GetChannelRequest { channel: "scores".into() }).await.unwrap().into_inner();
    assert_eq!((channel.subscribers, channel.edges, channel.last_offset), (1, 1, 2));

    grpc.set_metadata(slip_proto::pb::SetMetadataRequest {
        connection_id: id.clone(),
        metadata_json: json!({"a": 1}).to_string(),
    })
    .await
    .unwrap();
    let info = grpc.get_connection(GetConnectionRequest { connection_id: id.clone() }).await.unwrap().into_inner();
    assert_eq!(info.metadata_json, r#"{"a":1}"#);

    grpc.unsubscribe(SubscriptionRequest { connection_id: id.clone(), channel: "scores".into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(grpc.publish(publish("scores", "3-0")).await.unwrap().into_inner().edges, 0);

    grpc.close(CloseRequest { connection_id: id.clone(), code: 4000, reason: "bye".into() }).await.unwrap();
    assert_eq!(client.close_code().await, 4000);
    backend
        .wait_until("the CLOSE event", |seen| {
            seen.iter().flat_map(|r| r.events.iter()).any(|e| {
                matches!(e, slip_proto::callback::Event::Close { code: Some(4000), reason: Some(r), .. } if r == "bye")
            })
        })
        .await;
}

#[tokio::test]
async fn errors_have_the_right_status_codes() {
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start(&backend.url).await;
    let _client = Client::connect(&gateway).await;
    let id = nth_open(&backend, 0).await;

    let mut anonymous = gateway.grpc_without_token().await;
    let denied = anonymous.publish(publish("x", "y")).await.unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated);

    let mut grpc = gateway.grpc().await;
    assert_eq!(grpc.publish(publish("", "y")).await.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(grpc.send(send("not-an-id", "y")).await.unwrap_err().code(), Code::InvalidArgument);
    let (edge, _) = id.split_once('.').unwrap();
    let missing = format!("{edge}.00000000000000000000");
    assert_eq!(grpc.send(send(&missing, "y")).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(
        grpc.get_connection(GetConnectionRequest { connection_id: missing }).await.unwrap_err().code(),
        Code::NotFound
    );
    let elsewhere = "nosuchedge.00000000000000000000".to_string();
    assert_eq!(grpc.send(send(&elsewhere, "y")).await.unwrap_err().code(), Code::Unavailable);
    let bad_code = CloseRequest { connection_id: id, code: 1005, reason: String::new() };
    assert_eq!(grpc.close(bad_code).await.unwrap_err().code(), Code::InvalidArgument);
}

#[tokio::test]
async fn streaming_publish_delivers_in_order() {
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start(&backend.url).await;
    let mut client = Client::connect(&gateway).await;
    let id = nth_open(&backend, 0).await;
    let mut grpc = gateway.grpc().await;
    grpc.subscribe(SubscriptionRequest { connection_id: id, channel: "feed".into(), ..Default::default() })
        .await
        .unwrap();

    let requests: Vec<PublishRequest> = (0..100).map(|i| publish("feed", &i.to_string())).collect();
    let reply = grpc.publish_stream(futures_util::stream::iter(requests)).await.unwrap().into_inner();
    assert_eq!(reply.published, 100);
    let expected: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    assert_eq!(client.texts(100).await, expected);
}
