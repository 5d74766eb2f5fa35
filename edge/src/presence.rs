//! The members of channels' presence that this edge holds, as pure code
//! (docs/presence.md): each channel's owner is told of every change, and of
//! the whole set when the owner changes, so it can always be rebuilt from
//! the edges.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Per channel, the local connections in its presence and their info.
#[derive(Default)]
pub struct LocalPresence {
    channels: HashMap<String, BTreeMap<String, Arc<str>>>,
    by_connection: HashMap<String, HashSet<String>>,
}

impl LocalPresence {
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

    /// Connection `id` is gone: the channels whose presence it left.
    pub fn leave_all(&mut self, id: &str) -> Vec<String> {
        let channels: Vec<String> = self.by_connection.get(id).map(|c| c.iter().cloned().collect()).unwrap_or_default();
        channels.into_iter().filter(|channel| self.leave(id, channel)).collect()
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
}
