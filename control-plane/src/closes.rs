//! The CLOSE a backend can count on, as pure code (docs/close.md): a record
//! of every accepted connection at the control node owning its id (and a
//! copy at that node's replicas), kept until its edge says it sent the
//! CLOSE. When the edge is lost, the owner sends it: for a plain connection
//! [`EDGE_LOSS_GRACE`] after the edge's link went (a link that comes back
//! from the same process in time cancels it), for a session once its resume
//! window has passed without another edge taking it.
//!
//! Every CLOSE of one connection has the same `eventId`, whoever sends it,
//! so the rare repeat (an edge lost right after its own CLOSE went, before
//! it said so) is one the backend drops.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// How long an edge's link may be gone before the CLOSEs of its plain
/// connections go out: a link that comes back within it (the same edge
/// process) was a blip, and its connections still live.
pub const EDGE_LOSS_GRACE: Duration = Duration::from_secs(5);
/// Bytes of records a control node keeps, at most (ids, metadata, target
/// URLs, copies included); past it new records are not kept, and those
/// connections' CLOSEs come only from their edges.
pub const MAX_RECORD_BYTES: usize = 512 << 20;
/// How long a CLOSE sent for a lost edge is remembered: the edge coming
/// back within it (a partition that healed) is told to close those
/// connections, so a CLOSE is never followed by more of the connection.
pub const SENT_MEMORY: Duration = Duration::from_secs(600);
/// Memory of one record beyond its strings, about.
const RECORD_OVERHEAD: usize = 160;

/// One accepted connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub connection_id: String,
    pub metadata: Arc<str>,
    pub session: bool,
    pub target_url: Arc<str>,
    /// The edge that holds it, and that edge's process.
    pub edge: String,
    pub incarnation: u64,
}

impl Record {
    fn bytes(&self) -> usize {
        RECORD_OVERHEAD + self.connection_id.len() + self.metadata.len() + self.target_url.len() + self.edge.len()
    }
}

/// Records, by connection id, and the CLOSEs falling due.
#[derive(Default)]
pub struct Closes {
    records: HashMap<String, Record>,
    by_edge: HashMap<String, HashSet<String>>,
    /// Edges linked now, with their process.
    linked: HashMap<String, u64>,
    /// (due, connection id), and each id's due time.
    due: BTreeSet<(Instant, String)>,
    due_at: HashMap<String, Instant>,
    /// CLOSEs sent for lost edges: id → (edge, incarnation, when).
    sent: HashMap<String, (String, u64, Instant)>,
    bytes: usize,
}

/// What a record from an edge calls for.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    Kept,
    /// Not kept: the bound is reached.
    Full,
    /// Its CLOSE went out already (its edge was taken for lost): the edge
    /// must close the connection.
    AlreadyClosed,
}

impl Closes {
    /// Its entries by structure (`slip_entries`).
    pub fn sizes(&self, out: &mut slip_metrics::Sizes) {
        out.push(("close_records", self.records.len()));
        out.push(("close_due", self.due.len()));
        out.push(("close_sent", self.sent.len()));
    }

    /// A record, new or again (metadata changed, a session moved): kept,
    /// and a CLOSE due for it called off if it lives on a linked edge.
    pub fn record(&mut self, record: Record) -> Recorded {
        if let Some((edge, incarnation, _)) = self.sent.get(&record.connection_id)
            && *edge == record.edge
            && *incarnation == record.incarnation
        {
            return Recorded::AlreadyClosed;
        }
        let old = self.remove(&record.connection_id);
        if old.is_none() && self.bytes + record.bytes() > MAX_RECORD_BYTES {
            return Recorded::Full;
        }
        if self.linked.get(&record.edge) == Some(&record.incarnation) {
            self.undue(&record.connection_id);
        }
        self.bytes += record.bytes();
        self.by_edge.entry(record.edge.clone()).or_default().insert(record.connection_id.clone());
        self.records.insert(record.connection_id.clone(), record);
        Recorded::Kept
    }

    /// The edge sent the connection's CLOSE itself (or the session ended): the record goes.
    pub fn closed(&mut self, connection_id: &str) {
        self.remove(connection_id);
        self.undue(connection_id);
    }

    fn remove(&mut self, connection_id: &str) -> Option<Record> {
        let record = self.records.remove(connection_id)?;
        self.bytes -= record.bytes();
        if let Some(ids) = self.by_edge.get_mut(&record.edge) {
            ids.remove(connection_id);
            if ids.is_empty() {
                self.by_edge.remove(&record.edge);
            }
        }
        Some(record)
    }

    fn undue(&mut self, connection_id: &str) {
        if let Some(at) = self.due_at.remove(connection_id) {
            self.due.remove(&(at, connection_id.to_owned()));
        }
    }

    fn schedule(&mut self, connection_id: &str, at: Instant) {
        self.undue(connection_id);
        self.due_at.insert(connection_id.to_owned(), at);
        self.due.insert((at, connection_id.to_owned()));
    }

    /// `edge` (process `incarnation`) linked: the CLOSEs due for its
    /// connections are called off (its link came back in time).
    pub fn edge_linked(&mut self, edge: &str, incarnation: u64) {
        self.linked.insert(edge.to_owned(), incarnation);
        for id in self.by_edge.get(edge).cloned().unwrap_or_default() {
            if self.records.get(&id).is_some_and(|r| r.incarnation == incarnation) {
                self.undue(&id);
            }
        }
    }

    /// The connections of `edge` (process `incarnation`) whose CLOSEs this
    /// node sent while the edge was away: linked again, it must close them
    /// (whoever owns their ids now: the record, and so this memory, does
    /// not move with the ids, and a partition that healed may have given
    /// them back to a node that never sent them).
    pub fn closed_while_away(&self, edge: &str, incarnation: u64) -> Vec<String> {
        let mut ids: Vec<String> = self
            .sent
            .iter()
            .filter(|(_, (e, i, _))| e == edge && *i == incarnation)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// `edge`'s last link went: the CLOSEs of the connections it held whose
    /// ids `owned` says this node owns fall due, a plain connection's after
    /// [`EDGE_LOSS_GRACE`], a session's at `sessions_at`.
    pub fn edge_gone(&mut self, edge: &str, now: Instant, sessions_at: Instant, owned: impl Fn(&str) -> bool) {
        self.linked.remove(edge);
        self.schedule_edge(edge, None, now, sessions_at, owned);
    }

    /// Schedules the CLOSEs of `edge`'s records, but those of its process
    /// `alive` (linked here).
    fn schedule_edge(
        &mut self,
        edge: &str,
        alive: Option<u64>,
        now: Instant,
        sessions_at: Instant,
        owned: impl Fn(&str) -> bool,
    ) {
        for id in self.by_edge.get(edge).cloned().unwrap_or_default() {
            let Some(record) = self.records.get(&id) else { continue };
            if Some(record.incarnation) == alive {
                continue;
            }
            let session = record.session;
            if owned(&id) && !self.due_at.contains_key(&id) {
                self.schedule(&id, if session { sessions_at } else { now + EDGE_LOSS_GRACE });
            }
        }
    }

    /// This node owns more ids now (the view changed): records it now owns
    /// of an edge process not linked here (the edge is not, or a new
    /// process of it is) fall due as if the edge went now.
    pub fn taking_over(&mut self, now: Instant, sessions_at: Instant, owned: impl Fn(&str) -> bool) {
        let edges: Vec<(String, Option<u64>)> =
            self.by_edge.keys().map(|e| (e.clone(), self.linked.get(e).copied())).collect();
        for (edge, alive) in edges {
            self.schedule_edge(&edge, alive, now, sessions_at, &owned);
        }
    }

    /// Connection `connection_id`'s record (a copy handed over: this node
    /// owns the id now) names an edge process not linked here: its CLOSE
    /// falls due as if that edge went now (the sender still asks the other
    /// control nodes whether one links it).
    pub fn unlinked_copy(&mut self, connection_id: &str, now: Instant, sessions_at: Instant) {
        let Some(record) = self.records.get(connection_id) else { return };
        if self.linked.get(&record.edge) == Some(&record.incarnation) || self.due_at.contains_key(connection_id) {
            return;
        }
        let at = if record.session { sessions_at } else { now + EDGE_LOSS_GRACE };
        self.schedule(connection_id, at);
    }

    /// Every record held here, owned or a copy.
    pub fn held(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    /// The CLOSEs due by `now` of records `owned` says are this node's: the
    /// records go, and are remembered as sent. Those not owned any more stay
    /// as copies.
    pub fn due(&mut self, now: Instant, owned: impl Fn(&str) -> bool) -> Vec<Record> {
        self.sent.retain(|_, (_, _, at)| now.saturating_duration_since(*at) < SENT_MEMORY);
        let mut out = Vec::new();
        while self.due.first().is_some_and(|(at, _)| *at <= now) {
            let Some((_, id)) = self.due.pop_first() else { break };
            self.due_at.remove(&id);
            if !owned(&id) {
                continue;
            }
            if let Some(record) = self.remove(&id) {
                self.sent.insert(id, (record.edge.clone(), record.incarnation, now));
                out.push(record);
            }
        }
        out
    }

    /// When the next CLOSE falls due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.due.first().map(|(at, _)| *at)
    }

    /// Keeps only the records `keep` says (the ring settled: this node
    /// neither owns nor copies the others).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self.records.keys().filter(|id| !keep(id)).cloned().collect();
        for id in gone {
            self.closed(&id);
        }
    }

    /// How many records, and their bytes.
    pub fn size(&self) -> (usize, usize) {
        (self.records.len(), self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, edge: &str, session: bool) -> Record {
        Record {
            connection_id: id.into(),
            metadata: Arc::from("{}"),
            session,
            target_url: Arc::from("http://backend/"),
            edge: edge.into(),
            incarnation: 1,
        }
    }

    fn ids(records: &[Record]) -> Vec<&str> {
        records.iter().map(|r| r.connection_id.as_str()).collect()
    }

    const WINDOW: Duration = Duration::from_secs(120);

    #[test]
    fn a_lost_edges_plain_connections_close_after_the_grace_its_sessions_after_their_window() {
        let mut closes = Closes::default();
        let t0 = Instant::now();
        closes.edge_linked("e1", 1);
        closes.record(record("e1.a", "e1", false));
        closes.record(record("e1.s", "e1", true));
        closes.record(record("e1.b", "e1", false));
        closes.closed("e1.b");
        closes.edge_gone("e1", t0, t0 + WINDOW, |_| true);
        assert!(closes.due(t0 + EDGE_LOSS_GRACE / 2, |_| true).is_empty());
        assert_eq!(ids(&closes.due(t0 + EDGE_LOSS_GRACE, |_| true)), ["e1.a"], "b's edge sent its CLOSE");
        assert_eq!(closes.next_deadline(), Some(t0 + WINDOW));
        assert_eq!(ids(&closes.due(t0 + WINDOW, |_| true)), ["e1.s"]);
        assert!(closes.due(t0 + WINDOW * 2, |_| true).is_empty(), "each once");
        assert_eq!(closes.size(), (0, 0));
    }

    #[test]
    fn a_link_back_in_time_calls_the_closes_off_and_a_session_taken_elsewhere_is_not_closed() {
        let mut closes = Closes::default();
        let t0 = Instant::now();
        closes.edge_linked("e1", 1);
        closes.edge_linked("e2", 1);
        closes.record(record("e1.a", "e1", false));
        closes.record(record("e1.s", "e1", true));
        closes.edge_gone("e1", t0, t0 + WINDOW, |_| true);
        // The session resumes on e2, which says so.
        closes.record(record("e1.s", "e2", true));
        // e1's link comes back from the same process.
        closes.edge_linked("e1", 1);
        assert!(closes.due(t0 + WINDOW, |_| true).is_empty());
        // A new process of e1: its predecessor's connections are lost.
        closes.edge_gone("e1", t0, t0 + WINDOW, |_| true);
        closes.edge_linked("e1", 2);
        assert_eq!(ids(&closes.due(t0 + EDGE_LOSS_GRACE, |_| true)), ["e1.a"]);
    }

    #[test]
    fn a_node_taking_over_closes_the_connections_of_an_edges_earlier_process() {
        let mut closes = Closes::default();
        let t0 = Instant::now();
        closes.record(record("e1.a", "e1", false));
        // A new process of e1 links (the record names process 1).
        closes.edge_linked("e1", 2);
        closes.taking_over(t0, t0 + WINDOW, |_| true);
        assert_eq!(ids(&closes.due(t0 + EDGE_LOSS_GRACE, |_| true)), ["e1.a"]);
    }

    #[test]
    fn only_the_owner_closes_and_a_node_taking_over_closes_what_it_cannot_see_linked() {
        let mut closes = Closes::default();
        let t0 = Instant::now();
        closes.edge_linked("e1", 1);
        closes.record(record("e1.a", "e1", false));
        closes.edge_gone("e1", t0, t0 + WINDOW, |_| false);
        assert!(closes.due(t0 + WINDOW, |_| true).is_empty(), "not owned when the edge went: its owner's to send");
        // The owner died too: this node owns the id now, and sees no link to e1.
        closes.taking_over(t0 + WINDOW, t0 + WINDOW * 2, |_| true);
        assert_eq!(ids(&closes.due(t0 + WINDOW + EDGE_LOSS_GRACE, |_| true)), ["e1.a"]);
    }

    #[test]
    fn an_edge_back_after_its_closes_went_is_told_to_close_those_connections() {
        let mut closes = Closes::default();
        let t0 = Instant::now();
        closes.record(record("e1.a", "e1", false));
        closes.edge_gone("e1", t0, t0 + WINDOW, |_| true);
        assert_eq!(closes.due(t0 + EDGE_LOSS_GRACE, |_| true).len(), 1);
        closes.edge_linked("e1", 1);
        assert_eq!(closes.record(record("e1.a", "e1", false)), Recorded::AlreadyClosed);
        // Its link back, it is told so whether or not it names the connection again.
        assert_eq!(closes.closed_while_away("e1", 1), ["e1.a"]);
        assert!(closes.closed_while_away("e1", 2).is_empty(), "a new process of it holds none of them");
        // Long after, it is forgotten.
        closes.due(t0 + SENT_MEMORY * 2, |_| true);
        assert_eq!(closes.record(record("e1.a", "e1", false)), Recorded::Kept);
    }
}
