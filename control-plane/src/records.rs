//! Records of `slip.v1` sessions, kept by the control node that owns each
//! session's connection id on the ring: its subscriptions, metadata and
//! generation, as its edge reports them, and which edge (of which
//! incarnation) reported them. When a client resumes on an edge that does
//! not hold its session, this node decides, here, whether its token may
//! take the session over ([`Records::take`]): only the newest generation's
//! token does, from the session's edge while that edge lives, and from the
//! record only once that edge is really gone. So an old token never gets a
//! session, and two copies of one session never run.

use std::collections::HashMap;

use parking_lot::Mutex;
use slip_proto::link_pb::SessionRecord;

/// Session records a control node keeps, at most; past it new ones are not
/// kept (their sessions can still resume while their edge lives).
pub const MAX_SESSION_RECORDS: usize = 1_000_000;
/// Bytes of session records a control node keeps, at most.
pub const MAX_SESSION_RECORD_BYTES: usize = 256 * 1024 * 1024;

#[derive(Default)]
pub struct Records {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    records: HashMap<String, Kept>,
    bytes: usize,
}

/// A record, and who reported it: the edge holding the session then.
#[derive(Debug, Clone)]
struct Kept {
    record: SessionRecord,
    edge: String,
    /// That edge's process (its `Hello`'s incarnation): a restarted edge of
    /// the same id no longer holds the session.
    incarnation: u64,
}

/// The edge a session's report came from.
#[derive(Debug, Clone, Copy)]
pub struct Reporter<'a> {
    pub edge: &'a str,
    pub incarnation: u64,
}

/// What to do with a token that asks to take a session over.
#[derive(Debug, Clone, PartialEq)]
pub enum Take {
    /// The session's edge lives: ask it to hand the session over (it
    /// refuses a token that is not the session's newest).
    AskHome(String),
    /// The session's edge is gone: go on from its record. The record has
    /// moved on a generation already, so the same token cannot take it twice.
    FromRecord(SessionRecord),
    /// The token does not resume the session (older than the session's
    /// generation, or nothing to check it against): a fresh session it is.
    Refuse,
}

fn size(record: &SessionRecord) -> usize {
    record.connection_id.len()
        + record.metadata_json.len()
        + record.channels.iter().map(String::len).sum::<usize>()
        + record.presence.iter().map(|p| p.channel.len() + p.info.len() + 1).sum::<usize>()
}

impl Records {
    /// Session records held (`slip_entries`).
    pub fn held(&self) -> usize {
        self.state.lock().records.len()
    }

    /// An edge's report: kept, replaced, or (ended) dropped. A report of an
    /// older generation than the record's, or of the same generation from
    /// another edge, comes from a copy the session has left: it changes
    /// nothing (least of all ends the session's record), and the edge that
    /// holds the session now is returned, so the reporter can let its copy go.
    pub fn update(&self, from: Reporter<'_>, record: SessionRecord) -> Option<String> {
        let mut state = self.state.lock();
        if let Some(old) = state.records.get(&record.connection_id) {
            let newer = record.generation > old.record.generation;
            let same = record.generation == old.record.generation && from.edge == old.edge;
            if !newer && !same {
                tracing::debug!(connection = record.connection_id, edge = from.edge, "stale session report ignored");
                return (old.edge != from.edge).then(|| old.edge.clone());
            }
        }
        if let Some(old) = state.records.remove(&record.connection_id) {
            state.bytes -= size(&old.record);
        }
        if record.ended {
            return None;
        }
        let bytes = size(&record);
        if state.records.len() >= MAX_SESSION_RECORDS || state.bytes + bytes > MAX_SESSION_RECORD_BYTES {
            tracing::warn!("session record not kept: the records are full");
            return None;
        }
        state.bytes += bytes;
        let kept = Kept { record, edge: from.edge.to_owned(), incarnation: from.incarnation };
        state.records.insert(kept.record.connection_id.clone(), kept);
        None
    }

    /// Whether a token of `generation` for session `id` may take it over
    /// for edge `taker`. `home_by_id` is where the session lives when there
    /// is no record (the edge its id names, or where it moved); `live` gives
    /// the incarnation of an edge linked to this node, `None` when it has
    /// no link here.
    pub fn take(
        &self,
        id: &str,
        generation: u64,
        home_by_id: &str,
        taker: Reporter<'_>,
        live: impl Fn(&str) -> Option<u64>,
    ) -> Take {
        let mut state = self.state.lock();
        let Some(kept) = state.records.get_mut(id) else {
            // Nothing to check a token against but the edge holding the session.
            return match live(home_by_id) {
                Some(_) => Take::AskHome(home_by_id.to_owned()),
                None => Take::Refuse,
            };
        };
        if generation < kept.record.generation {
            return Take::Refuse;
        }
        if live(&kept.edge) == Some(kept.incarnation) {
            return Take::AskHome(kept.edge.clone());
        }
        if generation > kept.record.generation {
            // The record lags the token and its edge is gone: nothing says
            // the token is the newest.
            return Take::Refuse;
        }
        let record = kept.record.clone();
        kept.record.generation = generation + 1;
        kept.edge = taker.edge.to_owned();
        kept.incarnation = taker.incarnation;
        Take::FromRecord(record)
    }

    /// Session `id` was handed over to `taker` by its edge for a token of
    /// `generation`: its record (if any) follows it, so a later report of
    /// the old edge's copy changes nothing.
    pub fn handed_over(&self, id: &str, generation: u64, taker: Reporter<'_>) {
        if let Some(kept) = self.state.lock().records.get_mut(id)
            && kept.record.generation <= generation
        {
            kept.record.generation = generation + 1;
            kept.edge = taker.edge.to_owned();
            kept.incarnation = taker.incarnation;
        }
    }

    /// The record of session `id`, if kept here.
    pub fn get(&self, id: &str) -> Option<SessionRecord> {
        self.state.lock().records.get(id).map(|k| k.record.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E1: Reporter<'static> = Reporter { edge: "e1", incarnation: 7 };
    const E2: Reporter<'static> = Reporter { edge: "e2", incarnation: 9 };

    fn record(channels: &[&str], generation: u64, ended: bool) -> SessionRecord {
        SessionRecord {
            connection_id: "e1.1".into(),
            metadata_json: "{}".into(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
            ended,
            generation,
            presence: Vec::new(),
        }
    }

    /// Which edges are linked here, with their incarnations.
    fn linked(edges: &'static [(&'static str, u64)]) -> impl Fn(&str) -> Option<u64> {
        move |edge| edges.iter().find(|(e, _)| *e == edge).map(|(_, i)| *i)
    }

    #[test]
    fn a_record_is_kept_replaced_and_dropped_when_it_ends() {
        let records = Records::default();
        records.update(E1, record(&["a"], 0, false));
        records.update(E1, record(&["a", "b"], 0, false));
        assert_eq!(records.get("e1.1").map(|r| r.channels.len()), Some(2));
        records.update(E1, record(&[], 0, true));
        assert_eq!(records.get("e1.1"), None);
        assert_eq!(records.state.lock().bytes, 0);
    }

    #[test]
    fn a_report_from_a_copy_the_session_left_changes_nothing() {
        let records = Records::default();
        records.update(E1, record(&["a"], 1, false));
        // An older generation, from anyone: its end does not end the record.
        records.update(E1, record(&[], 0, true));
        records.update(E2, record(&["x"], 0, false));
        // The same generation from another edge.
        records.update(E2, record(&[], 1, true));
        assert_eq!(records.get("e1.1").map(|r| r.channels), Some(vec!["a".to_owned()]));
        // A newer generation from anyone moves it on.
        records.update(E2, record(&["b"], 2, false));
        assert_eq!(records.get("e1.1").map(|r| (r.channels, r.generation)), Some((vec!["b".to_owned()], 2)));
    }

    #[test]
    fn while_its_edge_lives_the_edge_decides_and_an_old_token_is_refused_here() {
        let records = Records::default();
        records.update(E1, record(&["a"], 1, false));
        let live = linked(&[("e1", 7), ("e2", 9)]);
        assert_eq!(records.take("e1.1", 1, "e1", E2, &live), Take::AskHome("e1".into()));
        assert_eq!(records.take("e1.1", 0, "e1", E2, &live), Take::Refuse, "older than the record");
        // No record: the edge the id names decides, if it lives.
        assert_eq!(records.take("e1.2", 0, "e1", E2, &live), Take::AskHome("e1".into()));
        assert_eq!(records.take("e1.2", 0, "e3", E2, &live), Take::Refuse);
    }

    #[test]
    fn once_its_edge_is_gone_only_the_newest_token_takes_the_record_and_only_once() {
        let records = Records::default();
        records.update(E1, record(&["a"], 1, false));
        let gone = linked(&[("e2", 9)]);
        assert_eq!(records.take("e1.1", 0, "e1", E2, &gone), Take::Refuse, "an old token");
        assert_eq!(records.take("e1.1", 2, "e1", E2, &gone), Take::Refuse, "newer than anything recorded");
        let Take::FromRecord(taken) = records.take("e1.1", 1, "e1", E2, &gone) else { panic!("the newest token") };
        assert_eq!(taken.channels, ["a"]);
        assert_eq!(records.take("e1.1", 1, "e1", E2, &gone), Take::Refuse, "the same token again");
        assert_eq!(records.take("e1.1", 2, "e1", E2, &gone), Take::AskHome("e2".into()), "e2's token: e2 decides");
        // The dead edge's copy reporting late changes nothing, and hears who holds it now.
        assert_eq!(records.update(E1, record(&[], 1, true)), Some("e2".into()));
        assert!(records.get("e1.1").is_some());
    }

    #[test]
    fn an_edge_restarted_under_the_same_id_no_longer_holds_its_sessions() {
        let records = Records::default();
        records.update(E1, record(&["a"], 0, false));
        let restarted = linked(&[("e1", 8)]);
        assert!(matches!(records.take("e1.1", 0, "e1", E1, &restarted), Take::FromRecord(_)));
    }

    #[test]
    fn a_handover_moves_the_record_on() {
        let records = Records::default();
        records.update(E1, record(&["a"], 0, false));
        records.handed_over("e1.1", 0, E2);
        records.update(E1, record(&[], 0, true));
        let gone = linked(&[("e2", 9)]);
        assert_eq!(records.take("e1.1", 0, "e1", E1, &gone), Take::Refuse, "the token handed over is old now");
        assert_eq!(records.take("e1.1", 1, "e1", E1, &gone), Take::AskHome("e2".into()));
    }
}
