//! Presence at the edge (docs/presence.md): the local members of channels'
//! presence (`presence.rs`, in the state), and what the channels' owners are
//! told of them, on each channel's lane: every change, and the whole set
//! when a channel's owner changes.

use std::sync::Arc;

use slip_proto::link_pb::{Frame, Presence, PresenceChanges, PresenceMember, SessionPresence, frame::Kind};

use super::Edge;

impl Edge {
    /// A subscription with presence info: the connection is a member of
    /// the channel's presence, and the channel's owner hears of it (on the
    /// channel's lane, behind the interest).
    pub(super) fn join_presence(&self, id: &str, channel: &str, info: &str) {
        if info.is_empty() {
            return;
        }
        let info: Arc<str> = Arc::from(info);
        if self.state.lock().presence.join(id, channel, info.clone()) {
            let session = self.hub.session(id).is_some();
            let member = PresenceMember {
                connection_id: id.to_owned(),
                info: info.to_string(),
                present: true,
                session,
                ..Default::default()
            };
            self.tell_presence(channel, vec![member], false);
        }
    }

    /// Session `id` gets `channel`'s join and leave frames (a plain
    /// connection has no place for them), beginning with the members as
    /// they stand, which it asks the channel's owner for.
    pub(super) fn watch_presence(&self, id: &str, channel: &str) {
        if self.hub.session(id).is_none() {
            return;
        }
        self.state.lock().presence.watch(id, channel);
        self.ask_members(id, channel);
    }

    /// Asks `channel`'s owner for its members as they stand, for session `id`.
    fn ask_members(&self, id: &str, channel: &str) {
        let owner = self.ring.load().owner(channel).cloned();
        let ask = Presence { channel: channel.to_owned(), snapshot_for: id.to_owned(), ..Default::default() };
        self.send_to(owner, Frame { kind: Some(Kind::Presence(ask)) });
    }

    /// Session `id`'s place in its channels' presence, as it follows the
    /// session to another edge.
    pub(super) fn presence_places(&self, id: &str) -> Vec<SessionPresence> {
        let places = self.state.lock().presence.of_connection(id);
        places
            .into_iter()
            .map(|p| SessionPresence {
                channel: p.channel,
                info: p.info.map(|i| i.to_string()).unwrap_or_default(),
                join_leave: p.watching,
            })
            .collect()
    }

    /// A session taken over from another edge takes its place in its
    /// channels' presence here: a member again, watching again (its
    /// members come once its resume is done, [`Edge::resync_presence`]).
    pub(super) fn adopt_presence(&self, id: &str, places: &[SessionPresence]) {
        for place in places {
            self.join_presence(id, &place.channel, &place.info);
            if place.join_leave {
                self.state.lock().presence.watch(id, &place.channel);
            }
        }
    }

    /// Session `id` is back (resumed): it may have missed joins and leaves
    /// while away, so each channel it watches sends its members again.
    pub(super) fn resync_presence(&self, id: &str) {
        let watched: Vec<String> = self
            .state
            .lock()
            .presence
            .of_connection(id)
            .into_iter()
            .filter(|p| p.watching)
            .map(|p| p.channel)
            .collect();
        for channel in watched {
            self.ask_members(id, &channel);
        }
    }

    /// A channel's owner tells of changes in its presence: each session
    /// here that asked gets them, as join and leave frames. Under the state
    /// lock, as Delivers are fanned out, so they keep their order with the
    /// channel's publications; under an older view than this edge knows,
    /// ignored (its sender may no longer own the channel).
    pub(super) fn presence_changes(&self, changes: PresenceChanges) {
        let state = self.state.lock();
        if changes.view < state.view_term {
            slip_metrics::metrics().stale_frames.inc();
            return;
        }
        if !changes.to.is_empty() {
            // The members as they stand, for the one session that asked.
            if state.presence.watches(&changes.to, &changes.channel) {
                let frame = crate::session::presence_snapshot(&changes.channel, &changes.members, changes.count);
                self.hub.notify(&changes.to, frame);
            }
            return;
        }
        let watchers = state.presence.watchers(&changes.channel);
        if watchers.is_empty() {
            return;
        }
        let frames: Vec<_> =
            changes.members.iter().filter_map(|m| crate::session::presence_frame(&changes.channel, m)).collect();
        for id in &watchers {
            for frame in &frames {
                self.hub.notify(id, frame.clone());
            }
        }
    }

    /// The connection left the channel's presence, if it was in it, and
    /// gets no more of its join and leave frames.
    pub(super) fn leave_presence(&self, id: &str, channel: &str) {
        let mut state = self.state.lock();
        state.presence.unwatch(id, channel);
        let was_member = state.presence.leave(id, channel);
        drop(state);
        if was_member {
            self.tell_presence(channel, vec![left(id)], false);
        }
    }

    /// The connection is gone from here: it leaves every presence it was
    /// in, or (`moving`: a session handed over to another edge) steps away
    /// from it until the other edge says it is there.
    pub(crate) fn leave_all_presence(&self, id: &str, moving: bool) {
        let channels = self.state.lock().presence.leave_all(id);
        for channel in channels {
            let member = PresenceMember { moving, ..left(id) };
            self.tell_presence(&channel, vec![member], false);
        }
    }

    /// Sends presence members of `channel` to its owner: changes, or the
    /// `whole` set this edge holds.
    fn tell_presence(&self, channel: &str, members: Vec<PresenceMember>, whole: bool) {
        let owner = self.ring.load().owner(channel).cloned();
        let presence = Presence { channel: channel.to_owned(), members, whole, ..Default::default() };
        self.send_to(owner, Frame { kind: Some(Kind::Presence(presence)) });
    }

    /// The whole set of `channel`'s members here, to its owner (nothing
    /// when there are none: most channels have no presence).
    pub(super) fn announce_presence(&self, channel: &str) {
        let members = self.state.lock().presence.members(channel);
        if members.is_empty() {
            return;
        }
        let members = members
            .into_iter()
            .map(|(connection_id, info)| PresenceMember {
                session: self.hub.session(&connection_id).is_some(),
                connection_id,
                info: info.to_string(),
                present: true,
                ..Default::default()
            })
            .collect();
        self.tell_presence(channel, members, true);
    }
}

/// Connection `id`, leaving.
fn left(id: &str) -> PresenceMember {
    PresenceMember { connection_id: id.to_owned(), present: false, ..Default::default() }
}
