//! Questions a node asks other nodes over its links, each waiting for the
//! `Reply` with its id: the one registry every node kind uses (a control
//! node's queries and publishes awaiting their owner, an edge's session
//! questions and the publishes a reply's next command waits for).
//!
//! Every question has a deadline its asker waits at most ([`Questions::wait`]),
//! and ends at once, unanswered, when the link to the node asked drops
//! ([`Questions::node_gone`]): nobody waits out a deadline for a node known
//! to be gone. Bounded: past [`MAX_PENDING_QUESTIONS`] a new question is
//! refused rather than the table grown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use slip_proto::link_pb::{Frame, Query, Reply, frame::Kind, query, reply};
use tokio::sync::oneshot;

use crate::{LinkError, Peers};

/// Questions awaiting an answer, at most, per node.
pub const MAX_PENDING_QUESTIONS: usize = 65_536;

/// Why a question got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unanswered {
    /// Too many questions wait already.
    #[error("too many questions in flight ({MAX_PENDING_QUESTIONS})")]
    Full,
    /// It could not be sent.
    #[error(transparent)]
    Unsent(#[from] LinkError),
    /// No answer came in time, or the node asked went.
    #[error("node {0} did not answer in time, or its link dropped")]
    Silent(String),
}

/// The questions this node is waiting on.
pub struct Questions {
    pending: Mutex<HashMap<u64, Waiter>>,
    next: AtomicU64,
}

struct Waiter {
    answer: oneshot::Sender<reply::Kind>,
    /// The node asked, once the question is on its way.
    asked: Option<String>,
}

/// A question's id, and where its answer arrives.
pub struct Pending {
    /// The id its frame carries, and its reply will.
    pub id: u64,
    answer: oneshot::Receiver<reply::Kind>,
}

impl Default for Questions {
    fn default() -> Self {
        Self { pending: Mutex::new(HashMap::new()), next: AtomicU64::new(1) }
    }
}

impl Questions {
    /// A new question; `None` when [`MAX_PENDING_QUESTIONS`] are waiting.
    pub fn expect(&self) -> Option<Pending> {
        let mut pending = self.pending.lock();
        if pending.len() >= MAX_PENDING_QUESTIONS {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (answer, rx) = oneshot::channel();
        pending.insert(id, Waiter { answer, asked: None });
        Some(Pending { id, answer: rx })
    }

    /// Question `id` went to `node`: it ends if `node` goes.
    pub fn asked(&self, id: u64, node: &str) {
        if let Some(waiter) = self.pending.lock().get_mut(&id) {
            waiter.asked = Some(node.to_owned());
        }
    }

    /// `node` is gone: its questions end now, unanswered.
    pub fn node_gone(&self, node: &str) {
        self.pending.lock().retain(|_, waiter| waiter.asked.as_deref() != Some(node));
    }

    /// Hands a reply to whoever waits for it; false if nobody does (it was
    /// not a question of this registry, or its asker stopped waiting).
    pub fn resolve(&self, reply: Reply) -> bool {
        match reply.kind {
            Some(kind) => self.answer(reply.id, kind),
            None => self.pending.lock().remove(&reply.id).is_some(),
        }
    }

    /// Question `id` is answered with `kind`; false if nobody waits for it.
    pub fn answer(&self, id: u64, kind: reply::Kind) -> bool {
        let waiter = self.pending.lock().remove(&id);
        waiter.is_some_and(|waiter| waiter.answer.send(kind).is_ok())
    }

    /// The asker stopped waiting.
    pub fn forget(&self, id: u64) {
        self.pending.lock().remove(&id);
    }

    /// Questions waiting.
    pub fn len(&self) -> usize {
        self.pending.lock().len()
    }

    /// Whether no question waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for `pending`'s answer, at most `patience`; the question is
    /// forgotten after, answered or not.
    pub async fn wait(&self, pending: Pending, patience: Duration) -> Option<reply::Kind> {
        let answered = tokio::time::timeout(patience, pending.answer).await;
        self.forget(pending.id);
        answered.ok().and_then(Result::ok)
    }

    /// Sends `frame` (which carries `pending`'s id) to `node` over `peers`
    /// at once; the future waits for the answer, at most `patience`. Only
    /// the wait is in the future: it sits in every handshake's and resume's
    /// state, and the frame need not.
    pub fn send_and_wait<'a>(
        &'a self,
        peers: &Peers,
        node: &'a str,
        pending: Pending,
        frame: Frame,
        patience: Duration,
    ) -> impl Future<Output = Result<reply::Kind, Unanswered>> + Send + 'a {
        let sent = self.send(peers, node, pending, frame);
        self.answer_to(sent, node, patience)
    }

    /// Asks `node` `question` at once; the future waits for its answer, at
    /// most `patience`.
    pub fn ask<'a>(
        &'a self,
        peers: &Peers,
        node: &'a str,
        question: query::Kind,
        patience: Duration,
    ) -> impl Future<Output = Result<reply::Kind, Unanswered>> + Send + 'a {
        let sent = self.expect().ok_or(Unanswered::Full).and_then(|pending| {
            let frame = Frame { kind: Some(Kind::Query(Query { id: pending.id, kind: Some(question) })) };
            self.send(peers, node, pending, frame)
        });
        self.answer_to(sent, node, patience)
    }

    fn send(&self, peers: &Peers, node: &str, pending: Pending, frame: Frame) -> Result<Pending, Unanswered> {
        self.asked(pending.id, node);
        match peers.send(node, frame) {
            Ok(()) => Ok(pending),
            Err(e) => {
                self.forget(pending.id);
                Err(e.into())
            }
        }
    }

    async fn answer_to(
        &self,
        sent: Result<Pending, Unanswered>,
        node: &str,
        patience: Duration,
    ) -> Result<reply::Kind, Unanswered> {
        self.wait(sent?, patience).await.ok_or_else(|| Unanswered::Silent(node.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{Questions, Reply, reply};

    #[tokio::test]
    async fn questions_to_a_node_that_left_end_at_once_and_others_wait_on() {
        let questions = Questions::default();
        let gone = questions.expect().unwrap();
        let kept = questions.expect().unwrap();
        questions.asked(gone.id, "c-1");
        questions.asked(kept.id, "c-2");
        questions.node_gone("c-1");
        assert_eq!(questions.len(), 1);
        let patience = std::time::Duration::from_secs(3600);
        // Ended: no deadline is waited out.
        assert_eq!(questions.wait(gone, patience).await, None);
        assert!(questions.resolve(Reply { id: kept.id, kind: Some(reply::Kind::Found(true)) }));
        assert_eq!(questions.wait(kept, patience).await, Some(reply::Kind::Found(true)));
        assert!(questions.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_question_is_forgotten_at_its_deadline() {
        let questions = Questions::default();
        let pending = questions.expect().unwrap();
        let id = pending.id;
        assert_eq!(questions.wait(pending, std::time::Duration::from_secs(5)).await, None);
        assert!(questions.is_empty());
        assert!(!questions.answer(id, reply::Kind::Found(true)), "a late answer finds nobody");
    }
}
