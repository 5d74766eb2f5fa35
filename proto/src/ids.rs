//! Node ids and connection ids.
//!
//! A connection id is `<node id>.<20 hex digits>`: the node id of the edge that
//! holds the socket, so anything addressed to a connection routes straight to
//! its edge without a lookup, and 80 random bits so ids cannot be guessed.

use std::fmt;

/// Longest node id, in bytes.
pub const MAX_NODE_ID_BYTES: usize = 64;
const TOKEN_HEX_DIGITS: usize = 20;

/// An id that breaks its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not a node id.
    #[error("node id {0:?} must be 1-{MAX_NODE_ID_BYTES} characters of A-Z a-z 0-9 _ -")]
    BadNodeId(String),
    /// Not a connection id.
    #[error("connection id {0:?} is not of the form <node id>.<20 hex digits>")]
    BadConnectionId(String),
}

/// The identity of one node (an edge, a control node, or both in `slip dev`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    /// The node id `s`, if it keeps the rule.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_NODE_ID_BYTES
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok { Ok(Self(s.to_owned())) } else { Err(IdError::BadNodeId(s.to_owned())) }
    }

    /// A fresh random id (16 hex digits), for nodes not given one.
    pub fn random() -> Self {
        Self(format!("{:016x}", rand::random::<u64>()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Lets maps keyed by `NodeId` be looked up with the `&str` found inside a
/// connection id or a frame, without parsing or allocating.
impl std::borrow::Borrow<str> for NodeId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of one WebSocket connection, naming the edge that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(String);

impl ConnectionId {
    /// A fresh id for a connection held by `edge`.
    pub fn generate(edge: &NodeId) -> Self {
        let token: u128 = rand::random::<u128>() >> (128 - 4 * TOKEN_HEX_DIGITS);
        Self(format!("{edge}.{token:0width$x}", width = TOKEN_HEX_DIGITS))
    }

    /// The connection id `s`, if it keeps the rule.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let bad = || IdError::BadConnectionId(s.chars().take(100).collect());
        let (node, token) = s.rsplit_once('.').ok_or_else(bad)?;
        NodeId::parse(node).map_err(|_| bad())?;
        let token_ok =
            token.len() == TOKEN_HEX_DIGITS && token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !token_ok {
            return Err(bad());
        }
        Ok(Self(s.to_owned()))
    }

    /// The node id of the edge holding this connection.
    pub fn edge(&self) -> &str {
        self.0.rsplit_once('.').map(|(node, _)| node).unwrap_or("")
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_round_trip_and_name_their_edge() {
        let node = NodeId::parse("edge-1").unwrap();
        let id = ConnectionId::generate(&node);
        assert_eq!(id.edge(), "edge-1");
        assert_eq!(ConnectionId::parse(id.as_str()), Ok(id.clone()));
        assert_ne!(ConnectionId::generate(&node), id);
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in ["", "abc", ".0123456789abcdef0123", "n.xyz", "n.0123456789ABCDEF0123", "a b.0123456789abcdef0123"] {
            assert!(ConnectionId::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        for bad in ["", "has space", "dot.ted", &"x".repeat(65)] {
            assert!(NodeId::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
