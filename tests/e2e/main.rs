//! End-to-end tests: the real `slip` binary, a real backend, real clients,
//! everything on 127.0.0.1.

mod support;

mod chat;
mod control_grpc;
mod control_http;
mod handshake;
mod limits;
mod metadata;
mod ordering;
