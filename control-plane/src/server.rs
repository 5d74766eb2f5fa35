//! One port for every control API: gRPC (by its `/slip.v1.Control/…` paths,
//! HTTP/2, with the standard health and reflection services beside it), GRIP
//! publishing on `/publish/`, and the SLIP v4 HTTP JSON API on every other
//! path.
//!
//! The port is private by deployment and defended anyway (docs/security.md), each
//! bound named below and listed in docs/operations.md:
//! - a client has [`HEADER_TIMEOUT`] to send its first request's headers,
//!   and an HTTP/1 body must arrive within [`BODY_TIMEOUT`] (read by [`crate::body`]);
//! - the token is checked before a body is read (the gRPC interceptor runs
//!   on the headers; the JSON and GRIP handlers take the body only after it),
//!   so an unauthenticated client never makes the node buffer anything
//!   (but the small requests of gRPC health and reflection, which take no
//!   token and at most `MAX_PROBE_MESSAGE_BYTES`: see [`crate::health`]);
//! - bodies are bounded per API ([`MAX_GRPC_MESSAGE_BYTES`], and
//!   [`MAX_COMMAND_BODY_BYTES`](slip_proto::limits::MAX_COMMAND_BODY_BYTES) for the JSON and GRIP APIs);
//! - at most [`MAX_CONNECTIONS`] connections are served at once (more wait in
//!   the kernel's backlog), [`MAX_STREAMS_PER_CONNECTION`] HTTP/2 streams on
//!   each, and [`MAX_CONCURRENT_REQUESTS`] requests in all: one past that is
//!   answered 503 at once rather than queued.
//!
//! Shutdown: when the token is cancelled the listener stops accepting, every
//! connection is asked to finish gracefully (HTTP/1 after its current
//! response, HTTP/2 with a GOAWAY), and `serve` returns once they have, or
//! after [`SHUTDOWN_GRACE`]: a request in flight gets its answer.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::interceptor::InterceptedService;

pub use crate::auth::ControlAuth;
pub use crate::body::BODY_TIMEOUT;
use crate::grip_api::{self, GripApi, GripAuth};
pub use crate::health::Readiness;
use crate::http_api::{self, HttpApi};
use crate::http_reads;
use crate::plane::ControlPlane;
use crate::{admin, admin_page, grpc, health};

/// Time a client has to send a request's headers (and its first bytes).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest gRPC request message: a 128 KiB message or 16 KiB of metadata, with room for the rest.
pub const MAX_GRPC_MESSAGE_BYTES: usize = 1024 * 1024;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// HTTP/2 streams (gRPC calls) open at once on one connection.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// Requests being handled at once over all connections.
pub const MAX_CONCURRENT_REQUESTS: usize = 4096;
/// Longest wait for requests in flight once shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Every control API as one router, gRPC health following `ready` until `stop`.
pub fn router(
    plane: Arc<ControlPlane>,
    auth: ControlAuth,
    grip_auth: GripAuth,
    ready: Readiness,
    stop: CancellationToken,
) -> axum::Router {
    let grip = GripApi { plane: plane.clone(), secret: auth.secret(), auth: grip_auth };
    let grip = axum::Router::new()
        .route(grip_api::PUBLISH_PATH, post(grip_api::publish))
        .route(grip_api::PUBLISH_PATH.trim_end_matches('/'), post(grip_api::publish))
        .with_state(grip);
    // The original took any path: every other path gRPC does not claim is the JSON API.
    let http = grip.merge(
        axum::Router::new()
            .route(http_reads::PRESENCE_PATH, get(http_reads::presence).post(http_api::handle))
            .route(http_reads::HISTORY_PATH, get(http_reads::history).post(http_api::handle))
            .route(admin_page::PAGE_PATH, get(admin_page::page).post(http_api::handle))
            .route(admin_page::OVERVIEW_PATH, get(admin_page::overview).post(http_api::handle))
            .route(admin_page::CHANNEL_PATH, get(admin_page::channel).post(http_api::handle))
            .fallback(post(http_api::handle).get(http_api::about))
            .with_state(HttpApi { plane: plane.clone(), auth: auth.clone() }),
    );
    let auth = grpc::Authenticator::new(auth);
    let control = grpc::server(plane.clone()).max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES);
    let admin = admin::server(plane).max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES);
    let requests = Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS));
    let grpc = tonic::service::Routes::new(InterceptedService::new(control, auth.clone()))
        .add_service(InterceptedService::new(admin, auth));
    // Health and reflection take no token (see crate::health).
    health::add_to(grpc, ready, stop).into_axum_router().fallback_service(http).layer(middleware::from_fn(
        move |request: Request, next: Next| {
            let requests = requests.clone();
            async move {
                // Held until the handler has answered.
                let Ok(_permit) = requests.try_acquire_owned() else {
                    return (StatusCode::SERVICE_UNAVAILABLE, "overloaded\n").into_response();
                };
                next.run(request).await
            }
        },
    ))
}

/// Serves every control API on `listener` until it fails, or until `shutdown`
/// is cancelled and what was in flight is answered (see the top of this file).
/// gRPC health reports `ready` until then.
pub async fn serve(
    plane: Arc<ControlPlane>,
    auth: ControlAuth,
    grip_auth: GripAuth,
    listener: TcpListener,
    shutdown: CancellationToken,
    ready: Readiness,
) -> std::io::Result<()> {
    let service = TowerToHyperService::new(router(plane, auth, grip_auth, ready, shutdown.clone()));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .keep_alive_interval(Some(HEADER_TIMEOUT))
        .keep_alive_timeout(HEADER_TIMEOUT);
    let builder = Arc::new(builder);
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let tracker = TaskTracker::new();
    let accepted = loop {
        // Waiting for a permit leaves further clients in the kernel's backlog.
        let next = async {
            let permit = connections.clone().acquire_owned().await.map_err(std::io::Error::other)?;
            listener.accept().await.map(|(stream, _)| (permit, stream))
        };
        let (permit, stream) = tokio::select! {
            next = next => match next {
                Ok(next) => next,
                Err(e) if is_transient(&e) => {
                    tracing::debug!(error = %e, "control accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => break Err(e),
            },
            _ = shutdown.cancelled() => break Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let (service, builder, shutdown) = (service.clone(), builder.clone(), shutdown.clone());
        tracker.spawn(async move {
            let _permit = permit;
            // A client that connects and sends nothing is dropped: the HTTP/1
            // header timer only starts with its first byte.
            let mut first = [0u8; 1];
            let first_byte = tokio::time::timeout(HEADER_TIMEOUT, stream.peek(&mut first));
            tokio::select! {
                peeked = first_byte => if !matches!(peeked, Ok(Ok(1))) { return },
                _ = shutdown.cancelled() => return,
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "control connection ended");
            }
        });
    };
    // New clients are refused from here on, not left in the backlog.
    drop(listener);
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        tracing::warn!(connections = tracker.len(), "control connections still open after the shutdown grace");
    }
    accepted
}

/// Accept errors that concern one connection (or a passing shortage), not the listener.
fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock)
        || e.raw_os_error().is_some_and(|code| code == 23 || code == 24) // ENFILE, EMFILE
}
