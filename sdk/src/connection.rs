//! One callback's connection: the events it brought and the reply being built.

use serde_json::Value;
use slip_proto::callback::Event;
use slip_proto::command::{Batch, Command};

use crate::subscription::Subscription;

/// The connection a callback is about, and your answer to it.
///
/// Commands come out of [`end_response`](Self::end_response) in the order the
/// original SDK used: ACCEPT first, then everything else in call order, then
/// SET_METADATA, then CLOSE last.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    /// The connection's id: `<edge node id>.<random>`.
    pub connection_id: String,
    /// The events of this callback, in order.
    pub in_events: Vec<Event>,
    /// The connection's metadata as the gateway holds it (the handshake's
    /// headers, ip, path and query until you set your own).
    pub metadata: Value,
    accept: Option<Option<String>>,
    queued: Vec<Command>,
    new_metadata: Option<Value>,
    close: Option<(Option<u16>, Option<String>)>,
}

impl Connection {
    /// A connection from a parsed callback body.
    ///
    /// ```
    /// let c = slip_sockets::Connection::new("n.0123456789abcdef0123", serde_json::Value::Null, vec![]);
    /// assert!(!c.is_opening());
    /// ```
    pub fn new(connection_id: impl Into<String>, metadata: Value, in_events: Vec<Event>) -> Self {
        Self {
            connection_id: connection_id.into(),
            in_events,
            metadata,
            accept: None,
            queued: Vec::new(),
            new_metadata: None,
            close: None,
        }
    }

    /// Whether this callback opens the connection (it carries OPEN): only
    /// then does [`accept`](Self::accept) mean anything.
    ///
    /// ```
    /// # use slip_sockets::{Connection, InEvent};
    /// let id = "n.0123456789abcdef0123";
    /// let c = Connection::new(id, serde_json::Value::Null, vec![InEvent::Open { connection_id: id.into() }]);
    /// assert!(c.is_opening());
    /// ```
    pub fn is_opening(&self) -> bool {
        self.in_events.iter().any(|e| matches!(e, Event::Open { .. }))
    }

    /// Accepts the opening connection. Without it the client gets a 403.
    ///
    /// ```
    /// # let mut c = slip_sockets::Connection::new("n.0123456789abcdef0123", serde_json::Value::Null, vec![]);
    /// c.accept();
    /// assert_eq!(c.end_response(), r#"{"events":[{"type":"ACCEPT","connectionId":"n.0123456789abcdef0123"}]}"#);
    /// ```
    pub fn accept(&mut self) -> &mut Self {
        self.accept = Some(None);
        self
    }

    /// Accepts and picks a subprotocol the client offered, echoed in the 101.
    ///
    /// ```
    /// # let mut c = slip_sockets::Connection::new("n.0123456789abcdef0123", serde_json::Value::Null, vec![]);
    /// c.accept_with_protocol("chat.v2");
    /// assert!(c.end_response().contains(r#""protocol":"chat.v2""#));
    /// ```
    pub fn accept_with_protocol(&mut self, protocol: impl Into<String>) -> &mut Self {
        self.accept = Some(Some(protocol.into()));
        self
    }

    /// Closes this connection (code 1000) once the other commands have run.
    ///
    /// ```
    /// # let mut c = slip_sockets::Connection::new("n.0123456789abcdef0123", serde_json::Value::Null, vec![]);
    /// c.close();
    /// c.send_text("bye");
    /// assert!(c.end_response().ends_with(r#"{"type":"CLOSE","connectionId":"n.0123456789abcdef0123"}]}"#));
    /// ```
    pub fn close(&mut self) -> &mut Self {
        self.close = Some((None, None));
        self
    }

    /// Closes this connection with a code (1000-1003, 1007-1014, 3000-4999) and reason.
    ///
    /// ```
    /// # let mut c = slip_sockets::Connection::new("n.0123456789abcdef0123", serde_json::Value::Null, vec![]);
    /// c.close_with(4000, "kicked");
    /// assert!(c.end_response().contains(r#""code":4000,"reason":"kicked""#));
    /// ```
    pub fn close_with(&mut self, code: u16, reason: impl Into<String>) -> &mut Self {
        self.close = Some((Some(code), Some(reason.into())));
        self
    }

    /// Subscribes this connection to a channel.
    ///
    /// ```
    /// # let mut c = slip_sockets::Connection::new("n.0123456789abcdef0123", serde_json::Value::Null, vec![]);
    /// c.subscribe("news");
    /// assert!(c.end_response().contains(r#"{"type":"SUBSCRIBE","connectionId":"n.0123456789abcdef0123","channel":"news"}"#));
    /// ```
    pub fn subscribe(&mut self, channel: impl Into<String>) -> &mut Self {
        self.subscribe_with(channel, Subscription::default())
    }

    /// Subscribes this connection to a channel with [`Subscription`]
    /// options (presence info, join and leave frames).
    pub fn subscribe_with(&mut self, channel: impl Into<String>, options: Subscription) -> &mut Self {
        let Subscription { presence, join_leave } = options;
        let connection_id = self.connection_id.clone();
        self.queue_event(Command::Subscribe { connection_id, channel: channel.into(), presence, join_leave })
    }

    /// Unsubscribes this connection from a channel.
    ///
    /// ```
    /// # let mut c = slip_sockets::Connection::new("n.0123456789abcdef0123", serde_json::Value::Null, vec![]);
    /// c.unsubscribe("news");
    /// assert!(c.end_response().contains(r#""type":"UNSUBSCRIBE""#));
    /// ```
    pub fn unsubscribe(&mut self, channel: impl Into<String>) -> &mut Self {
        let command = Command::Unsubscribe { connection_id: self.connection_id.clone(), channel: channel.into() };
        self.queue_event(command)
    }

    /// Sends text to this connection.
    ///
    /// ```
    /// # let mut c = slip_sockets::Connection::new("n.0123456789abcdef0123", serde_json::Value::Null, vec![]);
    /// c.send_text("hello");
    /// assert!(c.end_response().contains(r#"{"type":"TEXT","connectionId":"n.0123456789abcdef0123","data":"hello"}"#));
    /// ```
    pub fn send_text(&mut self, text: impl Into<String>) -> &mut Self {
        let command = Command::Text { connection_id: self.connection_id.clone(), data: text.into() };
        self.queue_event(command)
    }

    /// Sends text to every subscriber of a channel.
    ///
    /// ```
    /// # let mut c = slip_sockets::Connection::new("n.0123456789abcdef0123", serde_json::Value::Null, vec![]);
    /// c.publish_text("news", "extra!");
    /// assert!(c.end_response().contains(r#"{"type":"PUBLISH_TEXT","channelId":"news","data":"extra!"}"#));
    /// ```
    pub fn publish_text(&mut self, channel: impl Into<String>, text: impl Into<String>) -> &mut Self {
        self.queue_event(Command::PublishText { channel_id: channel.into(), data: text.into(), idempotency_key: None })
    }

    /// Replaces the connection's metadata (sent after the other commands);
    /// later callbacks carry it. `Value::Null` clears it.
    ///
    /// ```
    /// # let mut c = slip_sockets::Connection::new("n.0123456789abcdef0123", serde_json::Value::Null, vec![]);
    /// c.set_metadata(serde_json::json!({"user": "ann"}));
    /// assert!(c.end_response().contains(r#""metadata":{"user":"ann"}"#));
    /// ```
    pub fn set_metadata(&mut self, metadata: Value) -> &mut Self {
        self.new_metadata = Some(metadata);
        self
    }

    /// Adds any command, in call order, e.g. a TEXT to another connection.
    ///
    /// ```
    /// # use slip_sockets::{Command, Connection};
    /// # let mut c = Connection::new("n.0123456789abcdef0123", serde_json::Value::Null, vec![]);
    /// c.queue_event(Command::CloseChannel { channel_id: "old-room".into() });
    /// assert!(c.end_response().contains("CLOSE_CHANNEL"));
    /// ```
    pub fn queue_event(&mut self, command: Command) -> &mut Self {
        self.queued.push(command);
        self
    }

    /// The commands, in the order they go out.
    ///
    /// ```
    /// # let mut c = slip_sockets::Connection::new("n.0123456789abcdef0123", serde_json::Value::Null, vec![]);
    /// c.close();
    /// c.accept();
    /// let kinds: Vec<_> = c.commands().iter().map(|c| c.kind()).collect();
    /// assert_eq!(kinds, ["ACCEPT", "CLOSE"]);
    /// ```
    pub fn commands(&self) -> Vec<Command> {
        let id = || self.connection_id.clone();
        let mut out = Vec::with_capacity(self.queued.len() + 3);
        if let Some(protocol) = &self.accept {
            out.push(Command::Accept { connection_id: id(), protocol: protocol.clone() });
        }
        out.extend(self.queued.iter().cloned());
        if let Some(metadata) = &self.new_metadata {
            out.push(Command::SetMetadata { connection_id: id(), metadata: metadata.clone() });
        }
        if let Some((code, reason)) = &self.close {
            out.push(Command::Close { connection_id: id(), code: *code, reason: reason.clone() });
        }
        out
    }

    /// The reply body: `{"events":[…]}`, to send with status 200.
    ///
    /// ```
    /// # let c = slip_sockets::Connection::new("n.0123456789abcdef0123", serde_json::Value::Null, vec![]);
    /// assert_eq!(c.end_response(), r#"{"events":[]}"#);
    /// ```
    pub fn end_response(&self) -> String {
        // A batch of plain strings and JSON values always serializes.
        serde_json::to_string(&Batch { events: self.commands() }).unwrap_or_else(|_| r#"{"events":[]}"#.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "n.0123456789abcdef0123";

    #[test]
    fn output_order_is_the_originals() {
        let mut c = Connection::new(ID, Value::Null, vec![Event::Open { connection_id: ID.into() }]);
        c.close();
        c.set_metadata(json!({"a": 1}));
        c.subscribe("room");
        c.publish_text("room", "joined");
        c.accept();
        c.send_text("welcome");
        let reply: Value = serde_json::from_str(&c.end_response()).unwrap();
        assert_eq!(
            reply,
            json!({"events": [
                {"type": "ACCEPT", "connectionId": ID},
                {"type": "SUBSCRIBE", "connectionId": ID, "channel": "room"},
                {"type": "PUBLISH_TEXT", "channelId": "room", "data": "joined"},
                {"type": "TEXT", "connectionId": ID, "data": "welcome"},
                {"type": "SET_METADATA", "connectionId": ID, "metadata": {"a": 1}},
                {"type": "CLOSE", "connectionId": ID},
            ]})
        );
        // And the gateway's own parser takes it.
        let parsed =
            slip_proto::command::parse(c.end_response().as_bytes(), slip_proto::command::Source::CallbackReply);
        assert_eq!(parsed.map(|p| p.len()), Ok(6));
    }
}
