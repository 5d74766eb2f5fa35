//! Questions this node asked other nodes (queries, confirmed commands), each
//! waiting for the `Reply` with its id. Bounded; an unanswered question is
//! forgotten by whoever asked it, after its deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use slip_proto::link_pb::{Reply, reply};
use tokio::sync::oneshot;

/// Questions awaiting an answer, at most.
pub const MAX_PENDING_QUERIES: usize = 65_536;

pub struct Questions {
    pending: Mutex<HashMap<u64, oneshot::Sender<reply::Kind>>>,
    next: AtomicU64,
}

impl Default for Questions {
    fn default() -> Self {
        Self { pending: Mutex::new(HashMap::new()), next: AtomicU64::new(1) }
    }
}

impl Questions {
    /// A new question's id and where its answer arrives; `None` when
    /// [`MAX_PENDING_QUERIES`] are already waiting.
    pub fn expect(&self) -> Option<(u64, oneshot::Receiver<reply::Kind>)> {
        let mut pending = self.pending.lock();
        if pending.len() >= MAX_PENDING_QUERIES {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        pending.insert(id, tx);
        Some((id, rx))
    }

    /// Hands a reply to whoever waits for it here.
    pub fn resolve(&self, reply: Reply) {
        let waiter = self.pending.lock().remove(&reply.id);
        if let (Some(waiter), Some(kind)) = (waiter, reply.kind) {
            let _ = waiter.send(kind);
        }
    }

    /// The asker stopped waiting.
    pub fn forget(&self, id: u64) {
        self.pending.lock().remove(&id);
    }
}
