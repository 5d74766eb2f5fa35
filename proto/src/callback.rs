//! The SLIP v4 callback: what the edge POSTs to a backend for socket events.
//!
//! ```text
//! POST <target>  Authorization: Bearer <jwt aud=WebSocketEvent>
//!                Content-Type: application/websocket-events
//! {"connectionId":"…","metadata":{…},"events":[{"type":"OPEN","connectionId":"…"}]}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Content type of callback requests (and of the original's replies).
pub const CONTENT_TYPE: &str = "application/websocket-events";

/// The body of one callback request: one connection, one or more events in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackRequest {
    /// The connection the events are of.
    pub connection_id: String,
    /// Its metadata: at OPEN the handshake's (headers, ip, path, query),
    /// later what the backend set.
    pub metadata: Value,
    /// Its events, oldest first.
    pub events: Vec<Event>,
}

/// One socket event. `BINARY` goes only to targets that opted in: an old
/// backend rejects types it does not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Event {
    /// A client opens a connection: answer `ACCEPT` to let it in.
    #[serde(rename_all = "camelCase")]
    Open {
        /// The new connection's id.
        connection_id: String,
    },
    /// A text message from the client.
    #[serde(rename_all = "camelCase")]
    Text {
        /// Its connection.
        connection_id: String,
        /// The message.
        data: String,
    },
    /// `data` is base64 (standard alphabet, padded).
    #[serde(rename_all = "camelCase")]
    Binary {
        /// Its connection.
        connection_id: String,
        /// The message, base64.
        data: String,
    },
    /// `code` and `reason` are additive: present when the peer sent a close frame.
    #[serde(rename_all = "camelCase")]
    Close {
        /// The connection that ended.
        connection_id: String,
        /// The close code, when the client sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        /// The close reason, when the client sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Additive: the same for every CLOSE of this connection, whoever
        /// sends it, so a backend can drop a repeat ([`close_event_id`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
    },
}

/// The `eventId` of a connection's CLOSE: one per accepted connection (a
/// session's, however often it resumed), whoever sends it.
pub fn close_event_id(connection_id: &str) -> String {
    format!("close:{connection_id}")
}

impl Event {
    /// The CLOSE of `connection_id`, with its `eventId`.
    pub fn close(connection_id: &str, code: Option<u16>, reason: Option<String>) -> Self {
        Event::Close {
            connection_id: connection_id.to_owned(),
            code,
            reason,
            event_id: Some(close_event_id(connection_id)),
        }
    }

    /// The connection the event is of.
    pub fn connection_id(&self) -> &str {
        match self {
            Event::Open { connection_id }
            | Event::Text { connection_id, .. }
            | Event::Binary { connection_id, .. }
            | Event::Close { connection_id, .. } => connection_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exact_shapes() {
        let body = CallbackRequest {
            connection_id: "n.0".into(),
            metadata: Value::Null,
            events: vec![
                Event::Open { connection_id: "n.0".into() },
                Event::Text { connection_id: "n.0".into(), data: "hi".into() },
                Event::Close { connection_id: "n.0".into(), code: None, reason: None, event_id: None },
                Event::close("n.0", Some(1000), Some("bye".into())),
            ],
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({
                "connectionId": "n.0",
                "metadata": null,
                "events": [
                    {"type": "OPEN", "connectionId": "n.0"},
                    {"type": "TEXT", "connectionId": "n.0", "data": "hi"},
                    {"type": "CLOSE", "connectionId": "n.0"},
                    {"type": "CLOSE", "connectionId": "n.0", "code": 1000, "reason": "bye", "eventId": "close:n.0"},
                ]
            })
        );
    }
}
