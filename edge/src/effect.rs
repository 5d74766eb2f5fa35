//! What a backend's answer asks of the edge, whatever the callback format: a
//! SLIP command runs through the hub like any other; the rest concern the
//! answering connection alone.

use std::time::Duration;

use bytes::Bytes;
use slip_proto::close::CloseCode;
use slip_proto::command::Command;

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A SLIP command (grip `subscribe`/`unsubscribe` become these too).
    Command(Command),
    /// An encoded frame for this connection.
    Frame(Bytes),
    /// Close this connection with a close frame.
    Close { code: CloseCode, reason: String },
    /// Drop this connection without a close handshake.
    Disconnect,
    /// Stop sending this connection's messages to the backend.
    Detach,
    /// Send `frame` after `every` without other outbound traffic (or every
    /// `every` if `interval`); `None` turns keep-alives off.
    KeepAlive(Option<KeepAlive>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepAlive {
    pub frame: Bytes,
    pub every: Duration,
    pub interval: bool,
}

/// SLIP replies are commands only.
pub fn from_commands(commands: Vec<Command>) -> Vec<Effect> {
    commands.into_iter().map(Effect::Command).collect()
}
