//! Parked `slip.v1` sessions are bounded: each holds its connection's slot
//! under `--max-connections`, and when the edge is full the oldest parked
//! session ends, with its CLOSE, to make room for a live connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use slip_proto::callback::Event;

use crate::sessions::{json_frame, session_client};
use crate::support::*;

/// Connect-and-drop cycles in the flood.
const CYCLES: usize = 20_000;
/// Cycles before the edge's size is taken: its slots all used once, its
/// runtime's threads and buffers as they stay.
const WARM_UP: usize = 2 * MAX_CONNECTIONS;
/// Clients cycling at once.
const CLIENTS: usize = 8;
const MAX_CONNECTIONS: usize = 100;

fn closes(backend: &Backend) -> usize {
    backend.seen().iter().flat_map(|r| r.events.iter()).filter(|e| matches!(e, Event::Close { .. })).count()
}

/// `cycles` slip.v1 connections, each gone after its session frame without
/// a close frame (so its session parks), `CLIENTS` at a time.
async fn connect_and_drop(gateway: &Gateway, cycles: usize) {
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, done) = (gateway.ws.clone(), done.clone());
            tokio::spawn(async move {
                while done.fetch_add(1, Ordering::AcqRel) < cycles {
                    let (mut client, _) = session_client(&url).await;
                    assert_eq!(json_frame(&mut client).await["type"], "session");
                    drop(client);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
}

#[tokio::test]
async fn a_flood_of_dropped_sessions_stays_within_max_connections_and_each_ended_one_is_closed() {
    let backend = Backend::start(accept_all).await;
    let max = MAX_CONNECTIONS.to_string();
    let gateway = Gateway::start_with(&backend.url, &["--max-connections", &max, "--resume-secs", "600"]).await;
    connect_and_drop(&gateway, WARM_UP).await;
    let warm = gateway.rss();
    connect_and_drop(&gateway, CYCLES).await;
    let opened = backend.opened().len();
    assert_eq!(opened, WARM_UP + CYCLES, "every connection was let in: the oldest parked made room");
    for _ in 0..600 {
        if closes(&backend) >= opened - MAX_CONNECTIONS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let closed = closes(&backend);
    assert!(
        opened - closed <= MAX_CONNECTIONS,
        "{opened} opened, {closed} closed: at most {MAX_CONNECTIONS} live or parked"
    );
    let grown = gateway.rss().saturating_sub(warm);
    assert!(grown < 5 << 20, "the edge grew {grown} bytes from {warm} over {CYCLES} parked sessions");
}

/// A client that resumes and drops in a loop leaves one deadline for its
/// session in the edge's expiry queue, not one per drop.
#[tokio::test]
async fn resuming_and_dropping_in_a_loop_leaves_one_deadline() {
    let backend = Backend::start(accept_all).await;
    let args = ["dev", "--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"];
    let extra = ["--target-url", &backend.url, "--jwt-secret", SECRET, "--resume-secs", "600"];
    let (_child, lines) = spawn_slip(&[&args[..], &extra[..]].concat(), &["WebSocket:", "Metrics:"]).await;
    let ws = lines[0].trim_end_matches('/').to_owned();
    let (mut client, _) = session_client(&ws).await;
    let mut token = json_frame(&mut client).await["session"].as_str().unwrap().to_owned();
    for _ in 0..300 {
        drop(client);
        let (mut back, _) = session_client(&format!("{ws}/?slip_resume={token}")).await;
        back.send(r#"{"type":"resume","seq":0,"channels":{}}"#).await;
        let session = json_frame(&mut back).await;
        assert_eq!(session["resumed"], true, "{session}");
        token = session["session"].as_str().unwrap().to_owned();
        client = back;
    }
    drop(client);
    // The last drop parks it once more: one deadline, whatever came before.
    wait_for_gauge(&lines[1], "slip_session_deadlines", 1.0).await;
}
