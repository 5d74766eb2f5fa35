//! Every wire format of SLIP Sockets, and nothing that does I/O.
//!
//! - [`pb`]: the gRPC control API (`slip.v1`), generated from `proto/slip/v1/control.proto`.
//! - [`link_pb`]: frames between nodes (`slip.link.v1`), generated from `proto/slip/link/v1/link.proto`.
//! - [`callback`]: the SLIP v4 callback body the edge POSTs to a backend.
//! - [`command`]: the SLIP v4 commands a backend sends back (callback replies, HTTP control API).
//! - [`close`]: WebSocket close codes, only ever a sendable one.
//! - [`jwt`]: the HS256 tokens both directions are signed with.
//! - [`woh`]: Pushpin's WebSocket-over-HTTP events and grip control messages, the second callback format.
//! - [`grip`]: GRIP publishes (`POST /publish/`, the `ws-message` format), as Pushpin takes them.
//! - [`ids`], [`channel`]: the rules for node ids, connection ids and channel names.
//! - [`ring`]: which control node owns a channel; every node must compute the same answer.
//! - [`session`]: `slip.v1` sessions: the session token, the envelopes, the resume frame.

#![warn(missing_docs)]

pub mod callback;
pub mod channel;
pub mod close;
pub mod command;
pub mod grip;
pub mod ids;
pub mod jwt;
pub mod limits;
pub mod ring;
pub mod route;
pub mod session;
pub mod woh;

/// The gRPC control API, package `slip.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("slip.v1");

    /// The encoded descriptors of `slip.v1`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("slip_v1_descriptor");
}

/// Frames between nodes, package `slip.link.v1`.
#[allow(clippy::all, missing_docs)]
pub mod link_pb {
    tonic::include_proto!("slip.link.v1");
}
