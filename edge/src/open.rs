//! Deciding an opening connection from the backend's reply to OPEN, as pure code.
//!
//! The reply must ACCEPT this connection, and ACCEPT must be the first
//! command that addresses it; otherwise the handshake is refused and no
//! command of the reply runs. Once accepted, every other command runs in
//! order before the first client frame is read.

use slip_proto::command::Command;

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Accept {
        /// Subprotocol to echo in the 101, if the backend chose one.
        protocol: Option<String>,
        /// The reply's other commands, in order.
        commands: Vec<Command>,
    },
    Refuse,
}

pub fn decide(connection_id: &str, commands: Vec<Command>) -> Decision {
    let first_for_us = commands.iter().position(|c| c.connection_id() == Some(connection_id));
    let Some(at) = first_for_us else {
        return Decision::Refuse;
    };
    let Command::Accept { protocol, .. } = &commands[at] else {
        return Decision::Refuse;
    };
    let protocol = protocol.clone();
    let mut commands = commands;
    commands.remove(at);
    // A second ACCEPT is meaningless; drop it rather than run it later.
    commands.retain(|c| !matches!(c, Command::Accept { .. }));
    Decision::Accept { protocol, commands }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "n.0123456789abcdef0123";
    const OTHER: &str = "n.ffffffffffffffffffff";

    fn accept(id: &str) -> Command {
        Command::Accept { connection_id: id.into(), protocol: None }
    }

    fn text(id: &str) -> Command {
        Command::Text { connection_id: id.into(), data: "x".into() }
    }

    #[test]
    fn accept_then_commands_in_order() {
        let publish = Command::PublishText { channel_id: "c".into(), data: "joined".into(), idempotency_key: None };
        let d = decide(ID, vec![publish.clone(), accept(ID), text(ID), text(OTHER)]);
        assert_eq!(d, Decision::Accept { protocol: None, commands: vec![publish, text(ID), text(OTHER)] });
    }

    #[test]
    fn refusals() {
        assert_eq!(decide(ID, vec![]), Decision::Refuse);
        assert_eq!(decide(ID, vec![text(ID), accept(ID)]), Decision::Refuse);
        assert_eq!(decide(ID, vec![accept(OTHER)]), Decision::Refuse);
        let close = Command::Close { connection_id: ID.into(), code: None, reason: None };
        assert_eq!(decide(ID, vec![close]), Decision::Refuse);
    }

    #[test]
    fn protocol_is_carried() {
        let a = Command::Accept { connection_id: ID.into(), protocol: Some("chat.v2".into()) };
        assert_eq!(decide(ID, vec![a]), Decision::Accept { protocol: Some("chat.v2".into()), commands: vec![] });
    }
}
