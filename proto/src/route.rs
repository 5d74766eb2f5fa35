//! SLIP v4 commands as the link frames that carry them: a command addresses
//! either one connection (it goes to that connection's edge) or one channel
//! (it goes to that channel's owner). Every API turns into these two.

use crate::close::CloseCode;
use bytes::Bytes;

use crate::command::{Command, decode_binary};
use crate::link_pb::{
    ChannelEvent, CloseConnection, ConnectionCommand, Message, Publish, channel_event, connection_command, message,
};

/// Close code used when a command gives none.
pub const DEFAULT_CLOSE_CODE: CloseCode = CloseCode::NORMAL;

/// What a checked command does, wherever it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Only meaningful in reply to OPEN; anywhere else it is ignored.
    Accept,
    /// Something for one connection, wherever it is.
    Connection(ConnectionCommand),
    /// Something for a channel: goes to its owner.
    Channel(Publish),
    /// Wait for a connection to exist (control API only).
    Poll {
        /// The connection waited for.
        connection_id: String,
        /// How long, in milliseconds.
        timeout_ms: u64,
    },
}

/// A text message to a connection.
pub fn text(data: String) -> Message {
    Message { body: Some(message::Body::Text(data)) }
}

/// A command for one connection.
pub fn connection(connection_id: String, op: connection_command::Op) -> ConnectionCommand {
    ConnectionCommand { connection_id, op: Some(op), ..Default::default() }
}

/// A publish of `body` to `channel`.
pub fn publish(channel: String, body: channel_event::Body) -> Publish {
    Publish { channel, event: Some(ChannelEvent { body: Some(body) }), ..Default::default() }
}

/// Turns a checked command (see [`crate::command::parse`]) into its action.
pub fn action(command: Command) -> Action {
    use connection_command::Op;
    match command {
        Command::Accept { .. } => Action::Accept,
        Command::Text { connection_id, data } => Action::Connection(connection(connection_id, Op::Send(text(data)))),
        Command::Binary { connection_id, data } => {
            let bytes = Bytes::from(decode_binary(&data).unwrap_or_default());
            let msg = Message { body: Some(message::Body::Binary(bytes)) };
            Action::Connection(connection(connection_id, Op::Send(msg)))
        }
        Command::Subscribe { connection_id, channel, presence, join_leave } => Action::Connection(ConnectionCommand {
            presence: presence.map(|info| info.to_string()).unwrap_or_default(),
            join_leave,
            ..connection(connection_id, Op::Subscribe(channel))
        }),
        Command::Unsubscribe { connection_id, channel } => {
            Action::Connection(connection(connection_id, Op::Unsubscribe(channel)))
        }
        Command::SetMetadata { connection_id, metadata } => {
            Action::Connection(connection(connection_id, Op::SetMetadata(metadata.to_string())))
        }
        Command::Close { connection_id, code, reason } => {
            let close = CloseConnection {
                // The parser let only sendable codes through.
                code: u32::from(code.and_then(CloseCode::new).unwrap_or(DEFAULT_CLOSE_CODE)),
                reason: reason.unwrap_or_default(),
            };
            Action::Connection(connection(connection_id, Op::Close(close)))
        }
        Command::PublishText { channel_id, data, idempotency_key } => Action::Channel(Publish {
            idempotency_key: idempotency_key.unwrap_or_default(),
            ..publish(channel_id, channel_event::Body::Text(data))
        }),
        Command::PublishBinary { channel_id, data, idempotency_key } => {
            let bytes = Bytes::from(decode_binary(&data).unwrap_or_default());
            Action::Channel(Publish {
                idempotency_key: idempotency_key.unwrap_or_default(),
                ..publish(channel_id, channel_event::Body::Binary(bytes))
            })
        }
        Command::CloseChannel { channel_id } => {
            Action::Channel(publish(channel_id, channel_event::Body::CloseChannel(true)))
        }
        Command::PollForConnection { connection_id, timeout } => Action::Poll { connection_id, timeout_ms: timeout },
    }
}
