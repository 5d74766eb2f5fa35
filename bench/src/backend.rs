//! The minimal backend: accepts every connection and subscribes it to
//! "bench"; answers everything else with no commands. Verifies nothing, so
//! it is never the bottleneck.

use axum::body::Bytes;
use serde_json::{Value, json};

pub struct Backend {
    pub url: String,
    pub secret: String,
}

async fn callback(body: Bytes) -> String {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else { return String::new() };
    let opening = request["events"].as_array().is_some_and(|events| events.iter().any(|e| e["type"] == "OPEN"));
    if !opening {
        return String::new();
    }
    let id = &request["connectionId"];
    json!({"events": [
        {"type": "ACCEPT", "connectionId": id},
        {"type": "SUBSCRIBE", "connectionId": id, "channel": "bench"},
    ]})
    .to_string()
}

pub async fn start() -> anyhow::Result<Backend> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().fallback(axum::routing::post(callback));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Backend { url: format!("http://{addr}/"), secret: "bench-secret".into() })
}
