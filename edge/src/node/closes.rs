//! Records of this edge's accepted connections at the control nodes owning
//! their ids (docs/close.md): if this edge is lost, those nodes send the
//! CLOSEs it could not. Only for SLIP v4 targets (a CLOSE in another
//! format is not theirs to write).

use slip_proto::link_pb::{ConnectionRecord, Frame, frame::Kind};

use super::Edge;
use crate::config::TargetFormat;

impl Edge {
    /// Tells the control node owning connection `id` of it as it is now:
    /// accepted, with its metadata (again whenever that changes, and when
    /// a session moves here).
    pub(crate) fn record_connection(&self, id: &str) {
        if !self.keeps_records() {
            return;
        }
        let Some(metadata) = self.hub.metadata(id) else { return };
        let record = ConnectionRecord {
            connection_id: id.to_owned(),
            metadata_json: metadata.to_string(),
            session: self.hub.session(id).is_some(),
            target_url: self.config.target_url.clone(),
            ..Default::default()
        };
        self.send_connection_record(record);
    }

    /// Connection `id`'s CLOSE went to the backend from here (or its session
    /// ended): its record goes.
    pub(crate) fn record_closed(&self, id: &str) {
        if !self.keeps_records() {
            return;
        }
        self.send_connection_record(ConnectionRecord {
            connection_id: id.to_owned(),
            closed: true,
            ..Default::default()
        });
    }

    fn keeps_records(&self) -> bool {
        self.config.record_connections && self.config.target_format == TargetFormat::Slip
    }

    fn send_connection_record(&self, record: ConnectionRecord) {
        let owner = self.ring.load().owner(&record.connection_id).cloned();
        self.send_to(owner, Frame { kind: Some(Kind::ConnectionRecord(record)) });
    }
}
