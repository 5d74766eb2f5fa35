//! SLIP v4 commands: what a backend answers a callback with, and what it
//! POSTs to the HTTP control API. Both are `{"events":[{"type":…}, …]}`.
//!
//! A batch is all or nothing: bad JSON, an unknown `type`, a missing field or
//! a value that breaks a rule (connection id, channel name, size) rejects the
//! whole batch before any command runs.

use crate::close::CloseCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::channel;
use crate::ids::ConnectionId;
use crate::limits::{
    MAX_COMMAND_BODY_BYTES, MAX_COMMANDS_PER_BATCH, MAX_MESSAGE_BYTES, MAX_METADATA_BYTES, MAX_PRESENCE_INFO_BYTES,
    check_message_size_within,
};

/// One command, with the exact field names of SLIP v4 (`channel` on
/// SUBSCRIBE/UNSUBSCRIBE, `channelId` on PUBLISH_TEXT/CLOSE_CHANNEL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Command {
    /// Accept the opening connection; only in reply to OPEN. `protocol`
    /// (additive) picks the WebSocket subprotocol echoed in the 101.
    #[serde(rename_all = "camelCase")]
    Accept {
        /// The opening connection.
        connection_id: String,
        /// The subprotocol to answer with, one the client offered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol: Option<String>,
    },
    /// Send a text message to one connection, on any edge.
    #[serde(rename_all = "camelCase")]
    Text {
        /// Who gets it.
        connection_id: String,
        /// The message.
        data: String,
    },
    /// Additive: a binary message, `data` in base64.
    #[serde(rename_all = "camelCase")]
    Binary {
        /// Who gets it.
        connection_id: String,
        /// The message, base64 (standard alphabet, padded).
        data: String,
    },
    /// Subscribe a connection to a channel. `presence` (additive, a JSON
    /// object of at most 1 KiB) makes it a member of the channel's
    /// presence with that info; `joinLeave` (additive) makes a `slip.v1`
    /// client get the channel's join and leave frames.
    #[serde(rename_all = "camelCase")]
    Subscribe {
        /// The connection.
        connection_id: String,
        /// The channel (1–255 bytes of UTF-8, no control characters).
        channel: String,
        /// Its info as a member of the channel's presence.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        presence: Option<Value>,
        /// Join and leave frames for a `slip.v1` client.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        join_leave: bool,
    },
    /// Unsubscribe a connection from a channel.
    #[serde(rename_all = "camelCase")]
    Unsubscribe {
        /// The connection.
        connection_id: String,
        /// The channel.
        channel: String,
    },
    /// `idempotencyKey` (additive, at most 128 bytes): a key seen on the
    /// channel within the idempotency window gets the first publish's place
    /// and is not delivered again, so a publisher may retry a failed publish.
    #[serde(rename_all = "camelCase")]
    PublishText {
        /// The channel.
        channel_id: String,
        /// The message every subscriber gets.
        data: String,
        /// The publish's key: the same key is one publish, however often sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
    /// Additive: publish a binary message, `data` in base64.
    #[serde(rename_all = "camelCase")]
    PublishBinary {
        /// The channel.
        channel_id: String,
        /// The message, base64 (standard alphabet, padded).
        data: String,
        /// The publish's key, as on `PUBLISH_TEXT`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
    /// Close every connection subscribed to the channel.
    #[serde(rename_all = "camelCase")]
    CloseChannel {
        /// The channel.
        channel_id: String,
    },
    /// Replace the connection's metadata; `null` (or no field) clears it.
    #[serde(rename_all = "camelCase")]
    SetMetadata {
        /// The connection.
        connection_id: String,
        /// Any JSON, sent with every later callback of the connection.
        #[serde(default)]
        metadata: Value,
    },
    /// Close the connection; `code`/`reason` are additive (default 1000).
    #[serde(rename_all = "camelCase")]
    Close {
        /// The connection.
        connection_id: String,
        /// The close code the client gets (one an endpoint may send: 1000–1003, 1007–1014, 3000–4999; 1000 when none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        /// The reason it gets, at most 123 bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Control API only: wait up to `timeout` ms for the connection to exist.
    #[serde(rename_all = "camelCase")]
    PollForConnection {
        /// The connection waited for.
        connection_id: String,
        /// How long to wait, in milliseconds (at most 30 s).
        #[serde(default)]
        timeout: u64,
    },
}

/// Longest idempotency key taken, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;

/// A presence info, as SUBSCRIBE and gRPC `Subscribe` take it: a JSON
/// object of at most [`MAX_PRESENCE_INFO_BYTES`].
pub fn check_presence(info: &Value) -> Result<(), String> {
    if !info.is_object() {
        return Err("presence is not a JSON object".into());
    }
    let len = info.to_string().len();
    if len > MAX_PRESENCE_INFO_BYTES {
        return Err(format!("presence is {len} bytes, the limit is {MAX_PRESENCE_INFO_BYTES}"));
    }
    Ok(())
}

fn check_key(key: Option<&str>) -> Result<(), String> {
    match key {
        Some(key) if key.len() > MAX_IDEMPOTENCY_KEY_BYTES => {
            Err(format!("idempotencyKey is {} bytes, the limit is {MAX_IDEMPOTENCY_KEY_BYTES}", key.len()))
        }
        _ => Ok(()),
    }
}

/// The envelope of a callback reply or a control request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The commands, run in order.
    pub events: Vec<Command>,
}

/// Why a batch was rejected (whole: none of it runs).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// The body is over the limit, in bytes.
    #[error("body is {0} bytes, the limit is {MAX_COMMAND_BODY_BYTES}")]
    TooLarge(usize),
    /// The body is not JSON of the right shape.
    #[error("body is not a valid command batch: {0}")]
    Json(String),
    /// Too many commands in one batch.
    #[error("batch has {0} commands, the limit is {MAX_COMMANDS_PER_BATCH}")]
    TooMany(usize),
    /// A command its source may not send (ACCEPT to the control API).
    #[error("command {index} ({kind}) is not allowed here")]
    NotAllowed {
        /// Its place in the batch, from 0.
        index: usize,
        /// Its type.
        kind: &'static str,
    },
    /// A command that breaks a rule (an id, a channel name, a size).
    #[error("command {index}: {reason}")]
    Invalid {
        /// Its place in the batch, from 0.
        index: usize,
        /// The rule it breaks.
        reason: String,
    },
}

/// Where a batch came from decides which commands it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A backend's reply to a callback: ACCEPT allowed, POLL_FOR_CONNECTION not.
    CallbackReply,
    /// The HTTP control API: POLL_FOR_CONNECTION allowed, ACCEPT not.
    ControlRequest,
}

impl Command {
    /// Its `type`, as on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Accept { .. } => "ACCEPT",
            Command::Text { .. } => "TEXT",
            Command::Binary { .. } => "BINARY",
            Command::Subscribe { .. } => "SUBSCRIBE",
            Command::Unsubscribe { .. } => "UNSUBSCRIBE",
            Command::PublishText { .. } => "PUBLISH_TEXT",
            Command::PublishBinary { .. } => "PUBLISH_BINARY",
            Command::CloseChannel { .. } => "CLOSE_CHANNEL",
            Command::SetMetadata { .. } => "SET_METADATA",
            Command::Close { .. } => "CLOSE",
            Command::PollForConnection { .. } => "POLL_FOR_CONNECTION",
        }
    }

    /// The connection this command addresses, if it addresses one.
    pub fn connection_id(&self) -> Option<&str> {
        match self {
            Command::Accept { connection_id, .. }
            | Command::Text { connection_id, .. }
            | Command::Binary { connection_id, .. }
            | Command::Subscribe { connection_id, .. }
            | Command::Unsubscribe { connection_id, .. }
            | Command::SetMetadata { connection_id, .. }
            | Command::Close { connection_id, .. }
            | Command::PollForConnection { connection_id, .. } => Some(connection_id),
            Command::PublishText { .. } | Command::PublishBinary { .. } | Command::CloseChannel { .. } => None,
        }
    }

    fn check(&self, max_message: usize) -> Result<(), String> {
        if let Some(id) = self.connection_id() {
            ConnectionId::parse(id).map_err(|e| e.to_string())?;
        }
        match self {
            Command::Subscribe { channel, presence, .. } => {
                channel::validate(channel).map_err(|e| e.to_string())?;
                presence.as_ref().map_or(Ok(()), check_presence)
            }
            Command::Unsubscribe { channel, .. } => channel::validate(channel).map_err(|e| e.to_string()),
            Command::PublishText { channel_id, data, idempotency_key } => {
                channel::validate(channel_id).map_err(|e| e.to_string())?;
                check_key(idempotency_key.as_deref())?;
                check_message_size_within(data.len(), max_message)
            }
            Command::PublishBinary { channel_id, data, idempotency_key } => {
                channel::validate(channel_id).map_err(|e| e.to_string())?;
                check_key(idempotency_key.as_deref())?;
                check_message_size_within(decode_binary(data)?.len(), max_message)
            }
            Command::CloseChannel { channel_id } => channel::validate(channel_id).map_err(|e| e.to_string()),
            Command::Text { data, .. } => check_message_size_within(data.len(), max_message),
            Command::Binary { data, .. } => check_message_size_within(decode_binary(data)?.len(), max_message),
            Command::SetMetadata { metadata, .. } => {
                let len = serde_json::to_string(metadata).map(|s| s.len()).unwrap_or(usize::MAX);
                if len > MAX_METADATA_BYTES {
                    return Err(format!("metadata is {len} bytes, the limit is {MAX_METADATA_BYTES}"));
                }
                Ok(())
            }
            Command::Close { code, reason, .. } => {
                if let Some(code) = code.filter(|c| CloseCode::new(*c).is_none()) {
                    return Err(format!("close code {code} may not be sent"));
                }
                if reason.as_ref().is_some_and(|r| r.len() > 123) {
                    return Err("close reason is longer than 123 bytes".into());
                }
                Ok(())
            }
            Command::Accept { protocol, .. } => match protocol {
                Some(p) if p.is_empty() || !p.bytes().all(|b| b.is_ascii_graphic() && b != b',') => {
                    Err(format!("protocol {p:?} is not a subprotocol token"))
                }
                _ => Ok(()),
            },
            Command::PollForConnection { .. } => Ok(()),
        }
    }
}

/// Decodes the base64 `data` of BINARY commands and events.
pub fn decode_binary(data: &str) -> Result<Vec<u8>, String> {
    STANDARD.decode(data).map_err(|e| format!("data is not base64: {e}"))
}

/// Encodes bytes for the base64 `data` of BINARY commands and events.
pub fn encode_binary(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Parses and checks a whole batch. An empty body means no commands (a
/// backend may answer a TEXT event with a bare 200 or 204). A bare array of
/// commands is a batch too: the original TypeScript library's
/// `endResponse()` answers with one, and its backends must work unchanged.
pub fn parse(body: &[u8], source: Source) -> Result<Vec<Command>, CommandError> {
    parse_within(body, source, MAX_MESSAGE_BYTES)
}

/// [`parse`], with messages to clients (TEXT, BINARY, publishes) of at most
/// `max_message` bytes (`SLIP_MAX_OUTBOUND_BYTES`).
pub fn parse_within(body: &[u8], source: Source, max_message: usize) -> Result<Vec<Command>, CommandError> {
    if body.len() > MAX_COMMAND_BODY_BYTES {
        return Err(CommandError::TooLarge(body.len()));
    }
    let Some(first) = body.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Ok(Vec::new());
    };
    let json = |e: serde_json::Error| CommandError::Json(e.to_string());
    let batch: Batch = if *first == b'[' {
        Batch { events: serde_json::from_slice(body).map_err(json)? }
    } else {
        serde_json::from_slice(body).map_err(json)?
    };
    if batch.events.len() > MAX_COMMANDS_PER_BATCH {
        return Err(CommandError::TooMany(batch.events.len()));
    }
    for (index, command) in batch.events.iter().enumerate() {
        let allowed = !matches!(
            (source, command),
            (Source::CallbackReply, Command::PollForConnection { .. })
                | (Source::ControlRequest, Command::Accept { .. })
        );
        if !allowed {
            return Err(CommandError::NotAllowed { index, kind: command.kind() });
        }
        command.check(max_message).map_err(|reason| CommandError::Invalid { index, reason })?;
    }
    Ok(batch.events)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_publish_may_carry_an_idempotency_key_of_at_most_128_bytes() {
        let body = br#"{"events":[{"type":"PUBLISH_TEXT","channelId":"c","data":"x","idempotencyKey":"k1"}]}"#;
        let events = parse(body, Source::ControlRequest).unwrap();
        assert_eq!(
            events,
            [Command::PublishText { channel_id: "c".into(), data: "x".into(), idempotency_key: Some("k1".into()) }]
        );
        let long = format!(
            r#"{{"events":[{{"type":"PUBLISH_TEXT","channelId":"c","data":"x","idempotencyKey":"{}"}}]}}"#,
            "k".repeat(129)
        );
        assert!(parse(long.as_bytes(), Source::ControlRequest).is_err());
        // Old backends send none, and what is sent back carries none.
        let plain = Command::PublishText { channel_id: "c".into(), data: "x".into(), idempotency_key: None };
        assert!(!serde_json::to_string(&plain).unwrap().contains("idempotencyKey"));
    }

    use super::*;
    use serde_json::json;

    const ID: &str = "n1.0123456789abcdef0123";

    #[test]
    fn a_subscribe_may_carry_presence_info_a_json_object_of_at_most_1_kib() {
        let subscribe = |presence: Value| {
            let body =
                json!({"events": [{"type": "SUBSCRIBE", "connectionId": ID, "channel": "c", "presence": presence}]});
            parse(body.to_string().as_bytes(), Source::CallbackReply)
        };
        assert_eq!(
            subscribe(json!({"name": "ann"})).unwrap(),
            [Command::Subscribe {
                connection_id: ID.into(),
                channel: "c".into(),
                presence: Some(json!({"name": "ann"})),
                join_leave: false,
            }]
        );
        for bad in [json!([1]), json!("ann"), json!({"pad": "x".repeat(MAX_PRESENCE_INFO_BYTES)})] {
            assert!(matches!(subscribe(bad.clone()), Err(CommandError::Invalid { index: 0, .. })), "{bad}");
        }
        // Old backends send none, and what is sent back carries none.
        let plain =
            Command::Subscribe { connection_id: ID.into(), channel: "c".into(), presence: None, join_leave: false };
        let sent = serde_json::to_string(&plain).unwrap();
        assert!(!sent.contains("presence") && !sent.contains("joinLeave"), "{sent}");
    }

    #[test]
    fn a_subscribe_may_ask_for_join_and_leave_frames() {
        let body = json!({"events": [{"type": "SUBSCRIBE", "connectionId": ID, "channel": "c", "joinLeave": true}]});
        let commands = parse(body.to_string().as_bytes(), Source::CallbackReply).unwrap();
        assert!(matches!(&commands[..], [Command::Subscribe { join_leave: true, presence: None, .. }]));
        let body = json!({"events": [{"type": "SUBSCRIBE", "connectionId": ID, "channel": "c", "joinLeave": "yes"}]});
        assert!(parse(body.to_string().as_bytes(), Source::CallbackReply).is_err(), "not a boolean");
    }

    #[test]
    fn a_bare_array_is_a_batch_as_the_original_library_answers() {
        let body =
            json!([{"type": "ACCEPT", "connectionId": ID}, {"type": "SUBSCRIBE", "connectionId": ID, "channel": "c"}]);
        let commands = parse(body.to_string().as_bytes(), Source::CallbackReply).unwrap();
        assert_eq!(commands.iter().map(Command::kind).collect::<Vec<_>>(), ["ACCEPT", "SUBSCRIBE"]);
        assert!(parse(b" [ ] ", Source::CallbackReply).unwrap().is_empty());
        assert!(matches!(parse(b"[{\"type\":\"NOPE\"}]", Source::CallbackReply), Err(CommandError::Json(_))));
        assert!(matches!(parse(b"[1,", Source::ControlRequest), Err(CommandError::Json(_))));
    }

    #[test]
    fn parses_every_command_with_exact_field_names() {
        let body = json!({"events": [
            {"type": "ACCEPT", "connectionId": ID},
            {"type": "TEXT", "connectionId": ID, "data": "hi"},
            {"type": "SUBSCRIBE", "connectionId": ID, "channel": "c"},
            {"type": "UNSUBSCRIBE", "connectionId": ID, "channel": "c"},
            {"type": "PUBLISH_TEXT", "channelId": "c", "data": "all"},
            {"type": "CLOSE_CHANNEL", "channelId": "c"},
            {"type": "SET_METADATA", "connectionId": ID, "metadata": {"user": 1}},
            {"type": "CLOSE", "connectionId": ID},
        ]});
        let commands = parse(body.to_string().as_bytes(), Source::CallbackReply).unwrap();
        let kinds: Vec<_> = commands.iter().map(Command::kind).collect();
        assert_eq!(
            kinds,
            ["ACCEPT", "TEXT", "SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH_TEXT", "CLOSE_CHANNEL", "SET_METADATA", "CLOSE"]
        );
        assert_eq!(commands[6], Command::SetMetadata { connection_id: ID.into(), metadata: json!({"user": 1}) });
    }

    #[test]
    fn rejects_whole_batch_on_any_bad_command() {
        let cases = [
            json!({"events": [{"type": "TEXT", "connectionId": ID, "data": "x"}, {"type": "NOPE"}]}),
            json!({"events": [{"type": "SUBSCRIBE", "connectionId": ID, "channelId": "c"}]}),
            json!({"events": [{"type": "PUBLISH_TEXT", "channel": "c", "data": "x"}]}),
            json!({"events": [{"type": "TEXT", "connectionId": "bogus", "data": "x"}]}),
            json!({"events": [{"type": "SUBSCRIBE", "connectionId": ID, "channel": ""}]}),
            json!({"events": [{"type": "CLOSE", "connectionId": ID, "code": 1005}]}),
            json!({"events": "nope"}),
            json!([1, 2]),
        ];
        for case in cases {
            assert!(parse(case.to_string().as_bytes(), Source::CallbackReply).is_err(), "{case}");
        }
        assert!(parse(b"{not json", Source::CallbackReply).is_err());
        let too_big = json!({"events": [{"type": "TEXT", "connectionId": ID, "data": "x".repeat(crate::limits::MAX_MESSAGE_BYTES + 1)}]});
        assert!(parse(too_big.to_string().as_bytes(), Source::CallbackReply).is_err());
    }

    #[test]
    fn source_decides_accept_and_poll() {
        let accept = json!({"events": [{"type": "ACCEPT", "connectionId": ID}]}).to_string();
        let poll = json!({"events": [{"type": "POLL_FOR_CONNECTION", "connectionId": ID, "timeout": 100}]}).to_string();
        assert!(parse(accept.as_bytes(), Source::CallbackReply).is_ok());
        assert!(parse(accept.as_bytes(), Source::ControlRequest).is_err());
        assert!(parse(poll.as_bytes(), Source::ControlRequest).is_ok());
        assert!(parse(poll.as_bytes(), Source::CallbackReply).is_err());
    }

    #[test]
    fn empty_body_is_no_commands() {
        assert_eq!(parse(b"", Source::CallbackReply), Ok(vec![]));
        assert_eq!(parse(b" \n", Source::CallbackReply), Ok(vec![]));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let body = json!({"events": [{"type": "TEXT", "connectionId": ID, "data": "x", "extra": 1}], "more": true});
        assert_eq!(parse(body.to_string().as_bytes(), Source::CallbackReply).map(|c| c.len()), Ok(1));
    }
}
