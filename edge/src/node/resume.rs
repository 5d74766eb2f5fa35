//! `slip.v1` sessions that outlive their connection (DESIGN §10). A
//! session whose socket drops is parked: it stays in the hub, subscribed,
//! its messages numbered and kept, while frames for it go nowhere. A client
//! that comes back with its token within the resume window gets the same
//! session: what it missed is replayed (publications from channel history,
//! by the places the client names; messages from what the session kept),
//! then it goes live. The backend hears nothing of this; it gets the CLOSE
//! only when the window passes with no resume.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use slip_proto::callback::Event;
use slip_proto::link_pb::{HistoryAnswer, HistoryQuery, channel_event};
use slip_proto::session::{self as wire, Payload, Recovery, Resume, SessionClaims};
use tokio::sync::oneshot;

use super::*;
use crate::outbox::Outbox;
use crate::session::{Placed, publication};

/// Ids of history questions a resume asks, apart from the cursors' own.
const SESSION_QUERY_BIT: u64 = 1 << 63;

/// A session waiting to be resumed.
pub(crate) struct Parked {
    /// Its generation when it was parked: a resume or a new park supersedes it.
    generation: u64,
    /// Per channel, where the session stood when parked: what it was last
    /// sent, or (nothing sent yet) where the edge's stream was.
    positions: HashMap<String, (String, u64)>,
}

/// Sessions parked here, and the history questions resumes wait on.
#[derive(Default)]
pub(crate) struct Parking {
    parked: Mutex<HashMap<String, Parked>>,
    questions: Mutex<HashMap<u64, oneshot::Sender<HistoryAnswer>>>,
    next_question: AtomicU64,
}

/// A session a handshake may resume: it is no longer parked, and what
/// arrives for it is held until [`Edge::resume`] has replayed.
pub(crate) struct Ticket {
    pub id: String,
    pub metadata: Arc<str>,
    /// The session's generation once resumed: its connection's.
    pub generation: u64,
    positions: HashMap<String, (String, u64)>,
}

impl Edge {
    /// A session's connection of `generation` dropped: park the session,
    /// unless a resume has already taken it over.
    pub(crate) fn park(self: &Arc<Self>, id: &str, generation: u64) {
        let Some(session) = self.hub.session(id) else { return };
        let channels = self.hub.view(id).map(|v| v.channels).unwrap_or_default();
        let positions = {
            let mut state = session.lock();
            if state.generation != generation {
                return;
            }
            state.park();
            let cursors = self.cursors.lock();
            channels
                .into_iter()
                .filter_map(|channel| {
                    let at = match state.position(&channel) {
                        Some((epoch, offset)) => Some((epoch.to_owned(), offset)),
                        None => cursors.position(&channel),
                    };
                    at.map(|at| (channel, at))
                })
                .collect()
        };
        // Frames for it go nowhere until it is resumed.
        let nowhere = Arc::new(Outbox::new(self.config.outbox));
        nowhere.abort("parked");
        self.hub.replace_outbox(id, nowhere);
        self.parking.parked.lock().insert(id.to_owned(), Parked { generation, positions });
        slip_metrics::metrics().sessions.get_or_create(&slip_metrics::kind("parked")).inc();
        let (edge, id) = (self.clone(), id.to_owned());
        let stopping = self.stopping.clone();
        let window = self.config.resume_window;
        self.tasks.spawn(stopping.run_until_cancelled_owned(async move {
            tokio::time::sleep(window).await;
            edge.expire(&id, generation).await;
        }));
    }

    /// The resume window passed: the session ends, and the backend hears its CLOSE.
    async fn expire(self: &Arc<Self>, id: &str, generation: u64) {
        {
            let mut parked = self.parking.parked.lock();
            if parked.get(id).is_none_or(|p| p.generation != generation) {
                return;
            }
            parked.remove(id);
        }
        slip_metrics::metrics().sessions.get_or_create(&slip_metrics::kind("expired")).inc();
        let metadata = self.hub.metadata(id).unwrap_or_else(|| Arc::from("null"));
        self.connection_closed(id);
        let close =
            [Event::Close { connection_id: id.to_owned(), code: Some(slip_proto::close::ABNORMAL), reason: None }];
        if let Err(e) = self.callbacks.post_with_retry(id, &metadata, &close).await {
            tracing::warn!(connection = id, error = %e, "CLOSE callback of an expired session failed");
        }
    }

    /// The session a resume token names, if it is here and the token is its
    /// latest: it is taken from the parking (or from the connection still
    /// holding it, which then ends quietly). `None`: a fresh session it is.
    pub(crate) fn resume_ticket(&self, token: &str) -> Option<Ticket> {
        let claims = wire::verify(token, &self.config.jwt_secret).ok()?;
        let session = self.hub.session(&claims.connection_id)?;
        let metadata = self.hub.metadata(&claims.connection_id)?;
        let generation = {
            let mut state = session.lock();
            if state.generation != claims.generation {
                return None;
            }
            state.begin_resume();
            state.generation
        };
        let parked = self.parking.parked.lock().remove(&claims.connection_id);
        let positions = parked.map(|p| p.positions).unwrap_or_default();
        Some(Ticket { id: claims.connection_id, metadata, generation, positions })
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
        let mut lost = Vec::new();
        let mut replay = Vec::new();
        let mut positions = Vec::new();
        for channel in channels {
            let from = match resume.channels.get(&channel) {
                Some(p) => Some((p.epoch.clone(), p.offset)),
                None => ticket.positions.get(&channel).cloned(),
            };
            let Some((epoch, offset)) = from else { continue };
            match self.session_history(&channel, &epoch, offset).await {
                Some(answer) => {
                    if !answer.complete {
                        lost.push(channel.clone());
                    }
                    replay.extend(
                        answer
                            .publications
                            .into_iter()
                            .filter_map(|p| placed(&channel, &answer.epoch, p.offset, p.event?.body?)),
                    );
                }
                None => lost.push(channel.clone()),
            }
            positions.push((channel, epoch, offset));
        }
        let mut state = session.lock();
        let (frames, messages_kept) = state.resumed(positions, replay, resume.seq);
        if !messages_kept {
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
        let metrics = slip_metrics::metrics();
        metrics.sessions.get_or_create(&slip_metrics::kind("resumed")).inc();
        let kind = if recovered { "recovered" } else { "not_recovered" };
        metrics.sessions.get_or_create(&slip_metrics::kind(kind)).inc();
    }

    /// History of `channel` after `offset` of `epoch`, from its owner.
    async fn session_history(&self, channel: &str, epoch: &str, offset: u64) -> Option<HistoryAnswer> {
        let id = SESSION_QUERY_BIT | self.parking.next_question.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.parking.questions.lock().insert(id, tx);
        let question =
            HistoryQuery { channel: channel.to_owned(), since_epoch: epoch.to_owned(), since_offset: offset, limit: 0 };
        let owner = self.ring.read().owner(channel).cloned();
        let frame = Frame { kind: Some(Kind::Query(Query { id, kind: Some(query::Kind::History(question)) })) };
        let sent = owner.is_some_and(|owner| self.control.send(owner.as_str(), frame).is_ok());
        let answer = if sent { tokio::time::timeout(FETCH_TIMEOUT, rx).await.ok().and_then(Result::ok) } else { None };
        self.parking.questions.lock().remove(&id);
        answer
    }

    /// Takes an answer to a resume's history question; gives back one that is not.
    pub(crate) fn session_history_answered(&self, id: u64, answer: HistoryAnswer) -> Option<HistoryAnswer> {
        if id & SESSION_QUERY_BIT == 0 {
            return Some(answer);
        }
        if let Some(waiter) = self.parking.questions.lock().remove(&id) {
            let _ = waiter.send(answer);
        }
        None
    }
}

/// A publication from history as a session gets it.
fn placed(channel: &str, epoch: &str, offset: u64, body: channel_event::Body) -> Option<Placed> {
    let frame: Bytes = match &body {
        channel_event::Body::Text(text) => publication(channel, epoch, offset, Payload::Text(text)),
        channel_event::Body::Binary(data) => publication(channel, epoch, offset, Payload::Binary(data)),
        _ => return None,
    };
    Some(Placed { channel: channel.to_owned(), epoch: epoch.to_owned(), offset, frame })
}
