//! Who may open a connection: a bounded number of slots per edge, and none
//! while the edge drains. A slot is held from the upgrade request until the
//! connection's CLOSE callback is done, so "slots in use" is also how many
//! connections still have work to finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Default bound on connections per edge (including ones being opened).
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The edge is shutting down.
    Draining,
    /// Every slot is taken.
    Full,
}

pub struct Admission {
    max: usize,
    in_use: AtomicUsize,
    draining: AtomicBool,
    /// Woken when the last slot is given back: a drain waits on it.
    idle: Notify,
}

/// One admitted connection; gives its slot back when dropped.
pub struct Slot(Arc<Admission>);

impl Drop for Slot {
    fn drop(&mut self) {
        if self.0.in_use.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Admission {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { max, in_use: AtomicUsize::new(0), draining: AtomicBool::new(false), idle: Notify::new() })
    }

    pub fn admit(self: &Arc<Self>) -> Result<Slot, Refusal> {
        if self.is_draining() {
            return Err(Refusal::Draining);
        }
        let before = self.in_use.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.clone());
        if before >= self.max {
            return Err(Refusal::Full); // dropping `slot` gives it back
        }
        Ok(slot)
    }

    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Acquire)
    }

    /// Resolves once no slot is in use (at once if none is).
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release in between is not missed.
            notified.as_mut().enable();
            if self.in_use() == 0 {
                return;
            }
            notified.await;
        }
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_slots_given_back_on_drop() {
        let admission = Admission::new(2);
        let a = admission.admit().unwrap();
        let _b = admission.admit().unwrap();
        assert_eq!(admission.admit().err(), Some(Refusal::Full));
        assert_eq!(admission.in_use(), 2);
        drop(a);
        assert!(admission.admit().is_ok());
        admission.start_draining();
        assert_eq!(admission.admit().err(), Some(Refusal::Draining));
        assert_eq!(admission.in_use(), 1);
    }

    #[tokio::test]
    async fn idle_resolves_when_the_last_slot_is_given_back() {
        let admission = Admission::new(2);
        admission.idle().await;
        let (a, b) = (admission.admit().unwrap(), admission.admit().unwrap());
        let waiting = tokio::spawn({
            let admission = admission.clone();
            async move { admission.idle().await }
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one slot is still in use");
        drop(b);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiting).await.unwrap().unwrap();
    }
}
