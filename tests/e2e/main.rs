//! End-to-end tests: the real `slip` binary, a real backend, real clients,
//! everything on 127.0.0.1.

#![allow(clippy::unwrap_used)]

mod support;

mod admin_page;
mod alerts;
pub(crate) mod browser;
mod chat;
mod close;
mod cluster;
mod control_grpc;
mod control_http;
mod deploy;
mod discovery;
mod docs;
mod drain;
mod examples;
mod grip_publish;
mod grpc_discovery;
mod handshake;
mod js_client;
mod keepalive;
mod lifecycle;
mod limits;
mod metadata;
mod metrics;
mod ordering;
mod parking;
mod presence;
mod presence_walk;
mod pushpin;
mod security;
mod sessions;
mod streams;
mod takeover;
mod woh;
