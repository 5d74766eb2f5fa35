//! How a connection subscribes to a channel, beyond the channel's name.

use serde_json::Value;

/// Options of a subscription: membership of the channel's presence, and
/// join and leave frames for a `slip.v1` client.
///
/// ```
/// use slip_sockets::Subscription;
/// let mut c = slip_sockets::Connection::new("n.0123456789abcdef0123", serde_json::Value::Null, vec![]);
/// c.subscribe_with("room", Subscription::default().presence(serde_json::json!({"name": "ann"})).join_leave());
/// let reply = c.end_response();
/// assert!(reply.contains(r#""presence":{"name":"ann"},"joinLeave":true"#), "{reply}");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subscription {
    pub(crate) presence: Option<Value>,
    pub(crate) join_leave: bool,
}

impl Subscription {
    /// The connection is a member of the channel's presence with `info`
    /// (a JSON object of at most 1 KiB).
    pub fn presence(mut self, info: Value) -> Self {
        self.presence = Some(info);
        self
    }

    /// A `slip.v1` client gets `{"type":"join",…}` and `{"type":"leave",…}`
    /// frames for the channel's presence members, in order with its
    /// publications.
    pub fn join_leave(mut self) -> Self {
        self.join_leave = true;
        self
    }
}
