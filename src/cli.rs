//! Command line and environment: every flag also reads an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "slip", version, about = "SLIP Sockets: a realtime WebSocket gateway for HTTP backends")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Edge and control plane in one process, on loopback by default (the default command).
    Dev(DevArgs),
    /// An edge node: holds WebSocket clients, links to every control node.
    Edge(EdgeArgs),
    /// A control node: the control APIs, a share of the channels, links to edges and other control nodes.
    Control(ControlArgs),
    /// Writes a new cluster CA (ca.pem, ca-key.pem); keep ca-key.pem off the edges.
    GenCa(GenCaArgs),
    /// Issues a node certificate for one role from the CA: SLIP_CLUSTER_CERT / SLIP_CLUSTER_KEY.
    GenCert(GenCertArgs),
    /// Prints a new random shared secret (32 bytes, hex) for SLIP_JWT_SECRET.
    GenSecret,
    /// Operate a running cluster through any control node.
    Admin(AdminArgs),
}

#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    /// A control node's API.
    #[arg(long = "control", env = "SLIP_CONTROL_URL", default_value = "http://127.0.0.1:7070", global = true)]
    pub control: String,

    /// The cluster's shared secret.
    #[arg(long, env = "SLIP_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,

    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: AdminCommand,
}

/// How long the token `slip admin open` puts in the page's address lives,
/// by default (control nodes take tokens up to `SLIP_MAX_TOKEN_SECS`).
pub const PAGE_TOKEN_SECS: u64 = 900;

#[derive(Subcommand, Debug, Clone)]
pub enum AdminCommand {
    /// Every node the control node knows: role, region, ring share, connections, link RTT.
    Nodes,
    /// Totals: control nodes, edges, connections.
    Stats,
    /// The channels with the most subscribers, most first.
    Channels {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One channel: owner, interested edges, subscribers, epoch and last offset.
    Channel { name: String },
    /// A channel's recent publications, oldest first, from its owner's history.
    History {
        channel: String,
        /// Only publications after this offset.
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// The epoch `--since` counts in; another epoch's offsets mean nothing here.
        #[arg(long)]
        epoch: Option<String>,
        /// At most this many [default: the history size].
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Who is in a channel's presence (its owner's count, members by connection id).
    Presence {
        channel: String,
        /// At most this many members [default: 1,000].
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// One connection: edge, region, channels, metadata.
    Connection { id: String },
    /// Publish text to a channel.
    Publish {
        channel: String,
        text: String,
        /// Publishing again with the same key (within the idempotency window) delivers nothing new.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Send text to one connection.
    Send { id: String, text: String },
    /// Close one connection (1000).
    Close { id: String },
    /// Drain an edge as SIGTERM would, then it exits.
    Drain { node: String },
    /// Print the admin page's address (on the control node's API) with a
    /// control token good for `--secs`: open it in a browser.
    Open {
        #[arg(long, default_value_t = PAGE_TOKEN_SECS)]
        secs: u64,
    },
    /// Print a control token good for `--secs`, for other tools (grpcurl,
    /// curl): `-H "authorization: Bearer $(slip admin token)"`.
    Token {
        #[arg(long, default_value_t = PAGE_TOKEN_SECS)]
        secs: u64,
    },
}

#[derive(Args, Debug, Clone)]
pub struct GenCaArgs {
    /// Directory to write ca.pem and ca-key.pem into (created if missing).
    #[arg(long)]
    pub out: std::path::PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct GenCertArgs {
    /// The role the certificate lets its holder play: `edge` or `control`.
    #[arg(long, value_parser = ["edge", "control"])]
    pub role: String,

    /// Issue it for this one node id only [default: any node of the role].
    #[arg(long)]
    pub node_id: Option<String>,

    /// Cluster CA certificate: a path or the PEM text.
    #[arg(long, env = "SLIP_CLUSTER_CA", hide_env_values = true)]
    pub cluster_ca: String,

    /// Cluster CA private key: a path or the PEM text.
    #[arg(long, env = "SLIP_CLUSTER_CA_KEY", hide_env_values = true)]
    pub cluster_ca_key: String,

    /// Directory to write ROLE.pem and ROLE-key.pem into (created if missing).
    #[arg(long)]
    pub out: std::path::PathBuf,
}

/// What every cluster node needs.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// This node's id [default: FLY_MACHINE_ID, else random].
    #[arg(long, env = "SLIP_NODE_ID")]
    pub node_id: Option<String>,

    /// Control nodes' link addresses (host:port, UDP), comma-separated; or `dns:NAME:PORT` to find them
    /// through DNS (A and AAAA records of NAME, re-resolved every SLIP_DNS_REFRESH_SECS).
    #[arg(long, env = "SLIP_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,

    /// DNS server (ip:port) for `dns:` peers, over UDP then TCP [default: the system's resolvers and
    /// options, from /etc/resolv.conf].
    #[arg(long, env = "SLIP_DNS_SERVER")]
    pub dns_server: Option<SocketAddr>,

    /// Seconds between DNS resolutions of `dns:` peers.
    #[arg(long, env = "SLIP_DNS_REFRESH_SECS", default_value_t = 5)]
    pub dns_refresh_secs: u64,

    /// Cluster CA certificate (the CA's, not its key): a path or the PEM text.
    #[arg(long, env = "SLIP_CLUSTER_CA", hide_env_values = true)]
    pub cluster_ca: String,

    /// This node's certificate, issued for its role by `slip gen-cert`: a path or the PEM text.
    #[arg(long, env = "SLIP_CLUSTER_CERT", hide_env_values = true)]
    pub cluster_cert: Option<String>,

    /// This node's certificate key: a path or the PEM text.
    #[arg(long, env = "SLIP_CLUSTER_KEY", hide_env_values = true)]
    pub cluster_key: Option<String>,

    /// Region this node runs in, reported by GetConnection [default: FLY_REGION].
    #[arg(long, env = "SLIP_REGION")]
    pub region: Option<String>,

    /// Prometheus /metrics listener.
    #[arg(long, env = "SLIP_METRICS_LISTEN", default_value = "[::]:9090")]
    pub metrics_listen: SocketAddr,
}

#[derive(Args, Debug, Clone)]
pub struct EdgeArgs {
    /// The backend's callback URL (SLIP v4 format).
    #[arg(long, env = "SLIP_TARGET_URL")]
    pub target_url: String,

    /// Shared HS256 secret for callbacks and the control APIs.
    #[arg(long, env = "SLIP_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,

    /// WebSocket (and health) listener.
    #[arg(long, env = "SLIP_LISTEN", default_value = "[::]:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    #[command(flatten)]
    pub edge: EdgeTuning,

    #[command(flatten)]
    pub outbound: OutboundLimit,
}

#[derive(Args, Debug, Clone)]
pub struct ControlArgs {
    /// Shared HS256 secret for the control APIs.
    #[arg(long, env = "SLIP_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,

    /// gRPC and HTTP JSON control API listener (one port for both).
    #[arg(long, env = "SLIP_CONTROL_LISTEN", default_value = "[::]:7070")]
    pub control_listen: SocketAddr,

    /// Who may publish through GRIP's `POST /publish/` on the control port: `jwt` (a Bearer token
    /// signed with the shared secret, any issuer) or `none` (anyone who reaches the port, as Pushpin).
    #[arg(long, env = "SLIP_GRIP_PUBLISH_AUTH", value_enum, default_value = "jwt")]
    pub grip_publish_auth: GripPublishAuth,

    /// Longest a control token may live, `exp - iat`, in seconds (an `iat` more than 60 s ahead
    /// of this node's clock is refused too).
    #[arg(long, env = "SLIP_MAX_TOKEN_SECS", default_value_t = slip_proto::jwt::DEFAULT_MAX_TOKEN_SECS)]
    pub max_token_secs: u64,

    /// Cluster CA private key (a path or the PEM text), instead of SLIP_CLUSTER_CERT/KEY: the node
    /// issues itself a control certificate at start. Never give it to an edge.
    #[arg(long, env = "SLIP_CLUSTER_CA_KEY", hide_env_values = true)]
    pub cluster_ca_key: Option<String>,

    /// QUIC link endpoint (UDP) that edges and other control nodes dial.
    #[arg(long, env = "SLIP_LINK_LISTEN", default_value = "[::]:7071")]
    pub link_listen: SocketAddr,

    /// The link address other nodes should dial, shared with them so they find every control node
    /// [default: SLIP_LINK_LISTEN if it names an address, else FLY_PRIVATE_IP with its port].
    #[arg(long, env = "SLIP_LINK_ADVERTISE")]
    pub link_advertise: Option<SocketAddr>,

    /// Control nodes the first cluster forms with: the control nodes agree on the ring only once
    /// this many have met [default: the control nodes in SLIP_PEERS, this one included; required
    /// with dns: discovery].
    #[arg(long, env = "SLIP_BOOTSTRAP_EXPECT")]
    pub bootstrap_expect: Option<usize>,

    /// Where this control node keeps its consensus state (a volume on Fly), so that after a
    /// restart it is the same voter [default: none: a restarted node joins as a new voter].
    #[arg(long, env = "SLIP_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,

    /// Seconds a `slip.v1` session whose edge is gone may resume on another edge: as long, it
    /// stays a member of its channels' presence. Give control nodes the edges' value.
    #[arg(long, env = "SLIP_RESUME_SECS", default_value_t = slip_proto::session::DEFAULT_RESUME_WINDOW.as_secs())]
    pub resume_secs: u64,

    #[command(flatten)]
    pub streams: StreamTuning,

    #[command(flatten)]
    pub lifecycle: LifecycleArgs,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    #[command(flatten)]
    pub outbound: OutboundLimit,
}

/// What control nodes send backends themselves (control nodes and dev):
/// channel lifecycle events, and the CLOSEs of a lost edge's connections.
#[derive(Args, Debug, Clone)]
pub struct LifecycleArgs {
    /// Where the owner of each channel POSTs CHANNEL_OCCUPIED and CHANNEL_VACATED events (signed as
    /// callbacks, aud=WebSocketEvent) [default: none, no events].
    #[arg(long, env = "SLIP_EVENTS_URL")]
    pub events_url: Option<String>,

    /// Seconds a channel's last subscriber must have been gone before CHANNEL_VACATED (so a
    /// reconnect does not flap it).
    #[arg(long, env = "SLIP_VACATE_SECS", default_value_t = slip_control_plane::occupancy::DEFAULT_VACATE_AFTER.as_secs())]
    pub vacate_secs: u64,

    /// Seconds a control node retries the CLOSE of a connection whose edge was lost, until the
    /// backend answers 2xx.
    #[arg(long, env = "SLIP_CLOSE_RETRY_SECS", default_value_t = slip_control_plane::plane::DEFAULT_CLOSE_RETRY.as_secs())]
    pub close_retry_secs: u64,
}

impl LifecycleArgs {
    /// Starts sending CLOSEs, and events if a URL is set, from `plane`.
    pub fn start(
        &self,
        plane: &std::sync::Arc<slip_control_plane::plane::ControlPlane>,
        secret: &[u8],
    ) -> anyhow::Result<()> {
        plane.send_closes(secret, Duration::from_secs(self.close_retry_secs));
        let Some(url) = &self.events_url else { return Ok(()) };
        let parsed: axum::http::Uri = url.parse().map_err(|e| anyhow::anyhow!("SLIP_EVENTS_URL {url:?}: {e}"))?;
        anyhow::ensure!(
            matches!(parsed.scheme_str(), Some("http" | "https")) && parsed.host().is_some(),
            "SLIP_EVENTS_URL must be an http or https URL: {url:?}"
        );
        plane.send_lifecycle_events(url.clone(), secret, Duration::from_secs(self.vacate_secs));
        Ok(())
    }
}

#[derive(Args, Debug, Clone)]
pub struct DevArgs {
    /// The backend's callback URL (SLIP v4 format) [default: the built-in demo chat backend].
    #[arg(long, env = "SLIP_TARGET_URL")]
    pub target_url: Option<String>,

    /// Shared HS256 secret for callbacks and the control APIs [default: a random secret, printed].
    #[arg(long, env = "SLIP_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// WebSocket (and health) listener.
    #[arg(long, env = "SLIP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// gRPC and HTTP JSON control API listener (one port for both).
    #[arg(long, env = "SLIP_CONTROL_LISTEN", default_value = "127.0.0.1:7070")]
    pub control_listen: SocketAddr,

    /// Who may publish through GRIP's `POST /publish/` on the control port: `jwt` (a Bearer token
    /// signed with the shared secret, any issuer) or `none` (anyone who reaches the port, as Pushpin).
    #[arg(long, env = "SLIP_GRIP_PUBLISH_AUTH", value_enum, default_value = "jwt")]
    pub grip_publish_auth: GripPublishAuth,

    /// Longest a control token may live, `exp - iat`, in seconds (an `iat` more than 60 s ahead
    /// of this node's clock is refused too).
    #[arg(long, env = "SLIP_MAX_TOKEN_SECS", default_value_t = slip_proto::jwt::DEFAULT_MAX_TOKEN_SECS)]
    pub max_token_secs: u64,

    /// This node's id [default: FLY_MACHINE_ID, else random].
    #[arg(long, env = "SLIP_NODE_ID")]
    pub node_id: Option<String>,

    /// Prometheus /metrics listener [default: off].
    #[arg(long, env = "SLIP_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    #[command(flatten)]
    pub edge: EdgeTuning,

    #[command(flatten)]
    pub streams: StreamTuning,

    #[command(flatten)]
    pub lifecycle: LifecycleArgs,

    #[command(flatten)]
    pub outbound: OutboundLimit,
}

/// What a backend may send clients, wherever it enters: edges (callback
/// replies) and control nodes (the control APIs).
#[derive(Args, Debug, Clone)]
pub struct OutboundLimit {
    /// Largest message to clients, in bytes: a TEXT, BINARY or publish in a callback reply or a
    /// control request (gRPC, HTTP JSON, GRIP); a larger one is refused. At most 960 KiB (a message
    /// travels between nodes in one link frame); the default is SLIP v4's 128 KiB. The limit on what
    /// clients send is SLIP_MAX_MESSAGE_BYTES.
    #[arg(long, env = "SLIP_MAX_OUTBOUND_BYTES", default_value_t = slip_proto::limits::MAX_MESSAGE_BYTES)]
    pub max_outbound_bytes: usize,
}

impl OutboundLimit {
    /// The limit, checked.
    pub fn bytes(&self) -> anyhow::Result<usize> {
        let (n, max) = (self.max_outbound_bytes, slip_proto::limits::MAX_OUTBOUND_LIMIT);
        anyhow::ensure!((1..=max).contains(&n), "SLIP_MAX_OUTBOUND_BYTES is {n}; it must be between 1 and {max}");
        Ok(n)
    }
}

/// Channel streams kept by a control node (docs/streams.md).
#[derive(Args, Debug, Clone)]
pub struct StreamTuning {
    /// Publications kept per channel for History (0: none; offsets are still given).
    #[arg(long, env = "SLIP_HISTORY_SIZE", default_value_t = slip_control_plane::streams::DEFAULT_HISTORY_SIZE)]
    pub history_size: usize,

    /// Seconds a publication stays in history.
    #[arg(long, env = "SLIP_HISTORY_TTL_SECS", default_value_t = 300)]
    pub history_ttl_secs: u64,

    /// History bytes this node keeps in all, the oldest publications going first
    /// [default: an eighth of the machine's memory, at least 64 MiB].
    #[arg(long, env = "SLIP_HISTORY_MAX_BYTES")]
    pub history_max_bytes: Option<usize>,

    /// Seconds in which a publish repeating an idempotency key on its channel is recognized.
    #[arg(long, env = "SLIP_IDEMPOTENCY_SECS", default_value_t = 300)]
    pub idempotency_secs: u64,

    /// Bytes the idempotency keys a control node remembers may cost in all (a key costs twice its
    /// length and about 96 bytes); past it the oldest anywhere are forgotten before their window ends.
    #[arg(long, env = "SLIP_IDEMPOTENCY_MAX_BYTES", default_value_t = slip_control_plane::streams::DEFAULT_MAX_KEY_BYTES)]
    pub idempotency_max_bytes: usize,

    /// Seconds an idle stream's epoch and offset are kept after its last publish.
    #[arg(long, env = "SLIP_STREAM_META_TTL_SECS", default_value_t = 86_400)]
    pub stream_meta_ttl_secs: u64,

    /// Copies of each channel's stream beyond its owner's, on the next control nodes of the ring:
    /// a publish is confirmed (and delivered) once they have it. 0 turns replication off.
    #[arg(long, env = "SLIP_STREAM_REPLICAS", default_value_t = slip_control_plane::streams::DEFAULT_REPLICAS)]
    pub stream_replicas: usize,
}

impl StreamTuning {
    pub fn limits(&self) -> anyhow::Result<slip_control_plane::streams::StreamLimits> {
        let day = 86_400;
        for (name, secs) in [
            ("SLIP_HISTORY_TTL_SECS", self.history_ttl_secs),
            ("SLIP_IDEMPOTENCY_SECS", self.idempotency_secs),
            ("SLIP_STREAM_META_TTL_SECS", self.stream_meta_ttl_secs),
        ] {
            anyhow::ensure!((1..=30 * day).contains(&secs), "{name} is {secs}; it must be between 1 and {}", 30 * day);
        }
        Ok(slip_control_plane::streams::StreamLimits {
            history_size: self.history_size,
            history_ttl: Duration::from_secs(self.history_ttl_secs),
            max_bytes: self.history_max_bytes.unwrap_or_else(slip_control_plane::streams::default_max_bytes),
            idempotency_ttl: Duration::from_secs(self.idempotency_secs),
            max_key_bytes: self.idempotency_max_bytes,
            meta_ttl: Duration::from_secs(self.stream_meta_ttl_secs),
            max_streams: slip_control_plane::streams::MAX_STREAMS,
            // Set from SLIP_MAX_OUTBOUND_BYTES by the command.
            max_message_bytes: slip_proto::limits::MAX_MESSAGE_BYTES,
            replicas: self.stream_replicas,
            // Set from SLIP_RESUME_SECS by the command.
            resume_window: slip_proto::session::DEFAULT_RESUME_WINDOW,
        })
    }
}

/// Limits and timings of the edge; the defaults are the documented ones.
#[derive(Args, Debug, Clone)]
pub struct EdgeTuning {
    /// The backend's callback format: `slip` (SLIP v4 JSON) or `websocket-over-http` (Pushpin's, with grip).
    #[arg(long, env = "SLIP_TARGET_FORMAT", value_enum, default_value = "slip")]
    pub target_format: TargetFormatArg,

    /// `iss` of the Grip-Sig token on WebSocket-over-HTTP requests (signed with the shared secret).
    #[arg(long, env = "SLIP_GRIP_SIG_ISS", default_value = slip_edge::config::DEFAULT_GRIP_SIG_ISSUER)]
    pub grip_sig_iss: String,

    /// The target accepts BINARY events (base64 `data`); without it a client's binary frame closes with 1003.
    #[arg(long, env = "SLIP_TARGET_BINARY", default_value_t = false)]
    pub target_binary: bool,

    /// Time the backend has to answer one callback, in milliseconds.
    #[arg(long, env = "SLIP_CALLBACK_TIMEOUT_MS", default_value_t = 10_000)]
    pub callback_timeout_ms: u64,

    /// Seconds between server pings on a quiet connection.
    #[arg(long, env = "SLIP_PING_INTERVAL_SECS", default_value_t = 25)]
    pub ping_interval_secs: u64,

    /// Seconds without any bytes from a client before it is taken for dead.
    #[arg(long, env = "SLIP_DEAD_PEER_SECS", default_value_t = 60)]
    pub dead_peer_secs: u64,

    /// Largest message a client may send, in bytes (larger ones close with 1009); at most 16 MiB.
    /// Messages to clients are bounded by SLIP_MAX_OUTBOUND_BYTES wherever they enter.
    #[arg(long, env = "SLIP_MAX_MESSAGE_BYTES", default_value_t = slip_proto::limits::MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Frames queued for one connection before it is closed as a slow consumer (1013).
    #[arg(long, env = "SLIP_OUTBOX_MAX_MESSAGES", default_value_t = slip_edge::outbox::DEFAULT_OUTBOX_FRAMES)]
    pub outbox_max_messages: usize,

    /// Bytes queued for one connection before it is closed as a slow consumer (1013).
    #[arg(long, env = "SLIP_OUTBOX_MAX_BYTES", default_value_t = slip_edge::outbox::DEFAULT_OUTBOX_BYTES)]
    pub outbox_max_bytes: usize,

    /// Channels one connection may be subscribed to.
    #[arg(long, env = "SLIP_MAX_SUBSCRIPTIONS", default_value_t = slip_edge::hub::DEFAULT_MAX_SUBSCRIPTIONS)]
    pub max_subscriptions: usize,

    /// Sustained messages per second one client may send (0: no limit); past it, and past the burst,
    /// the connection closes with 1008.
    #[arg(long, env = "SLIP_MESSAGE_RATE", default_value_t = slip_edge::ratelimit::DEFAULT_RATE)]
    pub message_rate: f64,

    /// Messages one client may send at once before the rate applies.
    #[arg(long, env = "SLIP_MESSAGE_BURST", default_value_t = slip_edge::ratelimit::DEFAULT_BURST)]
    pub message_burst: f64,

    /// Connections this edge holds at most; more get 503 on upgrade.
    #[arg(long, env = "SLIP_MAX_CONNECTIONS", default_value_t = slip_edge::admission::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Seconds a SIGTERM/SIGINT drain may take: sockets close with 1012 over most of it, then the process exits.
    /// Keep it under the platform's kill timeout.
    #[arg(long, env = "SLIP_DRAIN_SECONDS", default_value_t = 20)]
    pub drain_seconds: u64,

    /// Seconds a `slip.v1` session whose connection dropped waits to be resumed; only then does the
    /// backend get its CLOSE.
    #[arg(long, env = "SLIP_RESUME_SECS", default_value_t = slip_edge::config::DEFAULT_RESUME_WINDOW.as_secs())]
    pub resume_secs: u64,

    /// Bytes the parked `slip.v1` sessions of an edge may hold, about (metadata, places, kept
    /// messages); past it the oldest end, with their CLOSE. In count they are bounded by
    /// `SLIP_MAX_CONNECTIONS`: a parked session keeps its connection's slot.
    #[arg(long, env = "SLIP_MAX_PARKED_BYTES", default_value_t = slip_edge::config::DEFAULT_MAX_PARKED_BYTES)]
    pub max_parked_bytes: usize,

    /// Events waiting behind a connection's in-flight callback before its socket is no longer read.
    #[arg(long, env = "SLIP_MAX_PENDING_EVENTS", default_value_t = slip_edge::batcher::DEFAULT_MAX_PENDING_EVENTS)]
    pub max_pending_events: usize,
}

impl EdgeTuning {
    pub fn drain_grace(&self) -> Duration {
        Duration::from_secs(self.drain_seconds)
    }

    pub fn apply(&self, config: &mut slip_edge::EdgeConfig) {
        config.target_format = match self.target_format {
            TargetFormatArg::Slip => slip_edge::config::TargetFormat::Slip,
            TargetFormatArg::WebsocketOverHttp => slip_edge::config::TargetFormat::WebSocketOverHttp,
        };
        config.grip_sig_issuer = self.grip_sig_iss.clone();
        config.binary_events = self.target_binary;
        // Checked by `EdgeConfig::validate` when the edge starts.
        config.callback_timeout = Duration::from_millis(self.callback_timeout_ms);
        config.ping_interval = Duration::from_secs(self.ping_interval_secs);
        config.dead_peer_timeout = Duration::from_secs(self.dead_peer_secs);
        config.max_message_bytes = self.max_message_bytes;
        config.outbox.max_frames = self.outbox_max_messages;
        config.outbox.max_bytes = self.outbox_max_bytes;
        config.max_subscriptions = self.max_subscriptions;
        config.max_pending_events = self.max_pending_events;
        config.max_connections = self.max_connections;
        config.message_rate = self.message_rate;
        config.message_burst = self.message_burst;
        config.resume_window = Duration::from_secs(self.resume_secs);
        config.max_parked_bytes = self.max_parked_bytes;
    }
}

/// `--grip-publish-auth`: see [`slip_control_plane::grip_api::GripAuth`].
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum GripPublishAuth {
    Jwt,
    None,
}

impl From<GripPublishAuth> for slip_control_plane::grip_api::GripAuth {
    fn from(auth: GripPublishAuth) -> Self {
        match auth {
            GripPublishAuth::Jwt => Self::Jwt,
            GripPublishAuth::None => Self::None,
        }
    }
}

/// `--target-format`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetFormatArg {
    Slip,
    WebsocketOverHttp,
}
