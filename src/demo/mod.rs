//! The demo `slip dev` runs when no backend is given: a chat backend written
//! with the SDK, inside the process, and a page to open in a browser.
//!
//! Lines to the page are publications, JSON: `{"kind":"message","name":…,"text":…}`.
//! Who is online is the channel's presence: each page is a member with its
//! name as info, and its client gets the members and their joins and leaves
//! from the gateway (the backend keeps no list).

use std::net::SocketAddr;

use axum::Router;
use axum::routing::post;
use serde_json::{Value, json};
use slip_sockets::{Callback, InEvent, Publisher, Subscription};
use tokio_util::sync::CancellationToken;

/// The page served at `/` of the WebSocket listener, before the client library goes in.
const PAGE: &str = include_str!("page.html");
/// `@slip-sockets/client` as one ES module: `js/client`'s `npm run build`
/// writes it to `js/client/dist/slip-client.js`, and a copy lives here so
/// `cargo run` needs no npm (`tests/e2e/js_client.rs` checks the two agree).
pub const CLIENT: &str = include_str!("slip-client.js");

/// The demo page, with the client library inlined in its module script.
pub fn page() -> String {
    PAGE.replace("/*SLIP_CLIENT*/", CLIENT)
}
/// The one channel of the demo.
const ROOM: &str = "chat";
/// Longest display name kept.
const MAX_NAME_CHARS: usize = 32;
/// Longest chat message relayed.
const MAX_TEXT_CHARS: usize = 2000;

/// Starts the chat backend on loopback, until `stop`; returns its callback URL.
pub async fn start(secret: &str, control_api: &str, stop: CancellationToken) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let app = Router::new().route("/events", post(events)).with_state(Publisher::new(control_api, secret));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
            tracing::error!(error = %e, "demo backend stopped");
        }
    });
    Ok(format!("http://{addr}/events"))
}

fn name_from_query(metadata: &Value) -> String {
    let query = metadata["query"].as_str().unwrap_or("");
    let name = form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "name")
        .map(|(_, value)| value.trim().chars().filter(|c| !c.is_control()).take(MAX_NAME_CHARS).collect::<String>())
        .unwrap_or_default();
    if name.is_empty() { format!("guest-{:04x}", rand::random::<u16>()) } else { name }
}

async fn events(Callback(mut connection): Callback) -> String {
    // The name is chosen at OPEN and kept in the connection's metadata.
    let mut name = connection.metadata["name"].as_str().map(str::to_owned);
    for event in connection.in_events.clone() {
        match event {
            InEvent::Open { .. } => {
                let chosen = name_from_query(&connection.metadata);
                connection.accept();
                let member = Subscription::default().presence(json!({ "name": chosen })).join_leave();
                connection.subscribe_with(ROOM, member);
                connection.set_metadata(json!({ "name": chosen }));
                name = Some(chosen);
            }
            InEvent::Text { data, .. } => {
                let text: String = data.chars().take(MAX_TEXT_CHARS).collect();
                let who = name.clone().unwrap_or_default();
                connection.publish_text(ROOM, json!({"kind": "message", "name": who, "text": text}).to_string());
            }
            // Leaving the room is the gateway's to tell: the presence member goes with the connection.
            InEvent::Binary { .. } | InEvent::Close { .. } => {}
        }
    }
    connection.end_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_query_and_are_tidied() {
        assert_eq!(name_from_query(&json!({"query": "name=Ann%20Lee&x=1"})), "Ann Lee");
        assert_eq!(name_from_query(&json!({"query": format!("name={}", "x".repeat(100))})).len(), MAX_NAME_CHARS);
        assert!(name_from_query(&json!({"query": ""})).starts_with("guest-"));
        assert!(name_from_query(&json!(null)).starts_with("guest-"));
    }
}
