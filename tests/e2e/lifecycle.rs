//! Channel lifecycle events (docs/lifecycle.md) to a real HTTP backend:
//! CHANNEL_OCCUPIED once when a channel gets its first subscriber anywhere,
//! CHANNEL_VACATED once after its last one has been gone for
//! `SLIP_VACATE_SECS` (not at all when a client comes back within it), every
//! event with a unique id; a backend that answers 500 for a while gets them
//! later, the same ids; a channel's owner killed, the node taking over
//! sends its last event again, with its id.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde_json::Value;
use slip_proto::jwt;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::support::*;

/// Events as the backend got them (POSTs answered 2xx only); the first
/// `refuse` POSTs are answered 500.
#[derive(Clone, Default)]
struct Received {
    events: Arc<Mutex<Vec<Value>>>,
    refused: Arc<Mutex<usize>>,
    refuse: usize,
}

async fn take(State(received): State<Received>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(jwt::bearer);
    if token.is_none_or(|t| jwt::verify(t, SECRET.as_bytes(), jwt::AUD_WEBSOCKET_EVENT, jwt::now()).is_err()) {
        return StatusCode::FORBIDDEN;
    }
    {
        let mut refused = received.refused.lock();
        if *refused < received.refuse {
            *refused += 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    received.events.lock().extend(body["events"].as_array().cloned().unwrap_or_default());
    StatusCode::OK
}

/// An events backend on loopback; its URL and what it got.
async fn events_backend(refuse: usize) -> (String, Received) {
    let received = Received { refuse, ..Default::default() };
    let app = axum::Router::new().fallback(axum::routing::post(take)).with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/events"), received)
}

impl Received {
    /// (type, channel) of each event, repeats (same id) dropped, in order.
    fn distinct(&self) -> Vec<(String, String)> {
        let mut ids = HashSet::new();
        let events = self.events.lock();
        events
            .iter()
            .filter(|e| ids.insert(e["id"].as_str().unwrap_or_default().to_owned()))
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or_default().to_owned(),
                    e["channel"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    fn ids(&self) -> Vec<String> {
        self.events.lock().iter().map(|e| e["id"].as_str().unwrap_or_default().to_owned()).collect()
    }

    async fn wait_for(&self, n: usize) -> Vec<(String, String)> {
        let deadline = Instant::now() + PATIENCE * 2;
        loop {
            let distinct = self.distinct();
            if distinct.len() >= n {
                return distinct;
            }
            assert!(Instant::now() < deadline, "{n} events never came: {distinct:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn occupied(channel: &str) -> (String, String) {
    ("CHANNEL_OCCUPIED".into(), channel.into())
}

fn vacated(channel: &str) -> (String, String) {
    ("CHANNEL_VACATED".into(), channel.into())
}

#[tokio::test]
async fn occupied_once_vacated_once_and_a_reconnect_within_the_delay_is_neither() {
    let backend = Backend::start(chat).await;
    let (events_url, received) = events_backend(0).await;
    let gateway = Gateway::start_with(&backend.url, &["--events-url", &events_url, "--vacate-secs", "1"]).await;
    let mut ann = Client::connect(&gateway).await;
    assert_eq!(received.wait_for(1).await, [occupied("cool-channel")]);
    ann.text().await;
    let bob = Client::connect(&gateway).await;
    wait_for_subscribers(&gateway, "cool-channel", 2).await;
    drop(ann);
    drop(bob);
    assert_eq!(received.wait_for(2).await, [occupied("cool-channel"), vacated("cool-channel")]);

    // Back within the delay: no VACATED, no second OCCUPIED.
    let carl = Client::connect(&gateway).await;
    assert_eq!(received.wait_for(3).await[2], occupied("cool-channel"));
    drop(carl);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _dana = Client::connect(&gateway).await;
    wait_for_subscribers(&gateway, "cool-channel", 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(received.distinct().len(), 3, "{:?}", received.distinct());
    let ids = received.ids();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "every event once, each id its own: {ids:?}");
}

#[tokio::test]
async fn a_backend_that_refuses_for_a_while_gets_the_events_later_with_their_ids() {
    let backend = Backend::start(chat).await;
    let (events_url, received) = events_backend(3).await;
    let gateway = Gateway::start_with(&backend.url, &["--events-url", &events_url, "--vacate-secs", "1"]).await;
    let ann = Client::connect(&gateway).await;
    wait_for_subscribers(&gateway, "cool-channel", 1).await;
    drop(ann);
    assert_eq!(received.wait_for(2).await, [occupied("cool-channel"), vacated("cool-channel")]);
    assert_eq!(*received.refused.lock(), 3, "answered 500 three times, then taken");
}

#[tokio::test]
async fn the_node_taking_a_channel_over_sends_its_last_event_again_and_goes_on() {
    let backend = Backend::start(chat).await;
    let (events_url, received) = events_backend(0).await;
    let flags = ["--events-url", events_url.as_str(), "--vacate-secs", "1"];
    let mut cluster = Cluster::start_with(&backend.url, 3, 1, &flags).await;
    let client = Client::connect_url(&format!("{}/", cluster.edges[0].ws)).await;
    assert_eq!(received.wait_for(1).await, [occupied("cool-channel")]);
    let first = received.ids()[0].clone();
    let owner = cluster.wait_for_edges(0, "cool-channel", 1).await.owner;
    let dead: usize = owner.trim_start_matches("control-").parse().unwrap();
    cluster.kill_control(dead).await;
    // The new owner says it again, with the same id: nothing new for the backend.
    let deadline = Instant::now() + PATIENCE * 3;
    while received.ids().iter().filter(|id| **id == first).count() < 2 {
        assert!(Instant::now() < deadline, "the last event was not sent again: {:?}", received.ids());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(received.distinct(), [occupied("cool-channel")]);
    // And it goes on from there.
    drop(client);
    assert_eq!(received.wait_for(2).await, [occupied("cool-channel"), vacated("cool-channel")]);
}

#[tokio::test]
async fn a_session_parked_and_resumed_on_another_edge_never_vacates_its_channel() {
    let backend = Backend::start(chat).await;
    let (events_url, received) = events_backend(0).await;
    let flags = ["--events-url", events_url.as_str(), "--vacate-secs", "1"];
    let cluster = Cluster::start_with(&backend.url, 1, 2, &flags).await;
    let (mut client, _) = crate::sessions::session_client(&format!("{}/", cluster.edges[0].ws)).await;
    let first = crate::sessions::json_frame(&mut client).await;
    let token = first["session"].as_str().unwrap().to_owned();
    assert_eq!(received.wait_for(1).await, [occupied("cool-channel")]);
    // Parked longer than the delay: still subscribed, still occupied.
    drop(client);
    wait_for_gauge(&cluster.edges[0].metrics, "slip_session_deadlines", 1.0).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Resumed on the other edge: its old edge lets the channel go, the new one takes it.
    let (mut back, _) = crate::sessions::session_client(&format!("{}/?slip_resume={token}", cluster.edges[1].ws)).await;
    back.send(r#"{"type":"resume","seq":0,"channels":{}}"#).await;
    assert_eq!(crate::sessions::json_frame(&mut back).await["resumed"], true);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(received.distinct(), [occupied("cool-channel")], "neither parked nor moving vacated it");
    // It ends: vacated.
    back.ws.close(None).await.unwrap();
    assert_eq!(received.wait_for(2).await, [occupied("cool-channel"), vacated("cool-channel")]);
}
