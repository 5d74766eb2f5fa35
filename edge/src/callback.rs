//! The callback client: POSTs socket events to the backend, signed, and
//! parses the commands it answers with.
//!
//! Layers, outermost first: retry (not for OPEN), timeout, the POST itself.
//! SLIP retry policy after OPEN: on a network error, a timeout or a 5xx
//! answer the same batch is sent again after 250 ms, 1 s and 4 s; then the
//! connection is closed with 1011. A 2xx whose body is not a valid batch, or a
//! 4xx, is not retried: the backend has spoken, and its batch is dropped and
//! logged.
//!
//! Redirects are never followed (docs/security.md): a 3xx is a failed callback in
//! either format, so nothing fetched from anywhere but the target URL, and no
//! token sent anywhere else, ever reaches a client.
//!
//! WebSocket-over-HTTP follows Pushpin instead: only a request that never
//! reached the backend (connection refused or timed out connecting) is sent
//! again, up to [`OVER_HTTP_RETRIES`] times after 1 s, 2 s, 4 s, 8 s, 16 s, each
//! plus up to 1 s of jitter; any other failure ends the connection.

use std::sync::Arc;
use std::time::Duration;

use slip_proto::callback::{CONTENT_TYPE, Event};
use slip_proto::command::{self, Command, CommandError, Source};
use slip_proto::jwt;
use slip_proto::limits::MAX_COMMAND_BODY_BYTES;

use crate::over_http::{MAX_REPLY_BYTES, Reply, Request};

/// Default time a backend has to answer one callback.
pub const DEFAULT_CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Waits between attempts of a failed callback after OPEN.
pub const RETRY_DELAYS: [Duration; 3] = [Duration::from_millis(250), Duration::from_secs(1), Duration::from_secs(4)];
/// Attempts after the first for a WebSocket-over-HTTP request that did not reach the backend.
pub const OVER_HTTP_RETRIES: u32 = 5;
/// First wait before such a retry; it doubles each time.
pub const OVER_HTTP_RETRY_BASE: Duration = Duration::from_secs(1);
/// Random extra wait added to each such retry, at most.
pub const OVER_HTTP_RETRY_JITTER: Duration = Duration::from_secs(1);
/// Idle keep-alive connections kept to the backend.
const POOL_MAX_IDLE: usize = 1024;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallbackError {
    #[error("backend did not answer within the callback timeout")]
    Timeout,
    #[error("backend unreachable: {0}")]
    Network(String),
    /// The request never reached the backend (refused, or timed out connecting).
    #[error("could not connect to the backend: {0}")]
    Connect(String),
    #[error("backend answered HTTP {0}")]
    Status(u16),
    #[error("backend reply rejected: {0}")]
    Reply(#[from] CommandError),
}

impl CallbackError {
    /// The metric label of this error.
    pub fn kind(&self) -> &'static str {
        match self {
            CallbackError::Timeout => "timeout",
            CallbackError::Network(_) | CallbackError::Connect(_) => "network",
            CallbackError::Status(_) => "status",
            CallbackError::Reply(_) => "reply",
        }
    }

    /// Worth sending the same batch again?
    pub fn is_transient(&self) -> bool {
        match self {
            CallbackError::Timeout | CallbackError::Network(_) | CallbackError::Connect(_) => true,
            CallbackError::Status(code) => *code >= 500,
            CallbackError::Reply(_) => false,
        }
    }
}

#[derive(Clone)]
pub struct CallbackClient {
    http: reqwest::Client,
    target: Arc<str>,
    signer: Arc<jwt::Signer>,
    /// Signs `Grip-Sig` on WebSocket-over-HTTP requests.
    grip_signer: Arc<jwt::Signer>,
    timeout: Duration,
    /// Largest message a reply may have sent to clients (`SLIP_MAX_OUTBOUND_BYTES`).
    max_outbound: usize,
}

impl CallbackClient {
    pub fn new(target: &str, secret: &[u8], grip_issuer: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(POOL_MAX_IDLE)
            .pool_idle_timeout(Duration::from_secs(60))
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            target: target.into(),
            signer: Arc::new(jwt::Signer::new(secret, jwt::AUD_WEBSOCKET_EVENT)),
            grip_signer: Arc::new(jwt::Signer::grip(secret, grip_issuer)),
            timeout,
            max_outbound: slip_proto::limits::MAX_MESSAGE_BYTES,
        })
    }

    /// Replies may send clients messages of up to `max` bytes.
    pub fn with_max_outbound(mut self, max: usize) -> Self {
        self.max_outbound = max;
        self
    }

    /// One attempt: POST the events of one connection and parse the reply.
    /// `metadata` is the connection's metadata as serialized JSON.
    pub async fn post(
        &self,
        connection_id: &str,
        metadata: &str,
        events: &[Event],
    ) -> Result<Vec<Command>, CallbackError> {
        let started = std::time::Instant::now();
        let result = self.attempt(connection_id, metadata, events).await;
        let metrics = slip_metrics::metrics();
        metrics.callback_seconds.observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            metrics.callback_errors.get_or_create(&slip_metrics::kind(e.kind())).inc();
        }
        result
    }

    async fn attempt(
        &self,
        connection_id: &str,
        metadata: &str,
        events: &[Event],
    ) -> Result<Vec<Command>, CallbackError> {
        let body = body(connection_id, metadata, events);
        let token = self.signer.token(jwt::now());
        let sent = self
            .http
            .post(&*self.target)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .timeout(self.timeout)
            .body(body)
            .send()
            .await;
        let mut response = sent.map_err(classify)?;
        let status = response.status();
        if !status.is_success() {
            return Err(CallbackError::Status(status.as_u16()));
        }
        if response.content_length().is_some_and(|n| n as usize > MAX_COMMAND_BODY_BYTES) {
            return Err(CommandError::TooLarge(response.content_length().unwrap_or(0) as usize).into());
        }
        let mut reply = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if reply.len() + chunk.len() > MAX_COMMAND_BODY_BYTES {
                return Err(CommandError::TooLarge(reply.len() + chunk.len()).into());
            }
            reply.extend_from_slice(&chunk);
        }
        Ok(command::parse_within(&reply, Source::CallbackReply, self.max_outbound)?)
    }

    /// Attempts with the retry policy above; returns the last error if all fail.
    pub async fn post_with_retry(
        &self,
        connection_id: &str,
        metadata: &str,
        events: &[Event],
    ) -> Result<Vec<Command>, CallbackError> {
        let mut delays = RETRY_DELAYS.iter();
        loop {
            match self.post(connection_id, metadata, events).await {
                Err(e) if e.is_transient() => match delays.next() {
                    Some(delay) => {
                        tracing::debug!(connection = connection_id, error = %e, ?delay, "callback failed, retrying");
                        tokio::time::sleep(*delay).await;
                    }
                    None => return Err(e),
                },
                other => return other,
            }
        }
    }
}

fn classify(e: reqwest::Error) -> CallbackError {
    if e.is_connect() {
        CallbackError::Connect(e.to_string())
    } else if e.is_timeout() {
        CallbackError::Timeout
    } else {
        CallbackError::Network(e.to_string())
    }
}

impl CallbackClient {
    /// The backend's base URL.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// A `Grip-Sig` token for now.
    pub fn grip_sig(&self) -> Arc<str> {
        self.grip_signer.token(jwt::now())
    }

    /// One WebSocket-over-HTTP attempt; the reply is read whatever its status.
    pub async fn post_over_http(&self, request: &Request) -> Result<Reply, CallbackError> {
        let started = std::time::Instant::now();
        let result = self.attempt_over_http(request).await;
        let metrics = slip_metrics::metrics();
        metrics.callback_seconds.observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            metrics.callback_errors.get_or_create(&slip_metrics::kind(e.kind())).inc();
        }
        result
    }

    async fn attempt_over_http(&self, request: &Request) -> Result<Reply, CallbackError> {
        // Signed per attempt: a retry after a wait goes with a fresh token.
        let mut post = self
            .http
            .post(&request.url)
            .timeout(self.timeout)
            .header("grip-sig", &*self.grip_sig())
            .body(request.body.clone());
        for (name, value) in &request.headers {
            post = post.header(name.as_str(), value.as_str());
        }
        let mut response = post.send().await.map_err(classify)?;
        if response.status().is_redirection() {
            return Err(CallbackError::Status(response.status().as_u16()));
        }
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(CommandError::TooLarge(body.len() + chunk.len()).into());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply { status, headers, body: body.into() })
    }

    /// Attempts with Pushpin's retry schedule (see the top of this file).
    pub async fn post_over_http_with_retry(&self, request: &Request) -> Result<Reply, CallbackError> {
        let mut wait = OVER_HTTP_RETRY_BASE;
        for _ in 0..OVER_HTTP_RETRIES {
            match self.post_over_http(request).await {
                Err(CallbackError::Connect(e)) => {
                    let jitter = rand::random_range(0..=OVER_HTTP_RETRY_JITTER.as_millis() as u64);
                    let delay = wait + Duration::from_millis(jitter);
                    tracing::debug!(url = %request.url, error = %e, ?delay, "backend unreachable, retrying");
                    tokio::time::sleep(delay).await;
                    wait *= 2;
                }
                other => return other,
            }
        }
        self.post_over_http(request).await
    }
}

/// The callback body; `metadata` is embedded as the JSON text it already is.
pub fn body(connection_id: &str, metadata: &str, events: &[Event]) -> Vec<u8> {
    let id = serde_json::Value::String(connection_id.to_owned());
    let events = serde_json::to_string(events).unwrap_or_else(|_| "[]".into());
    format!(r#"{{"connectionId":{id},"metadata":{metadata},"events":{events}}}"#).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use slip_proto::callback::CallbackRequest;

    #[test]
    fn body_is_a_valid_callback_request() {
        let events = vec![Event::Text { connection_id: "a\"b".into(), data: "hi".into() }];
        let parsed: CallbackRequest = serde_json::from_slice(&body("a\"b", r#"{"x":1}"#, &events)).unwrap();
        assert_eq!(parsed.connection_id, "a\"b");
        assert_eq!(parsed.metadata, serde_json::json!({"x": 1}));
        assert_eq!(parsed.events, events);
    }
}
