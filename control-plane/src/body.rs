//! An authorized HTTP request's body, read within bounds: the JSON and GRIP
//! APIs call [`read_body`] only once the token has been checked, so an
//! unauthenticated client never makes the node buffer anything.

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use slip_proto::limits::MAX_COMMAND_BODY_BYTES;

/// Time an HTTP JSON or GRIP request's body has to arrive, once authorized.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads an authorized request's body, within [`BODY_TIMEOUT`] and `limit` bytes.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, Response> {
    let too_large = || (StatusCode::PAYLOAD_TOO_LARGE, format!("body over {limit} bytes\n")).into_response();
    // A Content-Length past the limit is refused before waiting for any of it.
    if axum::body::HttpBody::size_hint(&body).lower() > limit as u64 {
        return Err(too_large());
    }
    let read = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit));
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err((StatusCode::BAD_REQUEST, format!("reading the body: {e}\n")).into_response()),
        Err(_) => Err((StatusCode::REQUEST_TIMEOUT, "body not received in time\n").into_response()),
    }
}

/// The JSON and GRIP APIs' body limit.
pub const MAX_HTTP_BODY_BYTES: usize = MAX_COMMAND_BODY_BYTES;
