//! What every end-to-end test stands on: a real backend (axum, verifying the
//! JWT of every callback), the real `slip` binary as a child process, real
//! WebSocket clients (tokio-tungstenite) and real control clients.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{Value, json};
use slip_proto::callback::{CallbackRequest, Event};
use slip_proto::jwt;
use slip_proto::pb::control_client::ControlClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const SECRET: &str = "test-secret-of-at-least-32-bytes!";
/// How long a test waits for something it expects before failing.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// What the backend answers one callback with.
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub delay: Duration,
}

impl Reply {
    pub fn commands(commands: Vec<Value>) -> Self {
        Self { status: 200, body: json!({ "events": commands }), delay: Duration::ZERO }
    }
    pub fn status(status: u16) -> Self {
        Self { status, body: json!({}), delay: Duration::ZERO }
    }
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Logic = dyn Fn(&CallbackRequest) -> Reply + Send + Sync;

#[derive(Clone)]
struct BackendState {
    logic: Arc<Logic>,
    seen: Arc<Mutex<Vec<CallbackRequest>>>,
    bad_tokens: Arc<Mutex<usize>>,
}

/// A real HTTP backend on loopback speaking SLIP v4.
pub struct Backend {
    pub url: String,
    seen: Arc<Mutex<Vec<CallbackRequest>>>,
    bad_tokens: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

async fn callback(
    State(state): State<BackendState>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, String) {
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(jwt::bearer);
    let content_type_ok =
        headers.get("content-type").and_then(|v| v.to_str().ok()) == Some("application/websocket-events");
    let token_ok =
        token.is_some_and(|t| jwt::verify(t, SECRET.as_bytes(), jwt::AUD_WEBSOCKET_EVENT, jwt::now()).is_ok());
    if !token_ok || !content_type_ok {
        *state.bad_tokens.lock() += 1;
        return (StatusCode::FORBIDDEN, HeaderMap::new(), "Invalid token".into());
    }
    let request: CallbackRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, HeaderMap::new(), e.to_string()),
    };
    let reply = (state.logic)(&request);
    state.seen.lock().push(request);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    (StatusCode::from_u16(reply.status).unwrap(), headers, reply.body.to_string())
}

impl Backend {
    pub async fn start(logic: impl Fn(&CallbackRequest) -> Reply + Send + Sync + 'static) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let bad_tokens = Arc::new(Mutex::new(0));
        let state = BackendState { logic: Arc::new(logic), seen: seen.clone(), bad_tokens: bad_tokens.clone() };
        let app = axum::Router::new().fallback(axum::routing::post(callback)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url: format!("http://{addr}/callback"), seen, bad_tokens, task }
    }

    /// Every callback so far, in arrival order.
    pub fn seen(&self) -> Vec<CallbackRequest> {
        self.seen.lock().clone()
    }

    pub fn bad_tokens(&self) -> usize {
        *self.bad_tokens.lock()
    }

    /// Every event so far for one connection, flattened in order.
    pub fn events_of(&self, connection_id: &str) -> Vec<Event> {
        self.seen().into_iter().filter(|r| r.connection_id == connection_id).flat_map(|r| r.events).collect()
    }

    /// Connection ids that were sent an OPEN, in order.
    pub fn opened(&self) -> Vec<String> {
        self.seen()
            .iter()
            .flat_map(|r| r.events.iter())
            .filter_map(|e| match e {
                Event::Open { connection_id } => Some(connection_id.clone()),
                _ => None,
            })
            .collect()
    }

    /// Waits until `check` holds over the callbacks seen.
    pub async fn wait_until(&self, what: &str, check: impl Fn(&[CallbackRequest]) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !check(&self.seen()) {
            assert!(tokio::time::Instant::now() < deadline, "backend never saw: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The chat of the original README, as a backend.
pub fn chat(request: &CallbackRequest) -> Reply {
    let mut out = Vec::new();
    for event in &request.events {
        match event {
            Event::Open { connection_id } => {
                out.push(json!({"type": "ACCEPT", "connectionId": connection_id}));
                out.push(json!({"type": "SUBSCRIBE", "connectionId": connection_id, "channel": "cool-channel"}));
                out.push(
                    json!({"type": "PUBLISH_TEXT", "channelId": "cool-channel", "data": "New connection has joined!"}),
                );
                out.push(json!({"type": "TEXT", "connectionId": connection_id, "data": "Welcome to the cool channel, be nice or get out"}));
            }
            Event::Close { .. } => {
                out.push(json!({"type": "PUBLISH_TEXT", "channelId": "cool-channel", "data": "A Connection has left"}));
            }
            Event::Text { connection_id, data } if data == "quit" => {
                out.push(json!({"type": "CLOSE", "connectionId": connection_id}));
            }
            Event::Text { connection_id, data } => {
                out.push(json!({"type": "PUBLISH_TEXT", "channelId": "cool-channel", "data": format!("{connection_id} says {data}")}));
            }
            Event::Binary { .. } => {}
        }
    }
    Reply::commands(out)
}

/// Accepts every connection and does nothing else.
pub fn accept_all(request: &CallbackRequest) -> Reply {
    let commands = request
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Open { connection_id } => Some(json!({"type": "ACCEPT", "connectionId": connection_id})),
            _ => None,
        })
        .collect();
    Reply::commands(commands)
}

/// Starts `slip` with `args` and waits for it to print a line starting with
/// each of `labels` (after leading spaces); returns the rest of each line.
pub async fn spawn_slip(args: &[&str], labels: &[&str]) -> (Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_slip"))
        .args(args)
        .env("RUST_LOG", std::env::var("SLIP_TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start slip");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut found: Vec<Option<String>> = vec![None; labels.len()];
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            for (label, slot) in labels.iter().zip(found.iter_mut()) {
                if let Some(rest) = line.trim().strip_prefix(label) {
                    *slot = Some(rest.trim().to_owned());
                }
            }
            if found.iter().all(Option::is_some) {
                break;
            }
        }
    };
    tokio::time::timeout(PATIENCE, read).await.unwrap_or_else(|_| panic!("slip {args:?} printed {labels:?}"));
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, found.into_iter().map(|f| f.unwrap_or_else(|| panic!("slip {args:?} exited early"))).collect())
}

/// A `slip dev` process.
pub struct Gateway {
    child: Child,
    pub ws: String,
    pub control: String,
}

impl Gateway {
    pub async fn start(target: &str) -> Self {
        Self::start_with(target, &[]).await
    }

    pub async fn start_with(target: &str, extra: &[&str]) -> Self {
        Self::start_at(target, "127.0.0.1:0", "127.0.0.1:0", extra).await
    }

    /// On given addresses: a gateway restarted where its clients knew it.
    pub async fn start_at(target: &str, listen: &str, control_listen: &str, extra: &[&str]) -> Self {
        let mut args = vec!["dev", "--listen", listen, "--control-listen", control_listen];
        args.extend(["--target-url", target, "--jwt-secret", SECRET]);
        args.extend(extra);
        let (child, lines) = spawn_slip(&args, &["WebSocket:", "Control API:"]).await;
        let ws = lines[0].trim_end_matches('/').to_owned();
        let control = lines[1].split_whitespace().next().unwrap().to_owned();
        Self { child, ws, control }
    }

    /// The process's resident memory, in bytes.
    pub fn rss(&self) -> u64 {
        self.rss_reader()()
    }

    /// Reads the process's resident memory, in bytes, when called.
    pub fn rss_reader(&self) -> impl Fn() -> u64 + Send + 'static {
        let pid = self.child.id().expect("slip is running");
        move || rss_of(pid)
    }
}

fn rss_of(pid: u32) -> u64 {
    {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib * 1024
    }
}

impl Gateway {
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws.trim_start_matches("ws://").parse().unwrap()
    }

    pub async fn grpc(&self) -> Grpc {
        grpc_to(&self.control).await
    }

    pub async fn grpc_without_token(&self) -> Grpc {
        grpc_client(&self.control, None).await
    }

    /// POSTs a SLIP v4 control request; returns the status and JSON body.
    pub async fn control_post(&self, token: &str, body: &str) -> (u16, String) {
        let response = reqwest::Client::new()
            .post(format!("{}/", self.control))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Sends SIGTERM, as a platform does before it stops a machine.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("slip is running");
        let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `limit`.
    pub async fn exited_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(limit, self.child.wait()).await.ok().and_then(Result::ok)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Waits until `channel` has `n` subscribers as the control plane counts them:
/// a subscription travels to the channel's owner after the connection opens.
pub async fn wait_for_subscribers(gateway: &Gateway, channel: &str, n: u64) {
    let mut grpc = gateway.grpc().await;
    for _ in 0..100 {
        let request = slip_proto::pb::GetChannelRequest { channel: channel.into() };
        if grpc.get_channel(request).await.is_ok_and(|c| c.into_inner().subscribers >= n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{channel} never had {n} subscribers");
}

/// A gauge's value on a node's `/metrics` page (`metrics` is its URL).
pub async fn gauge(metrics: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(metrics).await.ok()?.text().await.ok()?;
    // `name{labels} value`, or `name value`.
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Waits until the edge at WebSocket URL `ws` answers `/readyz` (linked,
/// with the control plane's view): before, it refuses clients with 503.
pub async fn wait_edge_ready(ws: &str) {
    let url = format!("{}/readyz", ws.trim_end_matches('/').replacen("ws://", "http://", 1));
    let deadline = tokio::time::Instant::now() + PATIENCE * 2;
    while !reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) {
        assert!(tokio::time::Instant::now() < deadline, "{url} never said ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until a node's gauge reads `value`: what the node has done that a
/// client cannot see (a session parked once its socket went).
pub async fn wait_for_gauge(metrics: &str, name: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut seen = None;
    while tokio::time::Instant::now() < deadline {
        seen = gauge(metrics, name).await;
        if seen == Some(value) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name} at {metrics} never read {value}: last {seen:?}");
}

pub fn control_token() -> String {
    jwt::sign(SECRET.as_bytes(), jwt::AUD_CONTROL_EVENT, jwt::now())
}

#[derive(Clone)]
pub struct Auth(Option<String>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        Ok(request)
    }
}

impl Auth {
    /// Sends `token` as it is, whatever it is.
    pub fn bearer(token: &str) -> Self {
        Self(Some(token.to_owned()))
    }
}

pub type Grpc = ControlClient<InterceptedService<Channel, Auth>>;

/// A gRPC client with a valid token for the control API at `url`.
pub async fn grpc_to(url: &str) -> Grpc {
    grpc_client(url, Some(control_token())).await
}

async fn grpc_client(url: &str, token: Option<String>) -> Grpc {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned()).unwrap().connect().await.unwrap();
    ControlClient::with_interceptor(channel, Auth(token))
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client.
pub struct Client {
    pub ws: Ws,
}

impl Client {
    pub async fn connect(gateway: &Gateway) -> Self {
        Self::connect_path(gateway, "/").await
    }

    pub async fn connect_path(gateway: &Gateway, path: &str) -> Self {
        Self::connect_url(&format!("{}{path}", gateway.ws)).await
    }

    pub async fn connect_url(url: &str) -> Self {
        let (ws, response) = tokio_tungstenite::connect_async(url).await.expect("upgrade");
        assert_eq!(response.status(), 101);
        Self { ws }
    }

    /// Tries to connect; returns the HTTP status of a refused handshake.
    pub async fn refused_status(gateway: &Gateway) -> u16 {
        match tokio_tungstenite::connect_async(format!("{}/", gateway.ws)).await {
            Ok(_) => panic!("handshake was accepted"),
            Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
            Err(e) => panic!("handshake failed without an HTTP answer: {e}"),
        }
    }

    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next text message within `wait` (pings and pongs skipped); `None` if none came.
    pub async fn next_text(&mut self, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await.ok()? {
                Some(Ok(Message::Text(t))) => return Some(t.to_string()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => return None,
            }
        }
    }

    /// The next text message (pings and pongs skipped).
    pub async fn text(&mut self) -> String {
        loop {
            match tokio::time::timeout(PATIENCE, self.ws.next()).await.expect("a message in time") {
                Some(Ok(Message::Text(t))) => return t.to_string(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected text, got {other:?}"),
            }
        }
    }

    /// The next binary message (pings and pongs skipped).
    pub async fn binary(&mut self) -> Vec<u8> {
        loop {
            match tokio::time::timeout(PATIENCE, self.ws.next()).await.expect("a message in time") {
                Some(Ok(Message::Binary(b))) => return b.to_vec(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected binary, got {other:?}"),
            }
        }
    }

    /// The next `n` text messages.
    pub async fn texts(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.text().await);
        }
        out
    }

    /// Reads until the close frame; returns its code (texts before it are skipped).
    pub async fn close_code(&mut self) -> u16 {
        loop {
            match tokio::time::timeout(PATIENCE, self.ws.next()).await.expect("a close in time") {
                Some(Ok(Message::Close(Some(CloseFrame { code, .. })))) => return u16::from(code),
                Some(Ok(Message::Close(None))) => return 1005,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// Asserts nothing but pings arrives for a while.
    pub async fn silent_for(&mut self, wait: Duration) {
        if let Ok(Some(Ok(m))) = tokio::time::timeout(wait, self.ws.next()).await {
            assert!(matches!(m, Message::Ping(_) | Message::Pong(_)), "expected silence, got {m:?}");
        }
    }
}

/// Waits for the OPEN of the `n`-th connection (0-based) and returns its id.
pub async fn nth_open(backend: &Backend, n: usize) -> String {
    backend
        .wait_until("an OPEN", |seen| {
            seen.iter().flat_map(|r| r.events.iter()).filter(|e| matches!(e, Event::Open { .. })).count() > n
        })
        .await;
    backend.opened()[n].clone()
}

/// A fresh directory under the system's temp dir, removed when dropped.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("slip-test-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Ports the tests hand to the nodes they start come from below the
/// system's ephemeral range (32768 and up on Linux): a port picked there and
/// freed could be taken by any client socket's connect before the node binds
/// it (a restarted control node once found its port so taken). Within this
/// process a counter hands each port out once.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;
static NEXT_PORT: std::sync::OnceLock<std::sync::atomic::AtomicU32> = std::sync::OnceLock::new();

/// A port free on loopback now for TCP and for UDP (the link), handed out
/// once in this process.
pub fn free_port() -> u16 {
    // Start where another run of these tests (a different pid) likely does not.
    let next = NEXT_PORT.get_or_init(|| std::sync::atomic::AtomicU32::new(std::process::id() % 100 * 100));
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    for _ in 0..span {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % span;
        let port = TEST_PORTS.start + n as u16;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?}")
}

/// `n` distinct free ports (see [`free_port`]).
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_port()).collect()
}

/// A cluster CA written by `slip gen-ca` into a fresh directory, with an
/// edge certificate from `slip gen-cert --role edge` beside it.
pub struct CaDir(PathBuf);

impl CaDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("slip-ca-{:016x}", rand::random::<u64>()));
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_slip"))
            .args(["gen-ca", "--out", dir.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "slip gen-ca failed");
        assert!(dir.join("ca.pem").exists() && dir.join("ca-key.pem").exists());
        for role in ["edge", "control"] {
            let status = std::process::Command::new(env!("CARGO_BIN_EXE_slip"))
                .args(["gen-cert", "--role", role, "--out", dir.to_str().unwrap()])
                .env("SLIP_CLUSTER_CA", dir.join("ca.pem"))
                .env("SLIP_CLUSTER_CA_KEY", dir.join("ca-key.pem"))
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "slip gen-cert --role {role} failed");
        }
        Self(dir)
    }
    /// A leaf from `slip gen-cert --role ROLE`: certificate and key paths.
    pub fn leaf(&self, role: &str) -> (String, String) {
        let path = |name: String| self.0.join(name).to_string_lossy().into_owned();
        (path(format!("{role}.pem")), path(format!("{role}-key.pem")))
    }

    pub fn cert(&self) -> String {
        self.0.join("ca.pem").to_string_lossy().into_owned()
    }
    pub fn key(&self) -> String {
        self.0.join("ca-key.pem").to_string_lossy().into_owned()
    }
}

impl Drop for CaDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
