//! The members of channels' presence that this edge holds, as pure code
//! (docs/presence.md): each channel's owner is told of every change, and of
//! the whole set when the owner changes, so it can always be rebuilt from
//! the edges. And the local sessions that watch a channel's presence: they
//! get its join and leave frames.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// A connection's place in one channel's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub channel: String,
    /// Its info, if it is a member.
    pub info: Option<Arc<str>>,
    /// Whether it gets the channel's join and leave frames.
    pub watching: bool,
}

/// Per channel, the local connections in its presence and their info.
#[derive(Default)]
pub struct LocalPresence {
    channels: HashMap<String, BTreeMap<String, Arc<str>>>,
    by_connection: HashMap<String, HashSet<String>>,
    /// Per channel, the sessions that asked for its join and leave frames.
    watchers: HashMap<String, BTreeSet<String>>,
    watching: HashMap<String, HashSet<String>>,
}

impl LocalPresence {
    /// Its entries by structure (`slip_entries`).
    pub fn sizes(&self, out: &mut slip_metrics::Sizes) {
        out.push(("local_presence_channels", self.channels.len()));
        out.push(("local_presence_connections", self.by_connection.len()));
        out.push(("presence_watchers", self.watching.len()));
    }

    /// Connection `id` is in `channel`'s presence with `info`; false if it
    /// was already, with the same info.
    pub fn join(&mut self, id: &str, channel: &str, info: Arc<str>) -> bool {
        let members = self.channels.entry(channel.to_owned()).or_default();
        if members.get(id).is_some_and(|old| *old == info) {
            return false;
        }
        members.insert(id.to_owned(), info);
        self.by_connection.entry(id.to_owned()).or_default().insert(channel.to_owned());
        true
    }

    /// Connection `id` left `channel`'s presence; false if it was not in it.
    pub fn leave(&mut self, id: &str, channel: &str) -> bool {
        let Some(members) = self.channels.get_mut(channel) else { return false };
        if members.remove(id).is_none() {
            return false;
        }
        if members.is_empty() {
            self.channels.remove(channel);
        }
        if let Some(channels) = self.by_connection.get_mut(id) {
            channels.remove(channel);
            if channels.is_empty() {
                self.by_connection.remove(id);
            }
        }
        true
    }

    /// Connection `id` is gone: it watches nothing; the channels whose
    /// presence it left.
    pub fn leave_all(&mut self, id: &str) -> Vec<String> {
        for channel in self.watching.get(id).cloned().unwrap_or_default() {
            self.unwatch(id, &channel);
        }
        let channels: Vec<String> = self.by_connection.get(id).map(|c| c.iter().cloned().collect()).unwrap_or_default();
        channels.into_iter().filter(|channel| self.leave(id, channel)).collect()
    }

    /// Connection `id`'s place in each channel's presence: its info where
    /// it is a member, and whether it watches (a session's, to follow it
    /// to another edge).
    pub fn of_connection(&self, id: &str) -> Vec<Place> {
        let member_of = self.by_connection.get(id).into_iter().flatten();
        let watching = self.watching.get(id).into_iter().flatten();
        let channels: BTreeSet<&String> = member_of.chain(watching).collect();
        channels
            .into_iter()
            .map(|channel| Place {
                channel: channel.clone(),
                info: self.channels.get(channel).and_then(|m| m.get(id)).cloned(),
                watching: self.watches(id, channel),
            })
            .collect()
    }

    /// Session `id` gets `channel`'s join and leave frames.
    pub fn watch(&mut self, id: &str, channel: &str) {
        self.watchers.entry(channel.to_owned()).or_default().insert(id.to_owned());
        self.watching.entry(id.to_owned()).or_default().insert(channel.to_owned());
    }

    /// Session `id` no longer gets `channel`'s join and leave frames.
    pub fn unwatch(&mut self, id: &str, channel: &str) {
        if let Some(ids) = self.watchers.get_mut(channel) {
            ids.remove(id);
            if ids.is_empty() {
                self.watchers.remove(channel);
            }
        }
        if let Some(channels) = self.watching.get_mut(id) {
            channels.remove(channel);
            if channels.is_empty() {
                self.watching.remove(id);
            }
        }
    }

    /// The sessions that get `channel`'s join and leave frames.
    pub fn watchers(&self, channel: &str) -> Vec<String> {
        self.watchers.get(channel).map(|ids| ids.iter().cloned().collect()).unwrap_or_default()
    }

    /// Whether session `id` gets `channel`'s join and leave frames.
    pub fn watches(&self, id: &str, channel: &str) -> bool {
        self.watching.get(id).is_some_and(|channels| channels.contains(channel))
    }

    /// Every local member of `channel`.
    pub fn members(&self, channel: &str) -> Vec<(String, Arc<str>)> {
        self.channels
            .get(channel)
            .map(|m| m.iter().map(|(id, info)| (id.clone(), info.clone())).collect())
            .unwrap_or_default()
    }

    /// The channels with local members.
    pub fn channels(&self) -> Vec<String> {
        self.channels.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::LocalPresence;

    #[test]
    fn members_come_and_go_and_a_gone_connection_leaves_everywhere() {
        let mut presence = LocalPresence::default();
        assert!(presence.join("a", "room", Arc::from("{}")));
        assert!(!presence.join("a", "room", Arc::from("{}")), "the same again");
        assert!(presence.join("a", "room", Arc::from(r#"{"n":1}"#)), "new info");
        assert!(presence.join("a", "lobby", Arc::from("{}")));
        assert!(presence.join("b", "room", Arc::from("{}")));
        assert_eq!(presence.members("room").len(), 2);
        let mut left = presence.leave_all("a");
        left.sort();
        assert_eq!(left, ["lobby", "room"]);
        assert_eq!(presence.channels(), ["room"]);
        assert!(presence.leave("b", "room"));
        assert!(!presence.leave("b", "room"));
        assert!(presence.channels().is_empty());
    }

    #[test]
    fn watchers_come_and_go_with_their_sessions() {
        let mut presence = LocalPresence::default();
        presence.watch("a", "room");
        presence.watch("a", "lobby");
        presence.watch("b", "room");
        assert_eq!(presence.watchers("room"), ["a", "b"]);
        presence.unwatch("b", "room");
        assert_eq!(presence.watchers("room"), ["a"]);
        assert!(presence.leave_all("a").is_empty(), "a watcher need not be a member");
        assert!(presence.watchers("room").is_empty() && presence.watchers("lobby").is_empty());
        assert!(!presence.watches("a", "lobby"));
        assert!(presence.watching.is_empty() && presence.watchers.is_empty(), "nothing kept of them");
    }

    #[test]
    fn a_connections_places_name_its_memberships_and_watches() {
        let mut presence = LocalPresence::default();
        presence.join("a", "room", Arc::from("{}"));
        presence.watch("a", "room");
        presence.watch("a", "lobby");
        presence.join("a", "hall", Arc::from(r#"{"n":1}"#));
        presence.join("b", "room", Arc::from("{}"));
        let places: Vec<(String, Option<String>, bool)> = presence
            .of_connection("a")
            .into_iter()
            .map(|p| (p.channel, p.info.map(|i| i.to_string()), p.watching))
            .collect();
        assert_eq!(
            places,
            [
                ("hall".to_owned(), Some(r#"{"n":1}"#.to_owned()), false),
                ("lobby".to_owned(), None, true),
                ("room".to_owned(), Some("{}".to_owned()), true),
            ]
        );
        assert!(presence.of_connection("nobody").is_empty());
    }
}
