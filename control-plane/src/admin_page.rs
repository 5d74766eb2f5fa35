//! The admin page (`GET /admin` on the control port, docs/operations.md):
//! one HTML file embedded in the binary, no external asset, and the JSON it
//! reads with a control token. Everything it shows comes from what
//! `slip admin` and the control API ask the plane: the nodes (with each
//! edge's counters, which the page turns into rates), the top channels, and
//! one channel's owner, history tail and presence. Every answer is bounded
//! (top N, the last publications, the first members).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use slip_proto::link_pb::channel_event::Body;

use crate::http_api::HttpApi;
use crate::plane::ControlError;

/// Where the page is served.
pub const PAGE_PATH: &str = "/admin";
/// Where it reads the nodes and the top channels.
pub const OVERVIEW_PATH: &str = "/admin/api/overview";
/// Where it reads one channel.
pub const CHANNEL_PATH: &str = "/admin/api/channel";
/// Channels the overview lists when the page does not say; and at most.
pub const DEFAULT_TOP_CHANNELS: usize = 20;
pub const MAX_TOP_CHANNELS: usize = 200;
/// Publications of a channel's history tail shown, and characters of each.
pub const HISTORY_TAIL: u64 = 20;
pub const PREVIEW_CHARS: usize = 200;
/// Presence members a channel's view lists (the count is exact).
pub const PRESENCE_SHOWN: u32 = 100;

const PAGE: &str = include_str!("admin_page.html");
/// The page runs its own inline script and talks to this port only.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:";

/// The page itself: nothing in it is secret (it asks for a token).
pub async fn page() -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    response
}

fn unavailable(e: ControlError) -> Response {
    (crate::http_api::status_of(&e), axum::Json(json!({"error": e.to_string()}))).into_response()
}

#[derive(Deserialize)]
pub struct OverviewParams {
    #[serde(default)]
    limit: usize,
}

/// The nodes this control node knows, its view's term, and the channels
/// with the most subscribers.
pub async fn overview(
    State(api): State<HttpApi>,
    headers: HeaderMap,
    params: Result<Query<OverviewParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if !api.authorized(&headers) {
        return crate::http_api::invalid_token();
    }
    let limit = match params.map_or(0, |Query(p)| p.limit) {
        0 => DEFAULT_TOP_CHANNELS,
        n => n.min(MAX_TOP_CHANNELS),
    };
    let nodes: Vec<Value> = api
        .plane
        .nodes()
        .await
        .into_iter()
        .map(|n| {
            json!({"nodeId": n.node_id, "role": n.role, "region": n.region, "ringShare": n.ring_share,
                "connections": n.connections, "linked": n.linked, "rttMs": n.rtt_ms,
                "deliveries": n.deliveries, "streamGaps": n.stream_gaps, "callbackErrors": n.callback_errors,
                "parkedSessions": n.parked_sessions, "publishes": n.publishes,
                "publishesRefused": n.publishes_refused, "streamDivergences": n.stream_divergences,
                "leaseHeld": n.lease_held, "callbackLatency": n.callback_latency,
                "publishLatency": n.publish_latency, "viewTerm": n.view_term})
        })
        .collect();
    let channels: Vec<Value> = api.plane.top_channels(limit).await.into_iter().map(summary).collect();
    let ready = api.plane.readiness().err();
    axum::Json(json!({
        "node": api.plane.node_id().to_string(),
        "term": api.plane.view_term(),
        "ready": ready.is_none(),
        "notReady": ready,
        "nodes": nodes,
        "latencyBuckets": slip_metrics::LATENCY_BUCKETS,
        "channels": channels,
    }))
    .into_response()
}

fn summary(c: crate::plane::ChannelSummary) -> Value {
    json!({"channel": c.channel, "subscribers": c.subscribers, "edges": c.edges, "owner": c.owner, "replicas": c.replicas,
        "lastOffset": c.last_offset, "epoch": c.epoch, "history": c.history, "presence": c.presence})
}

#[derive(Deserialize)]
pub struct ChannelParams {
    channel: String,
}

/// One channel: its owner and stream, its history's tail, its presence.
pub async fn channel(
    State(api): State<HttpApi>,
    headers: HeaderMap,
    params: Result<Query<ChannelParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if !api.authorized(&headers) {
        return crate::http_api::invalid_token();
    }
    let Ok(Query(ChannelParams { channel })) = params else {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "expected ?channel=NAME"}))).into_response();
    };
    let info = match api.plane.get_channel(&channel).await {
        Ok(info) => info,
        Err(e) => return unavailable(e),
    };
    let since = info.last_offset.saturating_sub(HISTORY_TAIL);
    let history: Vec<Value> = match api.plane.history(&channel, "", since, HISTORY_TAIL as u32).await {
        Ok(history) => history
            .publications
            .into_iter()
            .map(|p| json!({"offset": p.offset, "preview": preview(p.event.body)}))
            .collect(),
        Err(_) => Vec::new(),
    };
    let presence = match api.plane.presence(&channel, PRESENCE_SHOWN).await {
        Ok((members, count)) => json!({"members": crate::http_reads::members_json(members), "count": count}),
        Err(_) => Value::Null,
    };
    axum::Json(json!({"channel": summary(info), "history": history, "presence": presence})).into_response()
}

/// A publication as the page shows it: its text, cut short, or its size.
fn preview(body: Option<Body>) -> String {
    match body {
        Some(Body::Text(text)) if text.chars().count() > PREVIEW_CHARS => {
            format!("{}…", text.chars().take(PREVIEW_CHARS).collect::<String>())
        }
        Some(Body::Text(text)) => text,
        Some(Body::Binary(data)) => format!("({} bytes of binary)", data.len()),
        Some(Body::CloseChannel(_) | Body::CloseSubscribers(_)) => "(its subscribers were closed)".to_owned(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_is_cut_short_on_a_character_boundary_and_binary_is_a_size() {
        assert_eq!(preview(Some(Body::Text("hi".into()))), "hi");
        let long = "é".repeat(PREVIEW_CHARS + 5);
        assert_eq!(preview(Some(Body::Text(long))).chars().count(), PREVIEW_CHARS + 1);
        assert_eq!(preview(Some(Body::Binary(vec![0; 3].into()))), "(3 bytes of binary)");
    }
}
