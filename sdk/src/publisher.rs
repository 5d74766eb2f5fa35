//! The entry point: verify callbacks, and push through the control plane.

use std::sync::Arc;

use serde_json::Value;
use slip_proto::callback::CallbackRequest;
use slip_proto::command::Command;
use slip_proto::jwt;

use crate::connection::Connection;
use crate::control::{ControlError, GrpcControl, HttpControl, Transport};
use crate::subscription::Subscription;

/// Largest callback body `parse_request` reads, in bytes.
///
/// ```
/// assert_eq!(slip_sockets::MAX_CALLBACK_BYTES, 16 * 1024 * 1024);
/// ```
pub const MAX_CALLBACK_BYTES: usize = 16 * 1024 * 1024;

/// Verifies callbacks from the gateway and sends commands to it at any time.
///
/// ```
/// let publisher = slip_sockets::Publisher::new("http://127.0.0.1:7070", "s3cret");
/// ```
#[derive(Clone)]
pub struct Publisher<T = HttpControl> {
    secret: Arc<[u8]>,
    control: T,
}

impl Publisher<HttpControl> {
    /// Publishes through the SLIP v4 HTTP JSON API at `control_api`.
    ///
    /// ```
    /// let publisher = slip_sockets::Publisher::new("http://127.0.0.1:7070", "s3cret");
    /// ```
    pub fn new(control_api: impl Into<String>, jwt_secret: impl AsRef<[u8]>) -> Self {
        let secret: Arc<[u8]> = jwt_secret.as_ref().into();
        Self { control: HttpControl::new(control_api, &secret), secret }
    }
}

impl Publisher<GrpcControl> {
    /// Publishes through gRPC `slip.v1.Control` at `control_api`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), slip_sockets::ControlError> {
    /// let publisher = slip_sockets::Publisher::grpc("http://127.0.0.1:7070", "s3cret").await?;
    /// publisher.publish_text("news", "over gRPC").await?;
    /// # Ok(()) }
    /// ```
    pub async fn grpc(control_api: impl Into<String>, jwt_secret: impl AsRef<[u8]>) -> Result<Self, ControlError> {
        let secret: Arc<[u8]> = jwt_secret.as_ref().into();
        Ok(Self { control: GrpcControl::connect(control_api, &secret).await?, secret })
    }
}

/// Checks callbacks: the token and the body. Cheap to clone.
///
/// ```
/// let verifier = slip_sockets::Verifier::new("s3cret");
/// let token = slip_sockets::testing::callback_token("s3cret");
/// let body = br#"{"connectionId":"n.0123456789abcdef0123","metadata":null,"events":[]}"#;
/// assert!(verifier.parse_request(Some(&format!("Bearer {token}")), body).is_some());
/// ```
#[derive(Clone)]
pub struct Verifier {
    secret: Arc<[u8]>,
}

impl Verifier {
    /// A verifier for callbacks signed with `jwt_secret`.
    ///
    /// ```
    /// let verifier = slip_sockets::Verifier::new("s3cret");
    /// ```
    pub fn new(jwt_secret: impl AsRef<[u8]>) -> Self {
        Self { secret: jwt_secret.as_ref().into() }
    }

    /// See [`Publisher::parse_request`].
    ///
    /// ```
    /// assert!(slip_sockets::Verifier::new("k").parse_request(Some("Bearer x.y.z"), b"{}").is_none());
    /// ```
    pub fn parse_request(&self, authorization: Option<&str>, body: &[u8]) -> Option<Connection> {
        let token = jwt::bearer(authorization?)?;
        jwt::verify(token, &self.secret, jwt::AUD_WEBSOCKET_EVENT, jwt::now()).ok()?;
        if body.len() > MAX_CALLBACK_BYTES {
            return None;
        }
        let request: CallbackRequest = serde_json::from_slice(body).ok()?;
        Some(Connection::new(request.connection_id, request.metadata, request.events))
    }
}

impl<T: Transport> Publisher<T> {
    /// A callback's connection, or `None` if the token is missing, wrong or
    /// expired, or the body is not a callback. Never panics on garbage.
    ///
    /// `authorization` is the request's `Authorization` header value.
    ///
    /// ```
    /// let publisher = slip_sockets::Publisher::new("http://127.0.0.1:7070", "s3cret");
    /// assert!(publisher.parse_request(Some("Bearer nonsense"), b"{}").is_none());
    /// assert!(publisher.parse_request(None, b"\xff").is_none());
    /// ```
    pub fn parse_request(&self, authorization: Option<&str>, body: &[u8]) -> Option<Connection> {
        self.verifier().parse_request(authorization, body)
    }

    /// What checks callbacks, without the transport (e.g. for axum state).
    ///
    /// ```
    /// let verifier = slip_sockets::Publisher::new("http://127.0.0.1:7070", "s3cret").verifier();
    /// assert!(verifier.parse_request(None, b"{}").is_none());
    /// ```
    pub fn verifier(&self) -> Verifier {
        Verifier { secret: self.secret.clone() }
    }

    /// The transport, for anything the helpers below do not cover.
    ///
    /// ```
    /// let publisher = slip_sockets::Publisher::new("http://127.0.0.1:7070", "s3cret");
    /// let _http: &slip_sockets::HttpControl = publisher.control();
    /// ```
    pub fn control(&self) -> &T {
        &self.control
    }

    /// Runs commands in order through the control plane.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), slip_sockets::ControlError> {
    /// let publisher = slip_sockets::Publisher::new("http://127.0.0.1:7070", "s3cret");
    /// publisher.run(vec![slip_sockets::Command::PublishText { channel_id: "news".into(), data: "hi".into(), idempotency_key: None }]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn run(&self, commands: Vec<Command>) -> Result<(), ControlError> {
        self.control.run(commands).await
    }

    /// Sends text to every subscriber of a channel.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), slip_sockets::ControlError> {
    /// let publisher = slip_sockets::Publisher::new("http://127.0.0.1:7070", "s3cret");
    /// publisher.publish_text("news", "extra!").await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_text(&self, channel: impl Into<String>, text: impl Into<String>) -> Result<(), ControlError> {
        self.run(vec![Command::PublishText { channel_id: channel.into(), data: text.into(), idempotency_key: None }])
            .await
    }

    /// Sends text to one connection, on whichever edge holds it.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), slip_sockets::ControlError> {
    /// let publisher = slip_sockets::Publisher::new("http://127.0.0.1:7070", "s3cret");
    /// publisher.send_text("edge1.0123456789abcdef0123", "just you").await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_text(
        &self,
        connection_id: impl Into<String>,
        text: impl Into<String>,
    ) -> Result<(), ControlError> {
        self.run(vec![Command::Text { connection_id: connection_id.into(), data: text.into() }]).await
    }

    /// Closes one connection (code 1000).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), slip_sockets::ControlError> {
    /// let publisher = slip_sockets::Publisher::new("http://127.0.0.1:7070", "s3cret");
    /// publisher.close("edge1.0123456789abcdef0123").await?;
    /// # Ok(()) }
    /// ```
    pub async fn close(&self, connection_id: impl Into<String>) -> Result<(), ControlError> {
        self.run(vec![Command::Close { connection_id: connection_id.into(), code: None, reason: None }]).await
    }

    /// Closes every connection subscribed to a channel.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), slip_sockets::ControlError> {
    /// let publisher = slip_sockets::Publisher::new("http://127.0.0.1:7070", "s3cret");
    /// publisher.close_channel("old-room").await?;
    /// # Ok(()) }
    /// ```
    pub async fn close_channel(&self, channel: impl Into<String>) -> Result<(), ControlError> {
        self.run(vec![Command::CloseChannel { channel_id: channel.into() }]).await
    }

    /// Subscribes a connection to a channel.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), slip_sockets::ControlError> {
    /// let publisher = slip_sockets::Publisher::new("http://127.0.0.1:7070", "s3cret");
    /// publisher.subscribe("edge1.0123456789abcdef0123", "news").await?;
    /// # Ok(()) }
    /// ```
    pub async fn subscribe(
        &self,
        connection_id: impl Into<String>,
        channel: impl Into<String>,
    ) -> Result<(), ControlError> {
        self.subscribe_with(connection_id, channel, Subscription::default()).await
    }

    /// Subscribes a connection to a channel with [`Subscription`] options
    /// (presence info, join and leave frames).
    pub async fn subscribe_with(
        &self,
        connection_id: impl Into<String>,
        channel: impl Into<String>,
        options: Subscription,
    ) -> Result<(), ControlError> {
        let Subscription { presence, join_leave } = options;
        let (connection_id, channel) = (connection_id.into(), channel.into());
        self.run(vec![Command::Subscribe { connection_id, channel, presence, join_leave }]).await
    }

    /// Unsubscribes a connection from a channel.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), slip_sockets::ControlError> {
    /// let publisher = slip_sockets::Publisher::new("http://127.0.0.1:7070", "s3cret");
    /// publisher.unsubscribe("edge1.0123456789abcdef0123", "news").await?;
    /// # Ok(()) }
    /// ```
    pub async fn unsubscribe(
        &self,
        connection_id: impl Into<String>,
        channel: impl Into<String>,
    ) -> Result<(), ControlError> {
        self.run(vec![Command::Unsubscribe { connection_id: connection_id.into(), channel: channel.into() }]).await
    }

    /// Replaces a connection's metadata (`Value::Null` clears it).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), slip_sockets::ControlError> {
    /// let publisher = slip_sockets::Publisher::new("http://127.0.0.1:7070", "s3cret");
    /// publisher.set_metadata("edge1.0123456789abcdef0123", serde_json::json!({"user": "ann"})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_metadata(&self, connection_id: impl Into<String>, metadata: Value) -> Result<(), ControlError> {
        self.run(vec![Command::SetMetadata { connection_id: connection_id.into(), metadata }]).await
    }

    /// Waits up to `timeout_ms` for a connection to exist.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), slip_sockets::ControlError> {
    /// let publisher = slip_sockets::Publisher::new("http://127.0.0.1:7070", "s3cret");
    /// publisher.poll_for_connection("edge1.0123456789abcdef0123", 1000).await?;
    /// # Ok(()) }
    /// ```
    pub async fn poll_for_connection(
        &self,
        connection_id: impl Into<String>,
        timeout_ms: u64,
    ) -> Result<(), ControlError> {
        self.run(vec![Command::PollForConnection { connection_id: connection_id.into(), timeout: timeout_ms }]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"connectionId":"n.0123456789abcdef0123","metadata":{"ip":"1.2.3.4"},
        "events":[{"type":"OPEN","connectionId":"n.0123456789abcdef0123"},
                  {"type":"TEXT","connectionId":"n.0123456789abcdef0123","data":"hi"},
                  {"type":"CLOSE","connectionId":"n.0123456789abcdef0123","code":1000}]}"#;

    fn bearer(secret: &[u8], audience: &str) -> String {
        format!("Bearer {}", jwt::sign(secret, audience, jwt::now()))
    }

    #[test]
    fn parses_the_exact_callback_format() {
        let publisher = Publisher::new("http://127.0.0.1:1", "k");
        let c = publisher.parse_request(Some(&bearer(b"k", jwt::AUD_WEBSOCKET_EVENT)), BODY).unwrap();
        assert_eq!(c.connection_id, "n.0123456789abcdef0123");
        assert_eq!(c.metadata["ip"], "1.2.3.4");
        assert!(c.is_opening());
        assert_eq!(c.in_events.len(), 3);
    }

    #[test]
    fn wrong_tokens_and_garbage_give_none() {
        let publisher = Publisher::new("http://127.0.0.1:1", "k");
        let good = bearer(b"k", jwt::AUD_WEBSOCKET_EVENT);
        assert!(publisher.parse_request(Some(&bearer(b"other", jwt::AUD_WEBSOCKET_EVENT)), BODY).is_none());
        assert!(publisher.parse_request(Some(&bearer(b"k", jwt::AUD_CONTROL_EVENT)), BODY).is_none());
        assert!(publisher.parse_request(None, BODY).is_none());
        for garbage in [
            &b""[..],
            b"null",
            b"{}",
            b"[]",
            b"\xff\xfe",
            br#"{"connectionId":1}"#,
            br#"{"connectionId":"x","metadata":null,"events":[{"type":"NOPE"}]}"#,
        ] {
            assert!(publisher.parse_request(Some(&good), garbage).is_none());
        }
    }
}
