//! What a publish or a publication carries, shared by every control transport.

/// What a publish or a publication carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A text message (a WebSocket text frame).
    Text(String),
    /// A binary message (a WebSocket binary frame).
    Binary(Vec<u8>),
}
