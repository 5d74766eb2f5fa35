//! Pushpin's WebSocket-over-HTTP callback format: the second callback format,
//! for backends written for Pushpin (`SLIP_TARGET_FORMAT=websocket-over-http`).
//!
//! A request or reply body (`Content-Type: application/websocket-events`) is
//! a list of events, each `NAME\r\n` or `NAME <hex length>\r\n<bytes>\r\n`:
//!
//! ```text
//! OPEN\r\n
//! TEXT 5\r\nhello\r\n
//! CLOSE 2\r\n\x03\xe8\r\n
//! ```
//!
//! With the `grip` WebSocket extension on (the backend's OPEN reply carries
//! `Sec-WebSocket-Extensions: grip`), a TEXT or BINARY reply event is for the
//! client only if it starts with the message prefix (`m:` unless the
//! extension's `message-prefix` parameter says otherwise); a TEXT starting
//! with `c:` is a control message ([`Control`]); anything else is dropped.

use serde::Deserialize;

use crate::limits::MAX_COMMANDS_PER_BATCH;

/// Content type of request and reply bodies.
pub const CONTENT_TYPE: &str = "application/websocket-events";
/// Message prefix when the grip extension does not name one.
pub const DEFAULT_MESSAGE_PREFIX: &str = "m:";
/// Prefix of control messages in grip mode.
pub const CONTROL_PREFIX: &str = "c:";
/// Shortest keep-alive request interval a backend may ask for, in seconds (Pushpin's floor).
pub const MIN_KEEP_ALIVE_INTERVAL_SECS: u64 = 20;
/// Longest keep-alive timeout or `Keep-Alive-Interval` taken, in seconds (a
/// day); longer ones are cut to it, so no timer arithmetic can overflow.
pub const MAX_KEEP_ALIVE_SECS: u64 = 86_400;

/// One WebSocket-over-HTTP event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// The connection opened.
    Open,
    /// A text message.
    Text(Vec<u8>),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping.
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// A close frame; no code means a close frame without one.
    Close {
        /// The close code.
        code: Option<u16>,
        /// The close reason.
        reason: String,
    },
    /// The connection ended without a close handshake, or is to be dropped.
    Disconnect,
    /// An event name this version does not know: kept so it can be skipped, as Pushpin does.
    Other(String),
}

/// Why a WebSocket-over-HTTP body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WohError {
    /// A line without its CRLF (at this byte).
    #[error("event line is not terminated by CRLF at byte {0}")]
    Unterminated(usize),
    /// A length that is not hexadecimal.
    #[error("event length {0:?} is not hexadecimal")]
    Length(String),
    /// An event whose bytes end early.
    #[error("event {name} says {declared} bytes but only {available} follow")]
    Truncated {
        /// The event's name.
        name: String,
        /// The length it gave.
        declared: usize,
        /// The bytes that followed.
        available: usize,
    },
    /// Too many events in one body.
    #[error("more than {MAX_COMMANDS_PER_BATCH} events in one body")]
    TooMany,
}

/// Encodes events as a request or reply body.
pub fn encode(events: &[WsEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        let (name, content): (&str, Option<std::borrow::Cow<'_, [u8]>>) = match event {
            WsEvent::Open => ("OPEN", None),
            WsEvent::Text(b) => ("TEXT", Some(b.as_slice().into())),
            WsEvent::Binary(b) => ("BINARY", Some(b.as_slice().into())),
            // Like Pushpin: content on PING and PONG only when there is some.
            WsEvent::Ping(b) => ("PING", (!b.is_empty()).then(|| b.as_slice().into())),
            WsEvent::Pong(b) => ("PONG", (!b.is_empty()).then(|| b.as_slice().into())),
            WsEvent::Close { code: None, .. } => ("CLOSE", None),
            WsEvent::Close { code: Some(code), reason } => {
                ("CLOSE", Some([&code.to_be_bytes()[..], reason.as_bytes()].concat().into()))
            }
            WsEvent::Disconnect => ("DISCONNECT", None),
            WsEvent::Other(name) => (name.as_str(), None),
        };
        out.extend_from_slice(name.as_bytes());
        if let Some(content) = content {
            out.extend_from_slice(format!(" {:x}\r\n", content.len()).as_bytes());
            out.extend_from_slice(&content);
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Decodes a body. Strict where Pushpin is lenient only on truncation: an
/// event whose content is cut short is an error, not a shorter message.
pub fn decode(mut body: &[u8]) -> Result<Vec<WsEvent>, WohError> {
    let total = body.len();
    let mut events = Vec::new();
    while !body.is_empty() {
        if events.len() >= MAX_COMMANDS_PER_BATCH {
            return Err(WohError::TooMany);
        }
        let at = total - body.len();
        let end = body.windows(2).position(|w| w == b"\r\n").ok_or(WohError::Unterminated(at))?;
        let line = String::from_utf8_lossy(&body[..end]).into_owned();
        body = &body[end + 2..];
        let (name, content) = match line.split_once(' ') {
            None => (line, None),
            Some((name, hex)) => {
                let len = usize::from_str_radix(hex, 16).map_err(|_| WohError::Length(hex.to_owned()))?;
                if body.len() < len {
                    return Err(WohError::Truncated { name: name.to_owned(), declared: len, available: body.len() });
                }
                let content = body[..len].to_vec();
                // The CRLF after content, skipped as Pushpin skips it (it is not checked there either).
                body = body.get(len + 2..).unwrap_or_default();
                (name.to_owned(), Some(content))
            }
        };
        let content_or_empty = || content.clone().unwrap_or_default();
        events.push(match name.as_str() {
            "OPEN" => WsEvent::Open,
            "TEXT" => WsEvent::Text(content_or_empty()),
            "BINARY" => WsEvent::Binary(content_or_empty()),
            "PING" => WsEvent::Ping(content_or_empty()),
            "PONG" => WsEvent::Pong(content_or_empty()),
            "CLOSE" => match content.as_deref() {
                Some([hi, lo, reason @ ..]) => WsEvent::Close {
                    code: Some(u16::from_be_bytes([*hi, *lo])),
                    reason: String::from_utf8_lossy(reason).into_owned(),
                },
                _ => WsEvent::Close { code: None, reason: String::new() },
            },
            "DISCONNECT" => WsEvent::Disconnect,
            _ => WsEvent::Other(name),
        });
    }
    Ok(events)
}

/// A control message (`c:{…}`) from a backend in grip mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Subscribe the connection to a channel.
    Subscribe {
        /// The channel.
        channel: String,
    },
    /// Unsubscribe the connection from a channel.
    Unsubscribe {
        /// The channel.
        channel: String,
    },
    /// Stop forwarding the client's messages to the backend; publishes still arrive.
    Detach,
    /// Set (or with an empty value, clear) a meta value, like a `Set-Meta-<name>` header.
    SetMeta {
        /// The meta value's name.
        name: String,
        /// Its value.
        value: String,
    },
    /// Send `content` to the client after `timeout` seconds without other
    /// outbound traffic (`mode` idle), or every `timeout` seconds (interval).
    KeepAlive {
        /// What to send (`None`: no keep-alive; any set before stops).
        content: Option<KeepAliveContent>,
        /// The timeout, or interval, in seconds.
        timeout_secs: u64,
        /// Every `timeout` seconds rather than after `timeout` idle.
        interval: bool,
    },
    /// A type this version does not act on (e.g. `session`), skipped.
    Other(String),
}

/// What a keep-alive sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepAliveContent {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping.
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
}

/// Keep-alive timeout when a keep-alive message names none, in seconds.
pub const DEFAULT_KEEP_ALIVE_TIMEOUT_SECS: u64 = 30;

#[derive(Deserialize)]
struct RawControl {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default, rename = "content-bin")]
    content_bin: Option<String>,
    #[serde(default, rename = "message-type")]
    message_type: Option<String>,
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    mode: Option<String>,
}

/// Parses the JSON after `c:`.
pub fn control(json: &[u8]) -> Result<Control, String> {
    let raw: RawControl = serde_json::from_slice(json).map_err(|e| format!("control message: {e}"))?;
    let channel = |c: Option<String>| {
        let c = c.ok_or("control message needs a channel")?;
        crate::channel::validate(&c).map_err(|e| e.to_string())?;
        Ok::<_, String>(c)
    };
    Ok(match raw.kind.as_str() {
        "subscribe" => Control::Subscribe { channel: channel(raw.channel)? },
        "unsubscribe" => Control::Unsubscribe { channel: channel(raw.channel)? },
        "detach" => Control::Detach,
        "set-meta" => Control::SetMeta {
            name: raw.name.filter(|n| !n.is_empty()).ok_or("set-meta needs a name")?,
            value: raw.value.unwrap_or_default(),
        },
        "keep-alive" => {
            use base64::Engine;
            let (bytes, binary) = match (raw.content, raw.content_bin) {
                (Some(text), None) => (Some(text.into_bytes()), false),
                (None, Some(b64)) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|e| format!("keep-alive content-bin: {e}"))?;
                    (Some(bytes), true)
                }
                (None, None) => (None, false),
                (Some(_), Some(_)) => return Err("keep-alive has both content and content-bin".into()),
            };
            // Without a message-type, content-bin is binary and content is text.
            let kind = raw.message_type.as_deref().unwrap_or(if binary { "binary" } else { "text" });
            let content = match (bytes, kind) {
                (None, _) => None,
                (Some(b), "text") => {
                    Some(KeepAliveContent::Text(String::from_utf8(b).map_err(|_| "keep-alive text is not UTF-8")?))
                }
                (Some(b), "binary") => Some(KeepAliveContent::Binary(b)),
                (Some(b), "ping") => Some(KeepAliveContent::Ping(b)),
                (Some(b), "pong") => Some(KeepAliveContent::Pong(b)),
                (Some(_), other) => return Err(format!("keep-alive message-type {other:?}")),
            };
            Control::KeepAlive {
                content,
                timeout_secs: raw.timeout.unwrap_or(DEFAULT_KEEP_ALIVE_TIMEOUT_SECS).clamp(1, MAX_KEEP_ALIVE_SECS),
                interval: raw.mode.as_deref() == Some("interval"),
            }
        }
        other => Control::Other(other.to_owned()),
    })
}

/// The `message-prefix` of a `Sec-WebSocket-Extensions` value if it turns grip
/// on (`grip` or `grip; message-prefix="…"`), else `None`.
pub fn grip_prefix(extensions: &str) -> Option<String> {
    for extension in extensions.split(',') {
        let mut params = extension.split(';').map(str::trim);
        if params.next() != Some("grip") {
            continue;
        }
        let prefix = params
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim() == "message-prefix")
            .map(|(_, v)| v.trim().trim_matches('"').to_owned());
        return Some(prefix.unwrap_or_else(|| DEFAULT_MESSAGE_PREFIX.to_owned()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_pushpin() {
        let body = encode(&[
            WsEvent::Open,
            WsEvent::Text(b"hello".to_vec()),
            WsEvent::Ping(vec![]),
            WsEvent::Close { code: Some(1000), reason: "bye".into() },
            WsEvent::Disconnect,
        ]);
        assert_eq!(body, b"OPEN\r\nTEXT 5\r\nhello\r\nPING\r\nCLOSE 5\r\n\x03\xe8bye\r\nDISCONNECT\r\n");
        let big = encode(&[WsEvent::Binary(vec![7; 26])]);
        assert!(big.starts_with(b"BINARY 1a\r\n"));
    }

    #[test]
    fn decodes_what_it_encodes_and_skips_unknown_events() {
        let events = vec![
            WsEvent::Open,
            WsEvent::Text("héllo\r\nworld".as_bytes().to_vec()),
            WsEvent::Binary(vec![0, 13, 10, 255]),
            WsEvent::Pong(b"p".to_vec()),
            WsEvent::Close { code: Some(4001), reason: "done".into() },
            WsEvent::Close { code: None, reason: String::new() },
            WsEvent::Disconnect,
        ];
        assert_eq!(decode(&encode(&events)).unwrap(), events);
        assert_eq!(decode(b"FUTURE 2\r\nab\r\nOPEN\r\n").unwrap(), [WsEvent::Other("FUTURE".into()), WsEvent::Open]);
        assert_eq!(decode(b"").unwrap(), []);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode(b"OPEN"), Err(WohError::Unterminated(0)));
        assert_eq!(decode(b"TEXT zz\r\nhi\r\n"), Err(WohError::Length("zz".into())));
        assert!(matches!(decode(b"TEXT 10\r\nhi\r\n"), Err(WohError::Truncated { declared: 16, .. })));
    }

    #[test]
    fn control_messages() {
        assert_eq!(
            control(br#"{"type":"subscribe","channel":"room"}"#),
            Ok(Control::Subscribe { channel: "room".into() })
        );
        assert_eq!(
            control(br#"{"type":"unsubscribe","channel":"room"}"#),
            Ok(Control::Unsubscribe { channel: "room".into() })
        );
        assert_eq!(control(br#"{"type":"detach"}"#), Ok(Control::Detach));
        assert_eq!(
            control(br#"{"type":"set-meta","name":"user","value":"ann"}"#),
            Ok(Control::SetMeta { name: "user".into(), value: "ann".into() })
        );
        assert_eq!(
            control(br#"{"type":"keep-alive","content":"{}","timeout":20}"#),
            Ok(Control::KeepAlive {
                content: Some(KeepAliveContent::Text("{}".into())),
                timeout_secs: 20,
                interval: false
            })
        );
        assert_eq!(
            control(br#"{"type":"keep-alive","message-type":"ping","content":"","mode":"interval"}"#),
            Ok(Control::KeepAlive { content: Some(KeepAliveContent::Ping(vec![])), timeout_secs: 30, interval: true })
        );
        assert_eq!(control(br#"{"type":"session","id":"x"}"#), Ok(Control::Other("session".into())));
        let forever = format!(r#"{{"type":"keep-alive","content":"","timeout":{}}}"#, u64::MAX);
        assert!(matches!(
            control(forever.as_bytes()),
            Ok(Control::KeepAlive { timeout_secs: MAX_KEEP_ALIVE_SECS, .. })
        ));
        assert!(control(br#"{"type":"subscribe"}"#).is_err());
        assert!(control(br#"{"type":"subscribe","channel":""}"#).is_err());
        assert!(control(b"not json").is_err());
    }

    #[test]
    fn grip_extension_and_its_prefix() {
        assert_eq!(grip_prefix("grip").as_deref(), Some("m:"));
        assert_eq!(grip_prefix("permessage-deflate, grip; message-prefix=\"\"").as_deref(), Some(""));
        assert_eq!(grip_prefix("grip; message-prefix=msg:").as_deref(), Some("msg:"));
        assert_eq!(grip_prefix("permessage-deflate"), None);
    }
}
