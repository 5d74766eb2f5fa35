//! One port for both control APIs: gRPC (by its `/slip.v1.Control/…` paths,
//! HTTP/2) and the SLIP v4 HTTP JSON API on every other path.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use slip_proto::limits::MAX_COMMAND_BODY_BYTES;
use tokio::net::TcpListener;

use crate::http_api::{self, HttpApi};
use crate::plane::ControlPlane;
use crate::{admin, grpc};

pub fn router(plane: Arc<ControlPlane>, secret: &[u8]) -> axum::Router {
    let secret: Arc<[u8]> = secret.into();
    // The original took any path: every path gRPC does not claim is the JSON API.
    let http = axum::Router::new()
        .fallback(post(http_api::handle))
        .layer(DefaultBodyLimit::max(MAX_COMMAND_BODY_BYTES))
        .with_state(HttpApi { plane: plane.clone(), secret: secret.clone() });
    let auth = grpc::Authenticator::new(secret);
    tonic::service::Routes::new(grpc::service(plane.clone(), auth.clone()))
        .add_service(admin::service(plane, auth))
        .into_axum_router()
        .fallback_service(http)
}

/// Serves both APIs until the listener fails.
pub async fn serve(plane: Arc<ControlPlane>, secret: &[u8], listener: TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router(plane, secret)).await
}
