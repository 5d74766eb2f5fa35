//! `slip.v1` sessions that outlive their connection (docs/sessions.md). A
//! session whose socket drops is parked: it stays in the hub, subscribed,
//! its messages numbered and kept, while frames for it go nowhere. A client
//! that comes back with its token within the resume window gets the same
//! session: what it missed is replayed (publications from channel history,
//! by the places the client names; messages from what the session kept),
//! then it goes live. The backend hears nothing of this; it gets the CLOSE
//! only when the window passes with no resume.

use std::collections::HashMap;
use std::sync::Arc;

use slip_proto::callback::Event;
use slip_proto::ids::NodeId;
use slip_proto::link_pb::{
    ChannelPlace, HistoryAnswer, HistoryQuery, KeptMessage, SessionHandover, SessionPresence, SessionRecord,
    TakeSession,
};
use slip_proto::session::{self as wire, Recovery, Resume, SessionClaims};

use super::Edge;
use crate::admission::{Refusal, Slot};
use crate::cursor::FETCH_RETRY;
use crate::cursor::FETCH_TIMEOUT;
use crate::frame;
use crate::outbox::Outbox;
use crate::parking::{Parked, Parking};
use crate::resuming::{Outcome, Resuming};
use futures_util::StreamExt;
use slip_proto::link_pb::Frame;
use slip_proto::link_pb::frame::Kind;
use slip_proto::link_pb::query;
use slip_proto::link_pb::reply;
use std::time::Duration;

/// Times a resume asks a channel's owner for the history it missed.
const HISTORY_ATTEMPTS: usize = 8;

/// History questions one resume has out at once (its channels' owners are
/// asked together, not one after another).
const RESUME_QUESTIONS_AT_ONCE: usize = 16;

/// Longest a resume waits for the control node to hand it a session held
/// elsewhere: it may ask the session's edge (5 s at most), see that edge's
/// link drop (3 s), and go on from the record.
const TAKE_TIMEOUT: Duration = Duration::from_secs(12);

/// What a parked session costs besides its metadata, places and kept
/// messages, about: its entries in the hub, the parking and the expiries.
const PARKED_OVERHEAD: usize = 512;

/// A session a handshake may resume: it is no longer parked, and what
/// arrives for it is held until [`Edge::resume`] has replayed.
pub(crate) struct Ticket {
    pub id: String,
    /// The session's generation once resumed: its connection's.
    pub generation: u64,
    positions: HashMap<String, (String, u64)>,
    /// Its edge died: what it kept (messages, its places) died with it.
    home_lost: bool,
    /// Not a resume: a fresh session, given what its channels published
    /// after the places its client names (its old session is gone, not its
    /// channels' history). Its session frame went out at the opening.
    fresh: bool,
}

impl Ticket {
    /// A fresh session whose client came with a token that could not resume.
    pub(crate) fn fresh(id: &str) -> Self {
        Self { id: id.to_owned(), generation: 0, positions: HashMap::new(), home_lost: false, fresh: true }
    }
}

impl Edge {
    /// A session's connection of `generation` dropped: park the session,
    /// unless a resume has already taken it over.
    pub(crate) fn park(self: &Arc<Self>, id: &str, generation: u64, slot: Slot) {
        let Some(session) = self.hub.session(id) else { return };
        let metadata_bytes = self.hub.metadata(id).map_or(0, |m| m.len());
        let channels = self.hub.view(id).map(|v| v.channels).unwrap_or_default();
        let deadline = tokio::time::Instant::now() + self.config.resume_window;
        let earliest = {
            // The state, then the session: the one order (fan-out's too).
            let mut edge_state = self.state.lock();
            let streams: Vec<Option<(String, u64)>> =
                channels.iter().map(|channel| edge_state.cursors.position(channel)).collect();
            let mut state = session.lock();
            if state.generation != generation {
                return;
            }
            state.park();
            let positions = channels
                .into_iter()
                .zip(streams)
                .filter_map(|(channel, stream)| {
                    let at = state.position(&channel).map(|(epoch, offset)| (epoch.to_owned(), offset)).or(stream);
                    at.map(|at| (channel, at))
                })
                .collect::<HashMap<_, _>>();
            let bytes = PARKED_OVERHEAD
                + id.len()
                + metadata_bytes
                + state.kept_bytes()
                + positions.iter().map(|(c, (e, _))| c.len() + e.len() + 8).sum::<usize>();
            let since = slip_proto::jwt::now();
            let parked = Parked { since, positions, slot: slot.park(), bytes };
            // Parked under the session's lock: a resume that comes next
            // finds it parked, never half.
            let earliest = edge_state.parking.park(id, parked, deadline);
            parking_gauges(&edge_state.parking);
            earliest
        };
        // Frames for it go nowhere until it is resumed (unless a resume
        // already took it: its new outbox stays).
        self.hub.park_outbox(id, generation, self.parked_outbox());
        if earliest {
            self.wake_clock();
        }
        slip_metrics::metrics().sessions.get_or_create(&slip_metrics::kind("parked")).inc();
        // Past the byte bound, the oldest parked sessions make room.
        while self.parked_over_bound() && self.end_oldest_parked() {}
    }

    /// Whether the parked sessions hold more than `max_parked_bytes`.
    fn parked_over_bound(&self) -> bool {
        // Its own function: the lock must be let go before one is evicted.
        self.state.lock().parking.bytes() > self.config.max_parked_bytes
    }

    /// A slot for a new connection. With every slot taken, the oldest
    /// parked session ends (its CLOSE goes out) to make room, if there is
    /// one: a live connection comes before a session whose client is away.
    pub(crate) fn admit(self: &Arc<Self>) -> Result<Slot, Refusal> {
        loop {
            match self.admission.admit() {
                Err(Refusal::Full) if self.end_oldest_parked() => {}
                admitted => return admitted,
            }
        }
    }

    /// Ends the session parked longest ago, if any: false if none is.
    fn end_oldest_parked(self: &Arc<Self>) -> bool {
        // Taken out (its slot given back) now; its CLOSE goes in a task.
        let Some((id, _parked)) = self.with_parking(Parking::evict_oldest) else { return false };
        slip_metrics::metrics().sessions.get_or_create(&slip_metrics::kind("evicted")).inc();
        let edge = self.clone();
        self.tasks.spawn(async move { edge.end_session(&id).await });
        true
    }

    /// Changes the parked sessions; the deadlines' gauge follows.
    fn with_parking<R>(&self, change: impl FnOnce(&mut Parking) -> R) -> R {
        let mut state = self.state.lock();
        let result = change(&mut state.parking);
        parking_gauges(&state.parking);
        result
    }

    /// Deadlines of parked sessions kept.
    #[cfg(test)]
    pub(super) fn session_deadlines(&self) -> usize {
        self.state.lock().parking.deadlines()
    }

    /// The outbox of every parked session.
    fn parked_outbox(&self) -> Arc<Outbox> {
        self.parked_sink
            .get_or_init(|| {
                let nowhere = Arc::new(Outbox::new(self.config.outbox));
                nowhere.abort("parked");
                nowhere
            })
            .clone()
    }

    /// Ends sessions whose resume window passed (the clock took them out
    /// of the parking): each one's CLOSE runs as a task of its own.
    pub(super) fn end_expired_sessions(self: &Arc<Self>, expired: Vec<String>) {
        for id in expired {
            let edge = self.clone();
            self.tasks.spawn(async move { edge.end_expired(&id).await });
        }
    }

    /// Sessions parked here, waiting to be resumed.
    pub fn parked_sessions(&self) -> usize {
        self.state.lock().parking.len()
    }

    /// The edge is going away: sessions still parked end now.
    pub async fn end_parked_sessions(&self) {
        let parked = self.with_parking(Parking::take_all);
        futures_util::future::join_all(parked.iter().map(|(id, _)| self.end_expired(id))).await;
    }

    /// The resume window passed (or the edge is going away): the session
    /// ends, and the backend hears its CLOSE.
    async fn end_expired(&self, id: &str) {
        slip_metrics::metrics().sessions.get_or_create(&slip_metrics::kind("expired")).inc();
        self.end_session(id).await;
    }

    /// A parked session ends: the backend hears its CLOSE.
    async fn end_session(&self, id: &str) {
        let metadata = self.hub.metadata(id).unwrap_or_else(|| Arc::from("null"));
        self.connection_closed(id);
        let close = [Event::close(id, Some(slip_proto::close::ABNORMAL), None)];
        if let Err(e) = self.callbacks.post_with_retry(id, &metadata, &close).await {
            tracing::warn!(connection = id, error = %e, "CLOSE callback of an expired session failed");
        }
        self.record_closed(id);
    }

    /// The session a resume token names, if the token is its latest: taken
    /// from the parking here (or from the connection still holding it, which
    /// then ends quietly), or handed over by the edge holding it. `None`: a
    /// fresh session it is.
    pub(crate) async fn resume_ticket(&self, token: &str) -> Option<Ticket> {
        let claims = wire::verify(token, &self.config.jwt_secret).ok()?;
        if self.hub.session(&claims.connection_id).is_none() {
            return self.take_over(&claims).await;
        }
        self.local_ticket(&claims)
    }

    /// A session held here.
    fn local_ticket(&self, claims: &SessionClaims) -> Option<Ticket> {
        let session = self.hub.session(&claims.connection_id)?;
        if !self.fresh_enough(&claims.connection_id, claims.issued) {
            return None;
        }
        let (generation, parked) = {
            // The state, then the session: taken out of the parking in the
            // same step as it is resumed, so the clock cannot end it between.
            let mut edge_state = self.state.lock();
            let mut state = session.lock();
            if state.generation != claims.generation {
                return None;
            }
            state.begin_resume();
            let parked = edge_state.parking.take(&claims.connection_id);
            parking_gauges(&edge_state.parking);
            (state.generation, parked)
        };
        let positions = parked.map(|p| p.positions).unwrap_or_default();
        // The token just used is old now, for the control node too.
        self.record_session(&claims.connection_id);
        Some(Ticket { id: claims.connection_id.clone(), generation, positions, home_lost: false, fresh: false })
    }

    /// Whether a token of session `id` issued at `issued` is young enough:
    /// counted to when the session was parked, or to now while it is live
    /// (its client is sent a fresh one every third of the window).
    fn fresh_enough(&self, id: &str, issued: u64) -> bool {
        let since = self.state.lock().parking.since(id).unwrap_or_else(slip_proto::jwt::now);
        wire::fresh_enough(issued, since, self.config.resume_window.as_secs())
    }

    /// A live session's client is sent a fresh token (same generation).
    pub(crate) fn refresh_token(&self, id: &str, outbox: &Outbox) {
        let Some(session) = self.hub.session(id) else { return };
        let claims = SessionClaims {
            connection_id: id.to_owned(),
            generation: session.lock().generation,
            issued: slip_proto::jwt::now(),
        };
        let token = wire::sign(&self.config.jwt_secret, &claims);
        outbox.push(frame::text(&wire::refresh_frame(&token, id)));
    }

    /// The resumed connection's client sent its resume frame: the session
    /// frame goes out, then what the client missed, then live frames.
    pub(crate) async fn resume(self: &Arc<Self>, ticket: &Ticket, frame: &str, outbox: &Outbox) {
        let resume = wire::parse_resume(frame).unwrap_or_else(|e| {
            tracing::debug!(connection = ticket.id, error = %e, "bad resume frame: nothing to go by");
            Resume::default()
        });
        let Some(session) = self.hub.session(&ticket.id) else { return };
        let channels = self.hub.view(&ticket.id).map(|v| v.channels).unwrap_or_default();
        // The channels' owners are asked together; the answers are put
        // together in the session's order (`resuming.rs` decides).
        let mut resuming = Resuming::new(channels, &resume, &ticket.positions, ticket.fresh, ticket.home_lost);
        let asked: Vec<_> =
            resuming.asks().iter().map(|ask| self.session_history(&ask.channel, &ask.epoch, ask.offset)).collect();
        let answers: Vec<_> = futures_util::stream::iter(asked).buffered(RESUME_QUESTIONS_AT_ONCE).collect().await;
        for (index, answer) in answers.into_iter().enumerate() {
            resuming.answered(index, answer);
        }
        let Outcome { positions, replay, mut lost } = resuming.finish();
        let mut state = session.lock();
        if ticket.home_lost {
            // Numbers go on from the client's: what was sent meanwhile died with its edge.
            state.continue_from(resume.seq);
        }
        if ticket.fresh {
            // Its messages are numbered afresh: the client has seen none.
            let (frames, _) = state.resumed(positions, replay, 0);
            for frame in frames {
                outbox.push(frame);
            }
            drop(state);
            self.resync_presence(&ticket.id);
            return;
        }
        let (frames, messages_kept) = state.resumed(positions, replay, resume.seq);
        if !messages_kept || ticket.home_lost {
            lost.push(wire::LOST_MESSAGES.to_owned());
        }
        let claims = SessionClaims {
            connection_id: ticket.id.clone(),
            generation: state.generation,
            issued: slip_proto::jwt::now(),
        };
        let token = wire::sign(&self.config.jwt_secret, &claims);
        let recovered = lost.is_empty();
        outbox.push(frame::text(&wire::session_frame(&token, &ticket.id, Some(&Recovery { lost }))));
        for frame in frames {
            outbox.push(frame);
        }
        drop(state);
        self.resync_presence(&ticket.id);
        let metrics = slip_metrics::metrics();
        metrics.sessions.get_or_create(&slip_metrics::kind("resumed")).inc();
        let kind = if recovered { "recovered" } else { "not_recovered" };
        metrics.sessions.get_or_create(&slip_metrics::kind(kind)).inc();
    }

    /// History of `channel` after `offset` of `epoch`, from its owner. An
    /// answer from a node that is not the owner now (it lost its lease, or
    /// the view moved on) is no answer: the owner then is asked again, a
    /// few times, before what could not be had is reported lost.
    async fn session_history(&self, channel: &str, epoch: &str, offset: u64) -> Option<HistoryAnswer> {
        for attempt in 0..HISTORY_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(FETCH_RETRY).await;
            }
            let question = HistoryQuery {
                channel: channel.to_owned(),
                since_epoch: epoch.to_owned(),
                since_offset: offset,
                limit: 0,
            };
            let Some(owner) = self.ring.load().owner(channel).cloned() else { continue };
            if let Ok(reply::Kind::History(answer)) =
                self.questions.ask(&self.control, owner.as_str(), query::Kind::History(question), FETCH_TIMEOUT).await
                && !answer.not_owner
            {
                return Some(answer);
            }
        }
        None
    }

    /// Tells the control node owning session `id` what it is subscribed to
    /// and its metadata, for an edge to go on with it if this one dies.
    pub(crate) fn record_session(&self, id: &str) {
        let (Some(session), Some(view)) = (self.hub.session(id), self.hub.view(id)) else { return };
        let generation = session.lock().generation;
        let record = SessionRecord {
            connection_id: id.to_owned(),
            metadata_json: view.metadata.to_string(),
            channels: view.channels,
            generation,
            ended: false,
            presence: self.presence_places(id),
        };
        self.send_record(record);
    }

    /// The session (of `generation`) is over: its record goes.
    pub(crate) fn record_ended(&self, id: &str, generation: u64) {
        let record = SessionRecord { connection_id: id.to_owned(), ended: true, generation, ..Default::default() };
        self.send_record(record);
    }

    fn send_record(&self, record: SessionRecord) {
        let owner = self.ring.load().owner(&record.connection_id).cloned();
        self.send_to(owner, Frame { kind: Some(Kind::SessionRecord(record)) });
    }

    /// Another edge resumes a session held here (control node `to` asks,
    /// question `id`): it gets everything the session had, and this edge
    /// lets it go without a CLOSE (a connection still holding it ends
    /// quietly). Refused, it gets an empty answer.
    ///
    /// The answer is on the link before the state lock, under which the
    /// session left the parking, is let go: a draining edge waits for its
    /// parked sessions to go and then closes its links, which must still
    /// carry this answer.
    pub(crate) fn hand_over(&self, to: &NodeId, id: u64, take: &TakeSession) {
        let refuse = || self.reply(to, id, reply::Kind::SessionHandover(SessionHandover::default()));
        let connection = take.connection_id.as_str();
        let (Some(session), Some(view)) = (self.hub.session(connection), self.hub.view(connection)) else {
            return refuse();
        };
        if !self.fresh_enough(connection, take.issued) {
            return refuse();
        }
        let presence = self.presence_places(connection);
        {
            // The state, then the session: the one order.
            let mut edge_state = self.state.lock();
            let mut state = session.lock();
            if state.generation != take.generation {
                drop((state, edge_state));
                return refuse();
            }
            let parked = edge_state.parking.take(connection).map(|p| p.positions);
            parking_gauges(&edge_state.parking);
            // Seen by a connection still holding it: it is not its any more.
            state.generation += 1;
            let kept = state.kept();
            let places = parked.unwrap_or_else(|| state.positions());
            let handover = SessionHandover {
                found: true,
                metadata_json: view.metadata.to_string(),
                channels: view.channels,
                seq: kept.seq,
                messages: kept.messages.into_iter().map(|(seq, frame)| KeptMessage { seq, frame }).collect(),
                places: places
                    .into_iter()
                    .map(|(channel, (epoch, offset))| ChannelPlace { channel, epoch, offset })
                    .collect(),
                generation: take.generation,
                home_lost: false,
                presence,
            };
            self.reply(to, id, reply::Kind::SessionHandover(handover));
        }
        self.let_go(connection, "resumed elsewhere");
        slip_metrics::metrics().sessions.get_or_create(&slip_metrics::kind("handed_over")).inc();
    }

    /// Session `id` lives on another edge now: it goes from here without a
    /// CLOSE (the backend's connection goes on there), and a connection
    /// still holding it ends quietly.
    pub(crate) fn let_go(&self, id: &str, why: &str) {
        let Some(session) = self.hub.session(id) else { return };
        // Not a member here any more: the edge it moved to says it is there.
        self.leave_all_presence(id, true);
        // A connection still holding it sees it superseded.
        session.lock().generation += 1;
        self.with_parking(|p| p.take(id));
        if let Some(outbox) = self.hub.replace_outbox(id, self.parked_outbox()) {
            outbox.abort(why);
        }
        for channel in self.hub.unregister(id) {
            self.interest(channel, false);
        }
    }

    /// A token for a session this edge does not hold: the control node
    /// owning its id decides whether it takes the session, and gives it
    /// handed over by the edge holding it, or rebuilt from its record when
    /// that edge is gone. `None`: a fresh session it is.
    pub(crate) async fn take_over(&self, claims: &SessionClaims) -> Option<Ticket> {
        let via = self.ring.load().owner(&claims.connection_id).cloned()?;
        let take = TakeSession {
            connection_id: claims.connection_id.clone(),
            generation: claims.generation,
            issued: claims.issued,
        };
        let Ok(reply::Kind::SessionHandover(handover)) =
            self.questions.ask(&self.control, via.as_str(), query::Kind::TakeSession(take), TAKE_TIMEOUT).await
        else {
            return None;
        };
        if !handover.found {
            return None;
        }
        let id = claims.connection_id.clone();
        let metadata: Arc<str> = Arc::from(handover.metadata_json.as_str());
        let home_lost = handover.home_lost;
        let kept = handover.messages.into_iter().map(|m| (m.seq, m.frame)).collect();
        let state = crate::session::SessionState::restored(handover.generation, handover.seq, kept);
        let positions: HashMap<String, (String, u64)> =
            handover.places.into_iter().map(|p| (p.channel, (p.epoch, p.offset))).collect();
        let generation = self.adopt(&id, metadata, state, (&handover.channels, &handover.presence), &positions)?;
        if home_lost {
            // What it kept (messages, its places) died with its edge.
            slip_metrics::metrics().sessions.get_or_create(&slip_metrics::kind("home_lost")).inc();
        }
        Some(Ticket { id, generation, positions, home_lost, fresh: false })
    }

    /// Makes a session from another edge live here (subscribed, resuming,
    /// and known to the control nodes to be here); its generation now.
    fn adopt(
        &self,
        id: &str,
        metadata: Arc<str>,
        state: crate::session::SessionState,
        (channels, presence): (&[String], &[SessionPresence]),
        places: &HashMap<String, (String, u64)>,
    ) -> Option<u64> {
        self.hub.register_session(id, self.parked_outbox(), metadata, state);
        for channel in channels {
            if self.hub.subscribe(id, channel) == crate::hub::Subscribed::First {
                // New here: the edge follows the stream from the session's
                // place, so what is published before the owner hears of
                // this edge is fetched (the owner's Head says it exists),
                // not missed.
                if let Some((epoch, offset)) = places.get(channel) {
                    self.state.lock().cursors.start_at(channel, epoch, *offset);
                }
                self.interest(channel.clone(), true);
            }
        }
        self.adopt_presence(id, presence);
        // Its record names this edge now.
        self.record_connection(id);
        let generation = {
            let session = self.hub.session(id)?;
            let mut state = session.lock();
            state.begin_resume();
            state.generation
        };
        self.session_moved(id, self.node_id().as_str());
        self.record_session(id);
        Some(generation)
    }
}

/// `slip_session_deadlines`: one per parked session; and `slip_parked_bytes`.
pub(super) fn parking_gauges(parking: &Parking) {
    slip_metrics::metrics().session_deadlines.set(parking.deadlines() as i64);
    slip_metrics::metrics().parked_bytes.set(parking.bytes() as i64);
}
