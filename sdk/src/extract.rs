//! An axum extractor: `Callback(connection)` in a handler's arguments.

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::StatusCode;

use crate::connection::Connection;
use crate::control::Transport;
use crate::publisher::{MAX_CALLBACK_BYTES, Publisher, Verifier};

/// A verified callback; a request with a bad token or body is answered
/// `403 Invalid token` before the handler runs.
///
/// ```
/// use axum::{Router, routing::post, extract::State};
/// use slip_sockets::{Callback, Publisher};
///
/// async fn events(Callback(mut connection): Callback) -> String {
///     if connection.is_opening() {
///         connection.accept();
///     }
///     connection.end_response()
/// }
///
/// let app: Router = Router::new()
///     .route("/ws", post(events))
///     .with_state(Publisher::new("http://127.0.0.1:7070", "s3cret"));
/// ```
pub struct Callback(pub Connection);

/// A `Publisher` as axum state gives the extractor its verifier; with state
/// of your own, implement `FromRef<YourState> for Verifier`.
impl<T: Transport + Clone> FromRef<Publisher<T>> for Verifier {
    fn from_ref(publisher: &Publisher<T>) -> Self {
        publisher.verifier()
    }
}

impl<S> FromRequest<S> for Callback
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = (StatusCode, &'static str);

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = Verifier::from_ref(state);
        let authorization =
            request.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let refused = (StatusCode::FORBIDDEN, "Invalid token");
        let body = axum::body::to_bytes(request.into_body(), MAX_CALLBACK_BYTES).await.map_err(|_| refused)?;
        let body: Bytes = body;
        verifier.parse_request(authorization.as_deref(), &body).map(Callback).ok_or(refused)
    }
}
