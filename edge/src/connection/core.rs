//! One connection's rules as pure code, the quinn-proto way: what the
//! client's bytes, the backend's answers and the clock mean, and what must
//! happen next. The task around it (`mod.rs`) only moves bytes and time: it
//! reads into [`Core::buffer`], hands answers and timeouts in, and carries
//! out each [`Output`] in order, the next only once the last is done.
//!
//! The rules (docs/protocol.md, "Ordering and batching", and its limits): one callback in flight, events that arrive
//! meanwhile batched into the next (bounded: a full batch stops reading);
//! what an answer asks for is carried out before the next callback goes; the
//! CLOSE event goes last, even after a backend failure; bad frames, a rate
//! over the limit and unwanted binary messages close with their codes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use slip_proto::callback::Event;
use slip_proto::close::{self, CloseCode};
use slip_proto::command::{Command, encode_binary};

use crate::EdgeConfig;
use crate::batcher::{Batcher, SocketEvent};
use crate::callback::CallbackError;
use crate::effect::{self, Effect};
use crate::frame::{self, Decoder, Message};
use crate::over_http::{self, Reply, Request, Session};
use crate::ratelimit::RateLimit;

/// Bytes read per read syscall (more when a large frame is known to be coming).
const READ_CHUNK: usize = 4096;
/// Close code when the backend keeps failing after the retries.
const BACKEND_FAILED: CloseCode = CloseCode::INTERNAL_ERROR;

/// What a connection is told at start (from [`EdgeConfig`]).
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_message_bytes: usize,
    pub max_pending_events: usize,
    pub message_rate: f64,
    pub message_burst: f64,
    /// Server pings this often; zero for none.
    pub ping_interval: Duration,
    pub dead_peer_timeout: Duration,
    /// The SLIP target takes BINARY events.
    pub binary_events: bool,
}

impl From<&EdgeConfig> for Settings {
    fn from(config: &EdgeConfig) -> Self {
        Self {
            max_message_bytes: config.max_message_bytes,
            max_pending_events: config.max_pending_events,
            message_rate: config.message_rate,
            message_burst: config.message_burst,
            ping_interval: config.ping_interval,
            dead_peer_timeout: config.dead_peer_timeout,
            binary_events: config.binary_events,
        }
    }
}

/// The callback format, one variant per format.
#[derive(Debug)]
pub enum Format {
    /// SLIP v4 JSON callbacks.
    Slip,
    /// Pushpin's WebSocket-over-HTTP, with what it keeps per connection.
    OverHttp(Session),
}

/// A callback to send.
#[derive(Debug, PartialEq)]
pub enum Outgoing {
    /// SLIP events; the metadata is the hub's, read as the request is sent.
    Slip(Vec<Event>),
    /// A WebSocket-over-HTTP request, complete but for its signature.
    OverHttp(Request),
}

/// A backend's answer to an [`Outgoing`], in the same format.
#[derive(Debug)]
pub enum Answer {
    Slip(Vec<Command>),
    OverHttp(Reply),
}

/// What the task must do, in this order.
#[derive(Debug, PartialEq)]
pub enum Output {
    /// Queue a frame for the client.
    Frame(Bytes),
    /// Close with a close frame once what is queued is written.
    Close { code: CloseCode, reason: String },
    /// Carry out what the backend asked for, in order, before any later output.
    Apply(Vec<Effect>),
    /// Send a callback; its answer goes to [`Core::answered`].
    Send(Outgoing),
    /// A resuming `slip.v1` session's first frame, its resume frame (empty
    /// if the first was not text): the task replays before anything else.
    Resume(String),
    /// A `slip.v1` session's token is due to be replaced: send a fresh one.
    RefreshToken,
}

/// How the connection ended, as the CLOSE event reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    /// A close code, or [`close::NO_STATUS`] / [`close::ABNORMAL`].
    pub code: u16,
    pub reason: String,
}

impl Ending {
    /// The peer is gone without a close frame.
    fn abnormal(reason: &str) -> Self {
        Self { code: close::ABNORMAL, reason: reason.to_owned() }
    }
}

/// One connection's rules as pure code: client bytes, callback answers and
/// the time in; frames, callbacks, effects and closes out (see the top of
/// this file).
pub struct Core {
    id: String,
    format: Format,
    buf: BytesMut,
    decoder: Decoder,
    batcher: Batcher<SocketEvent>,
    rate: RateLimit,
    ping_interval: Duration,
    dead_peer_timeout: Duration,
    binary_events: bool,
    /// The backend failed after its retries: nothing more is sent but the CLOSE event.
    failed: bool,
    ending: Option<Ending>,
    last_seen: Instant,
    /// When the last callback went out, for the backend's Keep-Alive-Interval.
    last_request: Instant,
    next_ping: Instant,
    /// A session's token refresh: how often, and when next.
    refresh: Option<(Duration, Instant)>,
    outputs: VecDeque<Output>,
    /// A resuming session: its first message is its resume frame, not an event.
    awaiting_resume: bool,
}

impl Core {
    /// A connection that just opened; `early` holds bytes the client sent
    /// right behind its handshake.
    pub fn new(id: String, format: Format, settings: &Settings, early: &[u8], now: Instant) -> Self {
        Self::build(id, format, settings, early, now, false)
    }

    /// A resumed `slip.v1` session's connection: its first message is the
    /// client's resume frame ([`Output::Resume`]).
    pub fn resuming(id: String, settings: &Settings, early: &[u8], now: Instant) -> Self {
        Self::build(id, Format::Slip, settings, early, now, true)
    }

    fn build(id: String, format: Format, settings: &Settings, early: &[u8], now: Instant, resume: bool) -> Self {
        let mut core = Self {
            awaiting_resume: resume,
            id,
            format,
            buf: BytesMut::from(early),
            decoder: Decoder::new(settings.max_message_bytes),
            batcher: Batcher::new(settings.max_pending_events),
            rate: RateLimit::new(settings.message_rate, settings.message_burst, now),
            ping_interval: settings.ping_interval,
            dead_peer_timeout: settings.dead_peer_timeout,
            binary_events: settings.binary_events,
            failed: false,
            ending: None,
            last_seen: now,
            last_request: now,
            next_ping: now + settings.ping_interval,
            refresh: None,
            outputs: VecDeque::new(),
        };
        core.decode(now);
        core
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// A `slip.v1` session: its client is sent a fresh token every `every`
    /// ([`Output::RefreshToken`]), so the one it holds is never too old.
    pub fn refresh_token_every(&mut self, every: Duration, now: Instant) {
        self.refresh = (!every.is_zero()).then(|| (every, now + every));
    }

    /// The next thing to do, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// How the connection ended, once it has.
    pub fn ending(&self) -> Option<&Ending> {
        self.ending.as_ref()
    }

    /// Whether to read the socket: not once ended, nor while the batch
    /// behind the in-flight callback is full (TCP then pushes back).
    pub fn wants_read(&self) -> bool {
        self.ending.is_none() && !self.batcher.is_full()
    }

    /// The buffer to read into, with room for what is known to be coming.
    pub fn buffer(&mut self) -> &mut BytesMut {
        let want = self.decoder.read_reserve(&self.buf, READ_CHUNK);
        self.buf.reserve(want);
        &mut self.buf
    }

    /// What one read into [`Core::buffer`] gave: `Ok(0)` is the end of the
    /// client's stream.
    pub fn read(&mut self, result: std::io::Result<usize>, now: Instant) {
        match result {
            Ok(0) => self.end(Ending::abnormal("")),
            Ok(_) => {
                self.last_seen = now;
                self.decode(now);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.release_idle_buffer(),
            Err(_) => self.end(Ending::abnormal("")),
        }
    }

    /// The connection was closed from elsewhere (a command, the drain, a
    /// slow-consumer overflow, a failed write).
    pub fn closed_elsewhere(&mut self, code: u16, reason: String) {
        self.end(Ending { code, reason });
    }

    /// The in-flight callback's answer (after its retries).
    pub fn answered(&mut self, result: Result<Answer, CallbackError>, now: Instant) {
        let ended = self.ending.is_some();
        let effects = match (&mut self.format, result) {
            (Format::Slip, Ok(Answer::Slip(commands))) => Ok(effect::from_commands(commands)),
            (Format::OverHttp(session), Ok(Answer::OverHttp(reply))) => session.answer(&reply, &self.id),
            (_, Ok(_)) => Err("an answer in the other callback format".to_owned()),
            // A SLIP reply that is not understood is dropped; the connection stays.
            (Format::Slip, Err(e)) if !e.is_transient() => {
                tracing::warn!(connection = %self.id, error = %e, "callback reply dropped");
                Ok(Vec::new())
            }
            // Pushpin ends the connection on any failure after the opening.
            (_, Err(e)) => Err(e.to_string()),
        };
        match effects {
            Ok(effects) if !effects.is_empty() => self.outputs.push_back(Output::Apply(effects)),
            Ok(_) => {}
            // Once ended, the connection is going anyway.
            Err(_) if ended => {}
            Err(e) => {
                tracing::warn!(connection = %self.id, error = %e, "callback failed after retries; closing");
                self.failed = true;
                self.close(BACKEND_FAILED, "backend unavailable");
            }
        }
        let next = self.batcher.complete();
        self.start(next, now);
        // Reading may have stopped on a full batch: what waits decodes now.
        self.decode(now);
    }

    /// When [`Core::handle_timeout`] is next due: the dead-peer timer, the
    /// next server ping, the backend's Keep-Alive-Interval, or a session's
    /// token refresh.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ending.is_some() {
            return None;
        }
        let dead = self.last_seen + self.dead_peer_timeout;
        let ping = (!self.ping_interval.is_zero()).then_some(self.next_ping);
        let keep_alive = self.keep_alive_interval().map(|every| self.last_request + every);
        let refresh = self.refresh.map(|(_, at)| at);
        [Some(dead), ping, keep_alive, refresh].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ending.is_some() {
            return;
        }
        if now >= self.last_seen + self.dead_peer_timeout {
            self.end(Ending::abnormal("no data from client"));
            return;
        }
        if let Some((every, at)) = self.refresh
            && now >= at
        {
            self.outputs.push_back(Output::RefreshToken);
            self.refresh = Some((every, now + every));
        }
        if !self.ping_interval.is_zero() && now >= self.next_ping {
            self.outputs.push_back(Output::Frame(frame::empty_ping()));
            self.next_ping = now + self.ping_interval;
        }
        if let Some(every) = self.keep_alive_interval()
            && now >= self.last_request + every
        {
            // The backend asked to hear from us this often: a request with no events.
            let empty = self.batcher.empty();
            self.start(empty, now);
        }
    }

    /// After the socket is done: the CLOSE event goes last, behind any
    /// callback in flight or waiting, and goes even after a backend failure.
    pub fn finish(&mut self, now: Instant) {
        let ending = self.ending.get_or_insert_with(|| Ending::abnormal("")).clone();
        let code = (ending.code != close::NO_STATUS).then_some(ending.code);
        let reason = (!ending.reason.is_empty()).then_some(ending.reason);
        let close = Event::close(&self.id, code, reason);
        self.failed = false;
        let next = self.batcher.push(close.into());
        self.start(next, now);
    }

    fn end(&mut self, ending: Ending) {
        if self.ending.is_none() {
            tracing::debug!(connection = %self.id, code = ending.code, reason = %ending.reason, "connection ending");
            self.ending = Some(ending);
        }
    }

    /// Closes with our close frame, reporting `code` in the CLOSE event.
    fn close(&mut self, code: CloseCode, reason: &str) {
        self.outputs.push_back(Output::Close { code, reason: reason.to_owned() });
        self.end(Ending { code: code.get(), reason: reason.to_owned() });
    }

    fn decode(&mut self, now: Instant) {
        while self.ending.is_none() && !self.batcher.is_full() {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(message)) => self.message(message, now),
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(connection = %self.id, error = %e, "closing on bad input");
                    self.close(e.close_code(), &e.to_string());
                }
            }
        }
        self.release_idle_buffer();
    }

    /// An idle connection holds no read buffer.
    fn release_idle_buffer(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
    }

    fn message(&mut self, message: Message, now: Instant) {
        if self.awaiting_resume && matches!(message, Message::Text(_) | Message::Binary(_)) {
            self.awaiting_resume = false;
            let frame = if let Message::Text(text) = message { text } else { String::new() };
            self.outputs.push_back(Output::Resume(frame));
            return;
        }
        if matches!(message, Message::Text(_) | Message::Binary(_)) {
            slip_metrics::metrics().frames_in.inc();
            if !self.rate.allow(now) {
                return self.close(CloseCode::POLICY_VIOLATION, "message rate limit exceeded");
            }
        }
        let event = match message {
            Message::Text(data) => Event::Text { connection_id: self.id.clone(), data }.into(),
            Message::Binary(data) if self.binary_events || matches!(self.format, Format::OverHttp(_)) => {
                SocketEvent::Binary(data)
            }
            Message::Binary(_) => return self.close(CloseCode::UNSUPPORTED_DATA, "binary messages are not accepted"),
            Message::Ping(payload) => {
                // The decoder let through no ping too long to answer.
                if let Some(pong) = frame::pong(&payload) {
                    self.outputs.push_back(Output::Frame(pong));
                }
                // WebSocket-over-HTTP backends hear of client pings, as with
                // Pushpin; pongs (answers to our own pings) are not forwarded.
                if !matches!(self.format, Format::OverHttp(_)) {
                    return;
                }
                SocketEvent::Ping(payload.to_vec())
            }
            Message::Pong => return,
            Message::Close { code, reason } => {
                // Echo the client's code, as RFC 6455 §5.5.1 asks.
                self.outputs
                    .push_back(Output::Close { code: code.unwrap_or(CloseCode::NORMAL), reason: String::new() });
                return self.end(Ending { code: code.map_or(close::NO_STATUS, CloseCode::get), reason });
            }
        };
        if self.detached() {
            return;
        }
        let next = self.batcher.push(event);
        self.start(next, now);
    }

    fn start(&mut self, batch: Option<Vec<SocketEvent>>, now: Instant) {
        let Some(events) = batch else { return };
        if self.failed {
            // Dropped, and the batcher told so: the CLOSE event must still go.
            while self.batcher.complete().is_some() {}
            return;
        }
        self.last_request = now;
        let outgoing = match &self.format {
            Format::OverHttp(session) if session.detached => {
                // Detached: the backend hears nothing more; what waited is dropped.
                while self.batcher.complete().is_some() {}
                return;
            }
            Format::OverHttp(session) => Outgoing::OverHttp(session.request(&self.id, &over_http::events(&events))),
            Format::Slip => Outgoing::Slip(
                events
                    .into_iter()
                    .filter_map(|event| match event {
                        SocketEvent::Event(event) => Some(event),
                        SocketEvent::Binary(data) => {
                            Some(Event::Binary { connection_id: self.id.clone(), data: encode_binary(&data) })
                        }
                        // Pings are only ever queued for WebSocket-over-HTTP targets.
                        SocketEvent::Ping(_) => None,
                    })
                    .collect(),
            ),
        };
        self.outputs.push_back(Output::Send(outgoing));
    }

    fn detached(&self) -> bool {
        matches!(&self.format, Format::OverHttp(session) if session.detached)
    }

    /// The backend's Keep-Alive-Interval, while it is due: nothing in
    /// flight or waiting, and the backend not failed.
    fn keep_alive_interval(&self) -> Option<Duration> {
        let Format::OverHttp(session) = &self.format else { return None };
        if session.detached || self.failed || !self.batcher.is_idle() {
            return None;
        }
        session.keep_alive_interval.filter(|every| !every.is_zero())
    }
}

#[cfg(test)]
mod tests;
