//! Publishes the edge waits to see delivered before it runs what a reply
//! asked for next.
//!
//! A reply's commands run in order (DESIGN §3): after `PUBLISH_TEXT` then
//! `TEXT` to a subscriber here, that subscriber gets the publish first. The
//! publish travels to the channel's owner and back, the `TEXT` would not, so
//! the edge sends the publish with an `ack` and waits until the owner's
//! `Deliver` carrying it has been fanned out here (or, when this edge has no
//! subscriber of the channel, until the owner's `Reply`), at most
//! [`CONFIRM_TIMEOUT`]; only then does the next command run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// Longest a reply's next command waits for a publish before it to come back.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// Publishes awaiting their confirmation at most; past it, publishes go out
/// unconfirmed rather than grow the table.
pub const MAX_WAITING: usize = 65_536;

#[derive(Default)]
pub struct Confirmations {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<()>>>,
}

impl Confirmations {
    /// A fresh ack id and what resolves when it comes back; `None` when full.
    pub fn expect(&self) -> Option<(u64, oneshot::Receiver<()>)> {
        let mut waiting = self.waiting.lock();
        if waiting.len() >= MAX_WAITING {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        waiting.insert(id, tx);
        Some((id, rx))
    }

    /// The ack `id` came back.
    pub fn confirm(&self, id: u64) {
        if let Some(waiter) = self.waiting.lock().remove(&id) {
            let _ = waiter.send(());
        }
    }

    /// Waits for `id`'s confirmation, at most [`CONFIRM_TIMEOUT`]; forgets it after.
    pub async fn wait(&self, id: u64, confirmed: oneshot::Receiver<()>) {
        if tokio::time::timeout(CONFIRM_TIMEOUT, confirmed).await.is_err() {
            tracing::debug!(ack = id, "publish not confirmed in time; going on");
        }
        self.waiting.lock().remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_confirmation_releases_its_waiter_once() {
        let confirmations = Confirmations::default();
        let (a, a_rx) = confirmations.expect().unwrap();
        let (b, _b_rx) = confirmations.expect().unwrap();
        assert_ne!(a, b);
        confirmations.confirm(a);
        confirmations.confirm(a);
        confirmations.wait(a, a_rx).await;
        assert_eq!(confirmations.waiting.lock().len(), 1, "b still waits");
        confirmations.confirm(99);
    }
}
