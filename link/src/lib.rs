//! Links between nodes: how frames of [`slip_proto::link_pb`] travel from one
//! node to another. Knows nothing of channels or sockets.
//!
//! A [`Link`] is one direction to one peer: `send` queues a frame and never
//! waits. Frames arriving from peers are handed to the node's [`FrameHandler`],
//! one at a time per link, in the order they were sent.

#![warn(missing_docs)]

pub mod budget;
pub mod discovery;
pub mod framing;
pub mod memory;
mod peers;
pub mod questions;
pub mod quic;
pub mod tls;

pub use budget::{Budget, LINK_QUEUE_BYTES};
pub use peers::Peers;
use slip_proto::ids::NodeId;
use std::sync::Arc;

use slip_proto::link_pb::{Frame, Hello};

/// Frames a link may hold queued for its peer before `send` refuses more.
pub const LINK_QUEUE_FRAMES: usize = 65_536;

/// Why a frame could not be queued for a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// No link to that node is up (or it was never linked).
    #[error("no link to node {0}")]
    NoPeer(String),
    /// The link is closing or closed.
    #[error("link to node {0} is down")]
    Down(String),
    /// The link's queue is full: the frame is dropped, never waited for.
    #[error("link to node {0} is full ({LINK_QUEUE_FRAMES} frames or {LINK_QUEUE_BYTES} bytes queued)")]
    Full(String),
}

/// One direction of a connection to a peer node.
pub trait Link: Send + Sync {
    /// The node at the other end.
    fn peer(&self) -> &NodeId;
    /// Queues a frame for the peer without waiting.
    fn send(&self, frame: Frame) -> Result<(), LinkError>;

    /// The link's current round-trip time, where the transport measures one.
    fn rtt(&self) -> Option<std::time::Duration> {
        None
    }
}

/// Whether two handles are the same link (not merely links to the same peer).
pub(crate) fn same_link(a: &Arc<dyn Link>, b: &Arc<dyn Link>) -> bool {
    std::ptr::eq(Arc::as_ptr(a) as *const (), Arc::as_ptr(b) as *const ())
}

/// What a node does with frames from its peers. Called from the link's own
/// task: it must not block, and anything it sends goes through `Link::send`.
pub trait FrameHandler: Send + Sync + 'static {
    /// A frame from `from`, in the order that peer sent it.
    fn on_frame(&self, from: &NodeId, frame: Frame);

    /// A link to a peer is up (after both Hellos). The in-memory link of
    /// `slip dev` is wired by hand and never calls this.
    fn on_link_up(&self, _hello: &Hello, _link: Arc<dyn Link>) {}

    /// That link is down; other links to the same peer may still be up.
    fn on_link_down(&self, _peer: &NodeId, _link: &Arc<dyn Link>) {}
}
