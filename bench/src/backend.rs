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
    Ok(Backend {
        url: url.into(),
        over_http: over_http.into(),
        secret: "bench-secret-of-at-least-32-bytes".into(),
        _process: process,
    })
}

/// SLIP v4: OPEN → accept and subscribe to "bench" (on path `/presence`
/// as a member of its presence, on `/watch` also getting its join and
/// leave frames; on `/ch/NAME` to channel NAME instead, as a member; on
/// `/chat` as the seed's chat: to "chat", publishing a join, with a
/// welcome, and a leave at CLOSE; on `/plain` nothing but the welcome);
/// TEXT → the same text back to its sender.
async fn slip(body: Bytes) -> String {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else { return String::new() };
    let id = &request["connectionId"];
    let mut commands = Vec::new();
    for event in request["events"].as_array().into_iter().flatten() {
        match event["type"].as_str() {
            Some("OPEN") if matches!(request["metadata"]["path"].as_str(), Some("/chat" | "/plain")) => {
                commands.push(json!({"type": "ACCEPT", "connectionId": id}));
                if request["metadata"]["path"] == "/chat" {
                    commands.push(json!({"type": "SUBSCRIBE", "connectionId": id, "channel": "chat"}));
                    commands.push(json!({"type": "PUBLISH_TEXT", "channelId": "chat", "data": "joined"}));
                }
                commands.push(json!({"type": "TEXT", "connectionId": id, "data": "welcome"}));
            }
            Some("CLOSE") if request["metadata"]["path"] == "/chat" => {
                commands.push(json!({"type": "PUBLISH_TEXT", "channelId": "chat", "data": "left"}));
            }
            Some("OPEN") => {
                commands.push(json!({"type": "ACCEPT", "connectionId": id}));
                let path = request["metadata"]["path"].as_str().unwrap_or_default();
                // `/ch/NAME`: a presence member of channel NAME (many channels at once).
                let channel = path.strip_prefix("/ch/").filter(|c| !c.is_empty()).unwrap_or("bench");
                let mut subscribe = json!({"type": "SUBSCRIBE", "connectionId": id, "channel": channel});
                if channel != "bench" {
                    subscribe["presence"] = json!({"id": id});
                }
                match path {
                    "/presence" => subscribe["presence"] = json!({"id": id}),
                    "/watch" => {
                        subscribe["presence"] = json!({"id": id});
                        subscribe["joinLeave"] = json!(true);
                    }
                    _ => {}
                }
                commands.push(subscribe);
            }
            Some("TEXT") => commands.push(json!({"type": "TEXT", "connectionId": id, "data": event["data"]})),
            _ => {}
        }
    }
    json!({ "events": commands }).to_string()
}

/// One WebSocket-over-HTTP event: `NAME\r\n` or `NAME <hex length>\r\n<bytes>\r\n`.
fn event(out: &mut Vec<u8>, name: &str, content: Option<&[u8]>) {
    match content {
        None => out.extend_from_slice(format!("{name}\r\n").as_bytes()),
        Some(bytes) => {
            out.extend_from_slice(format!("{name} {:x}\r\n", bytes.len()).as_bytes());
            out.extend_from_slice(bytes);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// The events of a WebSocket-over-HTTP body, as (name, content).
fn events(mut body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(&body[..end]).into_owned();
        body = &body[end + 2..];
        let (name, len) = match line.split_once(' ') {
            Some((name, hex)) => (name.to_owned(), usize::from_str_radix(hex, 16).unwrap_or(0)),
            None => (line, 0),
        };
        let content = body.get(..len).unwrap_or(body).to_vec();
        body = body.get(len + 2..).unwrap_or(&[]);
        out.push((name, content));
    }
    out
}

/// Pushpin's WebSocket-over-HTTP, the same behaviour: OPEN → accept and
/// subscribe to "bench"; TEXT → the same text back (`m:` prefixed, as grip wants).
async fn over_http(body: Bytes) -> ([(HeaderName, &'static str); 2], Vec<u8>) {
    let headers =
        [(CONTENT_TYPE, "application/websocket-events"), (HeaderName::from_static("sec-websocket-extensions"), "grip")];
    let mut reply = Vec::new();
    for (name, content) in events(&body) {
        match name.as_str() {
            "OPEN" => {
                event(&mut reply, "OPEN", None);
                event(&mut reply, "TEXT", Some(br#"c:{"type":"subscribe","channel":"bench"}"#));
            }
            "TEXT" => event(&mut reply, "TEXT", Some(&[b"m:", &content[..]].concat())),
            _ => {}
        }
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
