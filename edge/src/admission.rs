//! Who may open a connection: a bounded number of slots per edge, and none
//! while the edge drains. A slot is held from the upgrade request until the
//! connection's CLOSE callback is done, or, for a `slip.v1` session whose
//! connection dropped, until the session ends: a parked session holds its
//! slot ([`ParkedSlot`]), so parking cannot take an edge past its bound.
//! "Slots in use but not parked" is how many connections still have work
//! to finish.

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

/// The edge's connection slots: taken by each connection and parked
/// session, refused when full or draining.
pub struct Admission {
    max: usize,
    in_use: AtomicUsize,
    /// Of `in_use`, the slots parked sessions hold.
    parked: AtomicUsize,
    draining: AtomicBool,
    /// Woken when the last slot is given back: a drain waits on it.
    idle: Notify,
}

/// One admitted connection; gives its slot back when dropped.
pub struct Slot(Option<Arc<Admission>>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(admission) = self.0.take() {
            admission.in_use.fetch_sub(1, Ordering::AcqRel);
            admission.wake_if_idle();
        }
    }
}

impl Slot {
    /// The slot, held on by a session that parked.
    pub fn park(mut self) -> ParkedSlot {
        let admission = self.0.take().expect("a slot is given back only once");
        admission.parked.fetch_add(1, Ordering::AcqRel);
        admission.wake_if_idle();
        ParkedSlot(admission)
    }
}

/// The slot of a parked session; given back when the session resumes or ends.
pub struct ParkedSlot(Arc<Admission>);

impl Drop for ParkedSlot {
    fn drop(&mut self) {
        self.0.parked.fetch_sub(1, Ordering::AcqRel);
        self.0.in_use.fetch_sub(1, Ordering::AcqRel);
        self.0.wake_if_idle();
    }
}

impl Admission {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            in_use: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            idle: Notify::new(),
        })
    }

    pub fn admit(self: &Arc<Self>) -> Result<Slot, Refusal> {
        if self.is_draining() {
            return Err(Refusal::Draining);
        }
        let before = self.in_use.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(Some(self.clone()));
        if before >= self.max {
            return Err(Refusal::Full); // dropping `slot` gives it back
        }
        Ok(slot)
    }

    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Acquire)
    }

    /// Slots held by connections (not by parked sessions).
    pub fn connected(&self) -> usize {
        self.in_use().saturating_sub(self.parked.load(Ordering::Acquire))
    }

    fn wake_if_idle(&self) {
        if self.connected() == 0 {
            self.idle.notify_waiters();
        }
    }

    /// Resolves once no connection holds a slot (at once if none does);
    /// parked sessions may still hold theirs.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release in between is not missed.
            notified.as_mut().enable();
            if self.connected() == 0 {
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

    #[test]
    fn a_parked_session_keeps_its_slot_until_it_ends() {
        let admission = Admission::new(2);
        let parked = admission.admit().unwrap().park();
        let _b = admission.admit().unwrap();
        assert_eq!(admission.admit().err(), Some(Refusal::Full), "parked sessions count");
        assert_eq!((admission.in_use(), admission.connected()), (2, 1));
        drop(parked);
        assert_eq!((admission.in_use(), admission.connected()), (1, 1));
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
        let _parked = b.park();
        tokio::time::timeout(std::time::Duration::from_secs(1), waiting).await.unwrap().unwrap();
    }
}
