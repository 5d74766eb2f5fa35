//! Presence at the edge (docs/presence.md): the local members of channels'
//! presence (`presence.rs`, in the state), and what the channels' owners are
//! told of them, on each channel's lane: every change, and the whole set
//! when a channel's owner changes.

use std::sync::Arc;

use slip_proto::link_pb::{Frame, Presence, PresenceMember, frame::Kind};

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
            let member = PresenceMember { connection_id: id.to_owned(), info: info.to_string(), present: true };
            self.tell_presence(channel, vec![member], false);
        }
    }

    /// The connection left the channel's presence, if it was in it.
    pub(super) fn leave_presence(&self, id: &str, channel: &str) {
        if self.state.lock().presence.leave(id, channel) {
            self.tell_presence(channel, vec![left(id)], false);
        }
    }

    /// The connection is gone from here: it leaves every presence it was in.
    pub(crate) fn leave_all_presence(&self, id: &str) {
        let channels = self.state.lock().presence.leave_all(id);
        for channel in channels {
            self.tell_presence(&channel, vec![left(id)], false);
        }
    }

    /// Sends presence members of `channel` to its owner: changes, or the
    /// `whole` set this edge holds.
    fn tell_presence(&self, channel: &str, members: Vec<PresenceMember>, whole: bool) {
        let owner = self.ring.load().owner(channel).cloned();
        let presence = Presence { channel: channel.to_owned(), members, whole };
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
            .map(|(connection_id, info)| PresenceMember { connection_id, info: info.to_string(), present: true })
            .collect();
        self.tell_presence(channel, members, true);
    }
}

/// Connection `id`, leaving.
fn left(id: &str) -> PresenceMember {
    PresenceMember { connection_id: id.to_owned(), present: false, ..Default::default() }
}
