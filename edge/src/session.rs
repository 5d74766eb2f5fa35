//! `slip.v1` sessions at the edge (docs/sessions.md): what a session's client is
//! sent. A client that offers the subprotocol gets a session frame first,
//! then every publication and every message in its JSON envelope, with its
//! place (channel, epoch, offset; or the message's number). Plain clients
//! get the same payloads as bare frames, as ever.

use bytes::Bytes;
use slip_proto::link_pb::channel_event;
use slip_proto::session::{self, Payload, SessionClaims};

use crate::frame;

/// Whether a handshake's `Sec-WebSocket-Protocol` offers `slip.v1`.
pub fn offered<B>(request: &http::Request<B>) -> bool {
    request
        .headers()
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == session::SUBPROTOCOL)
}

/// The token a resuming client puts in the `slip_resume` query parameter.
pub fn resume_token<B>(request: &http::Request<B>) -> Option<&str> {
    let query = request.uri().query()?;
    query.split('&').find_map(|pair| pair.strip_prefix(session::RESUME_PARAM)?.strip_prefix('='))
}

/// A query string without its resume token: a token that did not resume
/// its session must not reach the backend (in the metadata of the fresh
/// session's OPEN) nor `GetConnection`.
pub fn without_resume_token(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != session::RESUME_PARAM)
        .collect::<Vec<_>>()
        .join("&")
}

/// The first frame of a new session, with its token.
pub fn opening(secret: &[u8], connection_id: &str, now: u64) -> Bytes {
    let claims = SessionClaims { connection_id: connection_id.to_owned(), generation: 0, issued: now };
    let token = session::sign(secret, &claims);
    frame::text(&session::session_frame(&token, connection_id, None))
}

/// How often a live session's client is sent a fresh token: a third of the
/// resume window, so the token it holds is never near the end of its life.
pub fn refresh_every(window: std::time::Duration) -> std::time::Duration {
    window / 3
}

/// What a stream event carries to clients, if it is a publication (closing
/// orders are not).
pub fn payload_of(body: &channel_event::Body) -> Option<Payload<'_>> {
    match body {
        channel_event::Body::Text(text) => Some(Payload::Text(text)),
        channel_event::Body::Binary(data) => Some(Payload::Binary(data)),
        channel_event::Body::CloseChannel(_) | channel_event::Body::CloseSubscribers(_) => None,
    }
}

/// A payload as a plain client gets it: a bare frame.
pub fn plain(payload: Payload<'_>) -> Bytes {
    match payload {
        Payload::Text(text) => frame::text(text),
        Payload::Binary(data) => frame::binary(data),
    }
}

/// A publication's envelope, as every session subscribed to its channel gets it.
pub fn publication(channel: &str, epoch: &str, offset: u64, payload: Payload<'_>) -> Bytes {
    frame::text(&session::publication(channel, epoch, offset, payload))
}

/// `{"type":"lost","channel":...,"epoch":...}`: the channel's stream
/// started over in `epoch`; what the client had not got of the old one will
/// never come.
pub fn lost_frame(channel: &str, epoch: &str) -> Bytes {
    frame::text(&serde_json::json!({"type": "lost", "channel": channel, "epoch": epoch}).to_string())
}

/// `{"type":"join",...}` or `{"type":"leave",...}`: a change in `channel`'s
/// presence, for the sessions that asked for them. `None` for a member
/// whose info is not JSON (the owner passed on something no edge sends).
pub fn presence_frame(channel: &str, member: &slip_proto::link_pb::PresenceMember) -> Option<Bytes> {
    let id = &member.connection_id;
    let json = if member.present {
        let info: serde_json::Value = serde_json::from_str(&member.info).ok()?;
        serde_json::json!({"type": "join", "channel": channel, "connectionId": id, "info": info})
    } else {
        serde_json::json!({"type": "leave", "channel": channel, "connectionId": id})
    };
    Some(frame::text(&json.to_string()))
}

/// `{"type":"presence","channel":...,"members":[...],"count":N}`: the
/// channel's members as they stand (at most the owner's snapshot limit;
/// `count` is exact), for a session that begins watching them. Members
/// whose info is not JSON are left out.
pub fn presence_snapshot(channel: &str, members: &[slip_proto::link_pb::PresenceMember], count: u64) -> Bytes {
    let members: Vec<serde_json::Value> = members
        .iter()
        .filter_map(|m| {
            let info: serde_json::Value = serde_json::from_str(&m.info).ok()?;
            Some(serde_json::json!({"connectionId": m.connection_id, "info": info}))
        })
        .collect();
    let json = serde_json::json!({"type": "presence", "channel": channel, "members": members, "count": count});
    frame::text(&json.to_string())
}

/// What [`Hub::send`](crate::hub::Hub::send) queues: a plain frame, or for a session the message
/// envelope with its number.
pub trait Message {
    fn plain(&self) -> Bytes;
    fn enveloped(&self, seq: u64) -> Bytes;
}

/// A message to one connection (a TEXT/BINARY command, `Send`).
pub struct Direct<'a>(pub Payload<'a>);

impl Message for Direct<'_> {
    fn plain(&self) -> Bytes {
        plain(self.0)
    }

    fn enveloped(&self, seq: u64) -> Bytes {
        frame::text(&session::message(seq, self.0))
    }
}

/// Direct messages a session keeps to send again after a resume, at most;
/// older ones the client had not seen are reported lost (`"#messages"`).
pub const MAX_LOGGED_MESSAGES: usize = 64;
/// Bytes of direct messages a session keeps, at most.
pub const MAX_LOGGED_BYTES: usize = 64 * 1024;
/// Frames held for a session while it resumes (history being fetched), at
/// most; past it the connection is closed as a slow consumer.
pub const MAX_HELD_WHILE_RESUMING: usize = 1024;

/// A publication on its way to a session, with its place in its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub channel: String,
    pub epoch: String,
    pub offset: u64,
    pub frame: Bytes,
}

/// What an edge keeps of one session besides its connection: the numbers of
/// its messages and the last of them, where it is in each channel, and
/// while it resumes, what arrived meanwhile. Pure: the hub calls it under
/// the session's lock, so a live frame never overtakes a replayed one.
#[derive(Debug, Default)]
pub struct SessionState {
    /// Resumes so far: a token of an older generation no longer resumes.
    pub generation: u64,
    /// The last message number given.
    seq: u64,
    log: std::collections::VecDeque<(u64, Bytes)>,
    log_bytes: usize,
    /// Per channel, the epoch and last offset sent to the client.
    positions: std::collections::HashMap<String, (String, u64)>,
    /// While resuming: publications that arrived, to go after the replay.
    held: Option<Vec<Placed>>,
}

/// What to do with a frame for a session.
#[derive(Debug, PartialEq)]
pub enum Route {
    /// Queue it for the client.
    Send(Bytes),
    /// The first publication of a new epoch of a channel the client had a
    /// place in (every copy of the old one was lost): tell it so
    /// ([`lost_frame`]), then queue this.
    NewEpoch(Bytes),
    /// Held, already sent, or a message kept for a resume: nothing now.
    Nothing,
    /// Too much held while resuming: close the connection as a slow consumer.
    Overflow,
}

/// The messages a session kept, as another edge takes them over.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Kept {
    /// The last message number given.
    pub seq: u64,
    pub messages: Vec<(u64, Bytes)>,
}

impl SessionState {
    /// A session taken over from another edge, with the messages it kept.
    pub fn restored(generation: u64, seq: u64, messages: Vec<(u64, Bytes)>) -> Self {
        let mut state = Self { generation, seq, ..Self::default() };
        let messages: Vec<(u64, Bytes)> = messages.into_iter().filter(|(n, _)| *n <= seq).collect();
        let skip = messages.len().saturating_sub(MAX_LOGGED_MESSAGES);
        for (seq, frame) in messages.into_iter().skip(skip) {
            if state.log_bytes + frame.len() > MAX_LOGGED_BYTES {
                continue;
            }
            state.log_bytes += frame.len();
            state.log.push_back((seq, frame));
        }
        state
    }

    /// Message numbers go on after `seq` (the client's last, when the edge
    /// that numbered its messages is gone).
    pub fn continue_from(&mut self, seq: u64) {
        self.seq = self.seq.max(seq.min(slip_proto::session::MAX_SEQ));
    }

    /// The bytes of the messages it keeps for a resume.
    pub fn kept_bytes(&self) -> usize {
        self.log_bytes
    }

    /// What it kept, for another edge taking it over.
    pub fn kept(&self) -> Kept {
        Kept { seq: self.seq, messages: self.log.iter().cloned().collect() }
    }

    /// Where it is in each channel (what it was last sent).
    pub fn positions(&self) -> std::collections::HashMap<String, (String, u64)> {
        self.positions.clone()
    }

    /// A publication for this session: sent if it is past the session's
    /// place in its channel (or of another epoch), held while resuming.
    /// Borrowed: fan-out calls it once per session subscriber, and only a
    /// held one is copied.
    pub fn publication(&mut self, channel: &str, epoch: &str, offset: u64, frame: &Bytes) -> Route {
        if let Some(held) = &mut self.held {
            if held.len() >= MAX_HELD_WHILE_RESUMING {
                return Route::Overflow;
            }
            let frame = frame.clone();
            held.push(Placed { channel: channel.to_owned(), epoch: epoch.to_owned(), offset, frame });
            return Route::Nothing;
        }
        let new_epoch = self.positions.get(channel).is_some_and(|(at, _)| at != epoch);
        match self.advance(channel, epoch, offset) {
            true if new_epoch => Route::NewEpoch(frame.clone()),
            true => Route::Send(frame.clone()),
            false => Route::Nothing,
        }
    }

    /// Moves the session's place in `channel` to `offset`, if it is further
    /// (or of another epoch); false if the client has it already.
    fn advance(&mut self, channel: &str, epoch: &str, offset: u64) -> bool {
        match self.positions.get_mut(channel) {
            Some((at_epoch, at)) if at_epoch == epoch => {
                if offset <= *at {
                    return false;
                }
                *at = offset;
            }
            _ => {
                self.positions.insert(channel.to_owned(), (epoch.to_owned(), offset));
            }
        }
        true
    }

    /// A message for this session: numbered, kept for a resume, and sent
    /// unless the session is resuming (the replay sends it then).
    pub fn message(&mut self, message: &impl Message) -> Route {
        self.seq = self.seq.saturating_add(1);
        let frame = message.enveloped(self.seq);
        self.log_bytes += frame.len();
        self.log.push_back((self.seq, frame.clone()));
        while self.log.len() > MAX_LOGGED_MESSAGES || self.log_bytes > MAX_LOGGED_BYTES {
            let Some((_, old)) = self.log.pop_front() else { break };
            self.log_bytes -= old.len();
        }
        if self.held.is_some() { Route::Nothing } else { Route::Send(frame) }
    }

    /// Whether a live frame that is not kept for a resume (a join or a
    /// leave) may go to the client now: not while a resume replays.
    pub fn is_live(&self) -> bool {
        self.held.is_none()
    }

    /// Where the session is in `channel`, if anything of it was sent.
    pub fn position(&self, channel: &str) -> Option<(&str, u64)> {
        self.positions.get(channel).map(|(epoch, offset)| (epoch.as_str(), *offset))
    }

    /// The session's connection dropped (or a resume failed before its
    /// replay): nothing is held for it; the next resume replays from history.
    pub fn park(&mut self) {
        self.held = None;
    }

    /// A resume begins: from now on what arrives is held until [`SessionState::resumed`].
    pub fn begin_resume(&mut self) {
        self.generation += 1;
        self.hold();
    }

    /// What arrives is held until [`SessionState::resumed`] (a resume, or a
    /// fresh session replaying from where its client stood).
    pub fn hold(&mut self) {
        self.held = Some(Vec::new());
    }

    /// The resume's replay is ready: the client's places, what history gave
    /// of each channel (in offset order), and the last message it got.
    /// Returns, in order, what to send after the session frame, and whether
    /// the messages it missed were all still kept.
    pub fn resumed(
        &mut self,
        positions: impl IntoIterator<Item = (String, String, u64)>,
        replay: Vec<Placed>,
        seen_seq: u64,
    ) -> (Vec<Bytes>, bool) {
        self.positions = positions.into_iter().map(|(channel, epoch, offset)| (channel, (epoch, offset))).collect();
        let mut frames = Vec::new();
        let held = self.held.take().unwrap_or_default();
        for placed in replay.into_iter().chain(held) {
            if self.advance(&placed.channel, &placed.epoch, placed.offset) {
                frames.push(placed.frame);
            }
        }
        let first_kept = self.log.front().map_or(self.seq + 1, |(seq, _)| *seq);
        let messages_kept = seen_seq >= self.seq || first_kept <= seen_seq + 1;
        frames.extend(self.log.iter().filter(|(seq, _)| *seq > seen_seq).map(|(_, frame)| frame.clone()));
        (frames, messages_kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_token_is_taken_out_of_the_query_and_nothing_else() {
        assert_eq!(without_resume_token("a=1&slip_resume=tok.en&b=2"), "a=1&b=2");
        assert_eq!(without_resume_token("slip_resume=x"), "");
        assert_eq!(without_resume_token("slip_resumed=1&a"), "slip_resumed=1&a");
    }

    fn placed(channel: &str, epoch: &str, offset: u64) -> Placed {
        let frame = Bytes::from(format!("{channel}/{epoch}/{offset}"));
        Placed { channel: channel.into(), epoch: epoch.into(), offset, frame }
    }

    fn offer(s: &mut SessionState, p: Placed) -> Route {
        s.publication(&p.channel, &p.epoch, p.offset, &p.frame)
    }

    fn sent(route: Route) -> Option<Bytes> {
        match route {
            Route::Send(frame) => Some(frame),
            _ => None,
        }
    }

    #[test]
    fn publications_go_once_each_and_a_new_epoch_goes_on() {
        let mut s = SessionState::default();
        assert!(sent(offer(&mut s, placed("a", "e1", 1))).is_some());
        assert!(sent(offer(&mut s, placed("a", "e1", 1))).is_none(), "sent already");
        assert!(sent(offer(&mut s, placed("a", "e1", 2))).is_some());
        let p = placed("a", "e2", 1);
        assert_eq!(offer(&mut s, p.clone()), Route::NewEpoch(p.frame), "another epoch: the client is told");
        assert_eq!(s.position("a"), Some(("e2", 1)));
    }

    #[test]
    fn a_resume_replays_in_order_then_what_arrived_meanwhile_each_once() {
        let mut s = SessionState::default();
        for offset in 1..=3 {
            offer(&mut s, placed("a", "e1", offset));
        }
        s.message(&Direct(Payload::Text("m1")));
        s.message(&Direct(Payload::Text("m2")));
        s.begin_resume();
        // Live ones arrive while history is fetched: held.
        assert_eq!(offer(&mut s, placed("a", "e1", 6)), Route::Nothing);
        assert_eq!(offer(&mut s, placed("a", "e1", 5)), Route::Nothing);
        assert_eq!(s.message(&Direct(Payload::Text("m3"))), Route::Nothing);
        // The client had offset 2 and message 1; history gives 3, 4, 5.
        let replay = vec![placed("a", "e1", 3), placed("a", "e1", 4), placed("a", "e1", 5)];
        let (frames, kept) = s.resumed([("a".into(), "e1".into(), 2)], replay, 1);
        assert!(kept);
        let texts: Vec<String> = frames.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
        assert_eq!(&texts[..4], ["a/e1/3", "a/e1/4", "a/e1/5", "a/e1/6"]);
        assert_eq!(texts.len(), 6, "then messages 2 and 3: {texts:?}");
        assert!(texts[4].contains("\"seq\":2") && texts[5].contains("\"seq\":3"));
        assert!(sent(offer(&mut s, placed("a", "e1", 7))).is_some(), "live again");
        assert_eq!(s.generation, 1);
    }

    #[test]
    fn messages_kept_are_bounded_and_older_ones_are_reported_lost() {
        let mut s = SessionState::default();
        for i in 0..MAX_LOGGED_MESSAGES + 10 {
            s.message(&Direct(Payload::Text(&i.to_string())));
        }
        s.begin_resume();
        let (frames, kept) = s.resumed([], Vec::new(), 5);
        assert!(!kept, "messages 6 to 10 are gone");
        assert_eq!(frames.len(), MAX_LOGGED_MESSAGES);
        s.begin_resume();
        let (frames, kept) = s.resumed([], Vec::new(), (MAX_LOGGED_MESSAGES + 10) as u64);
        assert!(kept && frames.is_empty(), "nothing missed");
    }

    #[test]
    fn too_much_held_while_resuming_overflows() {
        let mut s = SessionState::default();
        s.begin_resume();
        for offset in 0..MAX_HELD_WHILE_RESUMING as u64 {
            assert_eq!(offer(&mut s, placed("a", "e", offset + 1)), Route::Nothing);
        }
        assert_eq!(offer(&mut s, placed("a", "e", 9999)), Route::Overflow);
    }
}
