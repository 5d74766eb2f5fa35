//! The chat of the original SLIP Sockets README, as a Rust backend with the
//! `slip-sockets` SDK and axum.
//!
//!     cargo run --example chat            # listens on 127.0.0.1:3000
//!     slip dev --target-url http://127.0.0.1:3000/ws     # with the same SLIP_JWT_SECRET
//!
//! Environment: `SLIP_JWT_SECRET` (required: the gateway's, `slip gen-secret` makes one), `SLIP_CONTROL_URL`
//! (default `http://127.0.0.1:7070`), `PORT` (default 3000).

use axum::Router;
use axum::routing::post;
use slip_sockets::{Callback, InEvent, Publisher};

/// The callback handler: every socket event of every client comes here.
async fn events(Callback(mut connection): Callback) -> String {
    for event in connection.in_events.clone() {
        match event {
            InEvent::Open { .. } => {
                connection.accept();
                connection.subscribe("cool-channel");
                connection.publish_text("cool-channel", "New connection has joined!");
                connection.send_text("Welcome to the cool channel, be nice or get out");
            }
            InEvent::Close { .. } => {
                connection.publish_text("cool-channel", "A Connection has left");
            }
            InEvent::Text { data, .. } if data == "quit" => {
                connection.close();
            }
            InEvent::Text { connection_id, data } => {
                connection.publish_text("cool-channel", format!("{connection_id} says {data}"));
            }
            // Only sent to backends that opt in to binary messages.
            InEvent::Binary { .. } => {}
        }
    }
    connection.end_response()
}

/// The backend as an axum app (the end-to-end tests run this too).
pub fn app(publisher: Publisher) -> Router {
    Router::new().route("/ws", post(events)).with_state(publisher)
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("SLIP_JWT_SECRET")
        .map_err(|_| "set SLIP_JWT_SECRET to the gateway's secret (`slip gen-secret` makes one)")?;
    let control = std::env::var("SLIP_CONTROL_URL").unwrap_or_else(|_| "http://127.0.0.1:7070".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("chat backend on http://{}/ws", listener.local_addr()?);
    axum::serve(listener, app(Publisher::new(control, secret))).await?;
    Ok(())
}
