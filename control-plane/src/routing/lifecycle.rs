//! Channel lifecycle at a channel's owner (`occupancy.rs` decides): on
//! when `SLIP_EVENTS_URL` is set. Interest changes go in; events come out
//! for the plane's sender to POST, and a copy of each goes to the channel's
//! replicas, so that a node taking the channel over sends it again.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use slip_proto::ids::NodeId;
use slip_proto::link_pb::{Frame, Occupancy as OccupancyFrame, frame::Kind};
use slip_proto::ring::Ring;
use tokio::time::Instant;

use super::{Outlet, Routing, holders};
use crate::occupancy::{Lifecycle, LifecycleEvent, Occupancy};

/// Lifecycle events waiting for the sender, at most; past it the oldest are
/// dropped (and counted), so a backend down for long costs bounded memory.
pub const MAX_WAITING_EVENTS: usize = 100_000;

/// The lifecycle side of the routing: what decides, and what waits to go.
pub(super) struct LifecycleState {
    pub(super) occupancy: Occupancy,
    pub(super) waiting: VecDeque<LifecycleEvent>,
    /// Channels whose events were decided while this node had no lease,
    /// and so not sent: looked at afresh once it has its lease again.
    pub(super) recheck: HashSet<String>,
}

/// Unix milliseconds now: when an event was decided, for the backend.
fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Routing {
    /// Decides channel lifecycle events from now on: CHANNEL_VACATED
    /// `vacate_after` a channel's last subscriber left.
    pub fn enable_lifecycle(&mut self, vacate_after: Duration) {
        let occupancy = Occupancy::new(self.node_id.as_str(), vacate_after);
        self.lifecycle = Some(LifecycleState { occupancy, waiting: VecDeque::new(), recheck: HashSet::new() });
    }

    /// Events decided and not yet taken, oldest first, at most `max`.
    pub fn take_lifecycle(&mut self, max: usize) -> Vec<LifecycleEvent> {
        let Some(lifecycle) = self.lifecycle.as_mut() else { return Vec::new() };
        let n = max.min(lifecycle.waiting.len());
        lifecycle.waiting.drain(..n).collect()
    }

    /// Whether events wait for the sender.
    pub fn lifecycle_waiting(&self) -> bool {
        self.lifecycle.as_ref().is_some_and(|l| !l.waiting.is_empty())
    }

    /// `channel`'s interested edges changed: an edge's `fresh` first
    /// subscriber or last one gone, or interest told again.
    pub(super) fn occupancy_changed(&mut self, channel: &str, fresh: bool, now: Instant, out: &mut impl Outlet) {
        if self.lifecycle.is_none() || !self.ownership.owns(channel) {
            return;
        }
        let any = !self.interest.edges(channel).is_empty();
        let Some(lifecycle) = self.lifecycle.as_mut() else { return };
        if let Some(event) = lifecycle.occupancy.interest(channel, any, fresh, now, unix_ms()) {
            self.decided(vec![event], now, out);
        }
    }

    /// Events decided here: kept as the channel's last, copied to its
    /// replicas, and queued for the sender. Only while this node holds its
    /// lease: one cut off from the majority sees the edges on its side
    /// only (a channel it takes for empty may be full elsewhere), and
    /// another node owns the channel by now; it looks at those channels
    /// again once it has its lease back.
    fn decided(&mut self, events: Vec<LifecycleEvent>, now: Instant, out: &mut impl Outlet) {
        if !self.ownership.leased(now) {
            if let Some(lifecycle) = self.lifecycle.as_mut() {
                for event in events {
                    tracing::debug!(
                        channel = event.channel,
                        kind = event.kind.as_str(),
                        "lifecycle event not sent: no lease"
                    );
                    lifecycle.recheck.insert(event.channel);
                }
            }
            return;
        }
        for event in events {
            tracing::debug!(channel = event.channel, kind = event.kind.as_str(), id = event.id, "channel lifecycle");
            let (ring, me) = (self.ownership.ring(), &self.node_id);
            let copy = frame(&event);
            for node in holders(ring, self.replicas, &event.channel).filter(|n| *n != me) {
                out.send(node.as_str(), copy.clone());
            }
            let Some(lifecycle) = self.lifecycle.as_mut() else { return };
            lifecycle.occupancy.remember(event.clone());
            if lifecycle.waiting.len() >= MAX_WAITING_EVENTS {
                lifecycle.waiting.pop_front();
                slip_metrics::metrics().lifecycle_events.get_or_create(&slip_metrics::kind("dropped")).inc();
            }
            lifecycle.waiting.push_back(event);
        }
    }

    /// What falls due: vacancies, and channels taken over to settle.
    pub(super) fn lifecycle_clock(&mut self, now: Instant, out: &mut impl Outlet) {
        let Some(lifecycle) = self.lifecycle.as_mut() else { return };
        let mut events = lifecycle.occupancy.due(now, unix_ms());
        let settling = lifecycle.occupancy.to_settle(now);
        events.extend(self.look_again(settling, |o, channel, any| o.settle(channel, any, now, unix_ms())));
        if !events.is_empty() {
            self.decided(events, now, out);
        }
    }

    /// This node has its lease again: the channels whose events it held
    /// back are looked at afresh.
    pub(super) fn lifecycle_lease_back(&mut self, now: Instant, out: &mut impl Outlet) {
        let Some(lifecycle) = self.lifecycle.as_mut() else { return };
        let held_back: Vec<String> = lifecycle.recheck.drain().collect();
        let events =
            self.look_again(held_back, |o, channel, any| o.recheck(channel, any, now, unix_ms()).into_iter().collect());
        if !events.is_empty() {
            self.decided(events, now, out);
        }
    }

    /// `look` at each of `channels` this node owns, with whether any edge
    /// is interested in it now; the events it comes to.
    fn look_again(
        &mut self,
        channels: Vec<String>,
        mut look: impl FnMut(&mut Occupancy, &str, bool) -> Vec<LifecycleEvent>,
    ) -> Vec<LifecycleEvent> {
        let mut events = Vec::new();
        for channel in channels {
            if !self.ownership.owns(&channel) {
                continue;
            }
            let any = !self.interest.edges(&channel).is_empty();
            let Some(lifecycle) = self.lifecycle.as_mut() else { break };
            events.extend(look(&mut lifecycle.occupancy, &channel, any));
        }
        events
    }

    /// When the next lifecycle event may fall due.
    pub(super) fn lifecycle_deadline(&self) -> Option<Instant> {
        self.lifecycle.as_ref().and_then(|l| l.occupancy.next_deadline())
    }

    /// The view changed from `old`: channels whose last event this node
    /// knows and now owns are settled after a grace; those it owned and
    /// another node owns now get their last event handed over.
    pub(super) fn lifecycle_view_changed(&mut self, old: &Ring, now: Instant, out: &mut impl Outlet) {
        let Some(lifecycle) = self.lifecycle.as_mut() else { return };
        let me = &self.node_id;
        let ring = self.ownership.ring();
        let mut handed = Vec::new();
        let known: Vec<String> = lifecycle.occupancy.known().cloned().collect();
        for channel in known {
            let (was, is) = (old.owner(&channel), ring.owner(&channel));
            if is == Some(me) && was != Some(me) {
                lifecycle.occupancy.taking_over(&channel, now);
            } else if was == Some(me)
                && let Some(to) = is.filter(|to| *to != me)
                && let Some(last) = lifecycle.occupancy.last_of(&channel)
            {
                handed.push((to.clone(), frame(last)));
            }
        }
        for (to, copy) in handed {
            out.send(to.as_str(), copy);
        }
    }

    /// A control node's copy of a channel's last lifecycle event. At a
    /// node that owns the channel, it is another node's word on it (the
    /// owner before, handing it over, or one that owned it while this node
    /// was cut off and did not know): newer than what this node decided,
    /// so the channel is settled from it, as one taken over.
    pub fn occupancy_copy(&mut self, from: &NodeId, copy: OccupancyFrame, now: Instant) {
        if !self.is_control(from) {
            return;
        }
        let owned = self.ownership.owns(&copy.channel);
        let Some(lifecycle) = self.lifecycle.as_mut() else { return };
        let kind = if copy.occupied { Lifecycle::Occupied } else { Lifecycle::Vacated };
        let event = LifecycleEvent { id: copy.event_id, kind, channel: copy.channel, at_ms: copy.at_ms };
        let news = lifecycle.occupancy.last_of(&event.channel).is_none_or(|last| last.id != event.id);
        let channel = event.channel.clone();
        lifecycle.occupancy.remember(event);
        if owned && news {
            lifecycle.occupancy.taking_over(&channel, now);
        }
    }
}

fn frame(event: &LifecycleEvent) -> Frame {
    let copy = OccupancyFrame {
        channel: event.channel.clone(),
        occupied: event.kind == Lifecycle::Occupied,
        event_id: event.id.clone(),
        at_ms: event.at_ms,
    };
    Frame { kind: Some(Kind::Occupancy(copy)) }
}
