//! The `slip.v1` sessions parked on an edge, as plain data: when each was
//! parked, where it stood in its channels, its admission slot and what it
//! costs in bytes, and one deadline each in an [`Expiries`] queue. Pure: the node (`node/resume.rs`) keeps it behind one
//! lock and does what its answers say; the clock is passed in.
//!
//! The invariant that makes it simple: a session is parked exactly when it
//! has a deadline here. Parking it again replaces both; resuming, handing
//! over, expiring or evicting it removes both.

use std::collections::HashMap;

use tokio::time::Instant;

use crate::admission::ParkedSlot;
use crate::expiry::{Expiries, Expiry};

/// A session waiting to be resumed.
pub struct Parked {
    /// When it was parked (seconds since the epoch): its newest token resumes
    /// it if it was fresh then.
    pub since: u64,
    /// Per channel, where the session stood when parked: what it was last
    /// sent, or (nothing sent yet) where the edge's stream was.
    pub positions: HashMap<String, (String, u64)>,
    /// Its connection's slot: a parked session counts against the edge's
    /// connections.
    pub slot: ParkedSlot,
    /// What it holds here, about, counted against the edge's byte bound.
    pub bytes: usize,
}

/// Sessions parked here and when each ends.
#[derive(Default)]
pub struct Parking {
    parked: HashMap<String, Parked>,
    /// The sum of the parked sessions' `bytes`.
    bytes: usize,
    deadlines: Expiries,
}

impl Parking {
    /// Its entries by structure (`slip_entries`).
    pub fn sizes(&self, out: &mut slip_metrics::Sizes) {
        out.push(("parked_sessions", self.parked.len()));
        out.push(("session_deadlines", self.deadlines.len()));
    }

    /// Parks session `id` until `deadline`, replacing whatever was parked
    /// under its id. True if that deadline is now the earliest (the clock,
    /// sleeping until a later one, must look again).
    pub fn park(&mut self, id: &str, parked: Parked, deadline: Instant) -> bool {
        self.bytes += parked.bytes;
        if let Some(old) = self.parked.insert(id.to_owned(), parked) {
            self.bytes -= old.bytes;
        }
        self.deadlines.push(Expiry { at: deadline, id: id.to_owned() })
    }

    /// Takes session `id` out. Whether it may be (its generation) is
    /// checked by the caller under the session's lock.
    pub fn take(&mut self, id: &str) -> Option<Parked> {
        let gone = self.parked.remove(id)?;
        self.bytes -= gone.bytes;
        self.deadlines.remove(id);
        Some(gone)
    }

    /// Takes out the session parked longest ago, to make room.
    pub fn evict_oldest(&mut self) -> Option<(String, Parked)> {
        let oldest = self.deadlines.take_oldest()?;
        let parked = self.take(&oldest.id)?;
        Some((oldest.id, parked))
    }

    /// Takes out the sessions whose deadline is at or before `now`, at most
    /// `max`, earliest first.
    pub fn take_due(&mut self, now: Instant, max: usize) -> Vec<(String, Parked)> {
        let due = self.deadlines.take_due(now, max);
        due.into_iter().filter_map(|expiry| self.take(&expiry.id).map(|parked| (expiry.id, parked))).collect()
    }

    /// Takes every parked session out (the edge is going away).
    pub fn take_all(&mut self) -> Vec<(String, Parked)> {
        let ids: Vec<String> = self.parked.keys().cloned().collect();
        ids.into_iter().filter_map(|id| self.take(&id).map(|parked| (id, parked))).collect()
    }

    /// When session `id` was parked, if it is.
    pub fn since(&self, id: &str) -> Option<u64> {
        self.parked.get(id).map(|p| p.since)
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.next()
    }

    /// Sessions parked.
    pub fn len(&self) -> usize {
        self.parked.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }

    /// What the parked sessions hold, about.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Deadlines kept: one per parked session.
    pub fn deadlines(&self) -> usize {
        self.deadlines.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use tokio::time::Instant;

    use super::{Parked, Parking};
    use crate::admission::Admission;

    fn parked(admission: &std::sync::Arc<Admission>, bytes: usize) -> Parked {
        let slot = admission.admit().unwrap().park();
        Parked { since: 0, positions: Default::default(), slot, bytes }
    }

    #[test]
    fn a_session_is_parked_exactly_while_it_has_a_deadline() {
        let (admission, t0) = (Admission::new(10), Instant::now());
        let mut parking = Parking::default();
        assert!(parking.park("a", parked(&admission, 100), t0 + Duration::from_secs(5)));
        assert!(!parking.park("b", parked(&admission, 50), t0 + Duration::from_secs(9)));
        // Parked again (a resume, then a drop): one entry, one deadline, its bytes once.
        parking.park("a", parked(&admission, 70), t0 + Duration::from_secs(7));
        assert_eq!((parking.len(), parking.deadlines(), parking.bytes()), (2, 2, 120));
        assert_eq!(admission.in_use(), 2, "the replaced entry gave its slot back");

        assert_eq!(parking.take("a").unwrap().bytes, 70, "the newer entry");
        assert_eq!((parking.len(), parking.deadlines(), parking.bytes()), (1, 1, 50));
        assert!(parking.take("a").is_none());
    }

    #[test]
    fn deadlines_end_sessions_earliest_first_and_eviction_takes_the_oldest() {
        let (admission, t0) = (Admission::new(10), Instant::now());
        let mut parking = Parking::default();
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            parking.park(id, parked(&admission, 10), t0 + Duration::from_secs(i as u64 + 1));
        }
        assert_eq!(parking.next_deadline(), Some(t0 + Duration::from_secs(1)));
        let (oldest, _) = parking.evict_oldest().unwrap();
        assert_eq!(oldest, "a");
        let due: Vec<String> =
            parking.take_due(t0 + Duration::from_secs(2), 10).into_iter().map(|(id, _)| id).collect();
        assert_eq!(due, ["b"]);
        assert_eq!(parking.take_all().len(), 1);
        assert!(parking.is_empty() && parking.deadlines() == 0 && parking.bytes() == 0);
        assert_eq!(admission.in_use(), 0, "every slot given back");
    }
}
