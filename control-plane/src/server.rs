//! One port for every control API: gRPC (by its `/slip.v1.Control/…` paths,
//! HTTP/2), GRIP publishing on `/publish/`, and the SLIP v4 HTTP JSON API on
//! every other path.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use slip_proto::limits::MAX_COMMAND_BODY_BYTES;
use tokio::net::TcpListener;

use crate::grip_api::{self, GripApi, GripAuth};
use crate::http_api::{self, HttpApi};
use crate::plane::ControlPlane;
use crate::{admin, grpc};

pub fn router(plane: Arc<ControlPlane>, secret: &[u8], grip_auth: GripAuth) -> axum::Router {
    let secret: Arc<[u8]> = secret.into();
    let grip = GripApi { plane: plane.clone(), secret: secret.clone(), auth: grip_auth };
    let grip = axum::Router::new()
        .route(grip_api::PUBLISH_PATH, post(grip_api::publish))
        .route(grip_api::PUBLISH_PATH.trim_end_matches('/'), post(grip_api::publish))
        .with_state(grip);
    // The original took any path: every other path gRPC does not claim is the JSON API.
    let http = grip
        .merge(
            axum::Router::new()
                .fallback(post(http_api::handle))
                .with_state(HttpApi { plane: plane.clone(), secret: secret.clone() }),
        )
        .layer(DefaultBodyLimit::max(MAX_COMMAND_BODY_BYTES));
    let auth = grpc::Authenticator::new(secret);
    tonic::service::Routes::new(grpc::service(plane.clone(), auth.clone()))
        .add_service(admin::service(plane, auth))
        .into_axum_router()
        .fallback_service(http)
}

/// Serves both APIs until the listener fails.
pub async fn serve(
    plane: Arc<ControlPlane>,
    secret: &[u8],
    grip_auth: GripAuth,
    listener: TcpListener,
) -> std::io::Result<()> {
    axum::serve(listener, router(plane, secret, grip_auth)).await
}
