//! Catching up after the view changed, as pure code. A control node that
//! comes to own (or copy) a channel it did not hold must not give its next
//! offset before it has the stream's state from the nodes that held it:
//! else a restarted node, with nothing in memory, would start every channel
//! it takes back over in a new epoch. So after each view change every
//! control node asks the others in the ring for the streams it now holds
//! (the plane's `catch_up` task), and until that is done, or
//! [`CATCHUP_DEADLINE`] passes, it holds the publishes of every channel it
//! did not own when it last caught up. A node that owned a channel then and
//! still does has nothing to learn about it: nobody else gave it offsets
//! meanwhile.

use std::time::Duration;

use slip_proto::ids::NodeId;
use slip_proto::ring::Ring;

/// A catch-up that takes longer than this is said so in the log (it goes on:
/// the node does not own what it takes over before it has every copy).
pub const CATCHUP_DEADLINE: Duration = Duration::from_secs(10);
/// Stream heads per answer when listing what another node holds.
pub const HEADS_PER_PAGE: usize = 2_048;
/// About how many bytes of a stream's copy go in one answer.
pub const COPY_PAGE_BYTES: usize = 256 * 1024;
/// How soon a node whose ring is not yet the asker's is asked again.
pub const VIEW_RETRY: Duration = Duration::from_millis(50);

#[derive(Default)]
pub struct CatchUp {
    /// The ring as of the last catch-up that completed; `None` before the
    /// first (a node that applied no view yet owns nothing it knows of).
    caught_up: Option<Ring>,
    /// The catch-up under way: which view change it answers.
    running: Option<u64>,
    /// View changes so far.
    generation: u64,
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

    /// Whether a publish to `channel`, owned here, must wait: a catch-up
    /// runs and this node did not own the channel when it last caught up.
    pub fn must_hold(&self, channel: &str, me: &NodeId) -> bool {
        self.running.is_some() && self.caught_up.as_ref().is_none_or(|ring| ring.owner(channel) != Some(me))
    }

    /// Catch-up `generation` is done: `ring` is caught up. False if a later
    /// view change started another.
    pub fn finish(&mut self, generation: u64, ring: &Ring) -> bool {
        if self.running != Some(generation) {
            return false;
        }
        self.running = None;
        self.caught_up = Some(ring.clone());
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn id(name: &str) -> NodeId {
        NodeId::parse(name).unwrap()
    }

    #[test]
    fn before_the_first_catch_up_nothing_is_known() {
        let me = id("c0");
        let mut catch_up = CatchUp::default();
        let generation = catch_up.begin();
        assert!(catch_up.must_hold("any", &me), "before the first catch-up nothing is known");
        let ring = Ring::new([me.clone(), id("c1"), id("c2")]);
        assert!(catch_up.finish(generation, &ring));
        assert!(!catch_up.must_hold("any", &me));
    }

    #[test]
    fn only_channels_owned_elsewhere_before_wait_and_a_later_change_supersedes() {
        let (me, other) = (id("c0"), id("c1"));
        let before = Ring::new([me.clone(), other.clone()]);
        let mut catch_up = CatchUp::default();
        let first = catch_up.begin();
        assert!(catch_up.finish(first, &before));
        // The other node left: its channels come here, and wait; ours do not.
        let second = catch_up.begin();
        let channels: Vec<String> = (0..100).map(|i| format!("ch-{i}")).collect();
        for channel in &channels {
            let was_mine = before.owner(channel) == Some(&me);
            assert_eq!(catch_up.must_hold(channel, &me), !was_mine, "{channel}");
        }
        let third = catch_up.begin();
        assert!(!catch_up.finish(second, &before), "a later change runs");
        assert!(catch_up.finish(third, &Ring::new([me.clone()])));
        assert!(!catch_up.is_running());
    }
}
