//! Every metric SLIP Sockets exports, defined here and nowhere else, so names,
//! help texts and labels stay consistent. Nodes record through [`metrics()`];
//! [`init`] fixes the `node` and `region` labels once at start, and
//! [`encode`] renders the Prometheus text format for `/metrics`.
//!
//! ```
//! slip_metrics::metrics().publishes.inc();
//! assert!(slip_metrics::encode().contains("slip_publishes_total"));
//! ```

#![warn(missing_docs)]

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

mod latency;
pub use latency::{LATENCY_BUCKETS, LATENCY_COUNTS, Latency, quantile};

/// A label set with one `kind` label (error kinds, refusal reasons).
pub type ByKind = Family<Vec<(&'static str, &'static str)>, Counter>;
/// A label set with one `peer` label.
pub type ByPeer = Family<Vec<(&'static str, String)>, Gauge<f64, AtomicU64>>;

/// Every metric a node exports; one set per process ([`metrics`]).
pub struct Metrics {
    /// Open WebSocket connections on this edge.
    pub connections: Gauge,
    /// WebSocket connections accepted.
    pub connections_opened: Counter,
    /// Upgrades not accepted, by reason: refused, backend_error, backend_timeout, draining, full, no_view.
    pub upgrades_refused: ByKind,
    /// Messages received from clients.
    pub frames_in: Counter,
    /// Frames written to clients.
    pub frames_out: Counter,
    /// Time the backend took to answer one callback attempt.
    pub callback_seconds: Latency,
    /// Failed callback attempts, by kind: timeout, network, status, reply.
    pub callback_errors: ByKind,
    /// `slip.v1` sessions, by what happened: parked, resumed, recovered,
    /// not_recovered (something could not be replayed), expired, refused
    /// (a resume token that was not the session's latest, or unknown here).
    pub sessions: ByKind,
    /// Publishes stamped and fanned out by this node as a channel's owner.
    pub publishes: Counter,
    /// Time from a publish reaching this control node through the control
    /// API to its owner's confirmation (the channel's replicas have it).
    pub publish_seconds: Latency,
    /// Messages queued for local connections (one per recipient).
    pub deliveries: Counter,
    /// Publications an edge missed and could not fetch from history.
    pub stream_gaps: Counter,
    /// Bytes of channel history this control node holds.
    pub history_bytes: Gauge,
    /// Deadlines of parked sessions an edge's expiry timer holds (one per session).
    pub session_deadlines: Gauge,
    /// What the idempotency keys this control node remembers cost, in bytes.
    pub idempotency_key_bytes: Gauge,
    /// Idempotency keys forgotten before their window ended, to keep within bytes.
    pub idempotency_keys_shed: Counter,
    /// Streams moved to a new epoch because two owners had extended them (a partition).
    pub stream_divergences: Counter,
    /// Connections closed because their outbound queue overflowed (1013).
    pub slow_consumer_closes: Counter,
    /// Frames an edge ignored as coming from a channel's owner under an
    /// older view (paused or cut off while another took over).
    pub stale_frames: Counter,
    /// The term of the ring view this node applied.
    pub view_term: Gauge,
    /// Whether this control node holds its lease (1) or not (0).
    pub lease_held: Gauge,
    /// Publishes a control node refused, by reason: no_lease, held_too_long,
    /// too_many, hops, owner_unreachable, owner_changed.
    pub publishes_refused: ByKind,
    /// Channel lifecycle events to `SLIP_EVENTS_URL`, by what became of
    /// them: sent (the backend answered 2xx), failed (an attempt that did
    /// not; it is retried), dropped (too many waited).
    pub lifecycle_events: ByKind,
    /// CLOSEs a control node sent for connections of lost edges, by
    /// outcome: sent (2xx), failed (an attempt; retried), expired (given up
    /// after SLIP_CLOSE_RETRY_SECS), dropped (too many waited), not_kept
    /// (a record past the bound), deferred (another control node still
    /// links the edge).
    pub closes: ByKind,
    /// WebSocket-over-HTTP messages dropped in grip mode for lacking the message prefix.
    pub unprefixed_messages: Counter,
    /// Link round-trip time, by peer node.
    pub link_rtt_seconds: ByPeer,
    /// Links that came up (first and again).
    pub link_ups: Counter,
    /// Frames not sent because a link was full or down.
    pub link_drops: Counter,
    /// 1, labelled with what this process is (`edge`, `control`, `dev`):
    /// what alerts join on to look at one role's nodes.
    pub node_info: ByRole,
    /// Control nodes this edge is linked to now.
    pub control_links: Gauge,
    /// 1 while this edge drains (SIGTERM), else 0.
    pub draining: Gauge,
    /// Bytes parked `slip.v1` sessions hold on this edge, about.
    pub parked_bytes: Gauge,
    /// The bound on them (`SLIP_MAX_PARKED_BYTES`): past it the oldest are ended.
    pub parked_bytes_limit: Gauge,
    /// Entries in each structure that grows with connections, channels,
    /// publications or questions ([`set_entries`]).
    pub entries: ByStructure,
}

/// A label set with one `role` label.
pub type ByRole = Family<Vec<(&'static str, &'static str)>, Gauge>;
/// A label set with one `structure` label.
pub type ByStructure = Family<Vec<(&'static str, &'static str)>, Gauge>;

/// What each structure of a node that grows with its connections, channels,
/// publications or questions holds now, by name (`slip_entries{structure}`).
pub type Sizes = Vec<(&'static str, usize)>;

/// Sets `slip_entries` from `sizes` (read when `/metrics` is scraped).
pub fn set_entries(sizes: &[(&'static str, usize)]) {
    for (structure, n) in sizes {
        metrics().entries.get_or_create(&vec![("structure", *structure)]).set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
}

struct Exported {
    metrics: Metrics,
    registry: Registry,
}

static EXPORTED: OnceLock<Exported> = OnceLock::new();
static LABELS: OnceLock<(String, String)> = OnceLock::new();

/// Sets the `node` and `region` labels of every metric. Call before the
/// first use of [`metrics()`]; later calls change nothing.
pub fn init(node: &str, region: &str) {
    let _ = LABELS.set((node.to_owned(), region.to_owned()));
}

/// The kinds of `slip_publishes_refused_total`.
pub const PUBLISH_REFUSAL_KINDS: [&str; 6] =
    ["no_lease", "held_too_long", "too_many", "hops", "owner_unreachable", "owner_changed"];

/// Publishes refused, of every kind, since the start.
pub fn publishes_refused_total() -> u64 {
    let family = &metrics().publishes_refused;
    PUBLISH_REFUSAL_KINDS.iter().map(|k| family.get_or_create(&kind(k)).get()).sum()
}

/// The kinds of `slip_callback_errors_total`.
pub const CALLBACK_ERROR_KINDS: [&str; 4] = ["timeout", "network", "status", "reply"];

/// Failed callback attempts of every kind, since the start.
pub fn callback_errors_total() -> u64 {
    let family = &metrics().callback_errors;
    CALLBACK_ERROR_KINDS.iter().map(|k| family.get_or_create(&kind(k)).get()).sum()
}

/// Says what this process is (`edge`, `control`, `dev`): `slip_node_info{role}` 1.
pub fn set_role(role: &'static str) {
    metrics().node_info.get_or_create(&vec![("role", role)]).set(1);
}

/// The metrics of this process.
pub fn metrics() -> &'static Metrics {
    &exported().metrics
}

/// All metrics in the Prometheus text format.
pub fn encode() -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = text::encode(&mut out, &exported().registry);
    out
}

fn exported() -> &'static Exported {
    EXPORTED.get_or_init(|| {
        let (node, region) = LABELS.get().cloned().unwrap_or_default();
        let labels = [("node".into(), node.into()), ("region".into(), region.into())];
        let mut registry = Registry::with_prefix_and_labels("slip", labels.into_iter());
        let metrics = Metrics {
            connections: Gauge::default(),
            connections_opened: Counter::default(),
            upgrades_refused: ByKind::default(),
            frames_in: Counter::default(),
            frames_out: Counter::default(),
            callback_seconds: Latency::default(),
            callback_errors: ByKind::default(),
            sessions: ByKind::default(),
            publishes: Counter::default(),
            publish_seconds: Latency::default(),
            deliveries: Counter::default(),
            stream_gaps: Counter::default(),
            history_bytes: Gauge::default(),
            idempotency_key_bytes: Gauge::default(),
            session_deadlines: Gauge::default(),
            idempotency_keys_shed: Counter::default(),
            stream_divergences: Counter::default(),
            slow_consumer_closes: Counter::default(),
            stale_frames: Counter::default(),
            view_term: Gauge::default(),
            lease_held: Gauge::default(),
            publishes_refused: ByKind::default(),
            lifecycle_events: ByKind::default(),
            closes: ByKind::default(),
            unprefixed_messages: Counter::default(),
            link_rtt_seconds: ByPeer::default(),
            link_ups: Counter::default(),
            link_drops: Counter::default(),
            node_info: ByRole::default(),
            control_links: Gauge::default(),
            draining: Gauge::default(),
            parked_bytes: Gauge::default(),
            parked_bytes_limit: Gauge::default(),
            entries: ByStructure::default(),
        };
        let m = &metrics;
        registry.register("connections", "Open WebSocket connections", m.connections.clone());
        registry.register("connections_opened", "WebSocket connections accepted", m.connections_opened.clone());
        registry.register("upgrades_refused", "Upgrades not accepted, by reason", m.upgrades_refused.clone());
        registry.register("frames_in", "Messages received from clients", m.frames_in.clone());
        registry.register("frames_out", "Frames written to clients", m.frames_out.clone());
        registry.register("callback_seconds", "Backend time per callback attempt", m.callback_seconds.histogram());
        registry.register("callback_errors", "Failed callback attempts, by kind", m.callback_errors.clone());
        registry.register(
            "sessions",
            "slip.v1 sessions parked, resumed, recovered or not, expired, refused",
            m.sessions.clone(),
        );
        registry.register("publishes", "Publishes fanned out as the channel's owner", m.publishes.clone());
        registry.register(
            "publish_seconds",
            "Time from a control API publish to its owner's confirmation",
            m.publish_seconds.histogram(),
        );
        registry.register("deliveries", "Messages queued for local connections", m.deliveries.clone());
        registry.register("history_bytes", "Bytes of channel history held", m.history_bytes.clone());
        registry.register(
            "session_deadlines",
            "Deadlines of parked sessions the edge's clock holds: one per parked session",
            m.session_deadlines.clone(),
        );
        registry.register(
            "idempotency_key_bytes",
            "What the idempotency keys remembered cost, in bytes",
            m.idempotency_key_bytes.clone(),
        );
        registry.register(
            "idempotency_keys_shed",
            "Idempotency keys forgotten before their window ended, to keep within bytes",
            m.idempotency_keys_shed.clone(),
        );
        registry.register(
            "stream_divergences",
            "Streams moved to a new epoch because two owners had extended them",
            m.stream_divergences.clone(),
        );
        registry.register(
            "stale_frames",
            "Frames an edge ignored as from an owner under an older view",
            m.stale_frames.clone(),
        );
        registry.register("view_term", "Term of the ring view applied", m.view_term.clone());
        registry.register("lease_held", "1 while this control node holds its lease", m.lease_held.clone());
        registry.register(
            "publishes_refused",
            "Publishes a control node refused, by reason",
            m.publishes_refused.clone(),
        );
        registry.register(
            "lifecycle_events",
            "Channel lifecycle events to SLIP_EVENTS_URL, by outcome: sent, failed (an attempt), dropped",
            m.lifecycle_events.clone(),
        );
        registry.register(
            "closes",
            "CLOSEs a control node sent for lost edges' connections, by outcome",
            m.closes.clone(),
        );
        registry.register(
            "stream_gaps",
            "Publications an edge missed that history no longer held",
            m.stream_gaps.clone(),
        );
        registry.register(
            "slow_consumer_closes",
            "Connections closed as slow consumers",
            m.slow_consumer_closes.clone(),
        );
        registry.register(
            "unprefixed_messages",
            "WebSocket-over-HTTP messages dropped for lacking the grip prefix",
            m.unprefixed_messages.clone(),
        );
        registry.register("link_rtt_seconds", "Link round-trip time, by peer", m.link_rtt_seconds.clone());
        registry.register("link_ups", "Links that came up", m.link_ups.clone());
        registry.register("link_drops", "Frames dropped because a link was full or down", m.link_drops.clone());
        registry.register("node_info", "1, labelled with this process's role", m.node_info.clone());
        registry.register("control_links", "Control nodes this edge is linked to now", m.control_links.clone());
        registry.register("draining", "1 while this edge drains", m.draining.clone());
        registry.register("parked_bytes", "Bytes parked slip.v1 sessions hold, about", m.parked_bytes.clone());
        registry.register(
            "entries",
            "Entries in each structure that grows with connections, channels, publications or questions, by structure",
            m.entries.clone(),
        );
        registry.register(
            "parked_bytes_limit",
            "The bound on parked sessions' bytes (SLIP_MAX_PARKED_BYTES)",
            m.parked_bytes_limit.clone(),
        );
        // The kinds that alerts and dashboards watch exist from the start,
        // at 0: a rate over a series that appears only with its first
        // error misses that error.
        for (family, kinds) in [
            (&metrics.callback_errors, &CALLBACK_ERROR_KINDS[..]),
            (&metrics.publishes_refused, &PUBLISH_REFUSAL_KINDS[..]),
            (
                &metrics.upgrades_refused,
                &["refused", "backend_error", "backend_timeout", "draining", "full", "no_view"][..],
            ),
            (
                &metrics.sessions,
                &[
                    "parked",
                    "resumed",
                    "recovered",
                    "not_recovered",
                    "expired",
                    "evicted",
                    "refused",
                    "handed_over",
                    "home_lost",
                ][..],
            ),
            (&metrics.lifecycle_events, &["sent", "failed", "dropped"][..]),
            (&metrics.closes, &["sent", "failed", "expired", "deferred", "dropped", "not_kept"][..]),
        ] {
            for kind in kinds {
                let _ = family.get_or_create(&vec![("kind", *kind)]);
            }
        }
        Exported { metrics, registry }
    })
}

/// The label set of a `kind`.
pub fn kind(kind: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![("kind", kind)]
}

/// The label set of a `peer`.
pub fn peer(peer: &str) -> Vec<(&'static str, String)> {
    vec![("peer", peer.to_owned())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exported_with_its_labels() {
        init("n1", "ams");
        metrics().connections.inc();
        metrics().callback_errors.get_or_create(&kind("timeout")).inc();
        metrics().link_rtt_seconds.get_or_create(&peer("c1")).set(0.002);
        let text = encode();
        for name in ["slip_connections", "slip_callback_errors_total", "slip_link_rtt_seconds", "slip_deliveries_total"]
        {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(text.contains(r#"node="n1""#) && text.contains(r#"region="ams""#), "{text}");
        assert!(text.contains(r#"kind="timeout""#), "{text}");
    }
}
