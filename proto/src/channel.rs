//! Channel names: 1-255 bytes of UTF-8 without control characters.

/// Longest channel name, in bytes.
pub const MAX_CHANNEL_BYTES: usize = 255;

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The name is empty.
    #[error("channel name is empty")]
    Empty,
    /// The name is longer than 255 bytes (its length).
    #[error("channel name is {0} bytes, the limit is {MAX_CHANNEL_BYTES}")]
    TooLong(usize),
    /// The name holds a control character (at this byte).
    #[error("channel name contains a control character at byte {0}")]
    ControlCharacter(usize),
}

/// Checks a channel name against the rules every node applies.
pub fn validate(name: &str) -> Result<(), ChannelError> {
    if name.is_empty() {
        return Err(ChannelError::Empty);
    }
    if name.len() > MAX_CHANNEL_BYTES {
        return Err(ChannelError::TooLong(name.len()));
    }
    if let Some((at, _)) = name.char_indices().find(|(_, c)| c.is_control()) {
        return Err(ChannelError::ControlCharacter(at));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        assert_eq!(validate("cool-channel"), Ok(()));
        assert_eq!(validate("rooms/émoji 🎉"), Ok(()));
        assert_eq!(validate(&"x".repeat(255)), Ok(()));
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(validate(""), Err(ChannelError::Empty));
        assert_eq!(validate(&"x".repeat(256)), Err(ChannelError::TooLong(256)));
        assert_eq!(validate("a\nb"), Err(ChannelError::ControlCharacter(1)));
        assert_eq!(validate("\u{7f}"), Err(ChannelError::ControlCharacter(0)));
    }
}
