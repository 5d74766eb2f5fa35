//! Records of `slip.v1` sessions, kept by the control node that owns each
//! session's connection id on the ring: its subscriptions and metadata, as
//! its edge reports them. When that edge dies, the edge a client resumes on
//! takes them from here, so the session goes on with what the backend gave
//! it (and never with channels the client merely claims).

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
    records: HashMap<String, SessionRecord>,
    bytes: usize,
}

fn size(record: &SessionRecord) -> usize {
    record.connection_id.len() + record.metadata_json.len() + record.channels.iter().map(String::len).sum::<usize>()
}

impl Records {
    /// An edge's report: kept, replaced, or (ended) dropped.
    pub fn update(&self, record: SessionRecord) {
        let mut state = self.state.lock();
        if let Some(old) = state.records.remove(&record.connection_id) {
            state.bytes -= size(&old);
        }
        if record.ended {
            return;
        }
        let bytes = size(&record);
        if state.records.len() >= MAX_SESSION_RECORDS || state.bytes + bytes > MAX_SESSION_RECORD_BYTES {
            tracing::warn!("session record not kept: the records are full");
            return;
        }
        state.bytes += bytes;
        state.records.insert(record.connection_id.clone(), record);
    }

    /// The record of session `id`, if kept here.
    pub fn get(&self, id: &str) -> Option<SessionRecord> {
        self.state.lock().records.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_kept_replaced_and_dropped_when_it_ends() {
        let records = Records::default();
        let record = |channels: &[&str], ended| SessionRecord {
            connection_id: "edge-a.1".into(),
            metadata_json: "{}".into(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
            ended,
            found: true,
        };
        records.update(record(&["a"], false));
        records.update(record(&["a", "b"], false));
        assert_eq!(records.get("edge-a.1").map(|r| r.channels.len()), Some(2));
        records.update(record(&[], true));
        assert_eq!(records.get("edge-a.1"), None);
        assert_eq!(records.state.lock().bytes, 0);
    }
}
