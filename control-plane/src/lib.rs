//! The control plane: the gRPC and HTTP JSON control APIs, channel ownership
//! on the ring, the channel-interest table and fan-out to edges.

pub mod admin;
pub mod admin_page;
pub mod auth;
pub mod body;
pub mod catchup;
pub mod closes;
pub mod consensus;
pub mod grip_api;
pub mod grpc;
pub mod health;
pub mod held;
pub mod homes;
pub mod http_api;
pub mod http_reads;
pub mod interest;
pub mod occupancy;
pub mod ownership;
pub mod plane;
pub mod presence;
pub mod presence_feed;
pub mod records;
pub mod replication;
pub mod routing;
pub mod sequencer;
pub mod server;
pub mod streams;
pub mod view;

pub use plane::{ControlFrames, ControlPlane};
