//! GRIP publishing, as Pushpin's `POST /publish/` takes it: a JSON body of
//! `items`, each for one channel, carrying the `ws-message` format.
//!
//! ```json
//! {"items": [
//!   {"channel": "room", "id": "7", "prev-id": "6",
//!    "formats": {"ws-message": {"content": "hello"}}},
//!   {"channel": "room", "formats": {"ws-message": {"content-bin": "AAEC"}}},
//!   {"channel": "room", "formats": {"ws-message": {"action": "close", "code": 4000}}}
//! ]}
//! ```
//!
//! Formats may also sit directly on the item (`{"channel": "room",
//! "ws-message": {…}}`), as the Python GRIP library sends them.
//!
//! Items without `ws-message` (HTTP streaming or long-polling formats) are
//! counted as skipped: this gateway holds WebSockets only. Like the SLIP
//! commands, a body is all or nothing: one bad item rejects the whole body.

use crate::close::CloseCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::Value;

use crate::channel;
use crate::limits::{MAX_COMMAND_BODY_BYTES, MAX_COMMANDS_PER_BATCH, MAX_MESSAGE_BYTES, check_message_size_within};

/// What one item asks of its channel's subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GripAction {
    /// Send this text to every subscriber.
    Text(String),
    /// Send these bytes to every subscriber.
    Binary(Vec<u8>),
    /// Close every subscriber's connection.
    Close {
        /// The close code they get (1000 when none).
        code: Option<CloseCode>,
        /// The close reason they get.
        reason: Option<String>,
    },
}

/// One item of a GRIP publish body, as it applies to WebSockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GripItem {
    /// The channel it goes to.
    pub channel: String,
    /// Its id, for ordering with `prev-id`.
    pub id: Option<String>,
    /// The id of the item it must follow.
    pub prev_id: Option<String>,
    /// `None`: the item has no `ws-message` format, nothing for WebSockets.
    pub action: Option<GripAction>,
}

/// Why a GRIP publish body was refused (whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GripError {
    /// The body is over the size limit.
    #[error("publish body is larger than {MAX_COMMAND_BODY_BYTES} bytes")]
    TooLarge,
    /// The body is not JSON with an `items` array (why).
    #[error("publish body is not JSON with an \"items\" array: {0}")]
    Json(String),
    /// Too many items in one body.
    #[error("publish body has more than {MAX_COMMANDS_PER_BATCH} items")]
    TooMany,
    /// One item is wrong.
    #[error("item {index}: {reason}")]
    Item {
        /// Its place in `items`, from 0.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
}

#[derive(Deserialize)]
struct Body {
    items: Vec<RawItem>,
}

#[derive(Deserialize)]
struct RawItem {
    channel: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "prev-id")]
    prev_id: Option<String>,
    #[serde(default)]
    formats: serde_json::Map<String, Value>,
    /// Formats may also sit on the item itself, which is how the Python GRIP
    /// library sends them (`{"channel": …, "ws-message": {…}}`); Pushpin takes both.
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
struct WsMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default, rename = "content-bin")]
    content_bin: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    reason: Option<String>,
}

/// Parses and checks a whole publish body.
pub fn parse(body: &[u8]) -> Result<Vec<GripItem>, GripError> {
    parse_within(body, MAX_MESSAGE_BYTES)
}

/// [`parse`], with messages of at most `max_message` bytes.
pub fn parse_within(body: &[u8], max_message: usize) -> Result<Vec<GripItem>, GripError> {
    if body.len() > MAX_COMMAND_BODY_BYTES {
        return Err(GripError::TooLarge);
    }
    let body: Body = serde_json::from_slice(body).map_err(|e| GripError::Json(e.to_string()))?;
    if body.items.len() > MAX_COMMANDS_PER_BATCH {
        return Err(GripError::TooMany);
    }
    body.items
        .into_iter()
        .enumerate()
        .map(|(index, raw)| item(raw, max_message).map_err(|reason| GripError::Item { index, reason }))
        .collect()
}

fn item(raw: RawItem, max_message: usize) -> Result<GripItem, String> {
    channel::validate(&raw.channel).map_err(|e| e.to_string())?;
    let action = match raw.formats.get("ws-message").or_else(|| raw.rest.get("ws-message")) {
        None => None,
        Some(format) => Some(ws_message(format.clone(), max_message)?),
    };
    Ok(GripItem { channel: raw.channel, id: raw.id, prev_id: raw.prev_id, action })
}

fn ws_message(format: Value, max_message: usize) -> Result<GripAction, String> {
    let m: WsMessage = serde_json::from_value(format).map_err(|e| format!("ws-message: {e}"))?;
    match (m.action.as_deref(), m.content, m.content_bin) {
        (Some("close"), None, None) => {
            let code = match m.code {
                None => None,
                Some(code) => {
                    Some(CloseCode::new(code).ok_or_else(|| format!("ws-message: close code {code} may not be sent"))?)
                }
            };
            Ok(GripAction::Close { code, reason: m.reason })
        }
        (Some("close"), ..) => Err("ws-message: a close carries no content".into()),
        (Some(other), ..) if other != "send" => Err(format!("ws-message: unknown action {other:?}")),
        (_, Some(text), None) => {
            check_message_size_within(text.len(), max_message)?;
            Ok(GripAction::Text(text))
        }
        (_, None, Some(encoded)) => {
            let bytes = STANDARD.decode(encoded).map_err(|e| format!("ws-message: content-bin is not base64: {e}"))?;
            check_message_size_within(bytes.len(), max_message)?;
            Ok(GripAction::Binary(bytes))
        }
        (_, Some(_), Some(_)) => Err("ws-message: both content and content-bin".into()),
        (_, None, None) => Err("ws-message: no content, content-bin or action".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(body: &str) -> Result<GripItem, GripError> {
        parse(body.as_bytes()).map(|mut items| items.remove(0))
    }

    #[test]
    fn text_binary_close_and_other_formats() {
        let item =
            one(r#"{"items":[{"channel":"c","id":"2","prev-id":"1","formats":{"ws-message":{"content":"hi"}}}]}"#)
                .unwrap();
        assert_eq!(item.action, Some(GripAction::Text("hi".into())));
        assert_eq!((item.id.as_deref(), item.prev_id.as_deref()), (Some("2"), Some("1")));
        let bin = one(r#"{"items":[{"channel":"c","formats":{"ws-message":{"content-bin":"AAEC"}}}]}"#).unwrap();
        assert_eq!(bin.action, Some(GripAction::Binary(vec![0, 1, 2])));
        let close =
            one(r#"{"items":[{"channel":"c","formats":{"ws-message":{"action":"close","code":4000}}}]}"#).unwrap();
        assert_eq!(close.action, Some(GripAction::Close { code: CloseCode::new(4000), reason: None }));
        // Formats on the item itself, as Python's gripcontrol sends them.
        let flat = one(r#"{"items":[{"channel":"c","id":"1","ws-message":{"content":"flat"}}]}"#).unwrap();
        assert_eq!(flat.action, Some(GripAction::Text("flat".into())));
        let http = one(r#"{"items":[{"channel":"c","formats":{"http-stream":{"content":"x"}}}]}"#).unwrap();
        assert_eq!(http.action, None);
    }

    #[test]
    fn one_bad_item_rejects_the_body() {
        let bad = [
            r#"{"items":[{"channel":"c","formats":{"ws-message":{"content":"a"}}},{"channel":"","formats":{}}]}"#,
            r#"{"items":[{"channel":"c","formats":{"ws-message":{}}}]}"#,
            r#"{"items":[{"channel":"c","formats":{"ws-message":{"content-bin":"%%"}}}]}"#,
            r#"{"items":[{"channel":"c","formats":{"ws-message":{"content":"a","content-bin":"AA=="}}}]}"#,
            r#"{"items":[{"channel":"c","formats":{"ws-message":{"action":"explode"}}}]}"#,
            r#"{"items":[{"channel":"c","formats":{"ws-message":{"action":"close","code":99}}}]}"#,
            r#"{"items":[{"formats":{}}]}"#,
            r#"{"item":[]}"#,
            "not json",
        ];
        for body in bad {
            assert!(parse(body.as_bytes()).is_err(), "{body}");
        }
        let big = format!(
            r#"{{"items":[{{"channel":"c","formats":{{"ws-message":{{"content":"{}"}}}}}}]}}"#,
            "x".repeat(200_000)
        );
        assert!(parse(big.as_bytes()).is_err());
    }
}
