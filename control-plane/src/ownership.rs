//! When this control node may act as a channel's owner (give offsets,
//! confirm, answer history as the authority), as pure code: only for the
//! channels the newest view it applied gives it, only while its lease for
//! that view holds, and, for channels it takes over from a node that did
//! not hand them over, not before that node's lease must have ended. The
//! consensus (`consensus/`) decides views and leases; this decides what
//! they allow.

use std::time::Duration;

use slip_proto::ids::NodeId;
use slip_proto::ring::Ring;
use tokio::time::Instant;

use crate::consensus::lease::TAKEOVER_WAIT;
use crate::view::View;

/// How long a publish may wait for a lease that is being renewed (or a
/// first one under a view just applied) before it is refused.
pub const LEASE_GRACE: Duration = Duration::from_millis(1_000);

/// What to do with a publish to a channel now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// Give it an offset here.
    Stamp,
    /// Wait: no view yet, catching up, or the lease is being renewed.
    Hold,
    /// Refuse it: this node holds no lease (it is cut off from a majority,
    /// or was paused); its publisher retries elsewhere.
    Refuse,
    /// Another node owns the channel under this view.
    Forward(NodeId),
}

pub struct Ownership {
    me: NodeId,
    ring: Ring,
    term: u64,
    applied_at: Option<Instant>,
    /// The view the lease is for, and when it ends.
    lease: Option<(u64, Instant)>,
    /// Until this, channels that were not this node's under the ring before
    /// (taken over from a node that left the ring without handing them
    /// over) are not owned yet.
    takeover: Option<(Instant, Ring)>,
}

impl Ownership {
    /// A node that has applied no view yet: it owns nothing.
    pub fn new(me: NodeId) -> Self {
        Self { me, ring: Ring::default(), term: 0, applied_at: None, lease: None, takeover: None }
    }

    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The term of the view applied.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// A newer view is applied now; returns the ring before it. When a node
    /// of the old ring is not in the new one (declared gone, or left), it
    /// may still think it owns its channels until its lease ends: their new
    /// owners wait [`TAKEOVER_WAIT`].
    pub fn set_view(&mut self, view: &View, now: Instant) -> Ring {
        let ring = view.ring();
        let left = self.ring.members().iter().any(|m| !ring.members().contains(m));
        if left {
            // Channels that were ours before stay ours; the others wait.
            let before = match self.takeover.take() {
                // A second change within the wait: what was not ours then is not yet.
                Some((_, before)) => before,
                None => self.ring.clone(),
            };
            self.takeover = Some((now + TAKEOVER_WAIT, before));
        }
        self.term = view.term();
        self.applied_at = Some(now);
        std::mem::replace(&mut self.ring, ring)
    }

    /// When the takeover wait ends, if one runs.
    pub fn takeover_ends(&self) -> Option<Instant> {
        self.takeover.as_ref().map(|(at, _)| *at)
    }

    /// Ends the takeover wait if its time has come; true if it just ended.
    pub fn end_takeover(&mut self, now: Instant) -> bool {
        self.takeover.take_if(|(at, _)| *at <= now).is_some()
    }

    /// The consensus gave (or renewed) the lease for view `view` until `until`.
    pub fn set_lease(&mut self, view: u64, until: Instant) {
        self.lease = Some((view, until));
    }

    /// Whether the lease holds for the view applied.
    pub fn leased(&self, now: Instant) -> bool {
        self.lease.is_some_and(|(view, until)| view == self.term && now < until)
    }

    /// Whether channels taken over must still wait for a lease elsewhere to end.
    pub fn taking_over(&self, now: Instant) -> Option<Instant> {
        self.takeover.as_ref().map(|(at, _)| *at).filter(|at| now < *at)
    }

    /// Whether `channel` is one taken over from a node that left, still
    /// waiting for that node's lease to end.
    fn waits_for_takeover(&self, channel: &str, now: Instant) -> bool {
        self.takeover.as_ref().is_some_and(|(at, before)| now < *at && before.owner(channel) != Some(&self.me))
    }

    /// Whether this node owns `channel` under the view applied.
    pub fn owns(&self, channel: &str) -> bool {
        self.ring.owner(channel) == Some(&self.me)
    }

    /// The channel's owner, when it is another node.
    pub fn owner_elsewhere(&self, channel: &str) -> Option<&NodeId> {
        self.ring.owner(channel).filter(|owner| **owner != self.me)
    }

    /// What to do with a publish to `channel` now; `catching_up`: this node
    /// is still taking the channel's stream from the nodes that held it.
    pub fn turn(&self, channel: &str, catching_up: bool, now: Instant) -> Turn {
        match self.ring.owner(channel) {
            None => return Turn::Hold,
            Some(owner) if *owner != self.me => return Turn::Forward(owner.clone()),
            Some(_) => {}
        }
        if catching_up || self.waits_for_takeover(channel, now) {
            return Turn::Hold;
        }
        if self.leased(now) {
            return Turn::Stamp;
        }
        // A lease being renewed, or the first under a view just applied.
        let lapsed_lately = self.lease.is_some_and(|(view, until)| view == self.term && now < until + LEASE_GRACE);
        let view_is_new = self.applied_at.is_some_and(|at| now < at + LEASE_GRACE);
        if lapsed_lately || view_is_new { Turn::Hold } else { Turn::Refuse }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::consensus::lease::LEASE;
    use crate::view::Member;

    fn id(name: &str) -> NodeId {
        NodeId::parse(name).unwrap()
    }

    fn view(term: u64, up: &[&str]) -> View {
        View::formed(term, up.iter().map(|n| (id(n), Member { raft_id: 1, link_addr: String::new(), up: true })))
    }

    /// A channel `node` owns in `ring`.
    fn owned_by(node: &str, ring: &Ring) -> String {
        (0..).map(|i| format!("ch-{i}")).find(|c| ring.owner(c) == Some(&id(node))).unwrap()
    }

    #[test]
    fn nothing_is_owned_before_a_view_and_a_lease() {
        let t0 = Instant::now();
        let mut own = Ownership::new(id("c0"));
        assert_eq!(own.turn("a", false, t0), Turn::Hold, "no view yet");
        own.set_view(&view(3, &["c0", "c1"]), t0);
        let mine = owned_by("c0", own.ring());
        let theirs = owned_by("c1", own.ring());
        assert_eq!(own.turn(&theirs, false, t0), Turn::Forward(id("c1")));
        assert_eq!(own.turn(&mine, false, t0), Turn::Hold, "the first lease is on its way");
        assert_eq!(own.turn(&mine, false, t0 + LEASE_GRACE), Turn::Refuse);
        own.set_lease(3, t0 + LEASE);
        assert_eq!(own.turn(&mine, false, t0), Turn::Stamp);
        assert_eq!(own.turn(&mine, true, t0), Turn::Hold, "catching up");
        // The lease ends: held while it may be renewed, then refused.
        assert_eq!(own.turn(&mine, false, t0 + LEASE), Turn::Hold);
        assert_eq!(own.turn(&mine, false, t0 + LEASE + LEASE_GRACE), Turn::Refuse);
    }

    #[test]
    fn a_lease_is_for_one_view() {
        let t0 = Instant::now();
        let mut own = Ownership::new(id("c0"));
        own.set_view(&view(3, &["c0"]), t0);
        own.set_lease(3, t0 + LEASE);
        assert!(own.leased(t0));
        own.set_view(&view(5, &["c0"]), t0);
        assert!(!own.leased(t0), "under a newer view it must be asked for again");
        own.set_lease(5, t0 + LEASE);
        assert!(own.leased(t0));
    }

    #[test]
    fn channels_of_a_node_that_left_are_taken_over_only_after_its_lease_must_have_ended() {
        let t0 = Instant::now();
        let mut own = Ownership::new(id("c0"));
        own.set_view(&view(3, &["c0", "c1"]), t0);
        assert_eq!(own.taking_over(t0), None, "nobody left");
        own.set_view(&view(6, &["c0", "c1", "c2"]), t0);
        assert_eq!(own.taking_over(t0), None, "a node joined: the others hand over as they apply the view");
        let before = own.ring().clone();
        own.set_view(&view(9, &["c0", "c2"]), t0);
        own.set_lease(9, t0 + TAKEOVER_WAIT * 2);
        assert_eq!(own.taking_over(t0), Some(t0 + TAKEOVER_WAIT));
        let kept = owned_by("c0", &before);
        let taken =
            (0..).map(|i| format!("ch-{i}")).find(|c| before.owner(c) == Some(&id("c1")) && own.owns(c)).unwrap();
        assert_eq!(own.turn(&kept, false, t0), Turn::Stamp, "ours before: no wait");
        assert_eq!(own.turn(&taken, false, t0), Turn::Hold, "c1's until its lease must have ended");
        assert_eq!(own.takeover_ends(), Some(t0 + TAKEOVER_WAIT));
        assert!(own.end_takeover(t0 + TAKEOVER_WAIT));
        assert_eq!(own.turn(&taken, false, t0 + TAKEOVER_WAIT), Turn::Stamp);
    }
}
