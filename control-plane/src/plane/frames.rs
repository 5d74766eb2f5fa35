//! What a control node does with the frames its links bring.

use super::ControlPlane;
use super::Links;
use crate::catchup::COPY_PAGE_BYTES;
use crate::records::Reporter;
use crate::routing::copies::Answer;
use slip_link::FrameHandler;
use slip_link::Link;
use slip_proto::channel;
use slip_proto::ids::ConnectionId;
use slip_proto::ids::NodeId;
use slip_proto::link_pb::Frame;
use slip_proto::link_pb::Hello;
use slip_proto::link_pb::HistoryAnswer;
use slip_proto::link_pb::HistoryQuery;
use slip_proto::link_pb::Query;
use slip_proto::link_pb::Reply;
use slip_proto::link_pb::frame::Kind;
use slip_proto::link_pb::query;
use slip_proto::link_pb::reply;
use slip_proto::link_pb::{Head, HeadsAnswer, PresenceAnswer, SessionMoved};
use std::sync::Arc;
use tokio::time::Instant;

/// Frames from edges and other control nodes.
pub struct ControlFrames(pub Arc<ControlPlane>);

impl FrameHandler for ControlFrames {
    fn on_frame(&self, from: &NodeId, frame: Frame) {
        let plane = &self.0;
        match frame.kind {
            Some(Kind::Interest(interest)) => {
                if channel::validate(&interest.channel).is_err() {
                    return;
                }
                let mut routing = plane.routing.lock();
                plane
                    .timed(&mut routing, |routing| routing.interest(from, interest, Instant::now(), &mut Links(plane)));
            }
            Some(Kind::Presence(presence)) => {
                // An edge speaks for the members it holds.
                let mut routing = plane.routing.lock();
                if !routing.is_control(from) && channel::validate(&presence.channel).is_ok() {
                    let now = Instant::now();
                    plane.timed(&mut routing, |routing| routing.presence(from, presence, now, &mut Links(plane)));
                }
            }
            Some(Kind::Query(Query { id, kind: Some(query::Kind::Presence(question)) })) => {
                // Another control node asks the owner for a channel's presence.
                let answer = match plane.routing.lock().presence_of(&question.channel, question.limit as usize) {
                    Some(listing) => {
                        PresenceAnswer { count: listing.count, members: listing.link_members(), not_owner: false }
                    }
                    None => PresenceAnswer { not_owner: true, ..Default::default() },
                };
                let reply = Reply { id, kind: Some(reply::Kind::Presence(answer)) };
                let _ = plane.peers.send(from.as_str(), Frame { kind: Some(Kind::Reply(reply)) });
            }
            Some(Kind::Publish(publish)) => {
                let routing = plane.routing.lock();
                if routing.is_control(from) {
                    plane.forwarded(routing, publish);
                    return;
                }
                drop(routing);
                plane.route(publish);
            }
            Some(Kind::Query(Query { id, kind: Some(query::Kind::Channel(channel)) })) => {
                // Another control node asks the owner about a channel.
                let (asker, from) = (plane.clone(), from.clone());
                let stop = plane.shutdown.clone();
                plane.tasks.spawn(stop.run_until_cancelled_owned(async move {
                    let plane = asker;
                    let Ok(summary) = plane.owned_channel(&channel).await else { return };
                    let reply = Reply { id, kind: Some(reply::Kind::Channel(summary.into())) };
                    let _ = plane.peers.send(from.as_str(), Frame { kind: Some(Kind::Reply(reply)) });
                }));
            }
            Some(Kind::Query(Query { id, kind: Some(query::Kind::History(question)) })) => {
                // An edge or another control node asks the owner for history;
                // an owner still taking the stream's copy answers once it has it.
                if plane.routing.lock().acquiring(&question.channel) {
                    let (plane, from) = (plane.clone(), from.clone());
                    let stop = plane.shutdown.clone();
                    plane.tasks.clone().spawn(stop.run_until_cancelled_owned(async move {
                        plane.until_caught_up(&question.channel).await;
                        plane.answer_history(&from, id, &question);
                    }));
                    return;
                }
                plane.answer_history(from, id, &question);
            }
            Some(Kind::Query(Query { id, kind: Some(query::Kind::Heads(question)) })) => {
                // Another control node catching up: what it holds here too.
                let routing = plane.routing.lock();
                if !routing.is_control(from) {
                    return;
                }
                let (same_view, heads, more) = routing.heads_for(from, &question.members, &question.after);
                drop(routing);
                let answer = HeadsAnswer { same_view, heads: heads.into_iter().map(Head::from).collect(), more };
                let reply = Reply { id, kind: Some(reply::Kind::Heads(answer)) };
                let _ = plane.peers.send(from.as_str(), Frame { kind: Some(Kind::Reply(reply)) });
            }
            Some(Kind::Query(Query { id, kind: Some(query::Kind::Copy(question)) })) => {
                // Another control node catching up: a page of a stream's copy.
                let routing = plane.routing.lock();
                if !routing.is_control(from) {
                    return;
                }
                let page = routing.copy_for(&question.channel, question.after, COPY_PAGE_BYTES, Instant::now());
                drop(routing);
                let reply = Reply { id, kind: Some(reply::Kind::Copy(page.map(Into::into).unwrap_or_default())) };
                let _ = plane.peers.send(from.as_str(), Frame { kind: Some(Kind::Reply(reply)) });
            }
            Some(Kind::Command(command)) => {
                // An edge addressing a connection on another edge: pass it on.
                if let Ok(id) = ConnectionId::parse(&command.connection_id) {
                    let home = plane.homes.of(&id);
                    if home == from.as_str() {
                        // The edge that asked does not hold it (any more): nowhere to go.
                        return;
                    }
                    let frame = Frame { kind: Some(Kind::Command(command)) };
                    if let Err(e) = plane.peers.send(&home, frame) {
                        tracing::debug!(error = %e, "command for a connection dropped");
                    }
                }
            }
            Some(Kind::Reply(reply)) => {
                plane.questions.resolve(reply);
            }
            Some(Kind::SessionMoved(moved)) => {
                // An edge speaks for itself only: a session moved to it, or ended there.
                if !plane.is_control(from) && (moved.edge.is_empty() || moved.edge == from.as_str()) {
                    plane.homes.moved(&moved.connection_id, &moved.edge);
                }
            }
            Some(Kind::SessionRecord(record)) => {
                if !plane.is_control(from) && ConnectionId::parse(&record.connection_id).is_ok() {
                    let incarnation = plane.incarnation(from.as_str()).unwrap_or_default();
                    let id = record.connection_id.clone();
                    if let Some(holder) = plane.records.update(Reporter { edge: from.as_str(), incarnation }, record) {
                        // A copy the session left (a partition hid the taking
                        // over from its edge): it goes, quietly.
                        let moved = SessionMoved { connection_id: id, edge: holder };
                        let _ = plane.peers.send(from.as_str(), Frame { kind: Some(Kind::SessionMoved(moved)) });
                    }
                }
            }
            Some(Kind::Query(Query { id, kind: Some(query::Kind::TakeSession(take)) })) => {
                // An edge resuming a session it does not hold.
                if plane.is_control(from) || ConnectionId::parse(&take.connection_id).is_err() {
                    return;
                }
                let (plane, from) = (plane.clone(), from.clone());
                let stop = plane.shutdown.clone();
                plane.tasks.clone().spawn(stop.run_until_cancelled_owned(async move {
                    let answer = plane.take_session(&from, take).await;
                    let reply = Reply { id, kind: Some(reply::Kind::SessionHandover(answer)) };
                    let _ = plane.peers.send(from.as_str(), Frame { kind: Some(Kind::Reply(reply)) });
                }));
            }
            Some(Kind::Replicate(copy)) => {
                let mut routing = plane.routing.lock();
                // Only a control node may write a stream's history.
                if routing.is_control(from) && channel::validate(&copy.channel).is_ok() {
                    let channel = copy.channel.clone();
                    let behind =
                        plane.timed(&mut routing, |r| r.store_replica(from, copy, Instant::now(), &mut Links(plane)));
                    drop(routing);
                    if let Some(after) = behind {
                        plane.fill_copy(from, channel, after);
                    }
                }
            }
            Some(Kind::Replicated(stored)) => {
                let mut routing = plane.routing.lock();
                if routing.is_control(from) {
                    plane.timed(&mut routing, |r| r.replicated(from, stored, Instant::now(), &mut Links(plane)));
                }
            }
            Some(Kind::ConnectionRecord(record)) => {
                if ConnectionId::parse(&record.connection_id).is_ok() {
                    let mut routing = plane.routing.lock();
                    plane.timed(&mut routing, |routing| {
                        routing.connection_record(from, record, Instant::now(), &mut Links(plane))
                    });
                }
            }
            Some(Kind::Query(Query { id, kind: Some(query::Kind::Stats(_)) })) => {
                // Another control node, for `slip admin nodes` and the admin page.
                let reply = Reply { id, kind: Some(reply::Kind::ControlStats(plane.control_stats())) };
                let _ = plane.peers.send(from.as_str(), Frame { kind: Some(Kind::Reply(reply)) });
            }
            Some(Kind::Query(Query { id, kind: Some(query::Kind::ChannelStreams(asked)) })) => {
                // Another control node, for the admin page's top channels.
                let counts = plane.owned_streams(asked.channels);
                let reply = Reply { id, kind: Some(reply::Kind::ChannelCounts(counts)) };
                let _ = plane.peers.send(from.as_str(), Frame { kind: Some(Kind::Reply(reply)) });
            }
            Some(Kind::Query(Query { id, kind: Some(query::Kind::EdgeLinked(edge)) })) => {
                // Another control node, before it sends the CLOSEs of an edge it lost.
                let found = plane.incarnation(&edge.edge) == Some(edge.incarnation);
                let reply = Reply { id, kind: Some(reply::Kind::Found(found)) };
                let _ = plane.peers.send(from.as_str(), Frame { kind: Some(Kind::Reply(reply)) });
            }
            Some(Kind::Occupancy(copy)) => {
                if channel::validate(&copy.channel).is_ok() {
                    plane.routing.lock().occupancy_copy(from, copy, Instant::now());
                }
            }
            Some(Kind::Consensus(consensus)) => {
                // Only control nodes take part.
                if plane.is_control(from) {
                    plane.consensus_frame(from, consensus);
                }
            }
            Some(
                Kind::Hello(_)
                | Kind::Deliver(_)
                | Kind::Query(_)
                | Kind::Members(_)
                | Kind::Drain(_)
                | Kind::Head(_)
                | Kind::PresenceChanges(_)
                | Kind::View(_),
            )
            | None => {
                tracing::debug!(from = %from, "unexpected frame on a control node ignored");
            }
        }
    }

    fn on_link_up(&self, hello: &Hello, link: Arc<dyn Link>) {
        self.0.link_up(hello, link);
    }

    fn on_link_down(&self, peer: &NodeId, link: &Arc<dyn Link>) {
        self.0.link_down(peer, link);
    }
}

impl ControlPlane {
    /// Answers a history question from `from` with what this node holds,
    /// as the channel's owner holding its lease; else "not the owner".
    fn answer_history(&self, from: &NodeId, id: u64, question: &HistoryQuery) {
        let (answer, view) = {
            let routing = self.routing.lock();
            let answer = routing.history(
                &question.channel,
                &question.since_epoch,
                question.since_offset,
                question.limit as usize,
                Instant::now(),
            );
            (answer, routing.term())
        };
        let answer = match answer {
            Answer::History(history) => history.into_answer(view),
            Answer::NotOwner => HistoryAnswer { view, not_owner: true, ..Default::default() },
        };
        let reply = Reply { id, kind: Some(reply::Kind::History(answer)) };
        let _ = self.peers.send(from.as_str(), Frame { kind: Some(Kind::Reply(reply)) });
    }
}
