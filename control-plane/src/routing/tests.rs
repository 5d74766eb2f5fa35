//! The control node's rules, without links or clocks: the ring, interest,
//! fan-out with its confirmations, GRIP holds, and pruning once the ring settles.

use std::collections::HashSet;
use std::time::Duration;

use slip_proto::ids::NodeId;
use slip_proto::link_pb::{
    ChannelEvent, Deliver, Frame, Head, Hello, Interest, Publish, Replicate, Replicated, Reply, Role, channel_event,
    frame::Kind, reply,
};
use slip_proto::ring::Ring;
use tokio::time::Instant;

use super::*;
use crate::routing::copies::Answer;
use crate::sequencer::HOLD_FOR;
use crate::streams::{StreamHead, StreamLimits};
use crate::view::{Member, View};

fn node(name: &str) -> NodeId {
    NodeId::parse(name).unwrap()
}

/// Frames the routing sent, in order; sends to `refuse` fail.
#[derive(Default)]
struct Sent {
    frames: Vec<(String, Frame)>,
    refuse: HashSet<String>,
}

impl Outlet for Sent {
    fn send(&mut self, to: &str, frame: Frame) -> bool {
        if self.refuse.contains(to) {
            return false;
        }
        self.frames.push((to.to_owned(), frame));
        true
    }
}

impl Sent {
    fn take(&mut self) -> Vec<(String, Kind)> {
        self.frames.drain(..).map(|(to, frame)| (to, frame.kind.unwrap())).collect()
    }
}

fn hello(role: Role) -> Hello {
    Hello { role: role as i32, ..Hello::default() }
}

fn present(channel: &str) -> Interest {
    Interest { channel: channel.into(), present: true, ..Interest::default() }
}

fn text(channel: &str, data: &str) -> Publish {
    let event = ChannelEvent { body: Some(channel_event::Body::Text(data.into())) };
    Publish { channel: channel.into(), event: Some(event), ..Publish::default() }
}

/// The view of `members`, all up, at `term`.
fn view_of(term: u64, members: &[NodeId]) -> View {
    let member = Member { raft_id: 1, link_addr: String::new(), up: true };
    View::formed(term, members.iter().map(|m| (m.clone(), member.clone())))
}

/// A long lease.
const LONG: Duration = Duration::from_secs(3600);

/// `routing` applies the view of `members` at `term`, holds its lease for
/// it, and is done catching up.
fn apply(routing: &mut Routing, term: u64, members: &[NodeId], now: Instant, out: &mut Sent) {
    let generation = routing.set_view(&view_of(term, members), now, out);
    routing.set_lease(term, now + LONG, now, out);
    routing.finish_catch_up(generation, now, out);
}

/// A node alone in its view, with its lease.
fn routing(node_id: NodeId) -> Routing {
    let now = Instant::now();
    let mut routing = Routing::new(node_id.clone(), StreamLimits::default(), now);
    apply(&mut routing, 1, &[node_id], now, &mut Sent::default());
    routing
}

/// The Deliver of text `data` at `offset` of the channel's stream (as `routing` knows its epoch).
fn deliver(routing: &Routing, channel: &str, data: &str, offset: u64, ack: u64) -> Kind {
    let event = ChannelEvent { body: Some(channel_event::Body::Text(data.into())) };
    let epoch = routing.channel(channel).epoch;
    Kind::Deliver(Deliver { channel: channel.into(), offset, event: Some(event), ack, epoch, view: routing.term() })
}

fn history(routing: &Routing, channel: &str, epoch: &str, now: Instant) -> crate::streams::History {
    match routing.history(channel, epoch, 0, 0, now) {
        Answer::History(history) => history,
        Answer::NotOwner => panic!("not the owner"),
    }
}

fn published(routing: &Routing, channel: &str, offset: u64, edges: u32) -> Published {
    Published { offset, epoch: routing.channel(channel).epoch, edges }
}

/// A publish confirmed to the node that asked, with its place in the stream.
fn placed(id: u64, published: &Published) -> Kind {
    Kind::Reply(Reply { id, kind: Some(reply::Kind::Published(published.into())) })
}

fn confirmed(id: u64) -> Kind {
    Kind::Reply(Reply { id, kind: Some(reply::Kind::Found(true)) })
}

fn refused(id: u64) -> Kind {
    Kind::Reply(Reply { id, kind: Some(reply::Kind::Found(false)) })
}

/// A channel `owner` owns in a ring of `members`.
fn channel_of(owner: &NodeId, members: &[NodeId]) -> String {
    let ring = Ring::new(members.iter().cloned());
    (0..).map(|i| format!("room-{i}")).find(|c| ring.owner(c) == Some(owner)).unwrap()
}

#[test]
fn the_ring_is_the_view_applied_not_the_links() {
    let (me, other, gone, edge) = (node("c-0"), node("c-1"), node("c-2"), node("e-0"));
    let mut routing = routing(me.clone());
    assert_eq!(routing.ring().members(), std::slice::from_ref(&me));
    assert!(routing.linked(&other, &hello(Role::Control)));
    assert!(routing.linked(&gone, &hello(Role::Control)));
    assert!(!routing.linked(&edge, &hello(Role::Edge)));
    assert_eq!(routing.ring().members(), std::slice::from_ref(&me), "linking changes no owner");
    apply(&mut routing, 4, &[me.clone(), other.clone()], Instant::now(), &mut Sent::default());
    assert_eq!(routing.term(), 4);
    let theirs = channel_of(&other, &[me.clone(), other.clone()]);
    assert_eq!(routing.owner_elsewhere(&theirs), Some(&other));
    assert_eq!(routing.owner_elsewhere(&channel_of(&me, &[me.clone(), other])), None);
}

#[test]
fn a_publish_goes_once_to_each_interested_edge_with_the_next_offset() {
    let (e1, e2, e3) = (node("e-1"), node("e-2"), node("e-3"));
    let mut routing = routing(node("c-0"));
    let mut out = Sent::default();
    for edge in [&e1, &e2] {
        routing.interest(edge, present("room"), Instant::now(), &mut out);
    }
    routing.interest(&e1, present("room"), Instant::now(), &mut out);
    assert_eq!(out.take(), [], "interest without an ack is answered by nothing");
    let now = Instant::now();
    let first = routing.fan_out(text("room", "a"), now, &mut out);
    assert_eq!(first, published(&routing, "room", 1, 2));
    let (a1, a2) = (deliver(&routing, "room", "a", 1, 0), deliver(&routing, "room", "a", 1, 0));
    assert_eq!(out.take(), [("e-1".into(), a1), ("e-2".into(), a2)]);
    out.refuse.insert("e-2".into());
    assert_eq!(routing.fan_out(text("room", "b"), now, &mut out), published(&routing, "room", 2, 1));
    assert_eq!(out.take(), [("e-1".into(), deliver(&routing, "room", "b", 2, 0))]);
    let unheard = routing.fan_out(text("hall", "c"), now, &mut out);
    assert_eq!(unheard, published(&routing, "hall", 1, 0), "nobody listens: a place in the stream all the same");
    routing.interest(&e3, Interest { present: false, ..present("room") }, Instant::now(), &mut out);
    routing.interest(&e2, Interest { present: false, ..present("room") }, Instant::now(), &mut out);
    assert_eq!(routing.channel("room").edges, std::slice::from_ref(&e1));
    routing.edge_gone(&e1, now, &mut out);
    let room = routing.channel("room");
    assert!(room.edges.is_empty());
    assert_eq!(room.top_offset, 2, "the stream outlives its listeners");
    assert_eq!(routing.fan_out(text("room", "c"), now, &mut out).offset, 3);
}

#[test]
fn a_publish_is_confirmed_behind_the_delivery_to_the_edge_that_asked() {
    let (e1, e2) = (node("e-1"), node("e-2"));
    let mut routing = routing(node("c-0"));
    let mut out = Sent::default();
    routing.interest(&e1, present("room"), Instant::now(), &mut out);
    routing.interest(&e2, present("room"), Instant::now(), &mut out);
    let now = Instant::now();
    let asked = Publish { ack: 7, reply_to: "e-2".into(), ..text("room", "a") };
    routing.fan_out(asked, now, &mut out);
    let (plain, acked) = (deliver(&routing, "room", "a", 1, 0), deliver(&routing, "room", "a", 1, 7));
    assert_eq!(out.take(), [("e-1".into(), plain), ("e-2".into(), acked)]);
    // An edge with no subscriber of the channel is answered directly.
    let asked = Publish { ack: 8, reply_to: "e-3".into(), ..text("room", "b") };
    routing.fan_out(asked, now, &mut out);
    let sent = out.take();
    assert_eq!(sent.last(), Some(&("e-3".into(), placed(8, &published(&routing, "room", 2, 2)))));
    let asked = Publish { ack: 9, reply_to: "e-3".into(), ..text("hall", "c") };
    routing.fan_out(asked, now, &mut out);
    assert_eq!(out.take(), [("e-3".into(), placed(9, &published(&routing, "hall", 1, 0)))]);
}

#[test]
fn a_subscribe_is_confirmed_once_its_interest_is_recorded() {
    let e1 = node("e-1");
    let mut routing = routing(node("c-0"));
    let mut out = Sent::default();
    routing.interest(&e1, Interest { ack: 5, reply_to: "c-1".into(), ..present("room") }, Instant::now(), &mut out);
    assert_eq!(routing.channel("room").edges, [e1]);
    assert_eq!(out.take(), [("c-1".into(), confirmed(5))]);
}

#[test]
fn an_early_grip_publish_waits_for_its_predecessor_or_its_deadline() {
    let e1 = node("e-1");
    let mut routing = routing(node("c-0"));
    let mut out = Sent::default();
    routing.interest(&e1, present("room"), Instant::now(), &mut out);
    let t0 = Instant::now();
    let grip = |data: &str, id: &str, prev: &str| Publish { id: id.into(), prev_id: prev.into(), ..text("room", data) };
    routing.fan_out(grip("1", "a", ""), t0, &mut out);
    assert_eq!(routing.fan_out(grip("3", "c", "b"), t0, &mut out), Published::default(), "held");
    assert_eq!(routing.next_deadline(), Some(t0 + HOLD_FOR));
    routing.fan_out(grip("2", "b", "a"), t0, &mut out);
    let data: Vec<Kind> = out.take().into_iter().map(|(_, kind)| kind).collect();
    let expected = [1, 2, 3].map(|i| deliver(&routing, "room", &i.to_string(), i, 0));
    assert_eq!(data, expected);
    assert!(routing.next_deadline() > Some(t0 + HOLD_FOR), "nothing held: only the streams' own timers are left");

    routing.fan_out(grip("5", "e", "d"), t0, &mut out);
    routing.on_clock(t0 + HOLD_FOR - Duration::from_millis(1), &mut out);
    assert_eq!(out.take(), []);
    routing.on_clock(t0 + HOLD_FOR, &mut out);
    let fifth = deliver(&routing, "room", "5", 4, 0);
    assert_eq!(out.take(), [("e-1".into(), fifth)], "a lost predecessor stalls nothing");
}

#[test]
fn interest_owned_elsewhere_is_dropped_only_once_the_ring_holds_still() {
    let (me, other, e1) = (node("c-0"), node("c-1"), node("e-1"));
    let both = [me.clone(), other.clone()];
    let (mine, theirs) = (channel_of(&me, &both), channel_of(&other, &both));
    let mut routing = routing(me.clone());
    let mut out = Sent::default();
    routing.interest(&e1, present(&mine), Instant::now(), &mut out);
    routing.interest(&e1, present(&theirs), Instant::now(), &mut out);
    routing.linked(&other, &hello(Role::Control));
    let t0 = Instant::now();
    apply(&mut routing, 2, &both, t0, &mut out);
    assert_eq!(routing.next_deadline(), Some(t0 + RING_SETTLE));
    // The ring moves again before it settles: the wait starts over.
    let t1 = t0 + RING_SETTLE / 2;
    apply(&mut routing, 3, &both, t1, &mut out);
    routing.on_clock(t0 + RING_SETTLE, &mut out);
    assert_eq!(routing.channel(&theirs).edges, std::slice::from_ref(&e1));
    routing.on_clock(t1 + RING_SETTLE, &mut out);
    assert!(routing.channel(&theirs).edges.is_empty());
    assert_eq!(routing.channel(&mine).edges, [e1]);
    assert_eq!(routing.next_deadline(), None);
}

/// A node and its replica for channels it owns.
fn pair() -> (Routing, NodeId, String) {
    let (me, other) = (node("c-0"), node("c-1"));
    let mut routing = routing(me.clone());
    routing.linked(&other, &hello(Role::Control));
    apply(&mut routing, 2, &[me.clone(), other.clone()], Instant::now(), &mut Sent::default());
    let mine = channel_of(&me, &[me.clone(), other.clone()]);
    (routing, other, mine)
}

fn kinds(out: &mut Sent) -> Vec<(String, &'static str)> {
    out.take()
        .into_iter()
        .map(|(to, kind)| {
            let name = match kind {
                Kind::Replicate(_) => "replicate",
                Kind::Deliver(_) => "deliver",
                Kind::Reply(_) => "reply",
                Kind::Replicated(_) => "replicated",
                _ => "other",
            };
            (to, name)
        })
        .collect()
}

fn stored(routing: &Routing, channel: &str, offset: u64) -> Replicated {
    Replicated { channel: channel.into(), epoch: routing.channel(channel).epoch, offset }
}

#[test]
fn a_publication_is_delivered_and_confirmed_only_once_its_replica_has_it() {
    let (mut routing, other, room) = pair();
    let mut out = Sent::default();
    routing.interest(&node("e-1"), present(&room), Instant::now(), &mut out);
    let t0 = Instant::now();
    let asked = Publish { ack: 7, reply_to: "c-0".into(), ..text(&room, "a") };
    assert_eq!(routing.fan_out(asked, t0, &mut out).edges, 0, "not out yet");
    assert_eq!(kinds(&mut out), [("c-1".into(), "replicate")]);
    routing.replicated(&other, stored(&routing, &room, 1), t0, &mut out);
    assert_eq!(kinds(&mut out), [("e-1".into(), "deliver"), ("c-0".into(), "reply")]);
}

#[test]
fn publications_go_out_in_offset_order_whatever_order_their_copies_are_confirmed_in() {
    let (mut routing, other, room) = pair();
    let mut out = Sent::default();
    routing.interest(&node("e-1"), present(&room), Instant::now(), &mut out);
    let t0 = Instant::now();
    routing.fan_out(text(&room, "a"), t0, &mut out);
    routing.fan_out(text(&room, "b"), t0, &mut out);
    out.take();
    routing.replicated(&other, stored(&routing, &room, 2), t0, &mut out);
    assert_eq!(kinds(&mut out), [], "2 waits for 1");
    routing.replicated(&other, stored(&routing, &room, 1), t0, &mut out);
    let delivered: Vec<u64> = out
        .take()
        .into_iter()
        .filter_map(|(_, k)| match k {
            Kind::Deliver(d) => Some(d.offset),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, [1, 2]);
    // A confirmation of another epoch counts for nothing.
    routing.fan_out(text(&room, "c"), t0, &mut out);
    out.take();
    let stale = Replicated { epoch: "not-this".into(), ..stored(&routing, &room, 3) };
    routing.replicated(&other, stale, t0, &mut out);
    assert_eq!(kinds(&mut out), []);
}

#[test]
fn an_unconfirmed_copy_is_sent_again_and_a_replica_that_left_holds_nothing_up() {
    let (mut routing, other, room) = pair();
    let mut out = Sent::default();
    routing.interest(&node("e-1"), present(&room), Instant::now(), &mut out);
    let t0 = Instant::now();
    routing.fan_out(text(&room, "a"), t0, &mut out);
    out.take();
    assert_eq!(routing.next_deadline(), Some(t0 + crate::replication::RESEND_AFTER));
    routing.on_clock(t0 + crate::replication::RESEND_AFTER, &mut out);
    assert_eq!(kinds(&mut out), [("c-1".into(), "replicate")], "sent again");
    // The replica is gone from the ring: nothing waits for it any more.
    apply(&mut routing, 3, &[node("c-0")], t0, &mut out);
    assert_eq!(kinds(&mut out), [("e-1".into(), "deliver")]);
    let _ = other;
}

#[test]
fn a_repeated_key_while_its_publication_waits_is_confirmed_when_it_goes_out() {
    let (mut routing, other, room) = pair();
    let mut out = Sent::default();
    let t0 = Instant::now();
    let first = Publish { ack: 1, reply_to: "c-0".into(), idempotency_key: "k".into(), ..text(&room, "a") };
    let again = Publish { ack: 2, reply_to: "c-0".into(), ..first.clone() };
    routing.fan_out(first, t0, &mut out);
    routing.fan_out(again, t0, &mut out);
    assert_eq!(kinds(&mut out), [("c-1".into(), "replicate")], "one copy, no confirmation yet");
    routing.replicated(&other, stored(&routing, &room, 1), t0, &mut out);
    let replies: Vec<u64> = out
        .take()
        .into_iter()
        .filter_map(|(_, k)| match k {
            Kind::Reply(r) => Some(r.id),
            _ => None,
        })
        .collect();
    assert_eq!(replies, [1, 2], "both publishers hear it, once it is copied");
}

#[test]
fn a_replica_stores_says_so_and_takes_over_in_the_same_epoch() {
    let (me, owner) = (node("c-1"), node("c-0"));
    let mut replica = routing(me.clone());
    replica.linked(&owner, &hello(Role::Control));
    let mut out = Sent::default();
    let now = Instant::now();
    apply(&mut replica, 2, &[me.clone(), owner.clone()], now, &mut out);
    for offset in 1..=3 {
        let event = ChannelEvent { body: Some(channel_event::Body::Text(format!("m{offset}"))) };
        let copy = Replicate {
            channel: "room".into(),
            epoch: "e-owner".into(),
            offset,
            event: Some(event),
            term: "2".into(),
            view: 2,
            ..Default::default()
        };
        replica.store_replica(&owner, copy, now, &mut out);
    }
    assert_eq!(kinds(&mut out), vec![("c-0".to_owned(), "replicated"); 3]);
    // The owner died: the ring is this node alone, and it goes on where the
    // owner was, once the owner's lease must have ended.
    apply(&mut replica, 3, std::slice::from_ref(&me), now, &mut out);
    assert_eq!(replica.fan_out(text("room", "early"), now, &mut out), Published::default(), "held");
    let now = now + crate::consensus::lease::TAKEOVER_WAIT;
    replica.on_clock(now, &mut out);
    let next = replica.fan_out(text("room", "m5"), now, &mut out);
    assert_eq!((next.offset, next.epoch.as_str()), (5, "e-owner"), "the held one went first, as 4");
    let history = history(&replica, "room", "e-owner", now);
    assert_eq!(history.publications.iter().map(|p| p.offset).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
}

#[test]
fn an_edge_announcing_interest_hears_where_the_stream_is() {
    let mut routing = routing(node("c-0"));
    let mut out = Sent::default();
    routing.interest(&node("e-1"), present("room"), Instant::now(), &mut out);
    assert_eq!(out.take(), [], "no stream yet: nothing to catch up on");
    routing.fan_out(text("room", "a"), Instant::now(), &mut out);
    routing.fan_out(text("room", "b"), Instant::now(), &mut out);
    out.take();
    routing.interest(&node("e-2"), present("room"), Instant::now(), &mut out);
    let epoch = routing.channel("room").epoch;
    assert_eq!(
        out.take(),
        [("e-2".into(), Kind::Head(Head { channel: "room".into(), epoch, top: 2, view: 1, ..Default::default() }))]
    );
}

/// Node `to` catches up from `from` as the plane's task would: the heads it
/// is given, then a copy of each stream worth having, page by page.
fn catch_up_from(to: &mut Routing, from: &Routing, now: Instant, out: &mut Sent) {
    let members: Vec<String> = to.ring().members().iter().map(|m| m.to_string()).collect();
    let (same_view, heads, more) = from.heads_for(to.node_id(), &members, "");
    assert!(same_view && !more);
    for head in heads {
        let Some(mut after) = to.wants_copy(from.node_id(), &head) else { continue };
        loop {
            let page = from.copy_for(&head.channel, after, 64, now).unwrap();
            let next = page.entries.last().map(|(p, _)| p.offset);
            let more = page.more;
            to.import_copy(&head.channel, page, now, out);
            match next {
                Some(next) if more => after = next,
                _ => break,
            }
        }
    }
}

#[test]
fn a_node_that_comes_back_holds_its_channels_until_it_has_caught_up_then_goes_on_in_the_same_epoch() {
    let (back, holder) = (node("c-0"), node("c-1"));
    let both = [back.clone(), holder.clone()];
    let channel = channel_of(&back, &both);
    let now = Instant::now();
    let mut out = Sent::default();
    // While `back` was away, `holder` owned everything and gave offsets 1..=5.
    let mut old = routing(holder.clone());
    for i in 1..=5 {
        let mut publish = text(&channel, &format!("m{i}"));
        publish.idempotency_key = format!("k{i}");
        old.fan_out(publish, now, &mut out);
    }
    let epoch = old.channel(&channel).epoch;
    // `back` restarted with nothing in memory and links to `holder`.
    let mut new = Routing::new(back.clone(), StreamLimits::default(), now);
    new.linked(&holder, &hello(Role::Control));
    let generation = new.set_view(&view_of(2, &both), now, &mut out);
    new.set_lease(2, now + LONG, now, &mut out);
    new.interest(&node("e-1"), present(&channel), Instant::now(), &mut out);
    out.take();
    let mut publish = text(&channel, "m6");
    (publish.ack, publish.reply_to) = (9, "c-2".into());
    assert_eq!(new.fan_out(publish, now, &mut out), Published::default(), "held");
    assert_eq!(out.take(), [], "no offset given, nothing sent");
    // The holder has not seen the new ring yet: it says nothing.
    let members: Vec<String> = both.iter().map(|m| m.to_string()).collect();
    assert_eq!(old.heads_for(&back, &members, ""), (false, Vec::new(), false));
    old.linked(&back, &hello(Role::Control));
    apply(&mut old, 2, &both, now, &mut out);
    out.take();
    catch_up_from(&mut new, &old, now, &mut out);
    let head = Head { channel: channel.clone(), epoch: epoch.clone(), top: 5, view: 2, ..Default::default() };
    assert_eq!(out.take(), [("e-1".into(), Kind::Head(head))], "the edge hears where the stream is");
    assert_eq!(new.history(&channel, &epoch, 0, 0, now), Answer::NotOwner, "no history told mid catch-up");
    // Caught up: the held publish takes offset 6 of the same epoch, copied to the holder first.
    new.finish_catch_up(generation, now, &mut out);
    let history = history(&new, &channel, &epoch, now);
    assert_eq!(history.publications.len(), 5, "the one at 6 waits for its copy");
    assert!(history.complete);
    assert_eq!(kinds(&mut out), [("c-1".to_owned(), "replicate")]);
    let stored = Replicated { channel: channel.clone(), epoch: epoch.clone(), offset: 6 };
    new.replicated(&holder, stored, now, &mut out);
    let published = Published { offset: 6, epoch: epoch.clone(), edges: 1 };
    assert_eq!(out.take()[1], ("c-2".into(), placed(9, &published)));
    // A key the holder took is known here too.
    let mut again = text(&channel, "m2 again");
    again.idempotency_key = "k2".into();
    assert_eq!(new.fan_out(again, now, &mut out), Published { offset: 2, epoch, edges: 0 });
}

#[test]
fn a_copy_is_taken_only_when_it_is_further_along_or_holds_more() {
    let (me, other) = (node("c-0"), node("c-1"));
    let now = Instant::now();
    let mut out = Sent::default();
    let mut mine = routing(me.clone());
    for i in 1..=3 {
        mine.fan_out(text("room", &format!("m{i}")), now, &mut out);
    }
    let epoch: std::sync::Arc<str> = mine.channel("room").epoch.into();
    let term: std::sync::Arc<str> = mine.streams.term_at("room", 3).into();
    let head = |epoch: &std::sync::Arc<str>, top, first| StreamHead {
        channel: "room".into(),
        epoch: epoch.clone(),
        top,
        first,
        term: term.clone(),
    };
    assert_eq!(mine.wants_copy(&other, &head(&epoch, 3, 1)), None, "as far along");
    let elsewhere = StreamHead { term: "another term".into(), ..head(&epoch, 3, 1) };
    assert_eq!(
        mine.wants_copy(&other, &elsewhere),
        Some(0),
        "given by another owner: all of it, to find where the two part"
    );
    assert_eq!(mine.wants_copy(&other, &head(&epoch, 2, 1)), None, "behind");
    assert_eq!(mine.wants_copy(&other, &head(&epoch, 7, 2)), Some(3), "ahead: what follows ours");
    assert_eq!(mine.wants_copy(&other, &head(&epoch, 3, 0)), None, "no history there");
    let other_epoch: std::sync::Arc<str> = "another".into();
    assert_eq!(
        mine.wants_copy(&other, &head(&other_epoch, 9, 1)),
        None,
        "another epoch, from a node that does not own it"
    );
    let fresh = StreamHead { channel: "unknown".into(), epoch: other_epoch, top: 1, first: 1, term: term.clone() };
    assert_eq!(mine.wants_copy(&other, &fresh), Some(0), "a stream we know nothing of");
}

#[test]
fn without_its_lease_an_owner_confirms_nothing_and_refuses_publishes_until_it_is_renewed() {
    let (mut routing, other, room) = pair();
    let mut out = Sent::default();
    routing.interest(&node("e-1"), present(&room), Instant::now(), &mut out);
    let t0 = Instant::now();
    routing.fan_out(Publish { ack: 7, reply_to: "c-9".into(), ..text(&room, "a") }, t0, &mut out);
    assert_eq!(kinds(&mut out), [("c-1".into(), "replicate")]);
    // Paused past its lease: the replica's answer confirms nothing, a new publish is refused.
    let late = t0 + LONG + crate::ownership::LEASE_GRACE;
    routing.replicated(&other, stored(&routing, &room, 1), late, &mut out);
    assert_eq!(kinds(&mut out), []);
    routing.fan_out(Publish { ack: 8, reply_to: "c-9".into(), ..text(&room, "b") }, late, &mut out);
    assert_eq!(out.take(), [("c-9".into(), refused(8))]);
    let answer = routing.history(&room, "", 0, 0, late);
    assert_eq!(answer, Answer::NotOwner, "no lease: not the authority on its history either");
    // Renewed: what waited goes out, in order.
    routing.set_lease(routing.term(), late + LONG, late, &mut out);
    assert_eq!(kinds(&mut out), [("e-1".into(), "deliver"), ("c-9".into(), "reply")]);
}

#[test]
fn a_lease_being_renewed_holds_a_publish_and_one_held_too_long_is_refused() {
    let (mut routing, _, room) = pair();
    let mut out = Sent::default();
    let t0 = Instant::now();
    let expired = t0 + LONG;
    routing.fan_out(Publish { ack: 3, reply_to: "c-9".into(), ..text(&room, "a") }, expired, &mut out);
    assert_eq!(out.take(), [], "held while the lease may be renewed");
    routing.on_clock(expired + crate::held::HOLD_LIMIT, &mut out);
    assert_eq!(out.take(), [("c-9".into(), refused(3))]);
}

#[test]
fn a_replica_refuses_copies_from_an_older_view_and_offsets_a_newer_term_gave() {
    let (me, owner) = (node("c-1"), node("c-0"));
    let mut replica = routing(me.clone());
    replica.linked(&owner, &hello(Role::Control));
    let mut out = Sent::default();
    let now = Instant::now();
    apply(&mut replica, 5, &[me, owner.clone()], now, &mut out);
    let copy = |view: u64, term: &str| Replicate {
        channel: "room".into(),
        epoch: "e".into(),
        offset: 1,
        event: Some(ChannelEvent { body: Some(channel_event::Body::Text(term.into())) }),
        term: term.into(),
        view,
        ..Default::default()
    };
    replica.store_replica(&owner, copy(3, "3"), now, &mut out);
    assert_eq!(kinds(&mut out), [], "an owner under an older view (paused, cut off) gets no copy stored");
    replica.store_replica(&owner, copy(5, "5"), now, &mut out);
    assert_eq!(kinds(&mut out), [("c-0".into(), "replicated")]);
    replica.store_replica(&owner, copy(5, "4"), now, &mut out);
    assert_eq!(kinds(&mut out), [], "offset 1 was given under a newer term");
    let past_a_hole = Replicate { offset: 3, ..copy(5, "5") };
    assert_eq!(replica.store_replica(&owner, past_a_hole, now, &mut out), Some(1), "the owner's copy after 1 is taken");
    assert_eq!(kinds(&mut out), [], "nothing said of 3 until it is stored");
}

#[test]
fn history_shows_only_what_was_confirmed() {
    let (mut routing, other, room) = pair();
    let mut out = Sent::default();
    let t0 = Instant::now();
    routing.fan_out(text(&room, "a"), t0, &mut out);
    routing.fan_out(text(&room, "b"), t0, &mut out);
    routing.replicated(&other, stored(&routing, &room, 1), t0, &mut out);
    let epoch = routing.channel(&room).epoch;
    let shown = history(&routing, &room, &epoch, t0);
    assert_eq!((shown.publications.len(), shown.top_offset), (1, 1), "2 waits for its copy");
    assert_eq!(routing.channel(&room).top_offset, 1);
}

#[test]
fn what_waited_for_copies_of_a_channel_now_owned_elsewhere_is_refused() {
    let (mut routing, other, room) = pair();
    let mut out = Sent::default();
    let t0 = Instant::now();
    routing.fan_out(Publish { ack: 4, reply_to: "c-9".into(), ..text(&room, "a") }, t0, &mut out);
    out.take();
    // A view in which the other node owns everything (this one left the ring).
    apply(&mut routing, 9, std::slice::from_ref(&other), t0, &mut out);
    assert_eq!(out.take(), [("c-9".into(), refused(4))]);
    // A publish that comes now is passed to the owner.
    routing.fan_out(text(&room, "b"), t0, &mut out);
    assert_eq!(kinds(&mut out), [("c-1".into(), "other")]);
}

#[test]
fn a_copy_of_another_epoch_extended_under_a_newer_term_replaces_ours() {
    // The majority could reach no copy of the stream (its owner and replica
    // were cut off together) and started a new epoch under a newer view;
    // when the old owner is back, that epoch is the stream, whoever holds it.
    let (me, other) = (node("c-0"), node("c-1"));
    let now = Instant::now();
    let mine = routing(me.clone());
    let mut mine = mine;
    let mut out = Sent::default();
    mine.fan_out(text("room", "old"), now, &mut out);
    let term = |t: &str| -> std::sync::Arc<str> { t.into() };
    let head = |epoch: &str, t: &str| StreamHead {
        channel: "room".into(),
        epoch: epoch.into(),
        top: 3,
        first: 1,
        term: term(t),
    };
    assert_eq!(mine.wants_copy(&other, &head("theirs", "7")), Some(0), "newer: taken, from the start");
    assert_eq!(mine.wants_copy(&other, &head("theirs", "1")), None, "no newer than ours");
    apply(&mut mine, 9, &[me], now, &mut out);
    mine.fan_out(text("room", "under 9"), now, &mut out);
    assert_eq!(mine.wants_copy(&other, &head("theirs", "7")), None, "ours went on under a newer term since");
}

#[test]
fn what_waited_at_offsets_a_newer_term_gave_is_dropped_not_confirmed_as_theirs() {
    // This node stamped offset 1 (term 2) and its copy was refused; then the
    // stream comes in from a node that gave offset 1 under term 5.
    let (mut routing, _, room) = pair();
    let mut out = Sent::default();
    let t0 = Instant::now();
    routing.fan_out(Publish { ack: 7, reply_to: "c-9".into(), ..text(&room, "ours") }, t0, &mut out);
    out.take();
    let epoch: std::sync::Arc<str> = routing.channel(&room).epoch.into();
    let theirs = crate::streams::CopyPage {
        epoch: epoch.clone(),
        top: 1,
        entries: vec![(
            crate::streams::Publication {
                offset: 1,
                event: ChannelEvent { body: Some(channel_event::Body::Text("theirs".into())) },
            },
            Duration::ZERO,
        )],
        keys: Vec::new(),
        more: false,
        terms: vec![(1, "5".into())],
    };
    routing.import_copy(&room, theirs, t0, &mut out);
    assert_eq!(out.take(), [("c-9".into(), refused(7))], "its publisher retries");
    routing.on_clock(t0 + crate::replication::RESEND_AFTER, &mut out);
    assert_eq!(kinds(&mut out), [], "nothing of ours is sent again under their offset");
}

#[test]
fn every_majority_of_the_voters_holds_a_copy() {
    assert_eq!(copies_for(1, 3), 1);
    assert_eq!(copies_for(1, 5), 2, "a 2|3 split: one of the three holds a copy");
    assert_eq!(copies_for(1, 7), 3);
    assert_eq!(copies_for(4, 5), 4, "more if asked");
    assert_eq!(copies_for(0, 5), 0, "none if asked");
    assert_eq!(copies_for(1, 1), 1);
}

#[test]
fn what_waits_for_its_copies_is_not_confirmed_while_a_catch_up_runs() {
    // Given under view 1, copied but not yet acknowledged when view 2 came:
    // the owner may have lost its lease in between, and another owner given
    // that offset; the catch-up's copy decides before anything goes out.
    let (me, other) = (node("c-0"), node("c-1"));
    let both = [me.clone(), other.clone()];
    let channel = channel_of(&me, &both);
    let now = Instant::now();
    let mut out = Sent::default();
    let mut owner = Routing::new(me.clone(), StreamLimits::default(), now);
    owner.linked(&other, &hello(Role::Control));
    apply(&mut owner, 1, &both, now, &mut out);
    owner.interest(&node("e-1"), present(&channel), Instant::now(), &mut out);
    let mut publish = text(&channel, "m1");
    (publish.ack, publish.reply_to) = (9, "c-2".into());
    owner.fan_out(publish, now, &mut out);
    assert_eq!(kinds(&mut out), [("c-1".to_owned(), "replicate")]);
    let generation = owner.set_view(&view_of(2, &both), now, &mut out);
    owner.set_lease(2, now + LONG, now, &mut out);
    out.take();
    let epoch = owner.channel(&channel).epoch;
    let stored = Replicated { channel: channel.clone(), epoch, offset: 1 };
    owner.replicated(&other, stored, now, &mut out);
    assert_eq!(kinds(&mut out), [], "nothing out mid catch-up");
    owner.finish_catch_up(generation, now, &mut out);
    assert_eq!(kinds(&mut out), [("e-1".to_owned(), "deliver"), ("c-2".to_owned(), "reply")]);
}

fn member(id: &str, present: bool) -> slip_proto::link_pb::PresenceMember {
    let info = if present { "{}".to_owned() } else { String::new() };
    slip_proto::link_pb::PresenceMember { connection_id: id.into(), info, present, ..Default::default() }
}

fn joins(channel: &str, ids: &[&str]) -> Presence {
    let members = ids.iter().map(|id| member(id, true)).collect();
    Presence { channel: channel.into(), members, ..Default::default() }
}

fn changes(routing: &Routing, channel: &str, members: Vec<slip_proto::link_pb::PresenceMember>) -> Kind {
    Kind::PresenceChanges(PresenceChanges {
        channel: channel.into(),
        members,
        view: routing.term(),
        ..Default::default()
    })
}

#[test]
fn presence_changes_go_to_interested_edges_coalesced_and_before_the_next_publication() {
    use crate::presence_feed::PRESENCE_FLUSH;
    let (e1, e2) = (node("e-1"), node("e-2"));
    let (a, b) = ("e-1.0123456789abcdef0001", "e-2.0123456789abcdef0002");
    let mut routing = routing(node("c-0"));
    let mut out = Sent::default();
    let now = Instant::now();
    routing.interest(&e1, present("room"), Instant::now(), &mut out);
    routing.interest(&e2, present("room"), Instant::now(), &mut out);
    out.take();
    routing.presence(&e1, joins("room", &[a]), now, &mut out);
    routing.presence(&e2, joins("room", &[b]), now, &mut out);
    assert!(out.take().is_empty(), "coalesced for a while");
    assert_eq!(routing.next_deadline(), Some(now + PRESENCE_FLUSH));
    routing.on_clock(now + PRESENCE_FLUSH, &mut out);
    let both = changes(&routing, "room", vec![member(a, true), member(b, true)]);
    assert_eq!(out.take(), [("e-1".into(), both.clone()), ("e-2".into(), both)]);

    // A leave then a publication: the leave goes first, without waiting.
    let gone = Presence { members: vec![member(a, false)], ..joins("room", &[]) };
    routing.presence(&e1, gone, now, &mut out);
    routing.fan_out(text("room", "x"), now, &mut out);
    let left = changes(&routing, "room", vec![member(a, false)]);
    let x = deliver(&routing, "room", "x", 1, 0);
    assert_eq!(
        out.take(),
        [("e-1".into(), left.clone()), ("e-2".into(), left), ("e-1".into(), x.clone()), ("e-2".into(), x)]
    );
    routing.on_clock(now + PRESENCE_FLUSH * 2, &mut out);
    assert!(out.take().is_empty(), "told once");

    // Its edge gone and back before the flush: nothing to tell.
    routing.edge_gone(&e2, now, &mut out);
    routing.interest(&e2, present("room"), Instant::now(), &mut out);
    out.take();
    routing.presence(&e2, Presence { whole: true, ..joins("room", &[b]) }, now, &mut out);
    routing.on_clock(now + PRESENCE_FLUSH * 3, &mut out);
    assert!(out.take().is_empty());
    assert_eq!(routing.presence_of("room", 0).unwrap().count, 1);
}

#[test]
fn a_node_without_its_lease_tells_no_presence_changes() {
    use crate::presence_feed::PRESENCE_FLUSH;
    let (me, e1) = (node("c-0"), node("e-1"));
    let now = Instant::now();
    let mut routing = Routing::new(me.clone(), StreamLimits::default(), now);
    let mut out = Sent::default();
    let generation = routing.set_view(&view_of(1, std::slice::from_ref(&me)), now, &mut out);
    routing.set_lease(1, now + PRESENCE_FLUSH / 2, now, &mut out);
    routing.finish_catch_up(generation, now, &mut out);
    routing.interest(&e1, present("room"), Instant::now(), &mut out);
    out.take();
    routing.presence(&e1, joins("room", &["e-1.0123456789abcdef0001"]), now, &mut out);
    routing.on_clock(now + PRESENCE_FLUSH, &mut out);
    assert!(out.take().is_empty(), "its lease ran out before the flush");
}

#[test]
fn lifecycle_events_are_decided_by_the_owner_copied_to_its_replica_and_sent_again_by_the_node_taking_over() {
    use crate::occupancy::{Lifecycle, TAKEOVER_GRACE};
    let (owner, replica, e1) = (node("c-0"), node("c-1"), node("e-1"));
    let both = [owner.clone(), replica.clone()];
    let now = Instant::now();
    let (mut a, mut b) = (routing(owner.clone()), routing(replica.clone()));
    for (routing, other) in [(&mut a, &replica), (&mut b, &owner)] {
        routing.linked(other, &hello(Role::Control));
        routing.enable_lifecycle(Duration::from_secs(5));
        apply(routing, 2, &both, now, &mut Sent::default());
    }
    let room = channel_of(&owner, &both);
    let mut out = Sent::default();
    // Interest told again (an edge to a new owner) is no event; an edge's first subscriber is.
    a.interest(&e1, Interest { again: true, ..present(&room) }, now, &mut out);
    assert!(a.take_lifecycle(10).is_empty());
    a.interest(&e1, Interest { present: false, ..present(&room) }, now, &mut out);
    let vacated = {
        a.on_clock(now + Duration::from_secs(5), &mut out);
        a.take_lifecycle(10)
    };
    assert_eq!(vacated.iter().map(|e| e.kind).collect::<Vec<_>>(), [Lifecycle::Vacated]);
    out.take();
    a.interest(&e1, present(&room), now, &mut out);
    let occupied = a.take_lifecycle(10);
    assert_eq!(occupied.iter().map(|e| e.kind).collect::<Vec<_>>(), [Lifecycle::Occupied]);
    // Its copy went to the replica.
    let copies: Vec<(String, Kind)> = out.take().into_iter().filter(|(_, k)| matches!(k, Kind::Occupancy(_))).collect();
    assert_eq!(copies.len(), 1);
    let Kind::Occupancy(copy) = copies[0].1.clone() else { unreachable!() };
    assert_eq!((copies[0].0.as_str(), copy.event_id.as_str(), copy.occupied), ("c-1", occupied[0].id.as_str(), true));
    b.occupancy_copy(&owner, copy, now);

    // The owner dies: the replica owns the channel, hears the edge again, and
    // after the grace sends the owner's last event again, with its id.
    apply(&mut b, 3, std::slice::from_ref(&replica), now, &mut out);
    b.interest(&e1, Interest { again: true, ..present(&room) }, now, &mut out);
    b.on_clock(now + TAKEOVER_GRACE, &mut out);
    assert_eq!(b.take_lifecycle(10), occupied);
}

#[test]
fn a_node_without_its_lease_sends_no_lifecycle_event_and_tells_what_stands_once_it_has_it() {
    use crate::occupancy::Lifecycle;
    let (me, e1) = (node("c-0"), node("e-1"));
    let now = Instant::now();
    let mut routing = Routing::new(me.clone(), StreamLimits::default(), now);
    routing.enable_lifecycle(Duration::from_secs(5));
    let mut out = Sent::default();
    let generation = routing.set_view(&view_of(1, std::slice::from_ref(&me)), now, &mut out);
    routing.finish_catch_up(generation, now, &mut out);
    // Cut off (no lease): a first subscriber is no event, nor is its leaving.
    routing.interest(&e1, present("room"), now, &mut out);
    routing.interest(&e1, present("lobby"), now, &mut out);
    routing.interest(&e1, Interest { present: false, ..present("lobby") }, now, &mut out);
    routing.on_clock(now + Duration::from_secs(6), &mut out);
    assert!(routing.take_lifecycle(10).is_empty());
    // Its lease back: what stands now, one event.
    let later = now + Duration::from_secs(7);
    routing.set_lease(1, later + LONG, later, &mut out);
    let events: Vec<(String, Lifecycle)> =
        routing.take_lifecycle(10).into_iter().map(|e| (e.channel, e.kind)).collect();
    assert_eq!(events, [("room".to_owned(), Lifecycle::Occupied)]);
}

#[test]
fn another_nodes_word_on_a_channel_this_node_owns_settles_it() {
    use crate::occupancy::{Lifecycle, TAKEOVER_GRACE};
    let (me, other, e1) = (node("c-0"), node("c-1"), node("e-1"));
    let now = Instant::now();
    let mut routing = routing(me.clone());
    routing.enable_lifecycle(Duration::from_secs(5));
    routing.linked(&other, &hello(Role::Control));
    let mut out = Sent::default();
    routing.interest(&e1, present("room"), now, &mut out);
    assert_eq!(routing.take_lifecycle(10).iter().map(|e| e.kind).collect::<Vec<_>>(), [Lifecycle::Occupied]);
    // While this node was cut off, the node owning the channel then told it vacated.
    let vacated = slip_proto::link_pb::Occupancy {
        channel: "room".into(),
        occupied: false,
        event_id: "c-1-x-1".into(),
        at_ms: 1,
    };
    routing.occupancy_copy(&other, vacated, now);
    routing.on_clock(now + TAKEOVER_GRACE, &mut out);
    let events: Vec<(String, Lifecycle)> = routing.take_lifecycle(10).into_iter().map(|e| (e.id, e.kind)).collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], ("c-1-x-1".to_owned(), Lifecycle::Vacated), "its word again, with its id");
    assert_eq!(events[1].1, Lifecycle::Occupied, "and occupied again: the subscriber is still here");
}

#[test]
fn a_restarted_edge_is_a_new_process_whose_predecessors_connections_are_gone() {
    use crate::closes::EDGE_LOSS_GRACE;
    use slip_proto::link_pb::ConnectionRecord;
    let (me, e1) = (node("c-0"), node("e-1"));
    let mut routing = routing(me.clone());
    let mut out = Sent::default();
    let now = Instant::now();
    let first = Hello { role: Role::Edge as i32, incarnation: 1, ..Hello::default() };
    assert!(!routing.restarted(&e1, &first), "never seen: not a restart");
    routing.linked(&e1, &first);
    routing.interest(&e1, present("room"), now, &mut out);
    routing.presence(&e1, joins("room", &["e-1.0123456789abcdef0001"]), now, &mut out);
    let record = ConnectionRecord {
        connection_id: "e-1.0123456789abcdef0001".into(),
        metadata_json: "{}".into(),
        target_url: "http://backend/".into(),
        ..Default::default()
    };
    routing.connection_record(&e1, record, now, &mut out);
    assert!(!routing.restarted(&e1, &first), "the same process linking again");
    // A new process links before the old one's link is seen to drop.
    let second = Hello { incarnation: 2, ..first };
    assert!(routing.restarted(&e1, &second));
    routing.edge_gone(&e1, now, &mut out);
    routing.linked(&e1, &second);
    assert_eq!(routing.presence_of("room", 0).map(|l| l.count), Some(0));
    routing.on_clock(now + EDGE_LOSS_GRACE, &mut out);
    assert_eq!(routing.take_closes(10).len(), 1, "its predecessor's connection gets its CLOSE");
}

#[test]
fn connection_records_go_to_their_new_holders_when_the_ring_moves_and_the_new_owner_closes_the_dead() {
    use crate::closes::EDGE_LOSS_GRACE;
    use slip_proto::link_pb::ConnectionRecord;
    let (a, b, c) = (node("c-0"), node("c-1"), node("c-2"));
    let now = Instant::now();
    let (before, after) = ([a.clone(), b.clone()], [b.clone(), c.clone()]);
    let ring = Ring::new(after.iter().cloned());
    let id = (0..)
        .map(|i| format!("e-1.{i:020x}"))
        .find(|id| ring.owner(id) == Some(&c) && Ring::new(before.iter().cloned()).owner(id) == Some(&a))
        .unwrap();
    // B holds a copy from A, the owner, of a connection of e-1's process 7.
    let mut holder = routing(b.clone());
    holder.linked(&a, &hello(Role::Control));
    holder.linked(&c, &hello(Role::Control));
    let mut out = Sent::default();
    apply(&mut holder, 2, &before, now, &mut out);
    let copy = ConnectionRecord {
        connection_id: id.clone(),
        metadata_json: "{}".into(),
        target_url: "http://backend/".into(),
        edge: "e-1".into(),
        incarnation: 7,
        ..Default::default()
    };
    holder.connection_record(&a, copy, now, &mut out);
    out.take();
    // A dies and C joins: C owns the id now, and B hands its copy over.
    apply(&mut holder, 3, &after, now, &mut out);
    let handed: Vec<(String, ConnectionRecord)> = out
        .take()
        .into_iter()
        .filter_map(|(to, kind)| match kind {
            Kind::ConnectionRecord(r) => Some((to, r)),
            _ => None,
        })
        .collect();
    assert_eq!(handed.len(), 1, "{handed:?}");
    assert_eq!((handed[0].0.as_str(), handed[0].1.incarnation), ("c-2", 7));
    // C, which never linked that edge process, sends its CLOSE after the grace.
    let mut owner = routing(c.clone());
    owner.linked(&b, &hello(Role::Control));
    apply(&mut owner, 3, &after, now, &mut out);
    owner.connection_record(&b, handed[0].1.clone(), now, &mut out);
    owner.on_clock(now + EDGE_LOSS_GRACE, &mut out);
    assert_eq!(owner.take_closes(10).into_iter().map(|r| r.connection_id).collect::<Vec<_>>(), [id]);
}

#[test]
fn the_owner_of_a_lost_edges_connection_ids_queues_their_closes() {
    use crate::closes::EDGE_LOSS_GRACE;
    use slip_proto::link_pb::ConnectionRecord;
    let (me, e1) = (node("c-0"), node("e-1"));
    let mut routing = routing(me.clone());
    let mut out = Sent::default();
    let now = Instant::now();
    routing.linked(&e1, &Hello { role: Role::Edge as i32, incarnation: 7, ..Hello::default() });
    let record = |id: &str, session: bool| ConnectionRecord {
        connection_id: id.into(),
        metadata_json: "{}".into(),
        session,
        target_url: "http://backend/".into(),
        ..Default::default()
    };
    routing.connection_record(&e1, record("e-1.0123456789abcdef0001", false), now, &mut out);
    routing.connection_record(&e1, record("e-1.0123456789abcdef0002", true), now, &mut out);
    routing.connection_record(&e1, record("e-1.0123456789abcdef0003", false), now, &mut out);
    routing.connection_record(
        &e1,
        ConnectionRecord { closed: true, ..record("e-1.0123456789abcdef0003", false) },
        now,
        &mut out,
    );
    routing.edge_gone(&e1, now, &mut out);
    routing.on_clock(now + EDGE_LOSS_GRACE, &mut out);
    let due: Vec<(String, u64)> =
        routing.take_closes(10).into_iter().map(|r| (r.connection_id, r.incarnation)).collect();
    assert_eq!(due, [("e-1.0123456789abcdef0001".to_owned(), 7)]);
    routing.on_clock(now + Duration::from_secs(120), &mut out);
    assert_eq!(routing.take_closes(10).len(), 1, "the session after its window");
    // The same edge process links again (a partition healed): it is told to
    // close both, whoever owns their ids now.
    out.take();
    routing.edge_back(&e1, &mut out);
    let closed: Vec<(String, String)> = out
        .take()
        .into_iter()
        .filter_map(|(to, kind)| match kind {
            Kind::Command(c) => Some((to, c.connection_id)),
            _ => None,
        })
        .collect();
    assert_eq!(
        closed,
        [
            ("e-1".to_owned(), "e-1.0123456789abcdef0001".to_owned()),
            ("e-1".to_owned(), "e-1.0123456789abcdef0002".to_owned())
        ]
    );
}
