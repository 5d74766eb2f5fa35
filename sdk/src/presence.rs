//! A channel's presence through gRPC, as its owner keeps it.

use serde_json::Value;
use slip_proto::pb::PresenceRequest;

use crate::control::{ControlError, GrpcControl, from_status};

/// Who is in a channel's presence.
#[derive(Debug, Clone, PartialEq)]
pub struct Presence {
    /// By connection id, with the info each subscribed with; at most the
    /// limit asked for (1,000 when none was).
    pub members: Vec<(String, Value)>,
    /// How many members there are in all.
    pub count: u64,
}

impl GrpcControl {
    /// The members of `channel`'s presence, at most `limit` (0: 1,000), and
    /// their count, from the channel's owner through any control node.
    pub async fn presence(&self, channel: impl Into<String>, limit: u32) -> Result<Presence, ControlError> {
        let request = PresenceRequest { channel: channel.into(), limit };
        let reply = self.client().presence(request).await.map_err(from_status)?.into_inner();
        let members = reply
            .members
            .into_iter()
            .map(|m| {
                let info = serde_json::from_str(&m.info).unwrap_or(Value::Null);
                (m.connection_id, info)
            })
            .collect();
        Ok(Presence { members, count: reply.count })
    }
}
