//! `slip.v1` sessions (docs/sessions.md), the parts that are only formats: the
//! session token, the JSON envelopes the gateway sends a session's client,
//! and the resume frame the client sends back. The edge keeps the state.

use std::collections::BTreeMap;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use crate::channel;

/// The subprotocol a client offers to get a session.
pub const SUBPROTOCOL: &str = "slip.v1";
/// The query parameter a resuming client puts its token in.
pub const RESUME_PARAM: &str = "slip_resume";
/// Longest session token taken, in bytes.
pub const MAX_TOKEN_BYTES: usize = 1024;
/// Longest resume frame taken, in bytes.
pub const MAX_RESUME_FRAME_BYTES: usize = 128 * 1024;
/// Most channel positions one resume frame may carry.
pub const MAX_RESUME_CHANNELS: usize = 1024;
/// What `lost` names when direct messages could not be replayed.
pub const LOST_MESSAGES: &str = "#messages";
/// Default wait for a dropped session to be resumed (`SLIP_RESUME_SECS`),
/// on edges (parked) and on control nodes (the presence of a session whose
/// edge is gone).
pub const DEFAULT_RESUME_WINDOW: std::time::Duration = std::time::Duration::from_secs(120);

/// What a session token says: whose session it is, and which of its tokens
/// (each resume issues the next, and only the latest resumes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// The session's connection id.
    #[serde(rename = "c")]
    pub connection_id: String,
    /// Its generation: each resume issues the next, and only the latest resumes.
    #[serde(rename = "g")]
    pub generation: u64,
    /// When it was issued, in seconds since the epoch.
    #[serde(rename = "t")]
    pub issued: u64,
}

/// Why a session token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Longer than the limit (its length).
    #[error("session token of {0} bytes; at most {MAX_TOKEN_BYTES}")]
    TooLong(usize),
    /// Not two base64url parts.
    #[error("session token is not two base64url parts")]
    Malformed,
    /// Not signed by this gateway.
    #[error("session token signature does not verify")]
    BadSignature,
}

/// The key session tokens are signed with, derived from the shared secret
/// for this use alone: a session token is never valid as any other kind of
/// token (a callback's, a control request's), nor the other way round.
fn key(secret: &[u8]) -> hmac::Key {
    let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), b"slip.v1 session token");
    hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
}

/// `base64url(claims JSON) "." base64url(HMAC-SHA256)`.
pub fn sign(secret: &[u8], claims: &SessionClaims) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let tag = hmac::sign(&key(secret), payload.as_bytes());
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// The claims of a token this gateway signed (checked in constant time).
pub fn verify(token: &str, secret: &[u8]) -> Result<SessionClaims, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLong(token.len()));
    }
    let (payload, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TokenError::Malformed)?;
    hmac::verify(&key(secret), payload.as_bytes(), &tag).map_err(|_| TokenError::BadSignature)?;
    let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)
}

/// A payload as a client receives it: text, or binary in base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    /// Text.
    Text(&'a str),
    /// Binary, sent in base64.
    Binary(&'a [u8]),
}

impl Payload<'_> {
    fn put(self, envelope: &mut serde_json::Map<String, serde_json::Value>) {
        match self {
            Payload::Text(text) => envelope.insert("data".into(), text.into()),
            Payload::Binary(bytes) => envelope.insert("binary".into(), STANDARD.encode(bytes).into()),
        };
    }
}

/// What a resumed session could not get back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Channels (and [`LOST_MESSAGES`]) with something the client will not get.
    pub lost: Vec<String>,
}

/// The first frame of a session: `{"type":"session",...}`; `resumed` with
/// what it could not recover, for a resumed one.
pub fn session_frame(token: &str, connection_id: &str, resumed: Option<&Recovery>) -> String {
    let mut frame = serde_json::json!({
        "type": "session",
        "session": token,
        "connectionId": connection_id,
        "resumed": resumed.is_some(),
    });
    if let Some(recovery) = resumed {
        frame["recovered"] = recovery.lost.is_empty().into();
        frame["lost"] = recovery.lost.clone().into();
    }
    frame.to_string()
}

/// A fresh token for a live session, sent before its current one gets too
/// old to resume with: `{"type":"session",...,"refresh":true}`. It says
/// `resumed` and `recovered` so that a client that does not know `refresh`
/// takes it as a resume that lost nothing.
pub fn refresh_frame(token: &str, connection_id: &str) -> String {
    serde_json::json!({
        "type": "session",
        "session": token,
        "connectionId": connection_id,
        "resumed": true,
        "recovered": true,
        "lost": [],
        "refresh": true,
    })
    .to_string()
}

/// Whether a token issued at `issued` (seconds) still resumes a session
/// that has been waiting since `since` (its park, or now for a live one):
/// a token lives `window` seconds past its issue, counted to when the
/// session began waiting (a parked session's newest token is never
/// refreshed, and stays good for the session's whole window).
pub fn fresh_enough(issued: u64, since: u64, window: u64) -> bool {
    issued.saturating_add(window) >= since
}

/// A channel publication: `{"type":"publication","channel",...,"offset",...}`.
pub fn publication(channel: &str, epoch: &str, offset: u64, payload: Payload<'_>) -> String {
    let mut envelope = serde_json::Map::new();
    envelope.insert("type".into(), "publication".into());
    envelope.insert("channel".into(), channel.into());
    envelope.insert("epoch".into(), epoch.into());
    envelope.insert("offset".into(), offset.into());
    payload.put(&mut envelope);
    serde_json::Value::Object(envelope).to_string()
}

/// A message sent to this connection: `{"type":"message","seq":N,...}`.
pub fn message(seq: u64, payload: Payload<'_>) -> String {
    let mut envelope = serde_json::Map::new();
    envelope.insert("type".into(), "message".into());
    envelope.insert("seq".into(), seq.into());
    payload.put(&mut envelope);
    serde_json::Value::Object(envelope).to_string()
}

/// Where a client is in one channel's stream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Position {
    /// The stream's epoch.
    pub epoch: String,
    /// The last offset the client got in it.
    pub offset: u64,
}

/// The largest message number a session gives (and a resume frame may
/// name): the largest integer a JavaScript client holds exactly.
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// A client's resume frame: the last message it got, and where it is in each channel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resume {
    /// The number of the last message the client got (0: none).
    pub seq: u64,
    /// Per channel, where the client is.
    pub channels: BTreeMap<String, Position>,
}

/// Why a resume frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// Over the size limit (its size).
    #[error("resume frame of {0} bytes; at most {MAX_RESUME_FRAME_BYTES}")]
    TooLarge(usize),
    /// Not a resume frame (why).
    #[error("not a resume frame: {0}")]
    Invalid(String),
    /// Names too many channels (how many).
    #[error("resume frame with {0} channels; at most {MAX_RESUME_CHANNELS}")]
    TooManyChannels(usize),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    channels: BTreeMap<String, Position>,
}

/// Parses `{"type":"resume","seq":N,"channels":{"name":{"epoch":"...","offset":N}}}`.
pub fn parse_resume(text: &str) -> Result<Resume, ResumeError> {
    if text.len() > MAX_RESUME_FRAME_BYTES {
        return Err(ResumeError::TooLarge(text.len()));
    }
    let frame: ResumeFrame = serde_json::from_str(text).map_err(|e| ResumeError::Invalid(e.to_string()))?;
    if frame.kind != "resume" {
        return Err(ResumeError::Invalid(format!("type {:?}", frame.kind)));
    }
    if frame.seq > MAX_SEQ {
        return Err(ResumeError::Invalid(format!("seq {} past {MAX_SEQ}", frame.seq)));
    }
    if frame.channels.len() > MAX_RESUME_CHANNELS {
        return Err(ResumeError::TooManyChannels(frame.channels.len()));
    }
    if let Some(bad) = frame.channels.keys().find(|name| channel::validate(name).is_err()) {
        return Err(ResumeError::Invalid(format!("channel name {bad:?}")));
    }
    Ok(Resume { seq: frame.seq, channels: frame.channels })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const SECRET: &[u8] = b"a-secret-of-at-least-thirty-two-bytes";

    fn claims() -> SessionClaims {
        SessionClaims { connection_id: "edge-1.00000000000000000001".into(), generation: 3, issued: 1_800_000_000 }
    }

    #[test]
    fn a_token_verifies_only_with_its_secret_and_unaltered() {
        let token = sign(SECRET, &claims());
        assert_eq!(verify(&token, SECRET), Ok(claims()));
        assert_eq!(verify(&token, b"another-secret-of-at-least-32-bytes!!"), Err(TokenError::BadSignature));
        let (payload, tag) = token.split_once('.').unwrap();
        let forged = SessionClaims { connection_id: "edge-1.someone-else".into(), ..claims() };
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(verify(&format!("{forged_payload}.{tag}"), SECRET), Err(TokenError::BadSignature));
        assert_eq!(verify(payload, SECRET), Err(TokenError::Malformed));
        assert_eq!(verify(&"x".repeat(MAX_TOKEN_BYTES + 1), SECRET), Err(TokenError::TooLong(MAX_TOKEN_BYTES + 1)));
    }

    #[test]
    fn a_session_token_is_no_jwt_and_a_jwt_is_no_session_token() {
        let jwt = crate::jwt::sign(SECRET, crate::jwt::AUD_CONTROL_EVENT, crate::jwt::now());
        assert!(verify(&jwt, SECRET).is_err());
        let token = sign(SECRET, &claims());
        assert!(crate::jwt::verify(&token, SECRET, crate::jwt::AUD_CONTROL_EVENT, crate::jwt::now()).is_err());
    }

    #[test]
    fn envelopes_are_the_documented_json() {
        let publication: serde_json::Value =
            serde_json::from_str(&publication("room", "e1", 7, Payload::Text("hi"))).unwrap();
        assert_eq!(
            publication,
            serde_json::json!({"type":"publication","channel":"room","epoch":"e1","offset":7,"data":"hi"})
        );
        let message: serde_json::Value = serde_json::from_str(&message(2, Payload::Binary(&[1, 2, 3]))).unwrap();
        assert_eq!(message, serde_json::json!({"type":"message","seq":2,"binary":"AQID"}));
        let recovery = Recovery { lost: vec!["room".into()] };
        let resumed: serde_json::Value = serde_json::from_str(&session_frame("t", "c", Some(&recovery))).unwrap();
        assert_eq!(
            resumed,
            serde_json::json!({"type":"session","session":"t","connectionId":"c","resumed":true,"recovered":false,"lost":["room"]})
        );
        let fresh: serde_json::Value = serde_json::from_str(&session_frame("t", "c", None)).unwrap();
        assert_eq!(fresh, serde_json::json!({"type":"session","session":"t","connectionId":"c","resumed":false}));
    }

    #[test]
    fn a_resume_frame_parses_and_garbage_is_refused() {
        let resume =
            parse_resume(r#"{"type":"resume","seq":4,"channels":{"room":{"epoch":"e1","offset":9}}}"#).unwrap();
        assert_eq!(resume.seq, 4);
        assert_eq!(resume.channels["room"], Position { epoch: "e1".into(), offset: 9 });
        assert_eq!(parse_resume(r#"{"type":"resume"}"#).unwrap(), Resume::default());
        for bad in [
            "",
            "resume",
            r#"{"type":"hello"}"#,
            r#"{"type":"resume","seq":-1}"#,
            r#"{"type":"resume","seq":9007199254740992}"#,
            r#"{"type":"resume","channels":{"":{"epoch":"e","offset":1}}}"#,
            r#"{"type":"resume","channels":{"a":{"offset":1}}}"#,
            r#"{"type":"resume","extra":1}"#,
        ] {
            assert!(parse_resume(bad).is_err(), "{bad}");
        }
        let many: BTreeMap<String, serde_json::Value> =
            (0..=MAX_RESUME_CHANNELS).map(|i| (format!("c{i}"), serde_json::json!({"epoch":"e","offset":1}))).collect();
        let text = serde_json::json!({"type":"resume","channels":many}).to_string();
        assert_eq!(parse_resume(&text), Err(ResumeError::TooManyChannels(MAX_RESUME_CHANNELS + 1)));
    }
}
