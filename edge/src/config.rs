//! Everything an edge is told at start. Defaults are named constants next to
//! the code they bound; the binary maps flags and environment onto this.

use std::time::Duration;

use slip_proto::ids::NodeId;
use slip_proto::limits::MAX_MESSAGE_BYTES;

use crate::admission::DEFAULT_MAX_CONNECTIONS;
use crate::batcher::DEFAULT_MAX_PENDING_EVENTS;
use crate::callback::DEFAULT_CALLBACK_TIMEOUT;
use crate::hub::DEFAULT_MAX_SUBSCRIPTIONS;
use crate::outbox::OutboxLimits;

/// Default interval of server pings on an otherwise quiet connection.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(25);
/// Default time without any bytes from a client before it is taken for dead.
pub const DEFAULT_DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(60);
/// Time a client has to send its request headers.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest `max_message_bytes` taken: a client message is buffered whole
/// before its callback, so this bounds one connection's read buffer.
pub const MAX_MESSAGE_BYTES_LIMIT: usize = 16 * 1024 * 1024;

/// Longest timer setting taken (callback timeout, ping interval, dead peer).
pub const MAX_TIMER: Duration = Duration::from_secs(86_400);

/// A setting the edge cannot start with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("SLIP_JWT_SECRET: {0}")]
    Secret(#[from] slip_proto::jwt::JwtError),
    #[error("SLIP_TARGET_URL {url:?} is not an http:// or https:// URL: {reason}")]
    TargetUrl { url: String, reason: String },
    #[error("{name} is {value}; it must be between {min} and {max}")]
    OutOfRange { name: &'static str, value: String, min: String, max: String },
    #[error("building the callback client: {0}")]
    Client(String),
}

fn in_range<T: PartialOrd + ToString>(name: &'static str, value: T, min: T, max: T) -> Result<(), ConfigError> {
    if value >= min && value <= max {
        return Ok(());
    }
    Err(ConfigError::OutOfRange { name, value: value.to_string(), min: min.to_string(), max: max.to_string() })
}

/// How the edge talks to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetFormat {
    /// SLIP v4 JSON callbacks (the default).
    #[default]
    Slip,
    /// Pushpin's WebSocket-over-HTTP, with grip control messages.
    WebSocketOverHttp,
}

/// `iss` of the `Grip-Sig` token on WebSocket-over-HTTP requests: Pushpin's default.
pub const DEFAULT_GRIP_SIG_ISSUER: &str = "pushpin";

#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub node_id: NodeId,
    pub region: String,
    /// The backend's callback URL.
    pub target_url: String,
    /// HS256 secret shared with the backend.
    pub jwt_secret: Vec<u8>,
    pub target_format: TargetFormat,
    /// `iss` of `Grip-Sig` tokens (WebSocket-over-HTTP only).
    pub grip_sig_issuer: String,
    pub callback_timeout: Duration,
    /// The target opted in to BINARY events; without it a client's binary
    /// frame closes the connection with 1003.
    pub binary_events: bool,
    pub ping_interval: Duration,
    pub dead_peer_timeout: Duration,
    pub max_message_bytes: usize,
    /// Largest message a backend may send a client, in bytes
    /// (`SLIP_MAX_OUTBOUND_BYTES`): a reply with a larger TEXT, BINARY or
    /// publish is refused whole.
    pub max_outbound_bytes: usize,
    pub outbox: OutboxLimits,
    pub max_subscriptions: usize,
    pub max_pending_events: usize,
    /// Sustained messages per second one client may send (0: no limit);
    /// beyond it, after `message_burst`, the connection closes with 1008.
    pub message_rate: f64,
    pub message_burst: f64,
    /// Connections this edge holds at most (more get 503 on upgrade).
    pub max_connections: usize,
    /// An HTML page served at `GET /` to plain (non-WebSocket) requests: the
    /// demo of `slip dev`. Without it, `/` answers 426 like any other path.
    pub landing_page: Option<std::sync::Arc<str>>,
    /// How long a `slip.v1` session whose connection dropped waits to be
    /// resumed before it ends (`SLIP_RESUME_SECS`).
    pub resume_window: Duration,
    /// Whether the control nodes keep a record of each accepted connection,
    /// to send its CLOSE if this edge is lost (docs/close.md). Off in
    /// `slip dev`, where the control plane dies with the edge.
    pub record_connections: bool,
    /// Bytes parked sessions may hold here, about (`SLIP_MAX_PARKED_BYTES`):
    /// past it the oldest parked sessions end. (In count they are bounded
    /// by `max_connections`: each holds its connection's slot.)
    pub max_parked_bytes: usize,
}

/// Default bound on what parked sessions hold per edge.
pub const DEFAULT_MAX_PARKED_BYTES: usize = 512 << 20;

/// Default wait for a dropped `slip.v1` session to be resumed.
pub const DEFAULT_RESUME_WINDOW: Duration = slip_proto::session::DEFAULT_RESUME_WINDOW;

impl EdgeConfig {
    /// Checks every setting once, at start, so that a bad flag is a clear
    /// error instead of a panic (or a silent fix) in every connection later.
    pub fn validate(&self) -> Result<(), ConfigError> {
        slip_proto::jwt::check_secret(&self.jwt_secret)?;
        let url = reqwest::Url::parse(&self.target_url)
            .map_err(|e| ConfigError::TargetUrl { url: self.target_url.clone(), reason: e.to_string() })?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            let reason = "the scheme must be http or https, with a host".into();
            return Err(ConfigError::TargetUrl { url: self.target_url.clone(), reason });
        }
        // Timers are added to `Instant`s: a day at most keeps that arithmetic far from overflowing.
        let (ms, day) = (Duration::from_millis(1).as_millis(), MAX_TIMER.as_millis());
        in_range("SLIP_CALLBACK_TIMEOUT_MS", self.callback_timeout.as_millis(), ms, day)?;
        in_range("SLIP_PING_INTERVAL_SECS", self.ping_interval.as_secs(), 1, MAX_TIMER.as_secs())?;
        in_range("SLIP_DEAD_PEER_SECS", self.dead_peer_timeout.as_secs(), 1, MAX_TIMER.as_secs())?;
        in_range("SLIP_MAX_MESSAGE_BYTES", self.max_message_bytes, 1, MAX_MESSAGE_BYTES_LIMIT)?;
        in_range("SLIP_MAX_OUTBOUND_BYTES", self.max_outbound_bytes, 1, slip_proto::limits::MAX_OUTBOUND_LIMIT)?;
        in_range("SLIP_OUTBOX_MAX_MESSAGES", self.outbox.max_frames, 1, usize::MAX)?;
        in_range("SLIP_OUTBOX_MAX_BYTES", self.outbox.max_bytes, 1, usize::MAX)?;
        in_range("SLIP_MAX_PENDING_EVENTS", self.max_pending_events, 1, usize::MAX)?;
        in_range("SLIP_MESSAGE_RATE", self.message_rate, 0.0, f64::MAX)?;
        in_range("SLIP_MESSAGE_BURST", self.message_burst, 1.0, f64::MAX)?;
        in_range("SLIP_RESUME_SECS", self.resume_window.as_secs(), 0, MAX_TIMER.as_secs())?;
        in_range("SLIP_MAX_PARKED_BYTES", self.max_parked_bytes, 1, usize::MAX)?;
        Ok(())
    }

    pub fn new(node_id: NodeId, target_url: impl Into<String>, jwt_secret: impl Into<Vec<u8>>) -> Self {
        Self {
            node_id,
            region: String::new(),
            target_url: target_url.into(),
            jwt_secret: jwt_secret.into(),
            target_format: TargetFormat::Slip,
            grip_sig_issuer: DEFAULT_GRIP_SIG_ISSUER.to_owned(),
            callback_timeout: DEFAULT_CALLBACK_TIMEOUT,
            binary_events: false,
            ping_interval: DEFAULT_PING_INTERVAL,
            dead_peer_timeout: DEFAULT_DEAD_PEER_TIMEOUT,
            max_message_bytes: MAX_MESSAGE_BYTES,
            max_outbound_bytes: MAX_MESSAGE_BYTES,
            outbox: OutboxLimits::default(),
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            max_pending_events: DEFAULT_MAX_PENDING_EVENTS,
            landing_page: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            message_rate: crate::ratelimit::DEFAULT_RATE,
            message_burst: crate::ratelimit::DEFAULT_BURST,
            resume_window: DEFAULT_RESUME_WINDOW,
            record_connections: true,
            max_parked_bytes: DEFAULT_MAX_PARKED_BYTES,
        }
    }
}
