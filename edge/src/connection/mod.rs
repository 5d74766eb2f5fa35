//! One accepted WebSocket connection: its rules are the pure [`Core`]; this
//! task only moves bytes and time. It reads when the core wants bytes, hands
//! in callback answers and timeouts, and carries out the core's outputs in
//! order, each finished before the next (a reply's commands take effect
//! before the next callback goes). A writer task drains the outbox.
//!
//! The reader waits for readability with no buffer and reads only once bytes
//! are there, so an idle connection holds no read buffer.

mod core;
mod writer;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::time::Instant;

use self::core::Ending;
pub(crate) use self::core::Format;
use self::core::{Answer, Core, Outgoing, Output, Settings};
use crate::callback::CallbackError;
use crate::config::MAX_TIMER;
use crate::effect::Effect;
use crate::node::Edge;
use crate::node::Ticket;
use crate::outbox::{CloseOrder, Outbox, SLOW_CONSUMER_CODE};
use slip_proto::close;
use slip_proto::close::CloseCode;

/// Time the client has to answer our close frame before the socket is dropped.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

type InFlight = Pin<Box<dyn Future<Output = Result<Answer, CallbackError>> + Send>>;

/// An accepted connection before its socket is ours: what the opening settled.
pub(crate) struct Opening {
    /// Its outbox: a new connection is in the hub with it from its ACCEPT on
    /// ([`accepted`]), so that the backend may address it at once.
    pub outbox: Arc<Outbox>,
    /// What the reply to OPEN asked for.
    pub effects: Vec<Effect>,
    pub format: Format,
    /// A `slip.v1` session (docs/sessions.md).
    pub session: bool,
    /// The session this connection resumes (no OPEN was sent for it).
    pub resume: Option<Ticket>,
    /// A fresh session whose client came with a token that could not
    /// resume: its first frame, a resume frame, still names where it stood
    /// in its channels.
    pub rejoin: bool,
    /// Its admission slot: held until the connection is done, or by its
    /// session while parked.
    pub slot: crate::admission::Slot,
}

/// A new connection the backend accepted: in the hub from now on, before
/// its 101 goes out, with an outbox its writer drains once the socket is
/// ours. A command the backend sends it meanwhile (a SUBSCRIBE through the
/// control API right after the ACCEPT) finds it.
pub(crate) fn accepted(edge: &Edge, id: &str, metadata: Arc<str>, session: bool) -> Arc<Outbox> {
    let outbox = Arc::new(Outbox::new(edge.config.outbox));
    if session {
        // The session frame goes before anything the reply to OPEN sends.
        outbox.push(crate::session::opening(&edge.config.jwt_secret, id, slip_proto::jwt::now()));
    }
    edge.hub.register_as(id, outbox.clone(), metadata, session);
    edge.record_connection(id);
    outbox
}

/// How a session's connection ending leaves the session: parked for a
/// resume when the client vanished (no close frame), the edge drains, or
/// the client could not keep up; ended when either side closed it.
fn parks(ending: Option<&Ending>) -> bool {
    ending.is_some_and(|e| {
        [close::ABNORMAL, CloseCode::SERVICE_RESTART.get(), SLOW_CONSUMER_CODE.get()].contains(&e.code)
    })
}

/// Runs an accepted connection to its end. `early` holds bytes the client
/// sent right behind its handshake.
pub(crate) async fn run(edge: Arc<Edge>, id: String, stream: TcpStream, early: Bytes, opening: Opening) {
    let Opening { outbox, effects, format, session, resume, rejoin, slot } = opening;
    let generation = match &resume {
        Some(ticket) => {
            // A connection still holding the session (its client gone
            // unnoticed) ends quietly: the session is this one's now.
            if let Some(old) = edge.hub.replace_outbox(&id, outbox.clone()) {
                old.abort("resumed");
            }
            ticket.generation
        }
        None => {
            if rejoin && let Some(session) = edge.hub.session(&id) {
                // What the reply to OPEN subscribes it to waits behind the
                // replay its resume frame asks for.
                session.lock().hold();
            }
            0
        }
    };
    slip_metrics::metrics().connections.inc();
    // What the reply to OPEN asked for runs before the first client frame is read.
    // Boxed, as every apply below: what a reply runs may wait (a publish's
    // confirmation), and its state must not sit in every idle task.
    Box::pin(apply(&edge, &outbox, effects)).await;

    let (read, write) = stream.into_split();
    let writer = edge.tasks.spawn(writer::run(write, outbox.clone()));
    let settings = Settings::from(&edge.config);
    let resume = resume.or_else(|| rejoin.then(|| Ticket::fresh(&id)));
    let mut core = match resume {
        Some(_) => Core::resuming(id, &settings, &early, now()),
        None => Core::new(id, format, &settings, &early, now()),
    };
    if session {
        core.refresh_token_every(crate::session::refresh_every(edge.config.resume_window), now());
    }
    // Even empty, `early` is a view of hyper's read buffer and would keep
    // all of it alive for the connection's life (measured: 6 KiB each).
    drop(early);
    let mut task = Task { edge: &edge, outbox: &outbox, core, in_flight: None, last_metadata: None, resume };
    task.read_until_ended(&read).await;
    let id = task.core.id().to_owned();
    if session {
        // Resumed by another connection, here or on another edge: not ours to end.
        let current = edge.hub.session(&id).map(|s| s.lock().generation);
        let superseded = current != Some(generation);
        if superseded || parks(task.core.ending()) {
            if !superseded {
                edge.park(&id, generation, slot);
            }
            slip_metrics::metrics().connections.dec();
            outbox.abort("");
            let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, writer).await;
            // What the client sent before it went still reaches the backend; no CLOSE.
            tokio::join!(Box::pin(linger(read)), Box::pin(task.settle()));
            return;
        }
    }
    // The CLOSE callback still carries the connection's metadata.
    task.last_metadata = edge.hub.metadata(&id);
    edge.connection_closed(&id);
    slip_metrics::metrics().connections.dec();

    // Make sure the writer finishes: it sends our close frame if one is due.
    outbox.abort(task.core.ending().map_or("", |e| e.reason.as_str()));
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, writer).await;
    // Boxed: these run once, at the end; inline, their state would sit in
    // every idle connection's task.
    tokio::join!(Box::pin(linger(read)), Box::pin(task.finish()));
    // Its CLOSE went: the control node keeping its record lets it go.
    edge.record_closed(&id);
}

/// The core's clock: tokio's, so that tests with a paused clock drive it too.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

struct Task<'a> {
    edge: &'a Arc<Edge>,
    outbox: &'a Arc<Outbox>,
    core: Core,
    in_flight: Option<InFlight>,
    /// Metadata as it was when the connection left the hub.
    last_metadata: Option<Arc<str>>,
    /// The session this connection resumes, until its resume frame came.
    resume: Option<Ticket>,
}

impl Task<'_> {
    async fn read_until_ended(&mut self, read: &OwnedReadHalf) {
        loop {
            self.carry_out().await;
            if self.core.ending().is_some() {
                return;
            }
            let deadline = self.core.poll_timeout().unwrap_or_else(|| now() + MAX_TIMER);
            tokio::select! {
                ready = read.readable(), if self.core.wants_read() => {
                    let result = ready.and_then(|()| read.try_read_buf(self.core.buffer()));
                    self.core.read(result, now());
                }
                result = async { self.in_flight.as_mut().expect("guarded by is_some").await }, if self.in_flight.is_some() => {
                    self.in_flight = None;
                    self.core.answered(result, now());
                }
                _ = self.outbox.closed() => {
                    let order = self.outbox.close_order().unwrap_or(CloseOrder { code: Some(CloseCode::NORMAL), reason: String::new() });
                    self.core.closed_elsewhere(order.reported_code(), order.reason);
                }
                _ = tokio::time::sleep_until(Instant::from_std(deadline)) => self.core.handle_timeout(now()),
            }
        }
    }

    /// After a session's socket is done, parked: callbacks in flight and
    /// waiting go, and no CLOSE event.
    async fn settle(mut self) {
        self.carry_out().await;
        while let Some(in_flight) = self.in_flight.take() {
            let result = in_flight.await;
            self.core.answered(result, now());
            self.carry_out().await;
        }
    }

    /// After the socket is done: the CLOSE event, after whatever is in flight.
    async fn finish(mut self) {
        self.core.finish(now());
        self.carry_out().await;
        while let Some(in_flight) = self.in_flight.take() {
            let result = in_flight.await;
            self.core.answered(result, now());
            self.carry_out().await;
        }
    }

    /// Carries out what the core asked for, in order.
    async fn carry_out(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Frame(frame) => {
                    self.outbox.push(frame);
                }
                Output::Close { code, reason } => {
                    self.outbox.close(code, &reason);
                }
                Output::Apply(effects) => Box::pin(apply(self.edge, self.outbox, effects)).await,
                Output::Send(outgoing) => self.in_flight = Some(self.send(outgoing)),
                Output::Resume(frame) => {
                    if let Some(ticket) = self.resume.take() {
                        Box::pin(self.edge.resume(&ticket, &frame, self.outbox)).await;
                    }
                }
                Output::RefreshToken => self.edge.refresh_token(self.core.id(), self.outbox),
            }
        }
    }

    fn send(&self, outgoing: Outgoing) -> InFlight {
        let edge = self.edge.clone();
        match outgoing {
            Outgoing::OverHttp(request) => {
                Box::pin(async move { edge.callbacks.post_over_http_with_retry(&request).await.map(Answer::OverHttp) })
            }
            Outgoing::Slip(events) => {
                let id = self.core.id().to_owned();
                let metadata =
                    edge.hub.metadata(&id).or_else(|| self.last_metadata.clone()).unwrap_or_else(|| Arc::from("null"));
                Box::pin(async move { edge.callbacks.post_with_retry(&id, &metadata, &events).await.map(Answer::Slip) })
            }
        }
    }
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
