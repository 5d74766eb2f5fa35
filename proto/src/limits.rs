//! Limits that are part of the wire contract: both sides of a boundary check them.

/// Largest WebSocket message, in or out, in bytes, by default (the
/// original's limit, 128 KiB): `SLIP_MAX_MESSAGE_BYTES` sets it for what
/// clients send, `SLIP_MAX_OUTBOUND_BYTES` for what reaches them.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// The most `SLIP_MAX_OUTBOUND_BYTES` may be: a message to clients travels
/// between nodes in one link frame (at most 1 MiB) with room to spare.
pub const MAX_OUTBOUND_LIMIT: usize = 960 * 1024;

/// Checks a message against [`MAX_MESSAGE_BYTES`].
pub fn check_message_size(len: usize) -> Result<(), String> {
    check_message_size_within(len, MAX_MESSAGE_BYTES)
}

/// Checks a message against a limit of `max` bytes.
pub fn check_message_size_within(len: usize, max: usize) -> Result<(), String> {
    if len > max { Err(format!("message is {len} bytes, the limit is {max}")) } else { Ok(()) }
}

/// Largest callback reply or control request body the gateway reads, in bytes.
pub const MAX_COMMAND_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Most commands in one callback reply or control request.
pub const MAX_COMMANDS_PER_BATCH: usize = 10_000;

/// Largest metadata value (serialized JSON) kept per connection, in bytes.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Largest presence info a SUBSCRIBE may carry, in bytes of JSON.
pub const MAX_PRESENCE_INFO_BYTES: usize = 1024;

/// Longest `POLL_FOR_CONNECTION` wait, in milliseconds; longer requests are clamped.
pub const MAX_POLL_TIMEOUT_MS: u64 = 30_000;
