//! Questions this node asked other nodes (queries, confirmed commands,
//! publishes awaiting their owner's confirmation), each waiting for the
//! `Reply` with its id. Bounded; an unanswered question is forgotten by
//! whoever asked it, after its deadline, or at once when the node asked
//! leaves: nobody waits out a deadline for a node known to be gone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use slip_proto::link_pb::{Reply, reply};
use tokio::sync::oneshot;

/// Questions awaiting an answer, at most.
pub const MAX_PENDING_QUERIES: usize = 65_536;

pub struct Questions {
    pending: Mutex<HashMap<u64, Waiter>>,
    next: AtomicU64,
}

struct Waiter {
    answer: oneshot::Sender<reply::Kind>,
    /// The node asked, once the question is on its way.
    asked: Option<String>,
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
        let (answer, rx) = oneshot::channel();
        pending.insert(id, Waiter { answer, asked: None });
        Some((id, rx))
    }

    /// Question `id` went to `node`.
    pub fn asked(&self, id: u64, node: &str) {
        if let Some(waiter) = self.pending.lock().get_mut(&id) {
            waiter.asked = Some(node.to_owned());
        }
    }

    /// `node` is gone: its questions end now, unanswered (the askers see
    /// the answer's sender dropped).
    pub fn node_gone(&self, node: &str) {
        self.pending.lock().retain(|_, waiter| waiter.asked.as_deref() != Some(node));
    }

    /// Hands a reply to whoever waits for it here.
    pub fn resolve(&self, reply: Reply) {
        let waiter = self.pending.lock().remove(&reply.id);
        if let (Some(waiter), Some(kind)) = (waiter, reply.kind) {
            let _ = waiter.answer.send(kind);
        }
    }

    /// The asker stopped waiting.
    pub fn forget(&self, id: u64) {
        self.pending.lock().remove(&id);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn questions_to_a_node_that_left_end_at_once_and_others_wait_on() {
        let questions = Questions::default();
        let (gone, mut gone_answer) = questions.expect().unwrap();
        let (kept, mut kept_answer) = questions.expect().unwrap();
        questions.asked(gone, "c-1");
        questions.asked(kept, "c-2");
        questions.node_gone("c-1");
        assert!(matches!(gone_answer.try_recv(), Err(oneshot::error::TryRecvError::Closed)));
        assert!(matches!(kept_answer.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
        questions.resolve(Reply { id: kept, kind: Some(reply::Kind::Found(true)) });
        assert_eq!(kept_answer.try_recv().unwrap(), reply::Kind::Found(true));
    }
}
