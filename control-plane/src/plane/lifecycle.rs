//! Channel lifecycle events to the backend (`SLIP_EVENTS_URL`): one task
//! takes what the routing decided, in batches, and POSTs each batch until
//! the backend answers 2xx, waiting longer after each failure. At least
//! once: a batch is retried whole, and each event's id lets the backend
//! drop what it already has.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use slip_proto::jwt::{AUD_WEBSOCKET_EVENT, Signer};

use super::ControlPlane;
use crate::occupancy::LifecycleEvent;

/// Events in one POST, at most.
pub const MAX_EVENTS_PER_POST: usize = 100;
/// One POST's limit, connection included.
pub const EVENTS_POST_TIMEOUT: Duration = Duration::from_secs(10);
/// First wait after a failed POST; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// The sender looks for events at least this often (a wake-up may be missed
/// by a change no one announced; never by much).
const IDLE_LOOK: Duration = Duration::from_secs(1);

impl ControlPlane {
    /// Decides channel lifecycle events from now on (CHANNEL_VACATED
    /// `vacate_after` the last subscriber) and POSTs them to `url`, signed
    /// as callbacks are.
    pub fn send_lifecycle_events(self: &Arc<Self>, url: String, secret: &[u8], vacate_after: Duration) {
        self.routing.lock().enable_lifecycle(vacate_after);
        let signer = Signer::new(secret, AUD_WEBSOCKET_EVENT);
        let http = match reqwest::Client::builder().timeout(EVENTS_POST_TIMEOUT).build() {
            Ok(http) => http,
            Err(e) => {
                tracing::error!(error = %e, "no HTTP client for lifecycle events");
                return;
            }
        };
        let (weak, wake) = (Arc::downgrade(self), self.lifecycle_wake.clone());
        self.tasks.spawn(self.shutdown.clone().run_until_cancelled_owned(async move {
            let (mut batch, mut wait) = (Vec::new(), RETRY_FIRST);
            loop {
                if batch.is_empty() {
                    let Some(plane) = weak.upgrade() else { return };
                    batch = plane.routing.lock().take_lifecycle(MAX_EVENTS_PER_POST);
                    drop(plane);
                    if batch.is_empty() {
                        tokio::select! {
                            _ = wake.notified() => {}
                            _ = tokio::time::sleep(IDLE_LOOK) => {}
                        }
                        continue;
                    }
                }
                let metrics = slip_metrics::metrics();
                match post(&http, &url, &signer, &batch).await {
                    Ok(()) => {
                        metrics.lifecycle_events.get_or_create(&slip_metrics::kind("sent")).inc_by(batch.len() as u64);
                        batch.clear();
                        wait = RETRY_FIRST;
                    }
                    Err(e) => {
                        metrics.lifecycle_events.get_or_create(&slip_metrics::kind("failed")).inc();
                        tracing::warn!(url, events = batch.len(), error = e, retry_in = ?wait, "lifecycle events not taken");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(RETRY_MAX);
                    }
                }
            }
        }));
    }

    /// Wakes the sender if events wait (called with the routing after a change).
    pub(super) fn lifecycle_poke(&self, waiting: bool) {
        if waiting {
            self.lifecycle_wake.notify_one();
        }
    }
}

/// `{"events":[{"id","type","channel","at"}]}`, with a callback token.
async fn post(http: &reqwest::Client, url: &str, signer: &Signer, events: &[LifecycleEvent]) -> Result<(), String> {
    let events: Vec<_> = events
        .iter()
        .map(|e| json!({"id": e.id, "type": e.kind.as_str(), "channel": e.channel, "at": e.at_ms}))
        .collect();
    let token = signer.token(slip_proto::jwt::now());
    let response = http
        .post(url)
        .bearer_auth(&*token)
        .json(&json!({ "events": events }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if status.is_success() { Ok(()) } else { Err(format!("the backend answered {status}")) }
}
