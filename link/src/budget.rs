//! A link's queue bound in bytes. A peer that reads slowly must not make the
//! node that sends to it hold more than [`LINK_QUEUE_BYTES`] for it, however
//! large the frames (publishes of up to 128 KiB each); counting frames alone
//! ([`crate::LINK_QUEUE_FRAMES`]) would allow gigabytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of encoded frames one link may hold queued for its peer.
pub const LINK_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// Bytes queued on one link, shared by its senders and its writers.
#[derive(Debug, Clone)]
pub struct Budget {
    queued: Arc<AtomicUsize>,
    limit: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(LINK_QUEUE_BYTES)
    }
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { queued: Arc::new(AtomicUsize::new(0)), limit }
    }

    /// Reserves `bytes` for a frame about to be queued; false if that would
    /// pass the limit (nothing is reserved then).
    pub fn take(&self, bytes: usize) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                queued.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    /// Gives back what a written (or dropped) frame had reserved.
    pub fn give(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes held now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_its_limit_and_frees_what_is_given_back() {
        let budget = Budget::new(100);
        assert!(budget.take(60));
        assert!(!budget.take(41), "61 + 41 > 100");
        assert!(budget.take(40));
        assert!(!budget.take(1));
        budget.clone().give(60);
        assert_eq!(budget.queued(), 40);
        assert!(budget.take(60));
        assert!(!budget.take(usize::MAX), "no overflow");
    }
}
