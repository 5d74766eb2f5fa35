//! What stock gRPC tools find on the control port without our `.proto`
//! files: the standard health service (`grpc.health.v1.Health`, what
//! Kubernetes gRPC probes and `grpc_health_probe` ask) and server reflection
//! (`grpc.reflection.v1` and `v1alpha`, what `grpcurl`, Postman and
//! grpcio's reflection client list and describe services with).
//!
//! Health follows the node's readiness, the same answer as `/readyz`:
//! `SERVING` while it is a member of the agreed view with its lease and
//! caught up, `NOT_SERVING` before that, while it drains and once it shuts
//! down. It is read every [`HEALTH_POLL`], so a watcher hears a change within
//! that. The overall status (service `""`) and each of our services'
//! (`slip.v1.Control`, `slip.v1.Admin`) are the same.
//!
//! Both answer without a token: a probe has none to give, and what they tell
//! (whether the node takes traffic, the published schema) is no secret.
//! Their requests are bounded by [`MAX_PROBE_MESSAGE_BYTES`].

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// How often health reads the node's readiness.
pub const HEALTH_POLL: Duration = Duration::from_millis(500);
/// Largest health or reflection request taken (names of a service or a symbol).
pub const MAX_PROBE_MESSAGE_BYTES: usize = 16 * 1024;
/// The services whose health is reported, besides the overall `""`.
pub const SERVICES: [&str; 2] = ["slip.v1.Control", "slip.v1.Admin"];

/// Whether the node takes traffic, and if not, why.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// `routes` with the health and reflection services added, and the task that
/// keeps health in step with `ready` until `stop` (then it reports
/// `NOT_SERVING`).
pub fn add_to(routes: tonic::service::Routes, ready: Readiness, stop: CancellationToken) -> tonic::service::Routes {
    let (reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(follow(reporter, ready, stop));
    let schema = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(slip_proto::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = schema().build_v1().expect("the generated descriptor sets are valid");
    let v1alpha = schema().build_v1alpha().expect("the generated descriptor sets are valid");
    routes
        .add_service(health.max_decoding_message_size(MAX_PROBE_MESSAGE_BYTES))
        .add_service(v1.max_decoding_message_size(MAX_PROBE_MESSAGE_BYTES))
        .add_service(v1alpha.max_decoding_message_size(MAX_PROBE_MESSAGE_BYTES))
}

async fn follow(reporter: HealthReporter, ready: Readiness, stop: CancellationToken) {
    let mut last = None;
    loop {
        let status = if stop.is_cancelled() {
            ServingStatus::NotServing
        } else {
            match ready() {
                Ok(()) => ServingStatus::Serving,
                Err(_) => ServingStatus::NotServing,
            }
        };
        if last != Some(status) {
            for service in std::iter::once("").chain(SERVICES) {
                reporter.set_service_status(service, status).await;
            }
            last = Some(status);
        }
        if stop.is_cancelled() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_POLL) => {}
            _ = stop.cancelled() => {}
        }
    }
}
