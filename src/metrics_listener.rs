//! Prometheus `/metrics` on `SLIP_METRICS_LISTEN`: every metric of
//! `slip-metrics`, labelled with this node and region. A control node also
//! answers `/healthz` (the process runs) and `/readyz` (it takes traffic:
//! see `ControlPlane::readiness`) here, its only HTTP port besides the
//! control API.

use std::net::SocketAddr;

use anyhow::Context;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

const CONTENT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether the node is ready, and if not, why (gRPC health reads the same).
pub use slip_control_plane::health::Readiness;

/// What the node's structures hold now, read at each scrape into
/// `slip_entries{structure}`: an operator sees which one grows.
pub type ReadSizes = std::sync::Arc<dyn Fn() -> slip_metrics::Sizes + Send + Sync>;

/// Binds the listener and serves `/metrics` (and, given `ready`, `/healthz`
/// and `/readyz`) in the background until `stop`; returns where.
pub async fn start(
    listen: SocketAddr,
    stop: CancellationToken,
    ready: Option<Readiness>,
    sizes: ReadSizes,
) -> anyhow::Result<SocketAddr> {
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding SLIP_METRICS_LISTEN {listen}"))?;
    let addr = listener.local_addr()?;
    let mut app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let sizes = sizes.clone();
            async move {
                slip_metrics::set_entries(&sizes());
                ([(CONTENT_TYPE, CONTENT)], slip_metrics::encode())
            }
        }),
    );
    if let Some(ready) = ready {
        app = app.route("/healthz", get(|| async { "ok\n" })).route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    match ready() {
                        Ok(()) => (axum::http::StatusCode::OK, "ready\n".to_owned()),
                        Err(why) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
                    }
                }
            }),
        );
    }
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    });
    println!("  Metrics:     http://{addr}/metrics");
    Ok(addr)
}
