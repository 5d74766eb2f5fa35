//! Publishing at the channel's owner: a publish is stamped only when this
//! node may own the channel now (`ownership.rs`), held while it may soon,
//! passed to the owner the view names, or refused; once stamped it waits
//! for its copies and for the lease, then goes once to each interested
//! edge and is confirmed to whoever asked.

use std::sync::Arc;

use slip_proto::link_pb::{Deliver, Frame, Publish, frame::Kind};
use tokio::time::Instant;

use super::{MAX_PUBLISH_HOPS, Outlet, Published, Routing, confirm_publish, refuse_publish};
use crate::ownership::Turn;
use crate::replication::{MAX_WAITING_PER_CHANNEL, Waiting};
use crate::sequencer::Sequence;
use crate::streams::{self, Appended};

impl Routing {
    /// A publish for a channel this node owns in its view (else it is
    /// passed on): stamped and sent once per interested edge, or held for
    /// its GRIP predecessor, the catch-up or the lease, or refused when
    /// this node holds no lease (cut off from a majority, or paused).
    pub fn fan_out(&mut self, publish: Publish, now: Instant, out: &mut impl Outlet) -> Published {
        self.route(publish, now, now, out)
    }

    /// [`Routing::fan_out`] for a publish held since `since`.
    fn route(&mut self, mut publish: Publish, since: Instant, now: Instant, out: &mut impl Outlet) -> Published {
        let catching_up = self.catch_up.must_hold();
        match self.ownership.turn(&publish.channel, catching_up, now) {
            Turn::Stamp => {}
            Turn::Hold => {
                // Confirmed once it is out; refused if that takes too long.
                if let Some(publish) = self.held.push(publish, since) {
                    tracing::warn!("publish refused: too many held");
                    refuse_publish(publish.ack, &publish.reply_to, "too_many", out);
                }
                return Published::default();
            }
            Turn::Refuse => {
                tracing::debug!(channel = publish.channel, "publish refused: no lease");
                refuse_publish(publish.ack, &publish.reply_to, "no_lease", out);
                return Published::default();
            }
            Turn::Forward(owner) => {
                if publish.hops >= MAX_PUBLISH_HOPS {
                    tracing::debug!(
                        channel = publish.channel,
                        "publish refused: the control nodes disagree on its owner"
                    );
                    refuse_publish(publish.ack, &publish.reply_to, "hops", out);
                } else {
                    publish.hops += 1;
                    let (ack, reply_to) = (publish.ack, publish.reply_to.clone());
                    if !out.send(owner.as_str(), Frame { kind: Some(Kind::Publish(publish)) }) {
                        refuse_publish(ack, &reply_to, "owner_unreachable", out);
                    }
                }
                return Published::default();
            }
        }
        if publish.id.is_empty() && publish.prev_id.is_empty() {
            return self.stamp_and_send(publish, now, out);
        }
        // A GRIP publish is confirmed as soon as it is taken, held or not, as
        // Pushpin answers: a publisher must not wait for the predecessor it
        // may be about to send.
        let ack = std::mem::take(&mut publish.ack);
        let reply_to = std::mem::take(&mut publish.reply_to);
        let sequence = Sequence { id: publish.id.clone(), prev_id: publish.prev_id.clone() };
        let channel = publish.channel.clone();
        let ready = self.sequencer.offer(&channel, sequence, publish, now);
        // What this publish let out; held, it reports nothing sent yet.
        let published = ready.into_iter().map(|p| self.stamp_and_send(p, now, out)).last().unwrap_or_default();
        confirm_publish(ack, &reply_to, &published, out);
        published
    }

    /// What was held goes through [`Routing::fan_out`] again, in order.
    pub(super) fn retry_held(&mut self, now: Instant, out: &mut impl Outlet) {
        for (publish, since) in self.held.take() {
            // Held again, it keeps the time it was first held.
            self.route(publish, since, now, out);
        }
    }

    /// Gives a message its place in the stream (or finds it there, by its
    /// idempotency key), has it copied to the channel's replicas, and once
    /// they have it, sends it to each interested edge and confirms it to
    /// whoever asked. A closing order takes no place in the stream but waits
    /// its turn behind what was published before it.
    pub(super) fn stamp_and_send(&mut self, publish: Publish, now: Instant, out: &mut impl Outlet) -> Published {
        let Publish { channel, event, ack, reply_to, idempotency_key, .. } = publish;
        if self.replication.waiting(&channel) >= MAX_WAITING_PER_CHANNEL {
            // Not confirmed: the publisher hears UNAVAILABLE and may retry with its key.
            tracing::warn!(channel, "publish refused: too many waiting for their replicas");
            refuse_publish(ack, &reply_to, "too_many", out);
            return Published::default();
        }
        let event = event.unwrap_or_default();
        let (epoch, offset) = if streams::is_message(&event) {
            match self.streams.append(&channel, &event, &idempotency_key, now) {
                Appended::New { epoch, offset } => (epoch, offset),
                Appended::Duplicate { epoch, offset } => {
                    // In the stream already: confirmed once it is out, or now.
                    if !self.replication.also_confirm(&channel, offset, ack, &reply_to) {
                        let published = Published { offset, epoch: epoch.to_string(), edges: 0 };
                        confirm_publish(ack, &reply_to, &published, out);
                    }
                    return Published { offset, epoch: epoch.to_string(), edges: 0 };
                }
            }
        } else {
            (Arc::from(""), 0)
        };
        self.report_bytes();
        tracing::trace!(channel, offset, view = self.term(), "stamped");
        let deliver = Deliver {
            channel: channel.clone(),
            offset,
            event: Some(event),
            ack: 0,
            epoch: epoch.to_string(),
            view: self.term(),
        };
        let confirm = if ack != 0 { vec![(ack, reply_to)] } else { Vec::new() };
        self.replication.push(deliver, idempotency_key, confirm, now);
        self.replicate(&channel, now, out);
        // Out at once when nothing needs copying; else once the copies are in.
        let edges = self.release(&channel, now, out);
        Published { offset, epoch: epoch.to_string(), edges }
    }

    /// Delivers and confirms, in order, what every replica of `channel` has
    /// stored, while this node owns the channel and holds its lease: a node
    /// that lost its lease confirms nothing, whatever its copies say.
    /// Nor while it catches up: what waits may have been given under an
    /// older view this node lost its lease in, at offsets a newer owner has
    /// confirmed since; the copy it is taking decides (`import_copy`).
    pub(super) fn release(&mut self, channel: &str, now: Instant, out: &mut impl Outlet) -> u32 {
        if !self.ownership.owns(channel) || !self.ownership.leased(now) || self.acquiring(channel) {
            return 0;
        }
        let replicas = self.replica_set(channel);
        let mut sent = 0;
        for waiting in self.replication.release(channel, &replicas) {
            sent = self.deliver(waiting, now, out);
        }
        sent
    }

    /// Sends a publication once to each interested edge and confirms it to
    /// whoever waits; returns how many edges it went to.
    fn deliver(&mut self, waiting: Waiting, now: Instant, out: &mut impl Outlet) -> u32 {
        let Waiting { mut deliver, confirm, .. } = waiting;
        // Under the view it goes out in: an edge that saw a newer one ignores it.
        deliver.view = self.term();
        // Presence changes seen before this publication go out before it.
        let changes = self.presence_feed.take(&deliver.channel);
        if !changes.is_empty() {
            self.tell_presence(deliver.channel.clone(), changes, now, out);
        }
        let edges = self.interest.edges(&deliver.channel).to_vec();
        slip_metrics::metrics().publishes.inc();
        let mut confirm = confirm.into_iter().peekable();
        let mut sent = 0;
        for edge in &edges {
            let mut deliver = deliver.clone();
            // The edge that asked hears it on the Deliver itself, behind the message.
            if let Some((ack, _)) = confirm.next_if(|(_, node)| node == edge.as_str()) {
                deliver.ack = ack;
            }
            if out.send(edge.as_str(), Frame { kind: Some(Kind::Deliver(deliver)) }) {
                sent += 1;
            } else {
                tracing::warn!(edge = %edge, "delivery to edge dropped");
            }
        }
        let published = Published { offset: deliver.offset, epoch: deliver.epoch, edges: sent };
        for (ack, node) in confirm {
            confirm_publish(ack, &node, &published, out);
        }
        sent
    }
}
