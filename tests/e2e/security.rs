//! The security review, as tests: each hole it found, tried the way an
//! attacker would, against the real binary (docs/security.md).

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{Value, json};
use slip_proto::pb::admin_client::AdminClient;
use slip_proto::pb::{NodesRequest, PublishRequest, publish_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::support::*;

/// What a raw backend answers: status, headers, body.
type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);
type RawLogic = dyn Fn(&HeaderMap, &[u8]) -> Answer + Send + Sync;

/// A backend that answers whatever bytes a test wants and keeps every
/// request's headers: a malicious or broken backend, or a curious one.
struct RawBackend {
    url: String,
    headers: Arc<Mutex<Vec<HeaderMap>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawBackend {
    async fn start(logic: impl Fn(&HeaderMap, &[u8]) -> Answer + Send + Sync + 'static) -> Self {
        let headers = Arc::new(Mutex::new(Vec::new()));
        let (logic, seen): (Arc<RawLogic>, _) = (Arc::new(logic), headers.clone());
        let app = axum::Router::new().fallback(move |request_headers: HeaderMap, body: axum::body::Bytes| {
            let (logic, seen) = (logic.clone(), seen.clone());
            async move {
                let (status, headers, body) = logic(&request_headers, &body);
                seen.lock().push(request_headers);
                let mut response = axum::response::Response::new(axum::body::Body::from(body));
                *response.status_mut() = StatusCode::from_u16(status).unwrap();
                for (name, value) in headers {
                    response.headers_mut().insert(name, value.parse().unwrap());
                }
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, headers, task }
    }

    fn requests(&self) -> usize {
        self.headers.lock().len()
    }

    /// A header of the first request that had it.
    fn first(&self, name: &str) -> Option<String> {
        self.headers.lock().iter().find_map(|h| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned))
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A WebSocket-over-HTTP reply body.
fn woh(events: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, content) in events {
        if content.is_empty() && *name == "OPEN" {
            out.extend_from_slice(b"OPEN\r\n");
            continue;
        }
        out.extend_from_slice(format!("{name} {:x}\r\n", content.len()).as_bytes());
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn woh_answer(events: &[(&str, &[u8])], extra: Vec<(&'static str, String)>) -> Answer {
    let mut headers = vec![("content-type", "application/websocket-events".to_owned())];
    headers.extend(extra);
    (200, headers, woh(events))
}

/// A SLIP v4 backend that accepts every connection.
fn slip_accept(_: &HeaderMap, body: &[u8]) -> Answer {
    let request: Value = serde_json::from_slice(body).unwrap_or_default();
    let events = match request["events"][0]["type"].as_str() {
        Some("OPEN") => json!([{"type": "ACCEPT", "connectionId": request["connectionId"]}]),
        _ => json!([]),
    };
    (200, vec![("content-type", "application/json".into())], json!({ "events": events }).to_string().into_bytes())
}

/// The status and body of a refused handshake.
async fn refused(url: &str) -> (u16, String) {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => panic!("handshake was accepted"),
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            (response.status().as_u16(), body)
        }
        Err(e) => panic!("handshake failed without an HTTP answer: {e}"),
    }
}

// 1. The edge never follows a backend's redirect, in either format, and a
// client sees nothing fetched from elsewhere.
#[tokio::test]
async fn a_redirecting_backend_shows_the_client_nothing_from_elsewhere() {
    let internal =
        RawBackend::start(|_, _| (200, vec![("content-type", "text/plain".into())], b"internal secret".to_vec())).await;
    let location = format!("{}/admin", internal.url);
    let redirect = {
        let location = location.clone();
        move |_: &HeaderMap, _: &[u8]| (307, vec![("location", location.clone())], b"moved".to_vec())
    };
    let backend = RawBackend::start(redirect).await;
    for format in ["websocket-over-http", "slip"] {
        let gateway = Gateway::start_with(&backend.url, &["--target-format", format]).await;
        let (status, body) = refused(&format!("{}/", gateway.ws)).await;
        assert_eq!(status, 502, "{format}: a redirect is a failed callback");
        assert!(!body.contains("internal secret"), "{format}: {body}");
        gateway.stop().await;
    }
    assert!(backend.requests() >= 2);
    assert_eq!(internal.requests(), 0, "the redirect target was never fetched");
}

// 2. No control API takes a token the gateway issued: a callback token and a
// Grip-Sig, captured at the backends and replayed on every API.
#[tokio::test]
async fn tokens_the_gateway_signs_publish_nothing() {
    let slip_backend = RawBackend::start(slip_accept).await;
    let slip = Gateway::start(&slip_backend.url).await;
    let _client = Client::connect(&slip).await;
    let callback_token = slip_backend.first("authorization").unwrap().trim_start_matches("Bearer ").to_owned();

    let woh_backend = RawBackend::start(|_, _| woh_answer(&[("OPEN", b"")], vec![])).await;
    let woh = Gateway::start_with(&woh_backend.url, &["--target-format", "websocket-over-http"]).await;
    let _client = Client::connect(&woh).await;
    let grip_sig = woh_backend.first("grip-sig").unwrap();

    let http = reqwest::Client::new();
    for (kind, token) in [("callback token", &callback_token), ("Grip-Sig", &grip_sig)] {
        // The SLIP HTTP JSON API.
        let body = json!({"events": [{"type": "PUBLISH_TEXT", "channelId": "c", "data": "forged"}]}).to_string();
        assert_eq!(slip.control_post(token, &body).await.0, 403, "{kind} on POST /");
        // GRIP publishing.
        let grip = json!({"items": [{"channel": "c", "formats": {"ws-message": {"content": "forged"}}}]});
        let response =
            http.post(format!("{}/publish/", slip.control)).bearer_auth(token).json(&grip).send().await.unwrap();
        assert_eq!(response.status(), 401, "{kind} on POST /publish/");
        // gRPC Control and Admin.
        let channel = tonic::transport::Endpoint::from_shared(slip.control.clone()).unwrap().connect().await.unwrap();
        let status = grpc_publish(&channel, token).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{kind} on gRPC Publish");
        let mut admin = AdminClient::with_interceptor(channel, Auth::bearer(token));
        let status = admin.nodes(NodesRequest {}).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{kind} on gRPC Admin");
    }
    // What a GRIP library signs still publishes.
    let publisher =
        slip_proto::jwt::sign(SECRET.as_bytes(), slip_proto::jwt::AUD_CONTROL_EVENT, slip_proto::jwt::now());
    let grip = json!({"items": [{"channel": "c", "formats": {"ws-message": {"content": "real"}}}]});
    let response =
        http.post(format!("{}/publish/", slip.control)).bearer_auth(&publisher).json(&grip).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// A gRPC publish of "x" to channel "c" with `token`.
async fn grpc_publish(
    channel: &tonic::transport::Channel,
    token: &str,
) -> Result<tonic::Response<slip_proto::pb::PublishReply>, tonic::Status> {
    let mut control =
        slip_proto::pb::control_client::ControlClient::with_interceptor(channel.clone(), Auth::bearer(token));
    let publish = PublishRequest {
        channel: "c".into(),
        message: Some(publish_request::Message::Text("x".into())),
        ..Default::default()
    };
    control.publish(publish).await
}

// A control token good for years, or issued a day ahead of the clock, is a
// leaked credential waiting to happen: refused on every control API; one
// within the limit (`--max-token-secs`) passes.
#[tokio::test]
async fn control_tokens_living_too_long_or_issued_ahead_are_refused() {
    let backend = RawBackend::start(slip_accept).await;
    let slip = Gateway::start(&backend.url).await;
    let now = slip_proto::jwt::now();
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    let token = |iat: u64, exp: u64| {
        let claims = json!({"iss": "slip-sockets", "aud": "ControlEvent", "iat": iat, "exp": exp});
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    };
    let body = json!({"events": [{"type": "PUBLISH_TEXT", "channelId": "c", "data": "x"}]}).to_string();
    let channel = tonic::transport::Endpoint::from_shared(slip.control.clone()).unwrap().connect().await.unwrap();
    for (why, token) in
        [("ten years", token(now, now + 10 * 365 * 86_400)), ("a day ahead", token(now + 86_400, now + 86_460))]
    {
        assert_eq!(slip.control_post(&token, &body).await.0, 403, "{why} on POST /");
        let status = grpc_publish(&channel, &token).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{why} on gRPC");
    }
    assert_eq!(slip.control_post(&token(now, now + 3600), &body).await.0, 200, "an hour, the default");
    assert_eq!(slip.control_post(&token(now, now + 7200), &body).await.0, 403, "two hours");
    let roomier = Gateway::start_with(&backend.url, &["--max-token-secs", "7200"]).await;
    assert_eq!(roomier.control_post(&token(now, now + 7200), &body).await.0, 200, "two hours, as configured");
}

// 4. The control port: a client that never finishes its headers is cut off,
// and an unauthenticated body is refused before a byte of it is read.
#[tokio::test]
async fn the_control_port_drops_slow_headers_and_refuses_before_the_body() {
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start(&backend.url).await;
    let addr = gateway.control.trim_start_matches("http://").to_owned();

    // Slow headers: one line, then nothing. The gateway hangs up.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(60), slow.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(_)) | Ok(Err(_))), "the connection was closed (or answered 408), not left open");
    // A client that connects and says nothing is dropped too.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(60), silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "a silent client is hung up on");

    // An unauthenticated 1 GiB body: the answer comes without a byte of it sent.
    for path in ["/", "/publish/"] {
        let mut big = TcpStream::connect(&addr).await.unwrap();
        let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n");
        big.write_all(head.as_bytes()).await.unwrap();
        let n = tokio::time::timeout(PATIENCE, big.read(&mut buf)).await.expect("answered at once").unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 403") || answer.starts_with("HTTP/1.1 401"), "{path}: {answer}");
    }
    // An authenticated body past the API's limit is refused, not buffered.
    let mut big = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 1073741824\r\n\r\n",
        control_token()
    );
    big.write_all(head.as_bytes()).await.unwrap();
    let n = tokio::time::timeout(PATIENCE, big.read(&mut buf)).await.expect("answered at once").unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"));
}

// 5. A command that did not take effect is never reported as a success.
#[tokio::test]
async fn a_failed_command_is_an_error_naming_it() {
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start(&backend.url).await;
    let mut client = Client::connect(&gateway).await;
    let id = nth_open(&backend, 0).await;
    // A connection on an edge this control plane has no link to.
    let elsewhere = "unknownedge.0123456789abcdef0123";
    let body = json!({"events": [
        {"type": "TEXT", "connectionId": id, "data": "first"},
        {"type": "TEXT", "connectionId": elsewhere, "data": "lost"},
        {"type": "TEXT", "connectionId": id, "data": "never sent"},
    ]});
    let (status, reply) = gateway.control_post(&control_token(), &body.to_string()).await;
    assert_eq!(status, 503, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!((reply["index"].as_u64(), reply["type"].as_str()), (Some(1), Some("TEXT")), "{reply}");
    assert_eq!(client.text().await, "first");
    client.silent_for(Duration::from_millis(300)).await;

    // The SDK says which command failed.
    let control = slip_sockets::HttpControl::new(gateway.control.clone(), SECRET.as_bytes());
    let commands = vec![slip_sockets::Command::Text { connection_id: elsewhere.into(), data: "x".into() }];
    let error = slip_sockets::Transport::run(&control, commands).await.unwrap_err();
    assert!(matches!(error, slip_sockets::ControlError::Failed { index: 0, .. }), "{error}");
}

// 7. Settings and a backend's replies that used to panic, or put on the wire
// what RFC 6455 forbids.
#[tokio::test]
async fn bad_settings_are_refused_at_start_with_a_clear_error() {
    let bin = env!("CARGO_BIN_EXE_slip");
    for (args, says) in [
        (vec!["--jwt-secret", ""], "at least 32"),
        (vec!["--jwt-secret", "short"], "at least 32"),
        (vec!["--jwt-secret", SECRET, "--max-message-bytes", "0"], "SLIP_MAX_MESSAGE_BYTES"),
        (vec!["--jwt-secret", SECRET, "--target-url", "ftp://x/"], "SLIP_TARGET_URL"),
        (vec!["--jwt-secret", SECRET, "--ping-interval-secs", "0"], "SLIP_PING_INTERVAL_SECS"),
    ] {
        let mut all = vec!["dev", "--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0"];
        if !args.contains(&"--target-url") {
            all.extend(["--target-url", "http://127.0.0.1:9/"]);
        }
        all.extend(args.iter().copied());
        let output = tokio::time::timeout(PATIENCE, tokio::process::Command::new(bin).args(&all).output())
            .await
            .expect("slip exits at once")
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{all:?} started");
        assert!(stderr.contains(says), "{all:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{all:?}: {stderr}");
    }
    let output = tokio::process::Command::new(bin)
        .args(["control", "--jwt-secret", "short", "--cluster-ca", "x", "--cluster-ca-key", "x"])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 32"));
}

#[tokio::test]
async fn a_small_message_limit_closes_with_1009_and_reports_the_close() {
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start_with(&backend.url, &["--max-message-bytes", "1024"]).await;
    let mut client = Client::connect(&gateway).await;
    let id = nth_open(&backend, 0).await;
    client.send(&"x".repeat(1000)).await;
    client.send(&"x".repeat(2000)).await;
    assert_eq!(client.close_code().await, 1009);
    backend
        .wait_until("the CLOSE callback", |_| {
            backend
                .events_of(&id)
                .iter()
                .any(|e| matches!(e, slip_proto::callback::Event::Close { code: Some(1009), .. }))
        })
        .await;
}

/// A raw client: the handshake by hand, then frames as bytes.
async fn raw_client(gateway: &Gateway) -> TcpStream {
    let mut stream = TcpStream::connect(gateway.ws_addr()).await.unwrap();
    let request = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        response.push(byte[0]);
    }
    assert!(response.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&response));
    stream
}

/// Reads frames until a close frame; returns its code.
async fn raw_close_code(stream: &mut TcpStream) -> u16 {
    loop {
        let mut head = [0u8; 2];
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut head)).await.expect("a frame").unwrap();
        let mut len = u64::from(head[1] & 0x7F);
        if len == 126 {
            len = u64::from(stream.read_u16().await.unwrap());
        } else if len == 127 {
            len = stream.read_u64().await.unwrap();
        }
        let mut payload = vec![0u8; len as usize];
        stream.read_exact(&mut payload).await.unwrap();
        if head[0] & 0x0F == 0x8 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

#[tokio::test]
async fn reserved_control_opcodes_fail_the_connection_with_1002() {
    let backend = Backend::start(accept_all).await;
    for binary in [false, true] {
        let extra: &[&str] = if binary { &["--target-binary"] } else { &[] };
        let gateway = Gateway::start_with(&backend.url, extra).await;
        for opcode in 0xB..=0xFu8 {
            let mut stream = raw_client(&gateway).await;
            // FIN, the opcode, masked, one byte of payload.
            stream.write_all(&[0x80 | opcode, 0x81, 1, 2, 3, 4, b'x' ^ 1]).await.unwrap();
            assert_eq!(raw_close_code(&mut stream).await, 1002, "opcode {opcode:#x}, binary opt-in {binary}");
        }
        gateway.stop().await;
    }
}

#[tokio::test]
async fn a_backend_cannot_make_the_edge_break_rfc_6455_or_its_timers() {
    // The reply to OPEN asks for keep-alive requests every u64::MAX seconds;
    // the first TEXT is answered with a 200-byte PING (no control frame may
    // carry more than 125) and a CLOSE with 1005, which no endpoint may send.
    let backend = RawBackend::start(|_, body| {
        if body.starts_with(b"OPEN") {
            let forever = u64::MAX.to_string();
            woh_answer(&[("OPEN", b"")], vec![("keep-alive-interval", forever)])
        } else if body.starts_with(b"TEXT") {
            let mut close = 1005u16.to_be_bytes().to_vec();
            close.extend_from_slice(b"bye");
            woh_answer(&[("PING", &[b'p'; 200]), ("TEXT", b"still fine"), ("CLOSE", &close)], vec![])
        } else {
            woh_answer(&[], vec![])
        }
    })
    .await;
    let gateway = Gateway::start_with(&backend.url, &["--target-format", "websocket-over-http"]).await;
    let mut client = Client::connect(&gateway).await;
    client.send("hello").await;
    // tungstenite fails the connection on a control frame over 125 bytes: reading on proves none came.
    assert_eq!(client.text().await, "still fine");
    let frame = tokio::time::timeout(PATIENCE, client.ws.next()).await.expect("a close").unwrap().unwrap();
    match frame {
        Message::Close(Some(close)) => assert_eq!(u16::from(close.code), 1000, "1005 became a normal close"),
        other => panic!("expected a close frame, got {other:?}"),
    }
    let _ = client.ws.send(Message::Close(None)).await;
    // The edge is alive and serves the next client.
    let mut next = Client::connect(&gateway).await;
    next.send("hello").await;
    assert_eq!(next.text().await, "still fine");
}

// 6. A client picks the size of its handshake: bounded in bytes, since the
// headers become metadata copied into every callback.
#[tokio::test]
async fn handshake_headers_are_bounded_in_bytes() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start(&backend.url).await;
    let with_header = |bytes: usize| {
        let mut request = format!("{}/", gateway.ws).into_client_request().unwrap();
        request.headers_mut().insert("x-padding", "p".repeat(bytes).parse().unwrap());
        request
    };
    let (_ws, response) = tokio_tungstenite::connect_async(with_header(8 * 1024)).await.expect("8 KiB is fine");
    assert_eq!(response.status(), 101);
    let id = nth_open(&backend, 0).await;
    let metadata = backend.seen().into_iter().find(|r| r.connection_id == id).unwrap().metadata;
    assert_eq!(metadata["headers"]["x-padding"].as_str().map(str::len), Some(8 * 1024));
    for bytes in [20 * 1024, 200 * 1024] {
        match tokio_tungstenite::connect_async(with_header(bytes)).await {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 431, "{bytes} bytes"),
            other => panic!("{bytes} bytes of headers: {other:?}"),
        }
    }
    assert_eq!(backend.opened().len(), 1, "the backend never heard of the refused ones");
}

// 3. The binary keeps roles apart: an edge will not hold the CA key, and an
// edge certificate does not start a control node (the link refuses such a
// Hello too: link/tests/quic.rs).
#[tokio::test]
async fn an_edge_certificate_does_not_make_a_control_node() {
    let ca = crate::support::CaDir::new();
    let (edge_cert, edge_key) = ca.leaf("edge");
    let bin = env!("CARGO_BIN_EXE_slip");
    let common = ["--jwt-secret", SECRET, "--metrics-listen", "127.0.0.1:0", "--cluster-ca", &ca.cert()];
    let control = tokio::process::Command::new(bin)
        .args(["control", "--control-listen", "127.0.0.1:0", "--link-listen", "127.0.0.1:0"])
        .args(common)
        .args(["--cluster-cert", &edge_cert, "--cluster-key", &edge_key])
        .output();
    let output = tokio::time::timeout(PATIENCE, control).await.expect("exits at once").unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("certificate is for the edge role"), "{stderr}");

    let edge = tokio::process::Command::new(bin)
        .args(["edge", "--listen", "127.0.0.1:0", "--peers", "127.0.0.1:9", "--target-url", "http://127.0.0.1:9/"])
        .args(common)
        .args(["--cluster-cert", &edge_cert, "--cluster-key", &edge_key])
        .env("SLIP_CLUSTER_CA_KEY", ca.key())
        .output();
    let output = tokio::time::timeout(PATIENCE, edge).await.expect("exits at once").unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("must not hold the CA key"), "{stderr}");
}

/// Logs written to a file (or a pipe a collector reads) are plain text: no
/// colour codes.
#[tokio::test]
async fn logs_to_a_file_carry_no_colour_codes() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_slip"))
        .args(["dev", "--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0", "--jwt-secret", SECRET])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(PATIENCE, lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(line.contains("INFO"), "{line:?}");
    assert!(!line.contains('\u{1b}'), "{line:?}");
}
