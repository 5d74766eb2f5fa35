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
}

impl EdgeConfig {
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
            outbox: OutboxLimits::default(),
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            max_pending_events: DEFAULT_MAX_PENDING_EVENTS,
            landing_page: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            message_rate: crate::ratelimit::DEFAULT_RATE,
            message_burst: crate::ratelimit::DEFAULT_BURST,
        }
    }
}
