//! Leases: a control node gives offsets, confirms publishes and answers
//! history as a channel's owner only while a majority of the voters lets
//! it, for the view it owns the channel under. Pure; the clock is passed in.
//!
//! The asker counts a lease from when it asked (its own monotonic clock),
//! so a lease can only end early in the asker's eyes, never late. A granter
//! grants only while no view newer than the asker's is in its log
//! (appended, committed or not). A view that moves channels away from a
//! node is committed by a majority that appended it, and any majority
//! shares a node with the majority that granted the node's last lease:
//! that node granted before it appended the new view, so the lease was
//! asked for before the view was committed. The node that takes the
//! channels over waits [`TAKEOVER_WAIT`] after it applied the view, longer
//! than any such lease can still run.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// How long a lease lasts, from when it was asked for: well inside the
/// time after which a silent node is declared gone (`steward.rs`).
pub const LEASE: Duration = Duration::from_millis(2_000);
/// How often a node asks for its lease again.
pub const RENEW_EVERY: Duration = Duration::from_millis(500);
/// How much faster one node's monotonic clock may run than another's, in
/// parts per thousand (a paused process's clock does not stop; a frozen
/// VM's may, which is why copies and deliveries are fenced by term too).
pub const MAX_DRIFT_PER_MILLE: u32 = 100;
/// How long a node that takes channels over from one that did not hand
/// them over waits after applying the view: one lease, with drift and margin.
pub const TAKEOVER_WAIT: Duration =
    Duration::from_millis(LEASE.as_millis() as u64 * (1000 + MAX_DRIFT_PER_MILLE as u64) / 1000 + 200);
/// Asks remembered while their grants come in.
const ASKS_KEPT: usize = 8;

struct Ask {
    number: u64,
    view: u64,
    at: Instant,
    granted: BTreeSet<u64>,
}

/// This node's lease, as the asker keeps it.
#[derive(Default)]
pub struct Lease {
    asks: VecDeque<Ask>,
    next: u64,
    /// The view the lease is for, and when it ends.
    held: Option<(u64, Instant)>,
}

/// Whether a granter lets an asker at view `asked` hold a lease: not when
/// the granter's log holds a newer view (`newest_in_log`), nor when the
/// asker is no voter.
pub fn grants(asked: u64, newest_in_log: u64, asker_votes: bool) -> bool {
    asker_votes && asked >= newest_in_log
}

impl Lease {
    /// Asks for a lease for `view` now; the ask's number.
    pub fn ask(&mut self, view: u64, now: Instant) -> u64 {
        self.next += 1;
        if self.asks.len() >= ASKS_KEPT {
            self.asks.pop_front();
        }
        self.asks.push_back(Ask { number: self.next, view, at: now, granted: BTreeSet::new() });
        self.next
    }

    /// Voter `from` answered ask `number`; with a majority of `voters` in,
    /// the lease runs [`LEASE`] from when it was asked. True if the lease
    /// moved on.
    pub fn answered(&mut self, number: u64, from: u64, granted: bool, voters: &[u64]) -> bool {
        let Some(ask) = self.asks.iter_mut().find(|a| a.number == number) else { return false };
        if !granted || !voters.contains(&from) {
            return false;
        }
        ask.granted.insert(from);
        if ask.granted.len() * 2 <= voters.len() {
            return false;
        }
        let until = ask.at + LEASE;
        let moved = match self.held {
            Some((view, at)) if view == ask.view => until > at,
            Some((view, _)) => ask.view > view,
            None => true,
        };
        if moved {
            self.held = Some((ask.view, until));
        }
        moved
    }

    /// Whether the lease holds for `view` at `now`.
    pub fn holds(&self, view: u64, now: Instant) -> bool {
        self.held.is_some_and(|(v, until)| v == view && now < until)
    }

    /// The view the lease is for and when it ends, if any.
    pub fn held(&self) -> Option<(u64, Instant)> {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_majority_of_voters_makes_a_lease_counted_from_the_ask() {
        let t0 = Instant::now();
        let voters = [1, 2, 3];
        let mut lease = Lease::default();
        let ask = lease.ask(7, t0);
        assert!(!lease.answered(ask, 1, true, &voters), "one of three");
        assert!(!lease.answered(ask, 9, true, &voters), "not a voter");
        assert!(!lease.answered(ask, 2, false, &voters), "refused");
        assert!(lease.answered(ask, 3, true, &voters));
        assert!(lease.holds(7, t0 + LEASE - Duration::from_millis(1)));
        assert!(!lease.holds(7, t0 + LEASE), "counted from the ask, however late the grants came");
        assert!(!lease.holds(8, t0), "for its view only");
    }

    #[test]
    fn a_later_ask_extends_it_and_a_newer_view_replaces_it() {
        let t0 = Instant::now();
        let voters = [1, 2, 3];
        let mut lease = Lease::default();
        let first = lease.ask(7, t0);
        let second = lease.ask(7, t0 + RENEW_EVERY);
        for from in [1, 2] {
            lease.answered(second, from, true, &voters);
        }
        // A late answer to the older ask does not shorten it.
        for from in [1, 2] {
            assert!(!lease.answered(first, from, true, &voters));
        }
        assert!(lease.holds(7, t0 + RENEW_EVERY + LEASE - Duration::from_millis(1)));
        let newer = lease.ask(8, t0 + RENEW_EVERY * 2);
        lease.answered(newer, 1, true, &voters);
        lease.answered(newer, 3, true, &voters);
        assert!(lease.holds(8, t0 + RENEW_EVERY * 2) && !lease.holds(7, t0 + RENEW_EVERY * 2));
    }

    #[test]
    fn a_granter_refuses_once_a_newer_view_is_in_its_log() {
        assert!(grants(7, 7, true));
        assert!(grants(8, 7, true), "the granter lags: nothing newer in its log");
        assert!(!grants(7, 8, true));
        assert!(!grants(7, 7, false));
        assert!(TAKEOVER_WAIT > LEASE * (1000 + MAX_DRIFT_PER_MILLE) / 1000);
    }

    #[test]
    fn alone_a_node_is_its_own_majority() {
        let t0 = Instant::now();
        let mut lease = Lease::default();
        let ask = lease.ask(1, t0);
        assert!(lease.answered(ask, 5, true, &[5]));
        assert!(lease.holds(1, t0));
    }
}
