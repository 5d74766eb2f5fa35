//! The edge: holds WebSocket clients, turns their events into callbacks to
//! the backend, and delivers what the backend and the control plane send.

pub mod admission;
pub mod batcher;
pub mod callback;
pub mod config;
mod connection;
pub mod cursor;
pub mod drain;
pub mod effect;
pub mod expiry;
pub mod frame;
pub mod hub;
pub mod metadata;
pub mod node;
pub mod open;
pub mod outbox;
pub mod over_http;
pub mod parking;
pub mod presence;
pub mod ratelimit;
pub mod resuming;
pub mod server;
pub mod session;

pub use config::EdgeConfig;
pub use node::{Edge, EdgeFrames};
