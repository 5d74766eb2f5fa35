//! What runs against the cluster while faults happen: a backend that
//! subscribes each client to the channel its path names, one publisher per
//! channel (numbered messages, each with its own idempotency key, through
//! the SDK over every control node), and on every edge, for every channel,
//! a plain WebSocket subscriber and a `slip.v1` session that resumes when
//! it is dropped, each a presence member of its channel. Everything they saw
//! is logged for `checker.rs`, everything the backend heard (OPENs, CLOSEs,
//! lifecycle events) for `ledger.rs`.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

use super::checker::{Acked, ChannelLog, Seen, SubscriberLog};
use super::ledger::{Accepted, Closed, Ledger, LifecycleEvent};
use super::nodes::{EVENTS_PATH, SECRET, WS_PORT};

/// Time between one publisher's publishes (once the previous is answered).
pub const PUBLISH_EVERY: Duration = Duration::from_millis(25);
/// How long a session client waits before coming back after a drop.
const RECONNECT_WAIT: Duration = Duration::from_millis(200);
/// Longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The backend the edges call: OPEN → ACCEPT and SUBSCRIBE to the path's
/// channel, a presence member with the `who` of its query; OPENs, CLOSEs
/// and lifecycle events go into `ledger`.
pub async fn backend(here: Ipv4Addr, ledger: Arc<Mutex<Ledger>>) -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind((here, 0)).await?;
    let port = listener.local_addr()?.port();
    let events = ledger.clone();
    let app = axum::Router::new()
        .route(EVENTS_PATH, axum::routing::post(move |body: Bytes| async move { lifecycle(&events, &body) }))
        .fallback(axum::routing::post(move |body: Bytes| async move { reply(&ledger, &body) }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(port)
}

fn reply(ledger: &Mutex<Ledger>, body: &[u8]) -> axum::Json<Value> {
    let Ok(request) = serde_json::from_slice::<Value>(body) else { return axum::Json(json!({"events": []})) };
    let id = request["connectionId"].clone();
    let channel = request["metadata"]["path"].as_str().unwrap_or("/").trim_start_matches('/').to_owned();
    let query = request["metadata"]["query"].as_str().unwrap_or("");
    let tag = query.split('&').find_map(|p| p.strip_prefix("who=")).unwrap_or("").to_owned();
    let mut events = Vec::new();
    for event in request["events"].as_array().into_iter().flatten() {
        match event["type"].as_str() {
            Some("OPEN") => {
                if let Some(id) = id.as_str() {
                    let accepted = Accepted { tag: tag.clone() };
                    ledger.lock().accepted.insert(id.to_owned(), accepted);
                }
                events.push(json!({"type": "ACCEPT", "connectionId": id}));
                events.push(json!({"type": "SUBSCRIBE", "connectionId": id, "channel": channel,
                    "presence": {"who": tag}}));
            }
            Some("CLOSE") => {
                let connection_id = event["connectionId"].as_str().or(id.as_str()).unwrap_or("").to_owned();
                let event_id = event["eventId"].as_str().map(str::to_owned);
                ledger.lock().closes.push(Closed { connection_id, event_id, at: Instant::now() });
            }
            _ => {}
        }
    }
    axum::Json(json!({"events": events}))
}

fn lifecycle(ledger: &Mutex<Ledger>, body: &[u8]) -> axum::http::StatusCode {
    let Ok(batch) = serde_json::from_slice::<Value>(body) else { return axum::http::StatusCode::BAD_REQUEST };
    let mut ledger = ledger.lock();
    for event in batch["events"].as_array().into_iter().flatten() {
        let text = |key: &str| event[key].as_str().unwrap_or("").to_owned();
        ledger.lifecycle.push(LifecycleEvent {
            id: text("id"),
            kind: text("type"),
            channel: text("channel"),
            at: event["at"].as_u64().unwrap_or(0),
        });
    }
    axum::http::StatusCode::OK
}

/// The text of message `seq` of `channel`.
fn message(channel: &str, seq: u64) -> String {
    format!("{channel}:{seq}")
}

/// The number of a message of `channel`, from its text.
fn seq_of(channel: &str, text: &str) -> Option<u64> {
    text.strip_prefix(channel)?.strip_prefix(':')?.parse().ok()
}

/// Publishes numbered messages to `channel` until `stop`; every answer logged.
pub async fn publisher(urls: Vec<String>, channel: String, log: Arc<Mutex<ChannelLog>>, stop: CancellationToken) {
    let Ok(sdk) = slip_sockets::GrpcControl::connect_any(&urls, SECRET.as_bytes()) else { return };
    let mut seq = 0;
    while !stop.is_cancelled() {
        seq += 1;
        let text = message(&channel, seq);
        let published = sdk.publish(channel.clone(), slip_sockets::Payload::Text(text.clone()), Some(text)).await;
        let at = Instant::now();
        {
            let mut log = log.lock();
            match published {
                Ok(p) => log.acked.push(Acked { seq, epoch: p.epoch, offset: p.offset, at }),
                Err(_) => log.unacked.push((seq, at)),
            }
        }
        tokio::time::sleep(PUBLISH_EVERY).await;
    }
}

/// A plain subscriber of `channel` on `edge`: it logs what it gets until
/// its connection ends (then it is broken: its edge went away).
pub async fn plain(edge: Ipv4Addr, channel: String, log: Arc<Mutex<SubscriberLog>>, stop: CancellationToken) {
    let url = format!("ws://{edge}:{WS_PORT}/{channel}?who={}", log.lock().tag);
    let Ok(Ok((mut ws, _))) = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(&url)).await
    else {
        log.lock().broken = true;
        return;
    };
    loop {
        let frame = tokio::select! {
            frame = ws.next() => frame,
            () = stop.cancelled() => return close(ws).await,
        };
        match frame {
            Some(Ok(Message::Text(text))) => {
                if let Some(seq) = seq_of(&channel, &text) {
                    log.lock().received.push(Seen { seq, place: None });
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                log.lock().broken = true;
                return;
            }
        }
    }
}

/// A `slip.v1` session subscribed to `channel`, first on `edges[first]`:
/// dropped, it comes back with its token and its place, to the same edge
/// or (that one unreachable) another, and logs what it is told was lost.
pub async fn session(
    edges: Vec<Ipv4Addr>,
    first: usize,
    channel: String,
    log: Arc<Mutex<SubscriberLog>>,
    stop: CancellationToken,
) {
    let mut token: Option<String> = None;
    let mut place: Option<(String, u64)> = None;
    let mut edge = first;
    let mut attempts = 0usize;
    while !stop.is_cancelled() {
        let mut url = format!("ws://{}:{WS_PORT}/{channel}?who={}", edges[edge], log.lock().tag);
        if let Some(token) = &token {
            url.push_str(&format!("&slip_resume={token}"));
        }
        let Ok(mut request) = url.into_client_request() else { return };
        if let Ok(value) = "slip.v1".parse() {
            request.headers_mut().insert("sec-websocket-protocol", value);
        }
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request)).await;
        let Ok(Ok((mut ws, _))) = connected else {
            // Its edge is away: another one, after a moment.
            attempts += 1;
            edge = (first + attempts) % edges.len();
            tokio::time::sleep(RECONNECT_WAIT).await;
            continue;
        };
        if token.is_some() {
            let mut places = serde_json::Map::new();
            if let Some((epoch, offset)) = &place {
                places.insert(channel.clone(), json!({"epoch": epoch, "offset": offset}));
            }
            let resume = json!({"type": "resume", "seq": 0, "channels": places});
            if ws.send(Message::text(resume.to_string())).await.is_err() {
                continue;
            }
        }
        loop {
            let frame = tokio::select! {
                frame = ws.next() => frame,
                () = stop.cancelled() => return close(ws).await,
            };
            let text = match frame {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => break,
            };
            let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
            match frame["type"].as_str() {
                Some("session") => {
                    token = frame["session"].as_str().map(str::to_owned);
                    let mut log = log.lock();
                    if let Some(id) = frame["connectionId"].as_str() {
                        let resumed = frame["resumed"] == json!(true);
                        log.session_frames.push((id.to_owned(), resumed, Instant::now()));
                    }
                    if frame["resumed"] == json!(true) {
                        log.resumes += 1;
                    } else if frame.get("refresh").is_none() && log.opened {
                        log.fresh += 1;
                    }
                    log.opened = true;
                    for lost in frame["lost"].as_array().into_iter().flatten() {
                        if lost.as_str() == Some(channel.as_str()) {
                            log.told_lost += 1;
                        }
                    }
                }
                Some("publication") => {
                    let (Some(epoch), Some(offset), Some(data)) =
                        (frame["epoch"].as_str(), frame["offset"].as_u64(), frame["data"].as_str())
                    else {
                        continue;
                    };
                    place = Some((epoch.to_owned(), offset));
                    if let Some(seq) = seq_of(&channel, data) {
                        log.lock().received.push(Seen { seq, place: Some((epoch.to_owned(), offset)) });
                    }
                }
                _ => {}
            }
        }
        log.lock().drops += 1;
        tokio::time::sleep(RECONNECT_WAIT).await;
    }
}

/// Ends a connection as a browser leaving does: a close frame, then what
/// comes until the edge's close frame back (closed at once with frames
/// unread, the socket is reset and the close frame may be lost). Its edge
/// sends its CLOSE at once, a session's too.
async fn close<S>(mut ws: tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let goodbye = async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    };
    let _ = tokio::time::timeout(CONNECT_TIMEOUT, goodbye).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_names_its_channel_and_number() {
        assert_eq!(seq_of("ch-1", &message("ch-1", 42)), Some(42));
        assert_eq!(seq_of("ch-1", &message("ch-10", 42)), None);
        assert_eq!(seq_of("ch-1", "garbage"), None);
    }
}
