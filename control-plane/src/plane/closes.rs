//! The CLOSEs of a lost edge's connections (docs/close.md), sent by the
//! control node owning each connection's id: first it asks the other
//! control nodes whether any still links the edge (then the edge is not
//! lost, only cut off from this node, and the CLOSEs wait); then each
//! CLOSE goes to the connection's backend in the usual callback format,
//! retried with backoff until a 2xx or `SLIP_CLOSE_RETRY_SECS`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use slip_proto::callback::{CallbackRequest, Event};
use slip_proto::jwt::{AUD_WEBSOCKET_EVENT, Signer};
use slip_proto::link_pb::{EdgeLinked, query, reply};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::ControlPlane;
use crate::closes::Record;
use crate::routing::{EDGE_LOST_CODE, EDGE_LOST_REASON};

/// Default of `SLIP_CLOSE_RETRY_SECS`: how long a CLOSE is retried.
pub const DEFAULT_CLOSE_RETRY: Duration = Duration::from_secs(3600);
/// CLOSEs being POSTed at once.
pub const CLOSES_IN_FLIGHT: usize = 64;
/// One POST's limit, connection included.
const CLOSE_POST_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// The sender looks for CLOSEs at least this often.
const IDLE_LOOK: Duration = Duration::from_secs(1);

impl ControlPlane {
    /// Sends the CLOSEs that fall due here, retrying each for `retry_for`.
    pub fn send_closes(self: &Arc<Self>, secret: &[u8], retry_for: Duration) {
        let signer = Arc::new(Signer::new(secret, AUD_WEBSOCKET_EVENT));
        let http = match reqwest::Client::builder().timeout(CLOSE_POST_TIMEOUT).build() {
            Ok(http) => http,
            Err(e) => {
                tracing::error!(error = %e, "no HTTP client for CLOSEs");
                return;
            }
        };
        let (weak, wake) = (Arc::downgrade(self), self.closes_wake.clone());
        let in_flight = Arc::new(Semaphore::new(CLOSES_IN_FLIGHT));
        self.tasks.spawn(self.shutdown.clone().run_until_cancelled_owned(async move {
            loop {
                let Some(plane) = weak.upgrade() else { return };
                let batch = plane.routing.lock().take_closes(CLOSES_IN_FLIGHT);
                if batch.is_empty() {
                    drop(plane);
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_LOOK) => {}
                    }
                    continue;
                }
                let mut by_edge: HashMap<(String, u64), Vec<Record>> = HashMap::new();
                for record in batch {
                    by_edge.entry((record.edge.clone(), record.incarnation)).or_default().push(record);
                }
                for ((edge, incarnation), records) in by_edge {
                    if plane.linked_elsewhere(&edge, incarnation).await {
                        tracing::info!(
                            edge,
                            closes = records.len(),
                            "edge cut off from here but linked elsewhere: its CLOSEs wait"
                        );
                        slip_metrics::metrics()
                            .closes
                            .get_or_create(&slip_metrics::kind("deferred"))
                            .inc_by(records.len() as u64);
                        plane.routing.lock().closes_deferred(records, Instant::now());
                        continue;
                    }
                    tracing::info!(edge, closes = records.len(), "CLOSEs for the connections of a lost edge");
                    for record in records {
                        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
                        let (http, signer) = (http.clone(), signer.clone());
                        plane.tasks.spawn(async move {
                            send_close(&http, &signer, &record, retry_for).await;
                            drop(permit);
                        });
                    }
                }
            }
        }));
    }

    /// Whether another control node of the view links `edge` (this process of it).
    async fn linked_elsewhere(&self, edge: &str, incarnation: u64) -> bool {
        let others = self.routing.lock().other_controls();
        let mut asked = Vec::with_capacity(others.len());
        for node in others {
            let question = query::Kind::EdgeLinked(EdgeLinked { edge: edge.to_owned(), incarnation });
            asked.push(Box::pin(async move { self.ask_query(node.as_str(), question).await }));
        }
        let answers = futures_util::future::join_all(asked).await;
        answers.into_iter().any(|a| matches!(a, Ok(reply::Kind::Found(true))))
    }

    /// Wakes the CLOSE sender if CLOSEs wait (called with the routing after a change).
    pub(super) fn closes_poke(&self, waiting: bool) {
        if waiting {
            self.closes_wake.notify_one();
        }
    }
}

/// POSTs one CLOSE until the backend takes it or `retry_for` has passed.
async fn send_close(http: &reqwest::Client, signer: &Signer, record: &Record, retry_for: Duration) {
    let id = &record.connection_id;
    let metadata = serde_json::from_str(&record.metadata).unwrap_or(serde_json::Value::Null);
    let close = Event::close(id, Some(EDGE_LOST_CODE), Some(EDGE_LOST_REASON.to_owned()));
    let body = CallbackRequest { connection_id: id.clone(), metadata, events: vec![close] };
    let Ok(body) = serde_json::to_vec(&body) else { return };
    let (deadline, mut wait) = (Instant::now() + retry_for, RETRY_FIRST);
    let metrics = slip_metrics::metrics();
    loop {
        let token = signer.token(slip_proto::jwt::now());
        let sent = http
            .post(&*record.target_url)
            .bearer_auth(&*token)
            .header("content-type", "application/websocket-events")
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                metrics.closes.get_or_create(&slip_metrics::kind("sent")).inc();
                return;
            }
            Ok(response) => tracing::debug!(connection = id, status = %response.status(), "CLOSE not taken"),
            Err(e) => tracing::debug!(connection = id, error = %e, "CLOSE not sent"),
        }
        metrics.closes.get_or_create(&slip_metrics::kind("failed")).inc();
        if Instant::now() + wait > deadline {
            tracing::warn!(connection = id, "CLOSE given up after SLIP_CLOSE_RETRY_SECS");
            metrics.closes.get_or_create(&slip_metrics::kind("expired")).inc();
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
}
