//! The links a node currently has, by peer node id.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use slip_proto::ids::NodeId;
use slip_proto::link_pb::Frame;

use crate::{Link, LinkError};

#[derive(Default)]
pub struct Peers {
    links: RwLock<HashMap<NodeId, Arc<dyn Link>>>,
}

impl Peers {
    pub fn insert(&self, link: Arc<dyn Link>) {
        self.links.write().insert(link.peer().clone(), link);
    }

    pub fn remove(&self, peer: &NodeId) -> Option<Arc<dyn Link>> {
        self.links.write().remove(peer)
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.links.read().keys().cloned().collect()
    }

    /// Sends a frame to the peer with this id (given as text, as ids arrive
    /// inside connection ids and frames).
    pub fn send(&self, peer: &str, frame: Frame) -> Result<(), LinkError> {
        let link = {
            let links = self.links.read();
            let id = NodeId::parse(peer).map_err(|_| LinkError::NoPeer(peer.to_owned()))?;
            links.get(&id).cloned()
        };
        match link {
            Some(link) => link.send(frame),
            None => Err(LinkError::NoPeer(peer.to_owned())),
        }
    }
}
