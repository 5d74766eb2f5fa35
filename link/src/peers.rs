//! The links a node currently has, by peer node id. A peer may have more
//! than one (two control nodes that dialed each other, or a restarted peer
//! whose old link has not timed out yet); frames go on the newest, and the
//! peer is gone only when its last link is.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use slip_proto::ids::NodeId;
use slip_proto::link_pb::Frame;

use crate::{Link, LinkError, same_link};

/// The links up now, by peer: where a node sends frames.
#[derive(Default)]
pub struct Peers {
    links: RwLock<HashMap<NodeId, Vec<Arc<dyn Link>>>>,
}

impl Peers {
    /// Adds a link; true if its peer had none before.
    pub fn insert(&self, link: Arc<dyn Link>) -> bool {
        let mut links = self.links.write();
        let entry = links.entry(link.peer().clone()).or_default();
        entry.push(link);
        entry.len() == 1
    }

    /// Removes one link; true if that was its peer's last.
    pub fn remove_link(&self, link: &Arc<dyn Link>) -> bool {
        let mut links = self.links.write();
        let peer = link.peer().clone();
        let Some(entry) = links.get_mut(&peer) else { return false };
        let before = entry.len();
        entry.retain(|l| !same_link(l, link));
        if entry.is_empty() {
            links.remove(&peer);
            return before > 0;
        }
        false
    }

    /// Forgets a peer and all its links.
    pub fn remove(&self, peer: &NodeId) -> bool {
        self.links.write().remove(peer).is_some()
    }

    /// The link frames to `peer` go on.
    pub fn get(&self, peer: &NodeId) -> Option<Arc<dyn Link>> {
        self.links.read().get(peer).and_then(|l| l.last()).cloned()
    }

    /// Whether a link to `peer` is up.
    pub fn contains(&self, peer: &NodeId) -> bool {
        self.links.read().contains_key(peer)
    }

    /// The peers linked now.
    pub fn ids(&self) -> Vec<NodeId> {
        self.links.read().keys().cloned().collect()
    }

    /// Sends a frame to the peer with this id (given as text, as ids arrive
    /// inside connection ids and frames).
    pub fn send(&self, peer: &str, frame: Frame) -> Result<(), LinkError> {
        // Looked up by &str: on the fan-out path, once per edge per publish, nothing is allocated.
        let link = self.links.read().get(peer).and_then(|l| l.last()).cloned();
        let sent = match link {
            Some(link) => link.send(frame),
            None => Err(LinkError::NoPeer(peer.to_owned())),
        };
        if sent.is_err() {
            slip_metrics::metrics().link_drops.inc();
        }
        sent
    }
}
