//! Ordering: commands of the OPEN reply before anything else, and client
//! frames to the backend exactly once each, in order, batched while a
//! callback is in flight.

use std::time::Duration;

use serde_json::json;
use slip_proto::callback::Event;

use crate::support::*;

#[tokio::test]
async fn two_hundred_commands_in_the_open_reply_arrive_in_order() {
    let backend = Backend::start(|request| {
        let id = request.connection_id.clone();
        let mut commands = vec![json!({"type": "ACCEPT", "connectionId": id})];
        if matches!(request.events.first(), Some(Event::Open { .. })) {
            commands.extend((0..200).map(|i| json!({"type": "TEXT", "connectionId": id, "data": i.to_string()})));
        }
        Reply::commands(commands)
    })
    .await;
    let gateway = Gateway::start(&backend.url).await;
    let mut client = Client::connect(&gateway).await;
    let expected: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    assert_eq!(client.texts(200).await, expected);
}

#[tokio::test]
async fn three_hundred_rapid_frames_reach_the_backend_once_each_in_order() {
    // A backend slower than the client, so events pile up behind each request.
    let backend = Backend::start(|request| accept_all(request).after(Duration::from_millis(20))).await;
    let gateway = Gateway::start(&backend.url).await;
    let mut client = Client::connect(&gateway).await;
    let id = nth_open(&backend, 0).await;
    for i in 0..300 {
        client.send(&i.to_string()).await;
    }
    backend
        .wait_until("300 texts", |seen| {
            seen.iter().flat_map(|r| r.events.iter()).filter(|e| matches!(e, Event::Text { .. })).count() >= 300
        })
        .await;
    let texts: Vec<String> = backend
        .events_of(&id)
        .into_iter()
        .filter_map(|e| match e {
            Event::Text { data, .. } => Some(data),
            _ => None,
        })
        .collect();
    let expected: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    assert_eq!(texts, expected);
    // They were batched: far fewer requests than frames.
    let requests = backend.seen().iter().filter(|r| r.events.iter().any(|e| matches!(e, Event::Text { .. }))).count();
    assert!(requests < 300, "{requests} requests for 300 frames: nothing was batched");
    assert!(backend.seen().iter().all(|r| r.events.len() <= 64), "a batch exceeded its bound");
}

/// The original README's chat answers OPEN with ACCEPT, SUBSCRIBE,
/// PUBLISH_TEXT "New connection has joined!", TEXT "Welcome…": commands run
/// in order, so the newcomer hears its own announcement before its welcome.
#[tokio::test]
async fn a_reply_publish_reaches_local_subscribers_before_the_next_command() {
    let backend = Backend::start(chat).await;
    let gateway = Gateway::start(&backend.url).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut client = Client::connect(&gateway).await;
        assert_eq!(
            client.texts(2).await,
            ["New connection has joined!", "Welcome to the cool channel, be nice or get out"],
            "in the order the reply gave them"
        );
        clients.push(client);
    }
}
