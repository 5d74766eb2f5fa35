//! Channel lifecycle, as a channel's owner decides it, as pure code
//! (docs/lifecycle.md): `CHANNEL_OCCUPIED` when the cluster-wide subscriber
//! count goes from 0 to 1, `CHANNEL_VACATED` when it has been 0 for
//! [`DEFAULT_VACATE_AFTER`] (so a reconnect does not flap it).
//!
//! A channel has subscribers somewhere exactly when some edge is interested
//! in it, so the owner's interest table is the count that matters. An edge
//! says whether its interest is fresh (its first local subscriber) or told
//! again (to a new owner, or after its link came back): interest told again
//! is presumed told to the backend already, by this node or a predecessor.
//!
//! At least once, across owners: every event decided is copied to the
//! channel's replicas (and, when the ring moves a channel, to its new
//! owner). A node that takes a channel over waits [`TAKEOVER_GRACE`] for the
//! edges to announce their interest, then sends the copy's event again,
//! with its id (a backend drops the repeat), and whatever changed since.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// How long a channel stays occupied after its last subscriber left (`SLIP_VACATE_SECS`).
pub const DEFAULT_VACATE_AFTER: Duration = Duration::from_secs(5);
/// How long a node new to a channel waits for the edges' interest before it
/// settles what its predecessor told with what it hears.
pub const TAKEOVER_GRACE: Duration = Duration::from_secs(5);

/// What happened to a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Occupied,
    Vacated,
}

impl Lifecycle {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Occupied => "CHANNEL_OCCUPIED",
            Lifecycle::Vacated => "CHANNEL_VACATED",
        }
    }
}

/// One event for the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleEvent {
    /// Unique: the backend drops an event whose id it has seen.
    pub id: String,
    pub kind: Lifecycle,
    pub channel: String,
    /// When it was decided, Unix milliseconds.
    pub at_ms: u64,
}

/// The lifecycle of the channels this node owns, and copies of others'.
pub struct Occupancy {
    /// Channels this node owns with subscribers somewhere (or whose
    /// VACATED is not yet due).
    occupied: HashSet<String>,
    /// Channels whose last subscriber left: when their VACATED is due.
    vacating: HashMap<String, Instant>,
    /// (due, channel) in order (one delay for all, so they fall due in order).
    vacate_queue: VecDeque<(Instant, String)>,
    vacate_after: Duration,
    /// The last event decided for each channel: by this node as its owner,
    /// or copied from the owner (this node is a replica, or was handed it).
    last: HashMap<String, LifecycleEvent>,
    /// Channels taken over, settled at their time: (due, channel).
    settling: VecDeque<(Instant, String)>,
    settling_set: HashSet<String>,
    /// Event ids: this node's prefix (its id and a random part, so a
    /// restarted node never repeats one), then a counter.
    id_prefix: String,
    next_id: u64,
}

impl Occupancy {
    /// Lifecycle kept by node `node`; VACATED `vacate_after` the last subscriber.
    pub fn new(node: &str, vacate_after: Duration) -> Self {
        Self {
            occupied: HashSet::new(),
            vacating: HashMap::new(),
            vacate_queue: VecDeque::new(),
            vacate_after,
            last: HashMap::new(),
            settling: VecDeque::new(),
            settling_set: HashSet::new(),
            id_prefix: format!("{node}-{:08x}", rand::random::<u32>()),
            next_id: 0,
        }
    }

    fn event(&mut self, kind: Lifecycle, channel: &str, at_ms: u64) -> LifecycleEvent {
        self.next_id += 1;
        LifecycleEvent { id: format!("{}-{}", self.id_prefix, self.next_id), kind, channel: channel.to_owned(), at_ms }
    }

    /// `channel`, owned here, has interested edges (`any`) or none now,
    /// after an edge's `fresh` interest (its first subscriber) or interest
    /// told again. The event to send, if that is one.
    pub fn interest(
        &mut self,
        channel: &str,
        any: bool,
        fresh: bool,
        now: Instant,
        at_ms: u64,
    ) -> Option<LifecycleEvent> {
        if any {
            if self.vacating.remove(channel).is_some() {
                // Back within the delay: it never stopped being occupied.
                return None;
            }
            let was = !self.occupied.insert(channel.to_owned());
            // Being settled: the settling will say.
            if was || self.settling_set.contains(channel) {
                return None;
            }
            // Told again: its predecessor said so, unless the last word on
            // it was VACATED (its edge was cut off from this node long
            // enough, and is back).
            let told_vacated = self.last.get(channel).is_some_and(|e| e.kind == Lifecycle::Vacated);
            if !fresh && !told_vacated {
                return None;
            }
            Some(self.event(Lifecycle::Occupied, channel, at_ms))
        } else {
            if self.occupied.contains(channel) && !self.vacating.contains_key(channel) {
                let due = now + self.vacate_after;
                self.vacating.insert(channel.to_owned(), due);
                self.vacate_queue.push_back((due, channel.to_owned()));
            }
            None
        }
    }

    /// The last event decided for its channel, by this node or (a copy) by
    /// the channel's owner.
    pub fn remember(&mut self, event: LifecycleEvent) {
        self.last.insert(event.channel.clone(), event);
    }

    /// The last event known of `channel`, to hand to its new owner.
    pub fn last_of(&self, channel: &str) -> Option<&LifecycleEvent> {
        self.last.get(channel)
    }

    /// The channels with a last event known here.
    pub fn known(&self) -> impl Iterator<Item = &String> {
        self.last.keys()
    }

    /// This node owns `channel` from now on (the view changed, or another
    /// node's last event of it came): it is settled once the edges have had
    /// [`TAKEOVER_GRACE`] to tell their interest. Only channels it knows a
    /// last event of need it.
    pub fn taking_over(&mut self, channel: &str, now: Instant) {
        if self.last.contains_key(channel) && self.settling_set.insert(channel.to_owned()) {
            self.settling.push_back((now + TAKEOVER_GRACE, channel.to_owned()));
        }
    }

    /// Channels taken over whose grace is over by `now`.
    pub fn to_settle(&mut self, now: Instant) -> Vec<String> {
        let mut due = Vec::new();
        while self.settling.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, channel)) = self.settling.pop_front() {
                self.settling_set.remove(&channel);
                due.push(channel);
            }
        }
        due
    }

    /// Settles `channel`, taken over, with `any` interested edge now: its
    /// predecessor's last event again (with its id: it may never have
    /// reached the backend), then what differs from it.
    pub fn settle(&mut self, channel: &str, any: bool, now: Instant, at_ms: u64) -> Vec<LifecycleEvent> {
        let Some(copy) = self.last.get(channel).cloned() else { return Vec::new() };
        let told_occupied = copy.kind == Lifecycle::Occupied;
        let mut out = vec![copy];
        self.vacating.remove(channel);
        if told_occupied {
            self.occupied.insert(channel.to_owned());
            if !any {
                self.interest(channel, false, false, now, at_ms);
            }
        } else {
            self.occupied.remove(channel);
            if any {
                self.occupied.insert(channel.to_owned());
                out.push(self.event(Lifecycle::Occupied, channel, at_ms));
            }
        }
        out
    }

    /// `channel`, owned here, looked at afresh with `any` interested edge
    /// now, against the last event told of it (this node decided nothing
    /// the backend heard while it had no lease): OCCUPIED if it was not
    /// told occupied and is; a vacancy starting if it was and is not.
    pub fn recheck(&mut self, channel: &str, any: bool, now: Instant, at_ms: u64) -> Option<LifecycleEvent> {
        let told_occupied = self.last.get(channel).is_some_and(|e| e.kind == Lifecycle::Occupied);
        self.vacating.remove(channel);
        self.occupied.remove(channel);
        if told_occupied {
            self.occupied.insert(channel.to_owned());
            if !any {
                self.interest(channel, false, false, now, at_ms);
            }
            None
        } else if any {
            self.occupied.insert(channel.to_owned());
            Some(self.event(Lifecycle::Occupied, channel, at_ms))
        } else {
            None
        }
    }

    /// VACATED events due by `now`.
    pub fn due(&mut self, now: Instant, at_ms: u64) -> Vec<LifecycleEvent> {
        let mut out = Vec::new();
        while self.vacate_queue.front().is_some_and(|(at, _)| *at <= now) {
            let Some((at, channel)) = self.vacate_queue.pop_front() else { break };
            // Only if that vacancy still stands (not ended by a subscriber coming back).
            if self.vacating.get(&channel) == Some(&at) {
                self.vacating.remove(&channel);
                self.occupied.remove(&channel);
                out.push(self.event(Lifecycle::Vacated, &channel, at_ms));
            }
        }
        out
    }

    /// The earliest thing due: a VACATED or a channel to settle.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.vacate_queue.front(), self.settling.front()].into_iter().flatten().map(|(at, _)| *at).min()
    }

    /// This node neither owns nor keeps a copy of the channels `keep` says
    /// no to (the ring settled elsewhere).
    pub fn retain(&mut self, keep_owned: impl Fn(&str) -> bool, keep_copy: impl Fn(&str) -> bool) {
        self.occupied.retain(|c| keep_owned(c));
        self.vacating.retain(|c, _| keep_owned(c));
        self.last.retain(|c, _| keep_copy(c) || keep_owned(c));
    }

    /// Whether `channel`, owned here, counts as occupied.
    pub fn is_occupied(&self, channel: &str) -> bool {
        self.occupied.contains(channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VACATE: Duration = Duration::from_secs(5);

    fn kinds(events: &[LifecycleEvent]) -> Vec<(Lifecycle, &str)> {
        events.iter().map(|e| (e.kind, e.channel.as_str())).collect()
    }

    #[test]
    fn occupied_once_vacated_once_after_the_delay_and_not_when_a_subscriber_comes_back_in_time() {
        let mut o = Occupancy::new("c-0", VACATE);
        let t0 = Instant::now();
        let first = o.interest("room", true, true, t0, 1).unwrap();
        assert_eq!(first.kind, Lifecycle::Occupied);
        assert_eq!(o.interest("room", true, true, t0, 1), None, "a second edge: still occupied");
        assert_eq!(o.interest("room", false, false, t0, 1), None);
        assert_eq!(o.next_deadline(), Some(t0 + VACATE));
        // A reconnect within the delay: nothing.
        assert_eq!(o.interest("room", true, true, t0 + VACATE / 2, 1), None);
        assert!(o.due(t0 + VACATE, 1).is_empty());
        // Gone for good.
        o.interest("room", false, false, t0 + VACATE, 1);
        assert!(o.due(t0 + VACATE + VACATE / 2, 1).is_empty());
        let vacated = o.due(t0 + VACATE * 2, 2);
        assert_eq!(kinds(&vacated), [(Lifecycle::Vacated, "room")]);
        assert_ne!(vacated[0].id, first.id, "ids are unique");
        let again = o.interest("room", true, true, t0 + VACATE * 3, 3).unwrap();
        assert_eq!(again.kind, Lifecycle::Occupied);
    }

    #[test]
    fn interest_told_again_after_a_vacated_is_occupied_again() {
        let mut o = Occupancy::new("c-0", VACATE);
        let t0 = Instant::now();
        o.remember(LifecycleEvent { id: "c-0-1".into(), kind: Lifecycle::Vacated, channel: "room".into(), at_ms: 0 });
        let again = o.interest("room", true, false, t0, 1);
        assert_eq!(again.map(|e| e.kind), Some(Lifecycle::Occupied), "its edge is back: the backend was told vacated");
    }

    #[test]
    fn interest_told_again_is_presumed_told_to_the_backend() {
        let mut o = Occupancy::new("c-1", VACATE);
        let t0 = Instant::now();
        assert_eq!(o.interest("room", true, false, t0, 1), None, "a new owner hearing an edge again");
        assert!(o.is_occupied("room"));
        o.interest("room", false, false, t0, 1);
        assert_eq!(kinds(&o.due(t0 + VACATE, 1)), [(Lifecycle::Vacated, "room")]);
    }

    #[test]
    fn a_node_taking_a_channel_over_sends_its_copy_again_then_what_changed() {
        let t0 = Instant::now();
        let mut owner = Occupancy::new("c-0", VACATE);
        let occupied = owner.interest("room", true, true, t0, 1).unwrap();
        let mut next = Occupancy::new("c-1", VACATE);
        next.remember(occupied.clone());
        // The owner dies; the next node owns "room" and hears the edge again.
        next.taking_over("room", t0);
        assert_eq!(next.interest("room", true, false, t0, 2), None);
        assert!(next.to_settle(t0 + TAKEOVER_GRACE / 2).is_empty());
        assert_eq!(next.to_settle(t0 + TAKEOVER_GRACE), ["room"]);
        assert_eq!(
            next.settle("room", true, t0 + TAKEOVER_GRACE, 3),
            std::slice::from_ref(&occupied),
            "the same id again"
        );

        // A copy saying occupied, and nobody there any more: vacated after the delay.
        let mut other = Occupancy::new("c-2", VACATE);
        other.remember(occupied.clone());
        other.taking_over("room", t0);
        assert_eq!(other.settle("room", false, t0, 2), std::slice::from_ref(&occupied));
        assert_eq!(kinds(&other.due(t0 + VACATE, 3)), [(Lifecycle::Vacated, "room")]);

        // A copy saying vacated, and a subscriber there now (fresh during the grace): occupied, once.
        let mut third = Occupancy::new("c-3", VACATE);
        let vacated = LifecycleEvent { kind: Lifecycle::Vacated, ..occupied };
        third.remember(vacated.clone());
        third.taking_over("room", t0);
        assert_eq!(third.interest("room", true, true, t0, 2), None, "settled at the end of the grace");
        let settled = third.settle("room", true, t0 + TAKEOVER_GRACE, 3);
        assert_eq!(kinds(&settled), [(Lifecycle::Vacated, "room"), (Lifecycle::Occupied, "room")]);
        assert_eq!(settled[0].id, vacated.id);
    }
}
