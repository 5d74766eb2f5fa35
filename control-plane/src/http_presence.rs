//! `GET /presence?channel=NAME&limit=N` on the control port: a channel's
//! presence for backends that speak HTTP JSON (the TypeScript library), the
//! same answer as gRPC `Presence`, with a control token.
//!
//! ```json
//! 200 {"channel":"room","members":[{"connectionId":"<id>","info":{"name":"ann"}}],"count":1}
//! ```

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http_api::HttpApi;
use crate::plane::ControlError;

/// The path it answers on.
pub const PRESENCE_PATH: &str = "/presence";

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
        let body = json!({"message": "invalid request", "error": "expected ?channel=NAME and an optional &limit=N"});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    };
    match api.plane.presence(&channel, limit).await {
        Ok((members, count)) => {
            axum::Json(json!({"channel": channel, "members": members_json(members), "count": count})).into_response()
        }
        Err(e) => {
            let status = match e {
                ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, axum::Json(json!({"message": "presence unavailable", "error": e.to_string()}))).into_response()
        }
    }
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
