//! The CLOSE a backend can count on (docs/close.md), with real processes:
//! an edge holding 1,000 accepted connections, plain ones and `slip.v1`
//! sessions, is killed (SIGKILL: it sends nothing more); the control nodes
//! owning the connections' ids send every CLOSE it could not, each once,
//! named by its `eventId`: plain ones once the edge's loss is certain,
//! sessions once their resume window passed. The same when a control node
//! keeping records dies with the edge (its replicas take over), and across
//! a drain nothing is closed twice.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use slip_proto::callback::Event;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::sessions::session_client;
use crate::support::*;

const PLAIN: usize = 800;
const SESSIONS: usize = 200;

/// CLOSE events per connection id, as the backend got them, and their eventIds.
fn closes(backend: &Backend) -> HashMap<String, Vec<Option<String>>> {
    let mut by_id: HashMap<String, Vec<Option<String>>> = HashMap::new();
    for request in backend.seen() {
        for event in request.events {
            if let Event::Close { connection_id, event_id, .. } = event {
                by_id.entry(connection_id).or_default().push(event_id);
            }
        }
    }
    by_id
}

/// Opens `PLAIN` plain connections and `SESSIONS` sessions on `ws`; returns them (to keep) and their ids.
async fn open_many(backend: &Backend, ws: &str) -> (Vec<Client>, HashSet<String>) {
    let mut clients = Vec::new();
    for chunk in 0..(PLAIN + SESSIONS) / 50 {
        let opened = (0..50).map(|i| async move {
            if chunk * 50 + i < PLAIN {
                Client::connect_url(&format!("{ws}/")).await
            } else {
                session_client(&format!("{ws}/")).await.0
            }
        });
        clients.extend(futures_util::future::join_all(opened).await);
    }
    backend
        .wait_until("every OPEN", |seen| {
            seen.iter().flat_map(|r| &r.events).filter(|e| matches!(e, Event::Open { .. })).count() >= PLAIN + SESSIONS
        })
        .await;
    (clients, backend.opened().into_iter().collect())
}

/// Waits until every one of `ids` has a CLOSE, then a little more; returns what came.
async fn wait_for_closes(backend: &Backend, ids: &HashSet<String>) -> HashMap<String, Vec<Option<String>>> {
    let deadline = Instant::now() + PATIENCE * 4;
    loop {
        let got = closes(backend);
        if ids.iter().all(|id| got.contains_key(id)) {
            // Anything doubled would come now.
            tokio::time::sleep(Duration::from_secs(2)).await;
            return closes(backend);
        }
        let missing = ids.iter().filter(|id| !got.contains_key(*id)).count();
        assert!(Instant::now() < deadline, "{missing} of {} connections never got a CLOSE", ids.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each connection's CLOSE once, with its eventId, and nothing for any other.
fn exactly_once(got: &HashMap<String, Vec<Option<String>>>, ids: &HashSet<String>) {
    assert_eq!(
        got.keys().collect::<HashSet<_>>(),
        ids.iter().collect::<HashSet<_>>(),
        "a CLOSE for each, for no other"
    );
    for (id, events) in got {
        assert_eq!(events, &[Some(format!("close:{id}"))], "{id}: exactly one CLOSE, named");
    }
}

async fn killed_edge(kill_a_control_node_too: bool) {
    let backend = Backend::start(accept_all).await;
    // Control nodes keep a session of a lost edge for 3 s.
    let mut cluster = Cluster::start_with(&backend.url, 3, 2, &["--resume-secs", "3"]).await;
    let (clients, ids) = open_many(&backend, &cluster.edges[0].ws).await;
    assert_eq!(ids.len(), PLAIN + SESSIONS);
    // Time for the records to reach their owners and replicas.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(closes(&backend).is_empty());
    cluster.kill_edge(0).await;
    if kill_a_control_node_too {
        cluster.kill_control(1).await;
    }
    drop(clients);
    let got = wait_for_closes(&backend, &ids).await;
    exactly_once(&got, &ids);
}

#[tokio::test]
async fn a_killed_edges_connections_each_get_one_close_from_the_control_nodes() {
    killed_edge(false).await;
}

#[tokio::test]
async fn the_closes_come_when_a_control_node_keeping_records_dies_with_the_edge() {
    killed_edge(true).await;
}

#[tokio::test]
async fn a_drained_edge_closes_nothing_twice() {
    let backend = Backend::start(accept_all).await;
    let mut cluster = Cluster::start_with(&backend.url, 2, 2, &["--resume-secs", "3"]).await;
    let (clients, ids) = open_many(&backend, &cluster.edges[0].ws).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.drain_edge(0).await;
    drop(clients);
    let got = wait_for_closes(&backend, &ids).await;
    exactly_once(&got, &ids);
}
