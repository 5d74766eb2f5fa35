//! Graceful shutdown of an edge: refuse new connections, fail readiness,
//! close every socket with 1012 spread over most of the grace period (so
//! clients do not all reconnect elsewhere at once), then wait for their
//! CLOSE callbacks, all before the grace period ends. A `slip.v1` session
//! is parked instead, and its client resumes it on another edge, which
//! takes it over from this one while it still runs; one not resumed by the
//! end of the grace period ends then (its CLOSE goes to the backend).

use std::time::Duration;

use slip_proto::close::CloseCode;
use tokio::time::Instant;

use crate::node::Edge;

/// Close code for "the service is restarting; come back".
pub const RESTART_CODE: CloseCode = CloseCode::SERVICE_RESTART;
/// Share of the grace period over which closes are spread.
const SPREAD_SHARE: f64 = 0.6;
/// Share of the grace period after which we stop waiting for callbacks.
const WAIT_SHARE: f64 = 0.95;
/// Share of the grace period parked sessions have to be resumed elsewhere.
const SESSIONS_SHARE: f64 = 0.85;
/// How often a batch of connections is closed.
const TICK: Duration = Duration::from_millis(100);

/// What a drain did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub closed: usize,
    /// Connections still finishing when the grace period ran out.
    pub unfinished: usize,
}

pub async fn drain(edge: &Edge, grace: Duration) -> Drained {
    let started = Instant::now();
    edge.admission.start_draining();
    slip_metrics::metrics().draining.set(1);
    let ids = edge.hub.connection_ids();
    let ticks = (grace.mul_f64(SPREAD_SHARE).as_millis() / TICK.as_millis()).max(1) as usize;
    let per_tick = ids.len().div_ceil(ticks).max(1);
    tracing::info!(connections = ids.len(), ?grace, "draining");
    let mut closed = 0;
    for batch in ids.chunks(per_tick) {
        for id in batch {
            if edge.hub.close(id, RESTART_CODE, "service restart") {
                closed += 1;
            }
        }
        tokio::time::sleep(TICK).await;
    }
    // Woken by the last connection to finish, not polled.
    let deadline = started + grace.mul_f64(WAIT_SHARE);
    let _ = tokio::time::timeout_at(deadline, edge.admission.idle()).await;
    // Parked sessions wait for their clients to resume them elsewhere.
    let sessions_deadline = started + grace.mul_f64(SESSIONS_SHARE);
    while edge.parked_sessions() > 0 && Instant::now() < sessions_deadline {
        tokio::time::sleep(TICK).await;
    }
    let _ = tokio::time::timeout_at(deadline, edge.end_parked_sessions()).await;
    let drained = Drained { closed, unfinished: edge.admission.connected() };
    tracing::info!(closed = drained.closed, unfinished = drained.unfinished, elapsed = ?started.elapsed(), "drained");
    drained
}
