//! The SLIP v4 HTTP JSON control API: `POST` on any path with
//! `{"events":[…]}`, every command of the callback table except ACCEPT, plus
//! POLL_FOR_CONNECTION. Commands run in array order; a command for a
//! connection that no longer exists is skipped (the backend cannot avoid that
//! race, and one gone client must not fail the rest of the batch).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use slip_proto::command::{self, Source};
use slip_proto::route::{self, Action};

use crate::auth;
use crate::plane::ControlPlane;

#[derive(Clone)]
pub struct HttpApi {
    pub plane: Arc<ControlPlane>,
    pub secret: Arc<[u8]>,
}

pub async fn handle(State(api): State<HttpApi>, headers: HeaderMap, body: Bytes) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Err(e) = auth::check(&api.secret, authorization) {
        tracing::debug!(error = %e, "control request refused");
        return (StatusCode::FORBIDDEN, "Invalid token").into_response();
    }
    let commands = match command::parse(&body, Source::ControlRequest) {
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
    for command in commands {
        let kind = command.kind();
        let outcome = match route::action(command) {
            // Confirmed, so a SUBSCRIBE has taken effect before a PUBLISH after it runs.
            Action::Connection(command) => api.plane.connection_command(command, true).await,
            Action::Channel(publish) => api.plane.publish(publish).map(|_| ()),
            Action::Poll { connection_id, timeout_ms } => {
                api.plane.poll_for_connection(&connection_id, timeout_ms).await.map(|_| ())
            }
            Action::Accept => Ok(()),
        };
        if let Err(e) = outcome {
            tracing::debug!(command = kind, error = %e, "control command skipped");
        }
    }
    (StatusCode::OK, axum::Json(json!({"message": "processed successfully"}))).into_response()
}
