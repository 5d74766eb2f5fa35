//! Pushing through the control plane: one trait, two transports.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use slip_proto::command::{Batch, Command, decode_binary};
use slip_proto::jwt;
use slip_proto::pb::control_client::ControlClient;
use slip_proto::pb::{
    CloseChannelRequest, CloseRequest, GetConnectionRequest, SendRequest, SetMetadataRequest, SubscriptionRequest,
    send_request,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::payload::Payload;

/// Why a control request failed.
///
/// ```
/// let e = slip_sockets::ControlError::Unauthorized;
/// assert_eq!(e.to_string(), "control plane refused the token (check the JWT secret)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No answer from the control plane (connection refused, a timeout).
    #[error("control plane unreachable: {0}")]
    Unreachable(String),
    /// The token was refused: the secret differs from the gateway's, or
    /// the clock is off.
    #[error("control plane refused the token (check the JWT secret)")]
    Unauthorized,
    /// The request was malformed (a bad channel name, an unknown command).
    #[error("control plane rejected the commands: {0}")]
    Rejected(String),
    /// The connection (or channel) named is not there.
    #[error("not found: {0}")]
    NotFound(String),
    /// The control plane cannot do it now (its node has no lease, an owner
    /// did not answer): try again, with the same idempotency key.
    #[error("control plane unavailable: {0}")]
    Unavailable(String),
    /// The HTTP JSON API ran the batch up to `index`; that command failed
    /// and the ones after it did not run.
    #[error("command {index} ({command}) failed: {reason}")]
    Failed {
        /// The failed command's place in the batch, from 0.
        index: usize,
        /// Its type, as in the batch (`"TEXT"`, `"SUBSCRIBE"`, ...).
        command: String,
        /// Why it failed.
        reason: String,
    },
}

/// How commands reach the control plane.
///
/// ```no_run
/// use slip_sockets::{Command, Transport};
/// # async fn demo() -> Result<(), slip_sockets::ControlError> {
/// let http = slip_sockets::HttpControl::new("http://127.0.0.1:7070", b"s3cret");
/// http.run(vec![Command::CloseChannel { channel_id: "old-room".into() }]).await?;
/// # Ok(()) }
/// ```
pub trait Transport: Send + Sync {
    /// Runs the commands in order; stops at the first that fails.
    fn run(&self, commands: Vec<Command>) -> impl Future<Output = Result<(), ControlError>> + Send;
}

/// The SLIP v4 HTTP JSON control API: one POST per batch, as the original SDK did.
#[derive(Clone)]
pub struct HttpControl {
    http: reqwest::Client,
    url: String,
    secret: Arc<[u8]>,
}

impl HttpControl {
    /// A transport to the control API at `url` (e.g. `http://127.0.0.1:7070`).
    ///
    /// ```
    /// let control = slip_sockets::HttpControl::new("http://127.0.0.1:7070", b"s3cret");
    /// ```
    pub fn new(url: impl Into<String>, secret: &[u8]) -> Self {
        Self { http: reqwest::Client::new(), url: url.into(), secret: secret.into() }
    }
}

impl Transport for HttpControl {
    async fn run(&self, commands: Vec<Command>) -> Result<(), ControlError> {
        let token = jwt::sign(&self.secret, jwt::AUD_CONTROL_EVENT, jwt::now());
        let body =
            serde_json::to_vec(&Batch { events: commands }).map_err(|e| ControlError::Rejected(e.to_string()))?;
        let response = self
            .http
            .post(&self.url)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| ControlError::Unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        if let Some(failed) = failed_command(&body) {
            return Err(failed);
        }
        match status {
            403 => Err(ControlError::Unauthorized),
            400 => Err(ControlError::Rejected(body)),
            status => Err(ControlError::Unavailable(format!("HTTP {status}: {body}"))),
        }
    }
}

/// The command a failed batch names (`{"index": …, "type": …, "error": …}`).
fn failed_command(body: &str) -> Option<ControlError> {
    let body: serde_json::Value = serde_json::from_str(body).ok()?;
    Some(ControlError::Failed {
        index: usize::try_from(body.get("index")?.as_u64()?).ok()?,
        command: body.get("type")?.as_str()?.to_owned(),
        reason: body.get("error")?.as_str()?.to_owned(),
    })
}

/// Signs each gRPC call with a fresh token (the interceptor of [`GrpcControl`]).
///
/// ```
/// use tonic::service::Interceptor;
/// let mut signer = slip_sockets::Signer::new(b"s3cret");
/// let request = signer.call(tonic::Request::new(())).unwrap();
/// assert!(request.metadata().get("authorization").is_some());
/// ```
/// Signs control tokens with the shared secret.
#[derive(Clone)]
pub struct Signer(Arc<[u8]>);

impl Signer {
    /// A signer for `secret`, the gateway's `SLIP_JWT_SECRET`.
    pub fn new(secret: &[u8]) -> Self {
        Self(secret.into())
    }
}

impl tonic::service::Interceptor for Signer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let token = jwt::sign(&self.0, jwt::AUD_CONTROL_EVENT, jwt::now());
        let value = format!("Bearer {token}").parse().map_err(|_| tonic::Status::internal("token is not ASCII"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

/// The gRPC control API (`slip.v1.Control`): one call per command.
///
/// ```no_run
/// # async fn demo() -> Result<(), slip_sockets::ControlError> {
/// let grpc = slip_sockets::GrpcControl::connect("http://127.0.0.1:7070", b"s3cret").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct GrpcControl {
    /// One client per control node given; calls go to the current one, and
    /// a publish that finds it unavailable moves on to the next.
    clients: Arc<[ControlClient<InterceptedService<Channel, Signer>>]>,
    current: Arc<std::sync::atomic::AtomicUsize>,
}

/// How often POLL_FOR_CONNECTION asks over gRPC.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// Longest one call may take before it counts as unavailable (a paused or
/// cut-off control node answers nothing): the next node is tried.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a connection to a control node may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl GrpcControl {
    /// Connects to the control API at `url` (e.g. `http://127.0.0.1:7070`);
    /// see the type's example.
    pub async fn connect(url: impl Into<String>, secret: &[u8]) -> Result<Self, ControlError> {
        let endpoint = endpoint(url.into())?;
        let channel = endpoint.connect().await.map_err(|e| ControlError::Unreachable(e.to_string()))?;
        Ok(Self::over([channel], secret))
    }

    /// The control API of any of several control nodes: calls go to one of
    /// them, and a publish the one in use cannot take (it is down, paused,
    /// or cut off from the others) is retried on the next with the same
    /// idempotency key. Connections open when first used.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), slip_sockets::ControlError> {
    /// let urls = ["http://10.0.0.1:7070", "http://10.0.0.2:7070", "http://10.0.0.3:7070"];
    /// let grpc = slip_sockets::GrpcControl::connect_any(&urls, b"s3cret")?;
    /// # Ok(()) }
    /// ```
    pub fn connect_any(urls: &[impl AsRef<str>], secret: &[u8]) -> Result<Self, ControlError> {
        if urls.is_empty() {
            return Err(ControlError::Unreachable("no control node given".into()));
        }
        let channels = urls
            .iter()
            .map(|url| Ok(endpoint(url.as_ref().to_owned())?.connect_lazy()))
            .collect::<Result<Vec<_>, ControlError>>()?;
        Ok(Self::over(channels, secret))
    }

    fn over(channels: impl IntoIterator<Item = Channel>, secret: &[u8]) -> Self {
        let clients = channels.into_iter().map(|c| ControlClient::with_interceptor(c, Signer::new(secret))).collect();
        Self { clients, current: Arc::default() }
    }

    /// The client calls go to now.
    pub(crate) fn client(&self) -> ControlClient<InterceptedService<Channel, Signer>> {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed) % self.clients.len();
        self.clients[i].clone()
    }

    /// Calls go to the next control node from now on; true if there is another.
    pub(crate) fn move_on(&self) -> bool {
        self.current.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.clients.len() > 1
    }

    /// How many control nodes calls may go to.
    pub(crate) fn nodes(&self) -> usize {
        self.clients.len()
    }

    async fn one(&self, command: Command) -> Result<(), ControlError> {
        let mut client = self.client();
        match command {
            Command::Accept { .. } => return Err(ControlError::Rejected("ACCEPT only answers OPEN".into())),
            Command::Text { connection_id, data } => {
                client.send(SendRequest { connection_id, message: Some(send_request::Message::Text(data)) }).await?;
            }
            Command::Binary { connection_id, data } => {
                let bytes = decode_binary(&data).map_err(ControlError::Rejected)?;
                let message = Some(send_request::Message::Binary(bytes.into()));
                client.send(SendRequest { connection_id, message }).await?;
            }
            Command::Subscribe { connection_id, channel, presence, join_leave } => {
                let presence_json = presence.map(|info| info.to_string()).unwrap_or_default();
                client.subscribe(SubscriptionRequest { connection_id, channel, presence_json, join_leave }).await?;
            }
            Command::Unsubscribe { connection_id, channel } => {
                client.unsubscribe(SubscriptionRequest { connection_id, channel, ..Default::default() }).await?;
            }
            // Confirmed, and retried with one idempotency key (`stream.rs`).
            Command::PublishText { channel_id, data, idempotency_key } => {
                self.publish(channel_id, Payload::Text(data), idempotency_key).await?;
            }
            Command::PublishBinary { channel_id, data, idempotency_key } => {
                let bytes = decode_binary(&data).map_err(ControlError::Rejected)?;
                self.publish(channel_id, Payload::Binary(bytes), idempotency_key).await?;
            }
            Command::CloseChannel { channel_id } => {
                client.close_channel(CloseChannelRequest { channel: channel_id }).await?;
            }
            Command::SetMetadata { connection_id, metadata } => {
                client.set_metadata(SetMetadataRequest { connection_id, metadata_json: metadata.to_string() }).await?;
            }
            Command::Close { connection_id, code, reason } => {
                let request =
                    CloseRequest { connection_id, code: code.map_or(0, u32::from), reason: reason.unwrap_or_default() };
                client.close(request).await?;
            }
            Command::PollForConnection { connection_id, timeout } => {
                let wait = timeout.min(slip_proto::limits::MAX_POLL_TIMEOUT_MS);
                let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
                loop {
                    let request = GetConnectionRequest { connection_id: connection_id.clone() };
                    match client.get_connection(request).await {
                        Ok(_) => break,
                        Err(status)
                            if status.code() == tonic::Code::NotFound && tokio::time::Instant::now() < deadline =>
                        {
                            tokio::time::sleep(POLL_EVERY).await;
                        }
                        Err(status) if status.code() == tonic::Code::NotFound => break,
                        Err(status) => return Err(from_status(status)),
                    }
                }
            }
        }
        Ok(())
    }
}

fn endpoint(url: String) -> Result<tonic::transport::Endpoint, ControlError> {
    Ok(tonic::transport::Endpoint::from_shared(url)
        .map_err(|e| ControlError::Unreachable(e.to_string()))?
        .timeout(CALL_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT))
}

impl Transport for GrpcControl {
    async fn run(&self, commands: Vec<Command>) -> Result<(), ControlError> {
        for command in commands {
            self.one(command).await?;
        }
        Ok(())
    }
}

impl From<tonic::Status> for ControlError {
    fn from(status: tonic::Status) -> Self {
        from_status(status)
    }
}

pub(crate) fn from_status(status: tonic::Status) -> ControlError {
    match status.code() {
        tonic::Code::Unauthenticated => ControlError::Unauthorized,
        tonic::Code::NotFound => ControlError::NotFound(status.message().to_owned()),
        tonic::Code::InvalidArgument => ControlError::Rejected(status.message().to_owned()),
        _ => ControlError::Unavailable(status.message().to_owned()),
    }
}
