//! Catching up after the view changed, as pure code. A control node must
//! not give the next offset in a channel before it has the stream's state
//! from the nodes that held it: else a restarted node, with nothing in
//! memory, would start every channel it takes back over in a new epoch, and
//! a node that was paused or cut off while others owned its channels (views
//! it never applied) would go on from where it stopped. So after each view
//! change every control node asks the others in the ring for the streams it
//! holds (the plane's `catch_up` task), and until that is done it holds the
//! publishes of every channel it owns. With every node answering that takes
//! a round trip or two; a node cannot tell from the views it applied alone
//! whether another owned its channels in between (a view it missed while
//! cut off looks like no change at all).

use std::time::Duration;

/// A catch-up that takes longer than this is said so in the log (it goes on:
/// the node does not own what it takes over before it has every copy).
pub const CATCHUP_DEADLINE: Duration = Duration::from_secs(10);
/// Stream heads per answer when listing what another node holds.
pub const HEADS_PER_PAGE: usize = 2_048;
/// About how many bytes of a stream's copy go in one answer.
pub const COPY_PAGE_BYTES: usize = 256 * 1024;
/// How soon a node whose ring is not yet the asker's is asked again.
pub const VIEW_RETRY: Duration = Duration::from_millis(50);

pub struct CatchUp {
    /// The catch-up under way: which view change it answers. Before the
    /// first view nothing is known, so a new node starts "catching up".
    running: Option<u64>,
    /// View changes so far.
    generation: u64,
}

impl Default for CatchUp {
    fn default() -> Self {
        Self { running: Some(0), generation: 0 }
    }
}

impl CatchUp {
    /// The view changed: a new catch-up starts; returns its generation.
    pub fn begin(&mut self) -> u64 {
        self.generation += 1;
        self.running = Some(self.generation);
        self.generation
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Whether publishes to the channels this node owns must wait.
    pub fn must_hold(&self) -> bool {
        self.running.is_some()
    }

    /// Catch-up `generation` is done. False if a later view change started another.
    pub fn finish(&mut self, generation: u64) -> bool {
        if self.running != Some(generation) {
            return false;
        }
        self.running = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_waits_until_the_catch_up_of_the_latest_view_is_done() {
        let mut catch_up = CatchUp::default();
        assert!(catch_up.must_hold(), "before the first view nothing is known");
        let first = catch_up.begin();
        assert!(catch_up.finish(first));
        assert!(!catch_up.must_hold());
        let second = catch_up.begin();
        let third = catch_up.begin();
        assert!(catch_up.must_hold());
        assert!(!catch_up.finish(second), "a later change runs");
        assert!(catch_up.must_hold());
        assert!(catch_up.finish(third));
        assert!(!catch_up.is_running());
    }
}
