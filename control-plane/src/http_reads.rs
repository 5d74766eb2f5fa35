//! The reads of the control port for backends that speak HTTP JSON (the
//! TypeScript and Python libraries), each the same answer as its gRPC call,
//! with a control token:
//!
//! ```json
//! GET /presence?channel=room&limit=100
//! 200 {"channel":"room","members":[{"connectionId":"<id>","info":{"name":"ann"}}],"count":1}
//!
//! GET /history?channel=room&sinceEpoch=<epoch>&sinceOffset=41&limit=100
//! 200 {"channel":"room","epoch":"<epoch>","topOffset":43,"complete":true,
//!      "publications":[{"offset":42,"text":"hi"},{"offset":43,"binary":"<base64>"}]}
//! ```
//!
//! A bad query is `400`, a missing token `403`, an owner that cannot answer
//! now `503`, each with `{"message", "error"}`.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};
use slip_proto::link_pb::channel_event;

use crate::http_api::HttpApi;
use crate::plane::ControlError;

/// Where presence is read.
pub const PRESENCE_PATH: &str = "/presence";
/// Where history is read.
pub const HISTORY_PATH: &str = "/history";

#[derive(Deserialize)]
pub struct PresenceParams {
    channel: String,
    #[serde(default)]
    limit: u32,
}

pub async fn presence(
    State(api): State<HttpApi>,
    headers: HeaderMap,
    params: Result<Query<PresenceParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if !api.authorized(&headers) {
        return crate::http_api::invalid_token();
    }
    let Ok(Query(PresenceParams { channel, limit })) = params else {
        return bad_query("?channel=NAME and an optional &limit=N");
    };
    match api.plane.presence(&channel, limit).await {
        Ok((members, count)) => {
            axum::Json(json!({"channel": channel, "members": members_json(members), "count": count})).into_response()
        }
        Err(e) => unavailable("presence unavailable", e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryParams {
    channel: String,
    #[serde(default)]
    since_epoch: String,
    #[serde(default)]
    since_offset: u64,
    #[serde(default)]
    limit: u32,
}

pub async fn history(
    State(api): State<HttpApi>,
    headers: HeaderMap,
    params: Result<Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if !api.authorized(&headers) {
        return crate::http_api::invalid_token();
    }
    let Ok(Query(HistoryParams { channel, since_epoch, since_offset, limit })) = params else {
        return bad_query("?channel=NAME and optional &sinceEpoch=E&sinceOffset=N&limit=N");
    };
    match api.plane.history(&channel, &since_epoch, since_offset, limit).await {
        Ok(history) => {
            let publications: Vec<Value> = history
                .publications
                .into_iter()
                .filter_map(|p| match p.event.body? {
                    channel_event::Body::Text(t) => Some(json!({"offset": p.offset, "text": t})),
                    channel_event::Body::Binary(b) => Some(json!({"offset": p.offset, "binary": BASE64.encode(b)})),
                    _ => None,
                })
                .collect();
            axum::Json(json!({"channel": channel, "epoch": history.epoch.to_string(), "topOffset": history.top_offset,
                "complete": history.complete, "publications": publications}))
            .into_response()
        }
        Err(e) => unavailable("history unavailable", e),
    }
}

fn unavailable(message: &str, e: ControlError) -> Response {
    (crate::http_api::status_of(&e), axum::Json(json!({"message": message, "error": e.to_string()}))).into_response()
}

/// The answer to a query string that is not what the read takes.
fn bad_query(expected: &str) -> Response {
    let body = json!({"message": "invalid request", "error": format!("expected {expected}")});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// Members as the JSON API gives them: `{"connectionId", "info"}`, the info as JSON.
pub fn members_json(members: Vec<(String, String)>) -> Vec<Value> {
    members
        .into_iter()
        .map(|(id, info)| {
            let info: Value = serde_json::from_str(&info).unwrap_or(Value::Null);
            json!({"connectionId": id, "info": info})
        })
        .collect()
}
