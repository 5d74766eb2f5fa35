//! The edge's side of Pushpin's WebSocket-over-HTTP (`slip_proto::woh`), as
//! pure code: what each request carries and what each reply asks for. The
//! HTTP itself is in `callback.rs`; this file never touches a socket.
//!
//! Per connection the session keeps what Pushpin keeps: the handshake's
//! headers and path (sent on every request), the meta values the backend set
//! (`Set-Meta-*` → `Meta-*`), whether grip mode is on and its message prefix,
//! whether the connection is detached, and the backend's keep-alive interval.

use std::time::Duration;

use bytes::Bytes;
use slip_proto::callback::Event;
use slip_proto::close::CloseCode;
use slip_proto::command::{Command, decode_binary};
use slip_proto::woh::{self, Control, KeepAliveContent, WsEvent};

use crate::batcher::SocketEvent;
use crate::effect::{Effect, KeepAlive};
use crate::frame;

/// Handshake headers not forwarded: hop-by-hop, the handshake's own, and the
/// ones the gateway sets itself. `meta-*` are dropped too, so a client cannot
/// forge meta values.
const NOT_FORWARDED: [&str; 13] = [
    "host",
    "connection",
    "upgrade",
    "content-length",
    "transfer-encoding",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "accept",
    "connection-id",
    "content-type",
    "grip-sig",
    "keep-alive",
];
/// Largest reply body read, in bytes (Pushpin's `RESPONSE_BODY_MAX`).
pub const MAX_REPLY_BYTES: usize = 1_000_000;
/// Largest body of a refusal passed on to the client, in bytes (Pushpin's `REJECT_BODY_MAX`).
pub const MAX_REJECT_BODY_BYTES: usize = 100_000;
/// Most meta values per connection.
pub const MAX_META: usize = 64;

/// One request to make: where, with which headers, what body.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A backend's HTTP answer, as read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why an opening connection is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The backend answered something other than 200 + websocket-events: the
    /// client gets that status and body, as with Pushpin.
    Rejected { status: u16, body: Bytes },
    /// The answer was 200 but not a valid opening (no OPEN first, bad events): 502.
    BadReply(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    headers: Vec<(String, String)>,
    /// The backend's URL for this connection: the target with the client's path and query.
    url: String,
    meta: Vec<(String, String)>,
    grip_prefix: Option<String>,
    pub detached: bool,
    pub keep_alive_interval: Option<Duration>,
}

impl Session {
    /// A session for a client's handshake: its headers (names in lower case)
    /// and the path and query it asked for. `target` is the backend's base
    /// URL; the client's path and query are appended to it, as Pushpin's
    /// routes do.
    pub fn new(handshake: &[(String, String)], target: &str, path_and_query: &str, client_ip: &str) -> Self {
        let mut headers: Vec<(String, String)> = handshake
            .iter()
            .filter(|(name, _)| !NOT_FORWARDED.contains(&name.as_str()) && !name.starts_with("meta-"))
            .cloned()
            .collect();
        // As Pushpin: the client's address appended to X-Forwarded-For.
        match headers.iter_mut().find(|(n, _)| n == "x-forwarded-for") {
            Some((_, value)) => *value = format!("{value}, {client_ip}"),
            None => headers.push(("x-forwarded-for".into(), client_ip.into())),
        }
        Self {
            headers,
            url: join(target, path_and_query),
            meta: Vec::new(),
            grip_prefix: None,
            detached: false,
            keep_alive_interval: None,
        }
    }

    /// The request for these events; the callback client signs it (`Grip-Sig`).
    pub fn request(&self, connection_id: &str, events: &[WsEvent]) -> Request {
        let mut headers = self.headers.clone();
        headers.extend([
            ("accept".into(), woh::CONTENT_TYPE.into()),
            ("content-type".into(), woh::CONTENT_TYPE.into()),
            ("connection-id".into(), connection_id.into()),
            ("sec-websocket-extensions".into(), "grip".into()),
        ]);
        headers.extend(self.meta.iter().map(|(name, value)| (format!("meta-{name}"), value.clone())));
        Request { url: self.url.clone(), headers, body: woh::encode(events) }
    }

    /// The answer to OPEN: the subprotocol to accept, and what the rest of the reply asks for.
    pub fn open(&mut self, reply: &Reply, connection_id: &str) -> Result<(Option<String>, Vec<Effect>), Refusal> {
        if !is_events(reply) {
            let body = reply.body.slice(..reply.body.len().min(MAX_REJECT_BODY_BYTES));
            return Err(Refusal::Rejected { status: reply.status, body });
        }
        self.absorb_headers(reply);
        self.grip_prefix = reply.header("sec-websocket-extensions").and_then(woh::grip_prefix);
        let events = woh::decode(&reply.body).map_err(|e| Refusal::BadReply(e.to_string()))?;
        match events.first() {
            Some(WsEvent::Open) => {}
            None if self.keep_alive_interval.is_some() => {}
            _ => return Err(Refusal::BadReply("the reply to OPEN does not start with OPEN".into())),
        }
        let protocol = reply.header("sec-websocket-protocol").map(str::to_owned);
        Ok((protocol, self.effects(events.into_iter().skip(1), connection_id)))
    }

    /// What a reply after OPEN asks for; an error means the connection must go.
    pub fn answer(&mut self, reply: &Reply, connection_id: &str) -> Result<Vec<Effect>, String> {
        if !is_events(reply) {
            return Err(format!("backend answered HTTP {} without websocket-events", reply.status));
        }
        self.absorb_headers(reply);
        let events = woh::decode(&reply.body).map_err(|e| e.to_string())?;
        Ok(self.effects(events.into_iter(), connection_id))
    }

    fn absorb_headers(&mut self, reply: &Reply) {
        if let Some(value) = reply.header("keep-alive-interval") {
            self.keep_alive_interval = value
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|&s| s > 0)
                .map(|s| Duration::from_secs(s.clamp(woh::MIN_KEEP_ALIVE_INTERVAL_SECS, woh::MAX_KEEP_ALIVE_SECS)));
        }
        for (name, value) in &reply.headers {
            if name.len() > 9 && name[..9].eq_ignore_ascii_case("set-meta-") {
                self.set_meta(&name[9..], value);
            }
        }
    }

    fn set_meta(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        self.meta.retain(|(n, _)| *n != name);
        if !value.is_empty() && self.meta.len() < MAX_META {
            self.meta.push((name, value.to_owned()));
        }
    }

    fn effects(&mut self, events: impl Iterator<Item = WsEvent>, connection_id: &str) -> Vec<Effect> {
        let mut effects = Vec::new();
        for event in events {
            match event {
                WsEvent::Text(content) => self.message(content, false, connection_id, &mut effects),
                WsEvent::Binary(content) => self.message(content, true, connection_id, &mut effects),
                WsEvent::Ping(content) => match frame::ping(&content) {
                    Some(ping) => effects.push(Effect::Frame(ping)),
                    None => tracing::debug!(connection = connection_id, "PING over 125 bytes skipped"),
                },
                WsEvent::Pong(content) => match frame::pong(&content) {
                    Some(pong) => effects.push(Effect::Frame(pong)),
                    None => tracing::debug!(connection = connection_id, "PONG over 125 bytes skipped"),
                },
                WsEvent::Close { code, reason } => {
                    // A code no endpoint may send (1005, 1006, 1015, ...)
                    // becomes a plain normal close.
                    let code = code.and_then(CloseCode::new).unwrap_or(CloseCode::NORMAL);
                    effects.push(Effect::Close { code, reason });
                    break;
                }
                // OPEN again after the opening, as Pushpin treats it: the end.
                WsEvent::Disconnect | WsEvent::Open => {
                    effects.push(Effect::Disconnect);
                    break;
                }
                WsEvent::Other(name) => tracing::debug!(event = %name, "unknown WebSocket-over-HTTP event skipped"),
            }
        }
        effects
    }

    fn message(&mut self, content: Vec<u8>, binary: bool, connection_id: &str, effects: &mut Vec<Effect>) {
        let content = match &self.grip_prefix {
            None => content,
            Some(_) if !binary && content.starts_with(woh::CONTROL_PREFIX.as_bytes()) => {
                self.control(&content[woh::CONTROL_PREFIX.len()..], connection_id, effects);
                return;
            }
            Some(prefix) if content.starts_with(prefix.as_bytes()) => content[prefix.len()..].to_vec(),
            Some(_) => {
                // Pushpin drops these silently; we count them and log at debug.
                slip_metrics::metrics().unprefixed_messages.inc();
                tracing::debug!(connection = connection_id, "message without the grip prefix dropped");
                return;
            }
        };
        if binary {
            effects.push(Effect::Frame(frame::binary(&content)));
        } else {
            match String::from_utf8(content) {
                Ok(text) => effects.push(Effect::Frame(frame::text(&text))),
                Err(_) => tracing::debug!(connection = connection_id, "TEXT that is not UTF-8 dropped"),
            }
        }
    }

    fn control(&mut self, json: &[u8], connection_id: &str, effects: &mut Vec<Effect>) {
        let control = match woh::control(json) {
            Ok(control) => control,
            Err(e) => {
                tracing::debug!(connection = connection_id, error = %e, "grip control message skipped");
                return;
            }
        };
        let connection_id = connection_id.to_owned();
        match control {
            Control::Subscribe { channel } => effects.push(Effect::Command(Command::Subscribe {
                connection_id,
                channel,
                presence: None,
                join_leave: false,
            })),
            Control::Unsubscribe { channel } => {
                effects.push(Effect::Command(Command::Unsubscribe { connection_id, channel }))
            }
            Control::Detach => {
                self.detached = true;
                effects.push(Effect::Detach);
            }
            Control::SetMeta { name, value } => self.set_meta(&name, &value),
            Control::KeepAlive { content, timeout_secs, interval } => {
                let frame = content.and_then(|content| match content {
                    KeepAliveContent::Text(t) => Some(frame::text(&t)),
                    KeepAliveContent::Binary(b) => Some(frame::binary(&b)),
                    KeepAliveContent::Ping(b) => frame::ping(&b),
                    KeepAliveContent::Pong(b) => frame::pong(&b),
                });
                let keep_alive =
                    frame.map(|frame| KeepAlive { frame, every: Duration::from_secs(timeout_secs), interval });
                effects.push(Effect::KeepAlive(keep_alive));
            }
            Control::Other(kind) => tracing::debug!(%kind, "grip control message not supported, skipped"),
        }
    }
}

/// The connection's socket events as WebSocket-over-HTTP events.
pub fn events(batch: &[SocketEvent]) -> Vec<WsEvent> {
    batch
        .iter()
        .map(|event| match event {
            SocketEvent::Ping(data) => WsEvent::Ping(data.clone()),
            SocketEvent::Binary(data) => WsEvent::Binary(data.to_vec()),
            SocketEvent::Event(Event::Open { .. }) => WsEvent::Open,
            SocketEvent::Event(Event::Text { data, .. }) => WsEvent::Text(data.clone().into_bytes()),
            SocketEvent::Event(Event::Binary { data, .. }) => WsEvent::Binary(decode_binary(data).unwrap_or_default()),
            // 1006: the peer vanished without a close frame.
            SocketEvent::Event(Event::Close { code: Some(1006), .. }) => WsEvent::Disconnect,
            SocketEvent::Event(Event::Close { code, reason, .. }) => {
                WsEvent::Close { code: *code, reason: reason.clone().unwrap_or_default() }
            }
        })
        .collect()
}

fn is_events(reply: &Reply) -> bool {
    reply.status == 200
        && reply.header("content-type").is_some_and(|t| t.split(';').next().map(str::trim) == Some(woh::CONTENT_TYPE))
}

/// `http://backend:8081` + `/chat?x=1` → `http://backend:8081/chat?x=1`; a
/// target with a path prefixes it (`http://b/api` → `http://b/api/chat?x=1`).
fn join(target: &str, path_and_query: &str) -> String {
    format!("{}{}", target.trim_end_matches('/'), if path_and_query.is_empty() { "/" } else { path_and_query })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "n.0123456789abcdef0123";

    fn session() -> Session {
        let handshake = [
            ("host".to_owned(), "example.com".to_owned()),
            ("sec-websocket-key".to_owned(), "k".to_owned()),
            ("cookie".to_owned(), "a=1".to_owned()),
            ("meta-user".to_owned(), "forged".to_owned()),
        ];
        Session::new(&handshake, "http://backend:8081/", "/chat?room=7", "10.0.0.9")
    }

    fn reply(headers: &[(&str, &str)], events: &[WsEvent]) -> Reply {
        let mut all = vec![("Content-Type".to_owned(), woh::CONTENT_TYPE.to_owned())];
        all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        Reply { status: 200, headers: all, body: woh::encode(events).into() }
    }

    fn text(s: &str) -> WsEvent {
        WsEvent::Text(s.as_bytes().to_vec())
    }

    #[test]
    fn requests_carry_the_handshake_meta_and_events() {
        let mut s = session();
        s.set_meta("User", "ann");
        let r = s.request(ID, &[WsEvent::Open]);
        assert_eq!(r.url, "http://backend:8081/chat?room=7");
        assert_eq!(r.body, b"OPEN\r\n");
        let has = |n: &str, v: &str| r.headers.iter().any(|(a, b)| a == n && b == v);
        assert!(has("cookie", "a=1") && has("connection-id", ID) && has("meta-user", "ann"));
        assert!(has("sec-websocket-extensions", "grip") && has("x-forwarded-for", "10.0.0.9"));
        assert!(!r.headers.iter().any(|(n, v)| n == "host" || n == "sec-websocket-key" || v == "forged"));
    }

    #[test]
    fn opening_in_grip_mode() {
        let mut s = session();
        let answer = reply(
            &[("Sec-WebSocket-Extensions", "grip"), ("Set-Meta-User", "ann"), ("Sec-WebSocket-Protocol", "chat")],
            &[WsEvent::Open, text(r#"c:{"type":"subscribe","channel":"room"}"#), text("m:welcome"), text("dropped")],
        );
        let (protocol, effects) = s.open(&answer, ID).unwrap();
        assert_eq!(protocol.as_deref(), Some("chat"));
        assert_eq!(
            effects,
            [
                Effect::Command(Command::Subscribe {
                    connection_id: ID.into(),
                    channel: "room".into(),
                    presence: None,
                    join_leave: false,
                }),
                Effect::Frame(frame::text("welcome")),
            ]
        );
        assert_eq!(s.meta, [("user".to_owned(), "ann".to_owned())]);
    }

    #[test]
    fn opening_refusals() {
        let mut s = session();
        let forbidden = Reply { status: 403, headers: vec![], body: Bytes::from_static(b"go away") };
        assert_eq!(s.open(&forbidden, ID), Err(Refusal::Rejected { status: 403, body: forbidden.body.clone() }));
        assert!(matches!(s.open(&reply(&[], &[text("hi")]), ID), Err(Refusal::BadReply(_))));
        assert!(matches!(s.open(&reply(&[], &[]), ID), Err(Refusal::BadReply(_))));
        // No events is fine when the backend asks for keep-alive requests.
        assert!(s.open(&reply(&[("Keep-Alive-Interval", "5")], &[]), ID).is_ok());
        assert_eq!(s.keep_alive_interval, Some(Duration::from_secs(20)), "raised to Pushpin's floor");
        let huge = u64::MAX.to_string();
        assert!(s.open(&reply(&[("Keep-Alive-Interval", &huge)], &[]), ID).is_ok());
        assert_eq!(s.keep_alive_interval, Some(Duration::from_secs(woh::MAX_KEEP_ALIVE_SECS)), "cut to a day");
    }

    #[test]
    fn what_no_endpoint_may_send_never_reaches_a_client() {
        let mut s = session();
        for code in [1005, 1006, 1015, 0, 999] {
            let answer = reply(&[], &[WsEvent::Close { code: Some(code), reason: "x".into() }]);
            assert_eq!(s.answer(&answer, ID).unwrap(), [Effect::Close { code: CloseCode::NORMAL, reason: "x".into() }]);
        }
        let answer = reply(&[], &[WsEvent::Ping(vec![0; 126]), WsEvent::Pong(vec![0; 200]), text("next")]);
        assert_eq!(s.answer(&answer, ID).unwrap(), [Effect::Frame(frame::text("next"))]);
        let keep_alive = format!(r#"c:{{"type":"keep-alive","message-type":"ping","content":"{}"}}"#, "x".repeat(126));
        let mut grip = session();
        grip.grip_prefix = Some("m:".into());
        assert_eq!(grip.answer(&reply(&[], &[text(&keep_alive)]), ID).unwrap(), [Effect::KeepAlive(None)]);
    }

    #[test]
    fn answers_without_grip_pass_everything_and_stop_at_close() {
        let mut s = session();
        let answer = reply(
            &[],
            &[
                text("as is"),
                WsEvent::Binary(vec![1, 2]),
                WsEvent::Ping(vec![]),
                WsEvent::Close { code: Some(4000), reason: "bye".into() },
                text("after close"),
            ],
        );
        assert_eq!(
            s.answer(&answer, ID).unwrap(),
            [
                Effect::Frame(frame::text("as is")),
                Effect::Frame(frame::binary(&[1, 2])),
                Effect::Frame(frame::ping(b"").unwrap()),
                Effect::Close { code: CloseCode::new(4000).unwrap(), reason: "bye".into() },
            ]
        );
        assert!(s.answer(&Reply { status: 500, ..Reply::default() }, ID).is_err());
    }

    #[test]
    fn grip_controls_detach_set_meta_keep_alive() {
        let mut s = session();
        s.grip_prefix = Some("m:".into());
        let answer = reply(
            &[("Set-Meta-Room", "7")],
            &[
                text(r#"c:{"type":"set-meta","name":"user","value":"bob"}"#),
                text(r#"c:{"type":"keep-alive","content":"{}","timeout":25}"#),
                text(r#"c:{"type":"unsubscribe","channel":"room"}"#),
                text(r#"c:{"type":"detach"}"#),
                text("c:not json"),
                WsEvent::Binary(b"m:\x00".to_vec()),
            ],
        );
        let effects = s.answer(&answer, ID).unwrap();
        assert_eq!(
            effects,
            [
                Effect::KeepAlive(Some(KeepAlive {
                    frame: frame::text("{}"),
                    every: Duration::from_secs(25),
                    interval: false
                })),
                Effect::Command(Command::Unsubscribe { connection_id: ID.into(), channel: "room".into() }),
                Effect::Detach,
                Effect::Frame(frame::binary(b"\x00")),
            ]
        );
        assert!(s.detached);
        let r = s.request(ID, &[]);
        assert!(r.headers.contains(&("meta-room".into(), "7".into())));
        assert!(r.headers.contains(&("meta-user".into(), "bob".into())));
    }

    #[test]
    fn socket_events_map_to_websocket_events() {
        let batch = [
            Event::Text { connection_id: ID.into(), data: "hi".into() }.into(),
            SocketEvent::Ping(b"hb".to_vec()),
            SocketEvent::Binary(Bytes::from_static(&[0, 1, 255])),
            Event::close(ID, Some(1000), Some("done".into())).into(),
            Event::close(ID, Some(1006), None).into(),
        ];
        assert_eq!(
            events(&batch),
            [
                text("hi"),
                WsEvent::Ping(b"hb".to_vec()),
                WsEvent::Binary(vec![0, 1, 255]),
                WsEvent::Close { code: Some(1000), reason: "done".into() },
                WsEvent::Disconnect
            ]
        );
    }
}
