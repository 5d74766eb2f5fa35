//! One accepted WebSocket connection: a reader that turns frames into ordered
//! callbacks, and a writer that drains the connection's outbox.
//!
//! The reader waits for readability with no buffer and reads only once bytes
//! are there, so an idle connection holds no read buffer. The writer takes
//! every queued frame on a wakeup and writes them with one vectored write.

use std::collections::VecDeque;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use slip_proto::callback::Event;
use slip_proto::close::{self, CloseCode};
use slip_proto::command::{Command, encode_binary};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

use crate::batcher::{Batcher, SocketEvent};
use crate::callback::CallbackError;
use crate::effect::Effect;
use crate::frame::{self, Decoder, Message};
use crate::node::Edge;
use crate::outbox::{CloseOrder, Outbox};
use crate::over_http::{self, Reply, Session};
use crate::ratelimit::RateLimit;

/// Bytes read per read syscall (more when a large frame is known to be coming).
const READ_CHUNK: usize = 4096;
/// Frames taken from the outbox per wakeup, at most.
const MAX_WRITE_BATCH: usize = 256;
/// Frames handed to one `writev` (the kernel takes up to 1024).
const MAX_IOVECS: usize = 64;
/// Time the client has to answer our close frame before the socket is dropped.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Close code when the backend keeps failing after the retries.
const BACKEND_FAILED: CloseCode = CloseCode::INTERNAL_ERROR;

type InFlight = Pin<Box<dyn Future<Output = Result<Answer, CallbackError>> + Send>>;

/// A backend's answer in the connection's callback format.
enum Answer {
    Slip(Vec<Command>),
    OverHttp(Reply),
}

/// How the connection ended, as reported in the CLOSE event.
struct Ending {
    /// A close code, or [`close::NO_STATUS`] / [`close::ABNORMAL`].
    code: u16,
    reason: String,
}

impl Ending {
    /// The peer is gone without a close frame.
    fn abnormal(reason: &str) -> Self {
        Self { code: close::ABNORMAL, reason: reason.to_owned() }
    }

    /// We closed with `code`.
    fn closed(code: CloseCode, reason: &str) -> Self {
        Self { code: code.get(), reason: reason.to_owned() }
    }
}

/// Runs an accepted connection to its end. `early` holds bytes the client
/// sent right behind its handshake; `metadata` is serialized JSON.
pub(crate) async fn run(
    edge: Arc<Edge>,
    id: String,
    stream: TcpStream,
    early: Bytes,
    metadata: Arc<str>,
    effects: Vec<Effect>,
    session: Option<Session>,
) {
    let outbox = Arc::new(Outbox::new(edge.config.outbox));
    edge.hub.register(&id, outbox.clone(), metadata);
    slip_metrics::metrics().connections.inc();
    // What the reply to OPEN asked for runs before the first client frame is read.
    // Boxed, as `answered` below: what a reply runs may wait (a publish's
    // confirmation), and its state must not sit in every idle task.
    Box::pin(apply(&edge, &outbox, effects)).await;

    let (read, write) = stream.into_split();
    let writer = tokio::spawn(write_loop(write, outbox.clone(), edge.config.ping_interval));
    let mut reader = Reader::new(&edge, &id, &outbox, early, session);
    let ending = reader.run(&read).await;
    // The CLOSE callback still carries the connection's metadata.
    reader.last_metadata = edge.hub.metadata(&id);
    edge.connection_closed(&id);
    slip_metrics::metrics().connections.dec();
    tracing::debug!(connection = %id, code = ending.code, "connection ended");

    // Make sure the writer finishes: it sends our close frame if one is due.
    outbox.abort(&ending.reason);
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, writer).await;
    tokio::join!(linger(read), reader.finish(ending));
}

/// Reads and discards until the client closes its side, for a short while:
/// closing a socket with unread bytes sends a reset, which can destroy our
/// close frame before the client reads it.
async fn linger(read: OwnedReadHalf) {
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, async {
        let mut scratch = [0u8; 512];
        loop {
            if read.readable().await.is_err() {
                return;
            }
            match read.try_read(&mut scratch) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}

struct Reader<'a> {
    edge: &'a Arc<Edge>,
    id: &'a str,
    outbox: &'a Arc<Outbox>,
    buf: BytesMut,
    decoder: Decoder,
    batcher: Batcher<SocketEvent>,
    in_flight: Option<InFlight>,
    failed: bool,
    rate: RateLimit,
    /// Metadata as it was when the connection left the hub.
    last_metadata: Option<Arc<str>>,
    /// Present when the target speaks WebSocket-over-HTTP.
    session: Option<Session>,
    /// When the last request went out, for the backend's Keep-Alive-Interval.
    last_request: Instant,
}

impl<'a> Reader<'a> {
    fn new(edge: &'a Arc<Edge>, id: &'a str, outbox: &'a Arc<Outbox>, early: Bytes, session: Option<Session>) -> Self {
        Self {
            edge,
            id,
            outbox,
            buf: BytesMut::from(&early[..]),
            decoder: Decoder::new(edge.config.max_message_bytes),
            batcher: Batcher::new(edge.config.max_pending_events),
            in_flight: None,
            failed: false,
            rate: RateLimit::new(edge.config.message_rate, edge.config.message_burst, std::time::Instant::now()),
            last_metadata: None,
            session,
            last_request: Instant::now(),
        }
    }

    async fn run(&mut self, read: &OwnedReadHalf) -> Ending {
        let mut last_seen = Instant::now();
        loop {
            if let Some(ending) = self.decode() {
                return ending;
            }
            if self.buf.is_empty() {
                // Give the buffer back while idle.
                self.buf = BytesMut::new();
            }
            let can_read = !self.batcher.is_full();
            let keep_alive_interval = self.keep_alive_interval();
            let keep_alive_due = self.in_flight.is_none() && !self.failed && !keep_alive_interval.is_zero();
            tokio::select! {
                ready = read.readable(), if can_read => {
                    if ready.is_err() {
                        return Ending::abnormal("");
                    }
                    let want = self.decoder.read_reserve(&self.buf, READ_CHUNK);
                    self.buf.reserve(want);
                    match read.try_read_buf(&mut self.buf) {
                        Ok(0) => return Ending::abnormal(""),
                        Ok(_) => last_seen = Instant::now(),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return Ending::abnormal(""),
                    }
                }
                result = async { self.in_flight.as_mut().expect("guarded by is_some").await }, if self.in_flight.is_some() => {
                    self.in_flight = None;
                    Box::pin(self.answered(result)).await;
                    let next = self.batcher.complete();
                    self.start(next);
                }
                _ = self.outbox.closed() => {
                    let order = self.outbox.close_order().unwrap_or(CloseOrder { code: Some(CloseCode::NORMAL), reason: String::new() });
                    return Ending { code: order.reported_code(), reason: order.reason };
                }
                _ = tokio::time::sleep_until(self.last_request + keep_alive_interval), if keep_alive_due => {
                    // The backend asked to hear from us this often: a request with no events.
                    self.last_request = Instant::now();
                    let empty = self.batcher.empty();
                    self.start(empty);
                }
                _ = tokio::time::sleep_until(last_seen + self.edge.config.dead_peer_timeout) => {
                    return Ending::abnormal("no data from client");
                }
            }
        }
    }

    /// Decodes what has arrived into events; returns an ending if the client
    /// closed or broke the protocol.
    fn decode(&mut self) -> Option<Ending> {
        while !self.batcher.is_full() {
            let message = match self.decoder.decode(&mut self.buf) {
                Ok(Some(message)) => message,
                Ok(None) => return None,
                Err(e) => {
                    let code = e.close_code();
                    tracing::debug!(connection = self.id, error = %e, "closing on bad input");
                    self.outbox.close(code, &e.to_string());
                    return Some(Ending::closed(code, &e.to_string()));
                }
            };
            let connection_id = self.id.to_owned();
            if matches!(message, Message::Text(_) | Message::Binary(_)) {
                slip_metrics::metrics().frames_in.inc();
                if !self.rate.allow(std::time::Instant::now()) {
                    let reason = "message rate limit exceeded";
                    self.outbox.close(CloseCode::POLICY_VIOLATION, reason);
                    return Some(Ending::closed(CloseCode::POLICY_VIOLATION, reason));
                }
            }
            let event = match message {
                Message::Text(data) => SocketEvent::Event(Event::Text { connection_id, data }),
                Message::Binary(data) if self.edge.config.binary_events || self.session.is_some() => {
                    SocketEvent::Binary(data)
                }
                Message::Binary(_) => {
                    let reason = "binary messages are not accepted";
                    self.outbox.close(CloseCode::UNSUPPORTED_DATA, reason);
                    return Some(Ending::closed(CloseCode::UNSUPPORTED_DATA, reason));
                }
                Message::Ping(payload) => {
                    // The decoder let through no ping too long to answer.
                    if let Some(pong) = frame::pong(&payload) {
                        self.outbox.push(pong);
                    }
                    // WebSocket-over-HTTP backends hear of client pings, as with
                    // Pushpin; pongs (answers to our own pings) are not forwarded.
                    if self.session.as_ref().is_none_or(|s| s.detached) {
                        continue;
                    }
                    let next = self.batcher.push(SocketEvent::Ping(payload.to_vec()));
                    self.start(next);
                    continue;
                }
                Message::Pong => continue,
                Message::Close { code, reason } => {
                    // Echo the client's code, as RFC 6455 §5.5.1 asks.
                    self.outbox.close(code.unwrap_or(CloseCode::NORMAL), "");
                    return Some(Ending { code: code.map_or(close::NO_STATUS, CloseCode::get), reason });
                }
            };
            if self.session.as_ref().is_some_and(|s| s.detached) {
                continue;
            }
            let next = self.batcher.push(event);
            self.start(next);
        }
        None
    }

    fn start(&mut self, batch: Option<Vec<SocketEvent>>) {
        let Some(events) = batch else { return };
        if self.failed {
            return;
        }
        let edge = self.edge.clone();
        let id = self.id.to_owned();
        self.last_request = Instant::now();
        if let Some(session) = &self.session {
            if session.detached {
                // Detached: the backend hears nothing more; what waited is dropped.
                while self.batcher.complete().is_some() {}
                return;
            }
            let grip_sig = edge.callbacks.grip_sig();
            let request = session.request(edge.callbacks.target(), &id, &grip_sig, &over_http::events(&events));
            self.in_flight = Some(Box::pin(async move {
                edge.callbacks.post_over_http_with_retry(&request).await.map(Answer::OverHttp)
            }));
            return;
        }
        // Pings are only ever queued for WebSocket-over-HTTP targets.
        let events: Vec<Event> = events
            .into_iter()
            .filter_map(|e| match e {
                SocketEvent::Event(event) => Some(event),
                SocketEvent::Binary(data) => {
                    Some(Event::Binary { connection_id: id.clone(), data: encode_binary(&data) })
                }
                SocketEvent::Ping(_) => None,
            })
            .collect();
        let metadata =
            self.edge.hub.metadata(self.id).or_else(|| self.last_metadata.clone()).unwrap_or_else(|| Arc::from("null"));
        self.in_flight =
            Some(Box::pin(
                async move { edge.callbacks.post_with_retry(&id, &metadata, &events).await.map(Answer::Slip) },
            ));
    }

    /// The backend's Keep-Alive-Interval (WebSocket-over-HTTP), or zero for none.
    fn keep_alive_interval(&self) -> Duration {
        match &self.session {
            Some(session) if !session.detached => session.keep_alive_interval.unwrap_or_default(),
            _ => Duration::ZERO,
        }
    }

    async fn answered(&mut self, result: Result<Answer, CallbackError>) {
        if let Some(session) = &mut self.session {
            // Pushpin ends the connection on any failure after the opening.
            let effects = result.map_err(|e| e.to_string()).and_then(|answer| match answer {
                Answer::OverHttp(reply) => session.answer(&reply, self.id),
                Answer::Slip(_) => Err("a SLIP answer on a WebSocket-over-HTTP connection".into()),
            });
            match effects {
                Ok(effects) => apply(self.edge, self.outbox, effects).await,
                Err(e) => {
                    tracing::warn!(connection = self.id, error = %e, "WebSocket-over-HTTP request failed; closing");
                    self.failed = true;
                    self.outbox.close(BACKEND_FAILED, "backend unavailable");
                }
            }
            return;
        }
        match result {
            Ok(Answer::Slip(commands)) => self.edge.apply(commands).await,
            Ok(Answer::OverHttp(_)) => tracing::warn!(connection = self.id, "unexpected WebSocket-over-HTTP answer"),
            Err(e) if e.is_transient() => {
                tracing::warn!(connection = self.id, error = %e, "callback failed after retries; closing");
                self.failed = true;
                self.outbox.close(BACKEND_FAILED, "backend unavailable");
            }
            Err(e) => tracing::warn!(connection = self.id, error = %e, "callback reply dropped"),
        }
    }

    /// After the socket is done: the CLOSE event goes last, after any
    /// callback still in flight or waiting, so the backend sees them in order.
    async fn finish(mut self, ending: Ending) {
        let code = (ending.code != close::NO_STATUS).then_some(ending.code);
        let reason = (!ending.reason.is_empty()).then_some(ending.reason);
        let close = Event::Close { connection_id: self.id.to_owned(), code, reason };
        // The CLOSE event is sent (with the usual retries) even after a backend failure.
        self.failed = false;
        let next = self.batcher.push(close.into());
        self.start(next);
        while let Some(in_flight) = self.in_flight.take() {
            let result = in_flight.await;
            if result.is_ok() {
                Box::pin(self.answered(result)).await;
            }
            let next = self.batcher.complete();
            self.start(next);
        }
    }
}

/// Carries out what a backend asked for on this connection, in order: a
/// publish followed by more is delivered here before the rest runs.
async fn apply(edge: &Arc<Edge>, outbox: &Outbox, effects: Vec<Effect>) {
    let last = effects.len();
    for (i, effect) in effects.into_iter().enumerate() {
        match effect {
            Effect::Command(command) => edge.run(command, i + 1 < last).await,
            Effect::Frame(frame) => {
                outbox.push(frame);
            }
            Effect::Close { code, reason } => {
                outbox.close(code, &reason);
            }
            Effect::Disconnect => {
                outbox.abort("");
            }
            // The session already stopped forwarding.
            Effect::Detach => {}
            Effect::KeepAlive(keep_alive) => outbox.set_keep_alive(keep_alive),
        }
    }
}

async fn write_loop(mut write: OwnedWriteHalf, outbox: Arc<Outbox>, ping_interval: Duration) {
    let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
    // Grip keep-alive: when it is next due, measured from the last write (idle
    // mode) or the last keep-alive (interval mode).
    let (mut last_write, mut last_keep_alive) = (Instant::now(), Instant::now());
    loop {
        let batch = outbox.take(MAX_WRITE_BATCH);
        let written = batch.frames.len();
        if written > 0 {
            if write_frames(&mut write, &batch.frames).await.is_err() {
                outbox.abort("write failed");
                return;
            }
            slip_metrics::metrics().frames_out.inc_by(written as u64);
            last_write = Instant::now();
        }
        let keep_alive = batch.keep_alive;
        outbox.recycle(batch.frames);
        if let Some(close) = batch.close {
            if let Some(code) = close.code {
                let _ = write.write_all(&frame::close(code, &close.reason)).await;
            }
            let _ = write.shutdown().await;
            return;
        }
        if written == MAX_WRITE_BATCH {
            continue;
        }
        let keep_alive_at = keep_alive.as_ref().map_or_else(Instant::now, |k| {
            if k.interval { last_keep_alive + k.every } else { last_write.max(last_keep_alive) + k.every }
        });
        tokio::select! {
            _ = outbox.ready() => {}
            _ = tokio::time::sleep_until(keep_alive_at), if keep_alive.is_some() => {
                let Some(keep_alive) = keep_alive else { continue };
                if write.write_all(&keep_alive.frame).await.is_err() {
                    outbox.abort("write failed");
                    return;
                }
                last_keep_alive = Instant::now();
            }
            _ = ping.tick() => {
                if write.write_all(&frame::empty_ping()).await.is_err() {
                    outbox.abort("write failed");
                    return;
                }
            }
        }
    }
}

/// Writes frames with as few syscalls as the kernel allows: one `writev` of
/// up to [`MAX_IOVECS`] frames. The slices are built on the stack inside the
/// poll, so neither a write nor a waiting writer holds memory for them.
async fn write_frames(write: &mut OwnedWriteHalf, frames: &VecDeque<Bytes>) -> std::io::Result<()> {
    if let (Some(only), 1) = (frames.front(), frames.len()) {
        return write.write_all(only).await;
    }
    let (mut index, mut offset) = (0, 0);
    while index < frames.len() {
        let mut written = std::future::poll_fn(|cx| {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n = 0;
            for (slot, frame) in slices.iter_mut().zip(frames.range(index..)) {
                *slot = IoSlice::new(if n == 0 { &frame[offset..] } else { frame });
                n += 1;
            }
            Pin::new(&mut *write).poll_write_vectored(cx, &slices[..n])
        })
        .await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 && index < frames.len() {
            let rest = frames[index].len() - offset;
            if written >= rest {
                written -= rest;
                index += 1;
                offset = 0;
            } else {
                offset += written;
                written = 0;
            }
        }
    }
    Ok(())
}
