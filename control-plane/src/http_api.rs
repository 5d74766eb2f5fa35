//! The SLIP v4 HTTP JSON control API: `POST` on any path with
//! `{"events":[…]}`, every command of the callback table except ACCEPT, plus
//! POLL_FOR_CONNECTION. Commands run in array order; a command for a
//! connection that no longer exists is skipped (the backend cannot avoid that
//! race, and one gone client must not fail the rest of the batch).
//!
//! Any other failure (the channel's owner or the connection's edge
//! unreachable, a link queue full) stops the batch there, and the answer says
//! so: never `200` for a command that did not take effect.
//!
//! ```json
//! 503 {"message": "command failed", "index": 2, "type": "PUBLISH_TEXT", "error": "unavailable: …",
//!      "publishes": [{"channel": "room", "epoch": "…", "offset": 41}]}
//! ```
//!
//! Commands before `index` ran; it and those after it did not. Both answers
//! list where each publish that ran went in (`publishes`, in command order):
//! a backend that retries with the same `idempotencyKey` learns the offset
//! its first attempt got.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use slip_proto::command::{self, Source};
use slip_proto::route::{self, Action};

use crate::auth;
use crate::body::{MAX_HTTP_BODY_BYTES, read_body};
use crate::plane::{ControlError, ControlPlane};

#[derive(Clone)]
pub struct HttpApi {
    pub plane: Arc<ControlPlane>,
    pub auth: auth::ControlAuth,
}

impl HttpApi {
    /// Whether the request carries a control token this node takes.
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        match self.auth.check(authorization) {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(error = %e, "control request refused");
                false
            }
        }
    }
}

/// The HTTP status for a request the plane could not carry out: the
/// request's fault (400) or the cluster's just now (503, worth retrying).
pub fn status_of(e: &ControlError) -> StatusCode {
    match e {
        ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The answer to a request without a control token this node takes.
pub fn invalid_token() -> Response {
    (StatusCode::FORBIDDEN, "Invalid token").into_response()
}

/// What a browser (or anyone) sees of the control API by GET: what it is
/// and how it is called, not a bare 405.
pub async fn about() -> Response {
    let text = "This is the SLIP Sockets control API.\n\n\
        POST a SLIP v4 control request (JSON) here, with `Authorization: Bearer <token>`: \
        a token signed with the shared secret, aud=ControlEvent (the SDKs sign it).\n\
        The same port serves gRPC (slip.v1.Control, slip.v1.Admin) and GRIP publishing (POST /publish/).\n\
        `slip admin` operates a cluster through it. The protocol: docs/protocol.md in the repository.\n";
    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")], text).into_response()
}

pub async fn handle(State(api): State<HttpApi>, headers: HeaderMap, body: Body) -> Response {
    if !api.authorized(&headers) {
        return invalid_token();
    }
    // Only now is the body read.
    let body = match read_body(body, MAX_HTTP_BODY_BYTES).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let commands = match command::parse_within(&body, Source::ControlRequest, api.plane.max_message_bytes()) {
        Ok(commands) => commands,
        Err(e) => {
            tracing::debug!(error = %e, "control request rejected");
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"message": "invalid commands", "error": e.to_string()})),
            )
                .into_response();
        }
    };
    // Where each publish went in, in command order: what a backend that
    // retries with the same idempotency key needs to know it landed once.
    let mut publishes = Vec::new();
    for (index, command) in commands.into_iter().enumerate() {
        let kind = command.kind();
        let outcome = match route::action(command) {
            // Confirmed, so a SUBSCRIBE has taken effect before a PUBLISH after it runs.
            Action::Connection(command) => api.plane.connection_command(command, true).await,
            Action::Channel(publish) => {
                let channel = publish.channel.clone();
                api.plane.publish(publish).await.map(|published| {
                    // A CLOSE_CHANNEL is an order, not a publication: no offset.
                    if published.offset > 0 {
                        publishes
                            .push(json!({"channel": channel, "epoch": published.epoch, "offset": published.offset}));
                    }
                })
            }
            Action::Poll { connection_id, timeout_ms } => {
                api.plane.poll_for_connection(&connection_id, timeout_ms).await.map(|_| ())
            }
            Action::Accept => Ok(()),
        };
        match outcome {
            Ok(()) => {}
            Err(ControlError::NotFound(e)) => tracing::debug!(command = kind, error = %e, "control command skipped"),
            Err(e) => {
                tracing::warn!(command = kind, index, error = %e, "control command failed");
                let status = status_of(&e);
                let body = json!({"message": "command failed", "index": index, "type": kind, "error": e.to_string(),
                    "publishes": publishes});
                return (status, axum::Json(body)).into_response();
            }
        }
    }
    (StatusCode::OK, axum::Json(json!({"message": "processed successfully", "publishes": publishes}))).into_response()
}
