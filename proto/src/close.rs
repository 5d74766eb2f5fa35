//! WebSocket close codes (RFC 6455 §7.4), one type for every place a code is
//! decided: a client's close frame, a backend's command or WebSocket-over-HTTP
//! CLOSE, a control request, a GRIP publish, a link frame, the edge itself.
//!
//! A [`CloseCode`] can only hold a code that may travel in a close frame, so
//! nothing built from one can put 1005, 1006 or 1015 (or 0, or 999) on the
//! wire. Those three only ever describe a close to a backend ([`NO_STATUS`],
//! [`ABNORMAL`]), as plain numbers.

/// A close code an endpoint may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(u16);

/// Reported to a backend when a close frame carried no code (never sent).
pub const NO_STATUS: u16 = 1005;
/// Reported to a backend when the peer vanished without a close frame (never sent).
pub const ABNORMAL: u16 = 1006;

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away.
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// Binary frames sent to a target that did not opt in.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1007: a text message that is not UTF-8.
    pub const INVALID_DATA: Self = Self(1007);
    /// A client over its message rate.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message too big to take.
    pub const TOO_BIG: Self = Self(1009);
    /// The backend kept failing.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// The edge is draining: come back (to another edge).
    pub const SERVICE_RESTART: Self = Self(1012);
    /// A consumer too slow to keep up.
    pub const TRY_AGAIN_LATER: Self = Self(1013);

    /// The code, if an endpoint may send it: 1000-1003, 1007-1014, 3000-4999.
    pub const fn new(code: u16) -> Option<Self> {
        match code {
            1000..=1003 | 1007..=1014 | 3000..=4999 => Some(Self(code)),
            _ => None,
        }
    }

    /// A code from a protobuf field, which is wider than a code.
    pub fn from_u32(code: u32) -> Option<Self> {
        u16::try_from(code).ok().and_then(Self::new)
    }

    /// The code, as a number.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl From<CloseCode> for u32 {
    fn from(code: CloseCode) -> u32 {
        u32::from(code.0)
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_codes_an_endpoint_may_send() {
        for code in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert_eq!(CloseCode::new(code).map(CloseCode::get), Some(code));
        }
        for code in [0, 999, 1004, NO_STATUS, ABNORMAL, 1015, 1016, 2999, 5000, u16::MAX] {
            assert_eq!(CloseCode::new(code), None, "{code}");
        }
        assert_eq!(CloseCode::from_u32(65_536 + 1000), None);
        assert_eq!(CloseCode::from_u32(4000), CloseCode::new(4000));
    }
}
