//! Catching up after the ring changed, as pure code. A control node that
//! comes to own (or copy) a channel it did not hold must not give its next
//! offset before it has the stream's state from the nodes that held it:
//! else a restarted node, with nothing in memory, would start every channel
//! it takes back over in a new epoch. So after each ring change every
//! control node asks the others for the streams it now holds (the plane's
//! `catch_up` task), and until that is done, or [`CATCHUP_DEADLINE`]
//! passes, it holds the publishes of every channel it did not own when it
//! last caught up. A node that owned a channel then and still does has
//! nothing to learn about it: nobody else gave it offsets meanwhile.

use std::collections::VecDeque;
use std::time::Duration;

use slip_proto::ids::NodeId;
use slip_proto::link_pb::Publish;
use slip_proto::ring::Ring;
use tokio::time::Instant;

/// Longest a catch-up may take; past it the node goes on with what it has.
pub const CATCHUP_DEADLINE: Duration = Duration::from_secs(10);
/// How long a node that joins others waits for the first of them to link
/// before it takes itself to be alone and gives offsets.
pub const JOIN_WAIT: Duration = Duration::from_secs(3);
/// Publishes held while catching up, at most; past it they are refused
/// (the publisher hears UNAVAILABLE and retries with its key).
pub const MAX_HELD_WHILE_CATCHING_UP: usize = 65_536;
/// Stream heads per answer when listing what another node holds.
pub const HEADS_PER_PAGE: usize = 2_048;
/// About how many bytes of a stream's copy go in one answer.
pub const COPY_PAGE_BYTES: usize = 256 * 1024;
/// How soon a node whose ring is not yet the asker's is asked again.
pub const VIEW_RETRY: Duration = Duration::from_millis(50);

pub struct CatchUp {
    /// The ring as of the last catch-up that completed; `None` before the
    /// first, for a node that joins a cluster.
    caught_up: Option<Ring>,
    /// The catch-up under way: which ring change it answers, and its deadline.
    running: Option<(u64, Instant)>,
    /// Ring changes so far.
    generation: u64,
    held: VecDeque<Publish>,
}

impl CatchUp {
    /// A node alone (`ring` is just itself) has caught up; one that joins
    /// others (`joining`) has not, until it has heard from them or the
    /// deadline passes.
    pub fn new(joining: bool, ring: &Ring, now: Instant) -> Self {
        let (caught_up, running) =
            if joining { (None, Some((0, now + JOIN_WAIT))) } else { (Some(ring.clone()), None) };
        Self { caught_up, running, generation: 0, held: VecDeque::new() }
    }

    /// The ring changed: a new catch-up starts; returns its generation.
    pub fn begin(&mut self, now: Instant) -> u64 {
        self.generation += 1;
        self.running = Some((self.generation, now + CATCHUP_DEADLINE));
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

    /// Holds a publish until the catch-up ends; false if too many wait.
    pub fn hold(&mut self, publish: Publish) -> bool {
        if self.held.len() >= MAX_HELD_WHILE_CATCHING_UP {
            return false;
        }
        self.held.push_back(publish);
        true
    }

    /// Catch-up `generation` is done (or its time is up): `ring` is caught
    /// up, and the publishes held go on, in the order they came. Nothing if
    /// a later ring change started another.
    pub fn finish(&mut self, generation: u64, ring: &Ring) -> Option<Vec<Publish>> {
        if self.running.is_none_or(|(running, _)| running != generation) {
            return None;
        }
        self.running = None;
        self.caught_up = Some(ring.clone());
        Some(self.held.drain(..).collect())
    }

    /// The running catch-up, if its deadline has passed.
    pub fn overdue(&self, now: Instant) -> Option<u64> {
        self.running.filter(|(_, deadline)| *deadline <= now).map(|(generation, _)| generation)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.running.map(|(_, deadline)| deadline)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn id(name: &str) -> NodeId {
        NodeId::parse(name).unwrap()
    }

    fn publish(channel: &str) -> Publish {
        Publish { channel: channel.into(), ..Default::default() }
    }

    #[test]
    fn a_joining_node_holds_everything_until_it_has_caught_up() {
        let now = Instant::now();
        let me = id("c0");
        let alone = Ring::new([me.clone()]);
        let mut catch_up = CatchUp::new(true, &alone, now);
        assert!(catch_up.must_hold("any", &me), "before the first catch-up nothing is known");
        assert!(catch_up.hold(publish("a")));
        let ring = Ring::new([me.clone(), id("c1"), id("c2")]);
        let generation = catch_up.begin(now);
        assert_eq!(catch_up.finish(generation, &ring).unwrap(), [publish("a")]);
        assert!(!catch_up.must_hold("any", &me));
    }

    #[test]
    fn only_channels_owned_elsewhere_before_wait_and_a_later_change_supersedes() {
        let now = Instant::now();
        let (me, other) = (id("c0"), id("c1"));
        let before = Ring::new([me.clone(), other.clone()]);
        let mut catch_up = CatchUp::new(false, &before, now);
        let first = catch_up.begin(now);
        catch_up.finish(first, &before).unwrap();
        // The other node left: its channels come here, and wait; ours do not.
        let second = catch_up.begin(now);
        let channels: Vec<String> = (0..100).map(|i| format!("ch-{i}")).collect();
        for channel in &channels {
            let was_mine = before.owner(channel) == Some(&me);
            assert_eq!(catch_up.must_hold(channel, &me), !was_mine, "{channel}");
        }
        let third = catch_up.begin(now);
        assert_eq!(catch_up.finish(second, &before), None, "a later change runs");
        assert_eq!(catch_up.overdue(now + CATCHUP_DEADLINE), Some(third));
        assert!(catch_up.finish(third, &Ring::new([me.clone()])).is_some());
        assert!(!catch_up.is_running());
    }

    #[test]
    fn holds_a_bounded_number() {
        let now = Instant::now();
        let me = id("c0");
        let mut catch_up = CatchUp::new(true, &Ring::new([me]), now);
        for _ in 0..MAX_HELD_WHILE_CATCHING_UP {
            assert!(catch_up.hold(publish("a")));
        }
        assert!(!catch_up.hold(publish("a")));
    }
}
