//! GRIP publishing on the control port: `POST /publish/`, the endpoint
//! Pushpin serves and GRIP libraries (`gripcontrol`, `@fanoutio/grip`) call.
//! Each item goes through the same [`ControlPlane::publish`] as a gRPC or
//! SLIP publish.
//!
//! Unlike Pushpin, publishing needs a token unless auth is turned off
//! ([`GripAuth::None`]): `Authorization: Bearer <jwt>`, HS256 with the shared
//! secret and an `exp`, any `iss` (what GRIP libraries send when given
//! `control_iss` and `key`). And the reply counts receivers:
//!
//! ```json
//! {"message": "Published", "items": [{"channel": "room", "receivers": 3, "edges": 2}], "skipped": 0}
//! ```
//!
//! `receivers` is the channel's subscriber count over all edges, asked just
//! before the item is fanned out; `skipped` counts items with no `ws-message`
//! format (HTTP streaming, which this gateway does not hold).
//!
//! `id` and `prev-id` travel with the publish to the channel's owner, whose
//! sequencer holds an item that arrived before its predecessor
//! (`sequencer.rs`).

use std::sync::Arc;

use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use slip_proto::grip::{self, GripAction};
use slip_proto::jwt;
use slip_proto::link_pb::CloseConnection;
use slip_proto::link_pb::channel_event::Body;
use slip_proto::route;

use crate::body::{MAX_HTTP_BODY_BYTES, read_body};
use crate::plane::ControlPlane;

/// The path GRIP publishers post to (with or without the trailing slash).
pub const PUBLISH_PATH: &str = "/publish/";

/// Who may publish through the GRIP endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GripAuth {
    /// A Bearer JWT signed with the shared secret (the default).
    #[default]
    Jwt,
    /// Anyone who can reach the control port, as with Pushpin.
    None,
}

#[derive(Clone)]
pub struct GripApi {
    pub plane: Arc<ControlPlane>,
    pub secret: Arc<[u8]>,
    pub auth: GripAuth,
}

pub async fn publish(State(api): State<GripApi>, headers: HeaderMap, body: HttpBody) -> Response {
    if api.auth == GripAuth::Jwt {
        let token = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(jwt::bearer);
        let checked = token.ok_or(jwt::JwtError::Malformed).and_then(|t| jwt::verify_grip(t, &api.secret, jwt::now()));
        if let Err(e) = checked {
            tracing::debug!(error = %e, "GRIP publish refused");
            return (StatusCode::UNAUTHORIZED, format!("Invalid token: {e}\n")).into_response();
        }
    }
    // Only now is the body read.
    let body = match read_body(body, MAX_HTTP_BODY_BYTES).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let items = match grip::parse_within(&body, api.plane.max_message_bytes()) {
        Ok(items) => items,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("Invalid publish: {e}\n")).into_response(),
    };
    let mut published = Vec::with_capacity(items.len());
    let mut skipped = 0;
    // Counted before the fan-out, who each item goes to: every item's count at once.
    let counts = items.iter().map(|item| api.plane.get_channel(&item.channel));
    let receivers = futures_util::future::join_all(counts).await;
    for (item, receivers) in items.into_iter().zip(receivers) {
        let Some(action) = item.action else {
            skipped += 1;
            continue;
        };
        let receivers = receivers.map(|c| c.subscribers).unwrap_or(0);
        let body = match action {
            GripAction::Text(text) => Body::Text(text),
            GripAction::Binary(bytes) => Body::Binary(bytes.into()),
            GripAction::Close { code, reason } => Body::CloseSubscribers(CloseConnection {
                code: code.unwrap_or(route::DEFAULT_CLOSE_CODE).into(),
                reason: reason.unwrap_or_default(),
            }),
        };
        let mut publish = route::publish(item.channel.clone(), body);
        publish.id = item.id.unwrap_or_default();
        publish.prev_id = item.prev_id.unwrap_or_default();
        match api.plane.publish(publish).await {
            Ok(p) => published.push(json!({"channel": item.channel, "receivers": receivers, "edges": p.edges})),
            Err(e) => {
                tracing::warn!(channel = %item.channel, error = %e, "GRIP publish failed");
                let status = StatusCode::SERVICE_UNAVAILABLE;
                return (status, format!("Publish failed on channel {:?}: {e}\n", item.channel)).into_response();
            }
        }
    }
    axum::Json(json!({"message": "Published", "items": published, "skipped": skipped})).into_response()
}
