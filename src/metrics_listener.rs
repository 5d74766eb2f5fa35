//! Prometheus `/metrics` on `SLIP_METRICS_LISTEN`: every metric of
//! `slip-metrics`, labelled with this node and region.

use std::net::SocketAddr;

use anyhow::Context;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

const CONTENT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds the listener and serves `/metrics` in the background until `stop`;
/// returns where.
pub async fn start(listen: SocketAddr, stop: CancellationToken) -> anyhow::Result<SocketAddr> {
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding SLIP_METRICS_LISTEN {listen}"))?;
    let addr = listener.local_addr()?;
    let app =
        axum::Router::new().route("/metrics", get(|| async { ([(CONTENT_TYPE, CONTENT)], slip_metrics::encode()) }));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    });
    println!("  Metrics:     http://{addr}/metrics");
    Ok(addr)
}
