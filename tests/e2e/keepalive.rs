//! Server pings keep live clients connected; a client that answers nothing
//! is dropped and the backend hears CLOSE with 1006.

use std::time::Duration;

use futures_util::StreamExt;
use slip_proto::callback::Event;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

#[tokio::test]
async fn pings_keep_readers_alive_and_silent_peers_are_dropped() {
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start_with(&backend.url, &["--ping-interval-secs", "1", "--dead-peer-secs", "3"]).await;
    let mut live = Client::connect(&gateway).await;
    // Never polled, so it never answers a ping.
    let _silent = Client::connect(&gateway).await;
    let live_id = nth_open(&backend, 0).await;
    let silent_id = nth_open(&backend, 1).await;

    // The live client sees pings (its library answers them) for longer than the dead-peer timeout.
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(message)) = tokio::time::timeout_at(until, live.ws.next()).await {
        match message.unwrap() {
            Message::Ping(_) => pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 2, "saw {pings} pings");

    backend
        .wait_until("CLOSE 1006 for the silent client", |seen| {
            seen.iter().flat_map(|r| r.events.iter()).any(
                |e| matches!(e, Event::Close { connection_id, code: Some(1006), .. } if *connection_id == silent_id),
            )
        })
        .await;
    assert!(backend.events_of(&live_id).iter().all(|e| !matches!(e, Event::Close { .. })));
}
