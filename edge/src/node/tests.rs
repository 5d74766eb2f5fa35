//! The edge as a node, in milliseconds of a paused clock: control links
//! that record what they are sent, frames handed in as a control node would
//! send them, local connections read from their outboxes. Ring changes, gap
//! fetches asked again by the clock, questions ended by a link drop,
//! parking, resuming, expiry and hand-over.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use slip_link::{FrameHandler, Link, LinkError};
use slip_proto::ids::NodeId;
use slip_proto::link_pb::{
    ChannelEvent, Deliver, Frame, HistoryAnswer, HistoryEntry, Interest, Publish, Query, Reply, TakeSession, View,
    ViewMember, channel_event, connection_command::Op, frame::Kind, query, reply,
};
use slip_proto::session::{self as wire, SessionClaims};
use tokio::time::Instant;

use super::{CONFIRM_TIMEOUT, Edge, EdgeFrames};
use crate::config::EdgeConfig;
use crate::cursor::FETCH_TIMEOUT;
use crate::outbox::Outbox;

const SECRET: &[u8] = b"a test secret of thirty-two bytes!!";
const ROOM: &str = "room";
const CONNECTION: &str = "e-1.0123456789abcdef0123";

/// A control link that keeps what the edge sends it.
struct Recording {
    peer: NodeId,
    sent: Mutex<Vec<Frame>>,
}

impl Link for Recording {
    fn peer(&self) -> &NodeId {
        &self.peer
    }

    fn send(&self, frame: Frame) -> Result<(), LinkError> {
        self.sent.lock().push(frame);
        Ok(())
    }
}

impl Recording {
    fn take(&self) -> Vec<Kind> {
        self.sent.lock().drain(..).filter_map(|f| f.kind).collect()
    }
}

struct Node {
    edge: Arc<Edge>,
    frames: EdgeFrames,
    controls: Vec<Arc<Recording>>,
}

fn node(controls: &[&str]) -> Node {
    node_with(controls, |_| {})
}

fn node_with(controls: &[&str], configure: impl FnOnce(&mut EdgeConfig)) -> Node {
    let mut config = EdgeConfig::new(NodeId::parse("e-1").unwrap(), "http://127.0.0.1:1/", SECRET);
    config.resume_window = Duration::from_secs(60);
    configure(&mut config);
    let edge = Edge::new(config).unwrap();
    let controls: Vec<Arc<Recording>> = controls
        .iter()
        .map(|id| Arc::new(Recording { peer: NodeId::parse(id).unwrap(), sent: Mutex::default() }))
        .collect();
    for control in &controls {
        edge.add_control_link(control.clone());
    }
    Node { frames: EdgeFrames(edge.clone()), edge, controls }
}

impl Node {
    fn from(&self, control: usize, kind: Kind) {
        self.frames.on_frame(&self.controls[control].peer, Frame { kind: Some(kind) });
    }

    fn view(&self, term: u64, members: &[&str]) {
        let members =
            members.iter().map(|m| ViewMember { node_id: (*m).into(), up: true, ..Default::default() }).collect();
        self.from(0, Kind::View(View { term, members }));
    }

    /// A local connection subscribed to `ROOM`, and its outbox.
    fn subscriber(&self, session: bool) -> Arc<Outbox> {
        self.subscriber_as(CONNECTION, session)
    }

    fn subscriber_as(&self, id: &str, session: bool) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox::new(self.edge.config.outbox));
        self.edge.hub.register_as(id, outbox.clone(), Arc::from("null"), session);
        self.edge.connection_command(slip_proto::link_pb::ConnectionCommand {
            connection_id: id.into(),
            op: Some(Op::Subscribe(ROOM.into())),
            ..Default::default()
        });
        outbox
    }
}

fn deliver(offset: u64) -> Kind {
    Kind::Deliver(Deliver {
        channel: ROOM.into(),
        offset,
        event: Some(text(offset)),
        ack: 0,
        epoch: "e1".into(),
        view: 1,
    })
}

fn text(offset: u64) -> ChannelEvent {
    ChannelEvent { body: Some(channel_event::Body::Text(format!("m{offset}"))) }
}

/// The payloads queued for a plain client, in order.
fn received(outbox: &Outbox) -> Vec<String> {
    let frames = outbox.take(usize::MAX).frames;
    // A server's text frame: 0x81, a length under 126, the payload.
    frames.iter().map(|f: &Bytes| String::from_utf8_lossy(&f[2..]).into_owned()).collect()
}

fn history_queries(kinds: &[Kind]) -> Vec<(u64, u64, u32)> {
    kinds
        .iter()
        .filter_map(|k| match k {
            Kind::Query(Query { id, kind: Some(query::Kind::History(h)) }) => Some((*id, h.since_offset, h.limit)),
            _ => None,
        })
        .collect()
}

/// Lets the edge's tasks (its clock, a spawned CLOSE) run.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_newer_view_tells_the_new_owner_of_local_interest_and_an_older_one_is_ignored() {
    let n = node(&["c-1", "c-2"]);
    n.view(1, &["c-1"]);
    let _outbox = n.subscriber(false);
    assert!(
        n.controls[0]
            .take()
            .iter()
            .any(|k| matches!(k, Kind::Interest(Interest { channel, present: true, .. }) if channel == ROOM)),
        "the owner under view 1 hears of the subscription"
    );
    n.view(2, &["c-2"]);
    assert!(
        n.controls[1]
            .take()
            .iter()
            .any(|k| matches!(k, Kind::Interest(Interest { channel, present: true, .. }) if channel == ROOM)),
        "the owner under view 2 is told at once"
    );
    assert_eq!(n.edge.view_term(), 2);
    n.view(1, &["c-1"]);
    assert_eq!(n.edge.view_term(), 2, "an older view changes nothing");
    assert!(n.controls[0].take().is_empty() && n.controls[1].take().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_gap_is_fetched_asked_again_by_the_clock_and_filled_in_order() {
    let n = node(&["c-1"]);
    n.view(1, &["c-1"]);
    let outbox = n.subscriber(false);
    n.controls[0].take();
    n.from(0, deliver(1));
    assert_eq!(received(&outbox), ["m1"]);
    n.from(0, deliver(3));
    assert!(received(&outbox).is_empty(), "3 waits for 2");
    let asked = history_queries(&n.controls[0].take());
    assert_eq!(asked.len(), 1);
    assert_eq!((asked[0].1, asked[0].2), (1, 1), "after 1, one publication");

    // No answer: the edge's one clock asks again when the time is up.
    tokio::time::sleep(FETCH_TIMEOUT + Duration::from_millis(1)).await;
    settle().await;
    let again = history_queries(&n.controls[0].take());
    assert_eq!(again.len(), 1, "asked once more");
    assert_ne!(again[0].0, asked[0].0, "as a new question");

    // The answer to the old question is not taken; the new one's is.
    let answer = |id| {
        Kind::Reply(Reply {
            id,
            kind: Some(reply::Kind::History(HistoryAnswer {
                epoch: "e1".into(),
                top_offset: 3,
                publications: vec![HistoryEntry { offset: 2, event: Some(text(2)) }],
                complete: true,
                view: 1,
                not_owner: false,
            })),
        })
    };
    n.from(0, answer(asked[0].0));
    assert!(received(&outbox).is_empty());
    n.from(0, answer(again[0].0));
    assert_eq!(received(&outbox), ["m2", "m3"]);
}

#[tokio::test(start_paused = true)]
async fn a_publish_waiting_for_its_delivery_goes_on_when_it_comes_or_when_the_owners_link_drops() {
    let n = node(&["c-1"]);
    n.view(1, &["c-1"]);
    let publish = || Publish { channel: ROOM.into(), event: Some(text(1)), ..Default::default() };

    // Confirmed by the owner's Deliver carrying its ack.
    let edge = n.edge.clone();
    let waiting = tokio::spawn(async move { edge.publish_confirmed(publish()).await });
    settle().await;
    let ack = match n.controls[0].take().as_slice() {
        [Kind::Publish(p)] => p.ack,
        other => panic!("{other:?}"),
    };
    assert!(!waiting.is_finished());
    let started = Instant::now();
    n.from(0, Kind::Deliver(Deliver { ack, ..Default::default() }));
    waiting.await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);

    // The owner's link drops: nothing will come, and nobody waits it out.
    let edge = n.edge.clone();
    let waiting = tokio::spawn(async move { edge.publish_confirmed(publish()).await });
    settle().await;
    let started = Instant::now();
    let link: Arc<dyn Link> = n.controls[0].clone();
    n.edge.remove_control_link(&link);
    waiting.await.unwrap();
    assert!(started.elapsed() < CONFIRM_TIMEOUT, "ended by the link drop, not the deadline");
    assert!(n.edge.questions.is_empty());
}

/// A session connection that dropped, parked on the edge, and a token for it.
async fn parked(n: &Node) -> String {
    let _outbox = n.subscriber(true);
    let slot = n.edge.admit().unwrap();
    n.edge.park(CONNECTION, 0, slot);
    assert_eq!(n.edge.parked_sessions(), 1);
    token(0)
}

fn token(generation: u64) -> String {
    let claims = SessionClaims { connection_id: CONNECTION.into(), generation, issued: slip_proto::jwt::now() };
    wire::sign(SECRET, &claims)
}

#[tokio::test(start_paused = true)]
async fn a_parked_session_resumes_with_its_newest_token_only() {
    let n = node(&["c-1"]);
    n.view(1, &["c-1"]);
    let old = parked(&n).await;
    let ticket = n.edge.resume_ticket(&old).await.unwrap();
    assert_eq!((ticket.id.as_str(), n.edge.parked_sessions()), (CONNECTION, 0));
    assert_eq!(n.edge.session_deadlines(), 0, "a resumed session has no deadline");

    // Parked again as its new generation: the token it had is old now.
    let slot = n.edge.admit().unwrap();
    n.edge.park(CONNECTION, ticket.generation, slot);
    assert!(n.edge.resume_ticket(&old).await.is_none(), "an old token takes nothing");
    assert_eq!(n.edge.parked_sessions(), 1, "and the session stays parked");
    assert!(n.edge.resume_ticket(&token(ticket.generation)).await.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_parked_session_ends_when_its_window_passes() {
    let n = node(&["c-1"]);
    n.view(1, &["c-1"]);
    parked(&n).await;
    tokio::time::sleep(Duration::from_secs(59)).await;
    settle().await;
    assert!(n.edge.hub.contains(CONNECTION), "still within the window");
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle().await;
    assert_eq!(n.edge.parked_sessions(), 0);
    assert!(!n.edge.hub.contains(CONNECTION), "ended: its CLOSE is on its way");
    assert_eq!(n.edge.admission.in_use(), 0, "and its slot is free");
}

#[tokio::test(start_paused = true)]
async fn a_session_is_handed_over_only_to_its_newest_generation() {
    let n = node(&["c-1"]);
    n.view(1, &["c-1"]);
    parked(&n).await;
    n.controls[0].take();
    // Control node c-1 asks, as question `id`, for the session with a token of `generation`.
    let ask = |id, generation| {
        let take = TakeSession { connection_id: CONNECTION.into(), generation, issued: slip_proto::jwt::now() };
        n.from(0, Kind::Query(Query { id, kind: Some(query::Kind::TakeSession(take)) }));
        // The answer first: whatever letting the session go sends comes after.
        match n.controls[0].take().first() {
            Some(Kind::Reply(Reply { id: answered, kind: Some(reply::Kind::SessionHandover(handover)) })) => {
                assert_eq!(*answered, id);
                handover.clone()
            }
            other => panic!("the question was not answered first: {other:?}"),
        }
    };
    assert!(!ask(1, 7).found, "another generation: refused");
    assert_eq!(n.edge.parked_sessions(), 1, "and it stays here");

    let handover = ask(2, 0);
    assert!(handover.found);
    assert_eq!(handover.channels, [ROOM]);
    assert_eq!(n.edge.parked_sessions(), 0);
    assert!(!n.edge.hub.contains(CONNECTION), "it lives on the other edge now");
    assert!(!ask(3, 0).found, "handed over once");
}

#[tokio::test(start_paused = true)]
async fn past_the_byte_bound_the_session_parked_longest_ago_makes_room() {
    // Room for one parked session, not two.
    let n = node_with(&["c-1"], |config| config.max_parked_bytes = 1000);
    n.view(1, &["c-1"]);
    let (older, newer) = ("e-1.00000000000000000001", "e-1.00000000000000000002");
    for id in [older, newer] {
        n.subscriber_as(id, true);
        let slot = n.edge.admit().unwrap();
        n.edge.park(id, 0, slot);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    settle().await;
    assert_eq!(n.edge.parked_sessions(), 1);
    assert!(!n.edge.hub.contains(older), "the older one ended");
    assert!(n.edge.hub.contains(newer));
    assert_eq!((n.edge.admission.in_use(), n.edge.session_deadlines()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn join_and_leave_go_to_the_sessions_that_asked_under_the_view_they_were_sent_in() {
    use slip_proto::link_pb::{ConnectionCommand, Presence, PresenceChanges, PresenceMember};
    let n = node(&["c-0"]);
    n.view(2, &["c-0"]);
    let subscribe = |id: &str, session: bool| {
        let outbox = Arc::new(Outbox::new(n.edge.config.outbox));
        n.edge.hub.register_as(id, outbox.clone(), Arc::from("null"), session);
        n.edge.connection_command(ConnectionCommand {
            connection_id: id.into(),
            op: Some(Op::Subscribe(ROOM.into())),
            presence: r#"{"n":1}"#.into(),
            join_leave: true,
            ..Default::default()
        });
        outbox
    };
    let (watcher, plain) = (subscribe(CONNECTION, true), subscribe("e-1.0123456789abcdef0999", false));
    // Both are members; only the session watches, and it asks for the members as they stand.
    let told: Vec<Presence> = n.controls[0]
        .take()
        .into_iter()
        .filter_map(|k| if let Kind::Presence(p) = k { Some(p) } else { None })
        .collect();
    let joins: Vec<(&str, bool)> =
        told.iter().flat_map(|p| p.members.iter().map(|m| (m.connection_id.as_str(), m.session))).collect();
    assert_eq!(joins, [(CONNECTION, true), ("e-1.0123456789abcdef0999", false)]);
    let asked: Vec<&str> = told.iter().map(|p| p.snapshot_for.as_str()).filter(|s| !s.is_empty()).collect();
    assert_eq!(asked, [CONNECTION]);

    let member =
        |id: &str| PresenceMember { connection_id: id.into(), info: "{}".into(), present: true, ..Default::default() };
    let changes = |view: u64, to: &str| {
        Kind::PresenceChanges(PresenceChanges {
            channel: ROOM.into(),
            members: vec![member("e-2.0123456789abcdef0001")],
            view,
            to: to.into(),
            count: 1,
        })
    };
    n.from(0, changes(2, ""));
    assert_eq!(
        received(&watcher),
        [r#"{"channel":"room","connectionId":"e-2.0123456789abcdef0001","info":{},"type":"join"}"#]
    );
    assert!(received(&plain).is_empty(), "a plain connection has no place for them");
    // Sent under a view older than the edge's: its sender may no longer own the channel.
    n.from(0, changes(1, ""));
    assert!(received(&watcher).is_empty());
    // The members as they stand, for the one session that asked.
    n.from(0, changes(2, CONNECTION));
    let snapshot: serde_json::Value = serde_json::from_str(&received(&watcher)[0]).unwrap();
    assert_eq!((&snapshot["type"], &snapshot["count"]), (&serde_json::json!("presence"), &serde_json::json!(1)));
    n.from(0, changes(2, "e-1.0123456789abcdef0999"));
    assert!(received(&plain).is_empty());
}
