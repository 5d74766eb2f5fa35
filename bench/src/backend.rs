//! The minimal backend, in both callback formats so the same one serves both
//! gateways: it accepts every connection and subscribes it to "bench", and
//! answers everything else with nothing. It verifies nothing, so it is never
//! the bottleneck.

use axum::body::Bytes;
use axum::http::header::{CONTENT_TYPE, HeaderName};
use axum::serve::ListenerExt;
use serde_json::{Value, json};

pub struct Backend {
    /// SLIP v4 callbacks.
    pub url: String,
    /// Pushpin's WebSocket-over-HTTP, as `host:port` for its routes file.
    pub over_http: String,
    pub secret: String,
    /// The process serving it: its sockets do not count against the
    /// clients' process's open-file limit.
    _process: tokio::process::Child,
}

/// Runs a backend in this process until killed, printing its addresses
/// (the hidden `slip-bench backend` command).
pub async fn serve() -> anyhow::Result<()> {
    let (url, over_http) = listen().await?;
    println!("{url} {over_http}");
    std::future::pending::<()>().await;
    Ok(())
}

/// Starts a backend in a child process.
pub async fn start() -> anyhow::Result<Backend> {
    use tokio::io::AsyncBufReadExt;
    let mut process = tokio::process::Command::new(std::env::current_exe()?)
        .arg("backend")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = process.stdout.take().ok_or_else(|| anyhow::anyhow!("backend stdout"))?;
    let line = tokio::io::BufReader::new(stdout).lines().next_line().await?.unwrap_or_default();
    let mut parts = line.split_whitespace();
    let (Some(url), Some(over_http)) = (parts.next(), parts.next()) else {
        anyhow::bail!("the backend process printed {line:?}");
    };
    Ok(Backend { url: url.into(), over_http: over_http.into(), secret: "bench-secret".into(), _process: process })
}

async fn slip(body: Bytes) -> String {
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

/// WebSocket-over-HTTP: events are `NAME\r\n` or `NAME <hex length>\r\n<bytes>\r\n`.
async fn over_http(body: Bytes) -> ([(HeaderName, &'static str); 2], Vec<u8>) {
    let headers =
        [(CONTENT_TYPE, "application/websocket-events"), (HeaderName::from_static("sec-websocket-extensions"), "grip")];
    let mut reply = Vec::new();
    if body.starts_with(b"OPEN\r\n") {
        let subscribe = br#"c:{"type":"subscribe","channel":"bench"}"#;
        reply.extend_from_slice(b"OPEN\r\n");
        reply.extend_from_slice(format!("TEXT {:x}\r\n", subscribe.len()).as_bytes());
        reply.extend_from_slice(subscribe);
        reply.extend_from_slice(b"\r\n");
    }
    (headers, reply)
}

/// Serves `app` on a fresh loopback port, with Nagle off (small replies).
async fn serve_on_loopback(app: axum::Router) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

async fn listen() -> anyhow::Result<(String, String)> {
    let slip_addr = serve_on_loopback(axum::Router::new().fallback(axum::routing::post(slip))).await?;
    let over_http_addr = serve_on_loopback(axum::Router::new().fallback(axum::routing::post(over_http))).await?;
    Ok((format!("http://{slip_addr}/"), over_http_addr.to_string()))
}
