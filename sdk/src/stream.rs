//! Channel streams through gRPC: publishes confirmed with their place in the
//! stream (retried with one idempotency key, so each gets in exactly once),
//! and the history a channel's owner keeps.

use std::time::Duration;

use slip_proto::pb::{HistoryRequest, PublishRequest, publication, publish_request};

use crate::control::{ControlError, GrpcControl, from_status};
use crate::payload::Payload;

/// How long [`GrpcControl::publish`] keeps retrying an unavailable control plane.
pub const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);
/// First wait between retries; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Where a publish went: its offset within the stream's epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Its offset in the channel's stream, from 1.
    pub offset: u64,
    /// The stream's epoch: offsets count within one epoch.
    pub epoch: String,
    /// Edges it was sent to (0 when the key had been seen: it was not sent again).
    pub edges: u32,
}

/// A channel's recent publications, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The stream's epoch now.
    pub epoch: String,
    /// The last offset given in it.
    pub top_offset: u64,
    /// Offsets and payloads after the point asked about.
    pub publications: Vec<(u64, Payload)>,
    /// False when history no longer holds everything after the point asked
    /// about, or the epoch asked about is gone.
    pub complete: bool,
}

/// A fresh idempotency key: 128 random bits in hex.
pub fn new_idempotency_key() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl GrpcControl {
    /// Publishes and returns the publish's place in the stream, once the
    /// channel's owner has it. An unavailable control plane is retried with
    /// the same idempotency key (a new one when `idempotency_key` is `None`)
    /// for up to [`PUBLISH_DEADLINE`]: the message gets into the stream once.
    /// With several control nodes ([`GrpcControl::connect_any`]) each retry
    /// goes to the next: a node cut off from the others refuses publishes
    /// while the rest take them.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), slip_sockets::ControlError> {
    /// use slip_sockets::{GrpcControl, Payload};
    /// let grpc = GrpcControl::connect("http://127.0.0.1:7070", b"s3cret").await?;
    /// let placed = grpc.publish("news", Payload::Text("extra!".into()), None).await?;
    /// println!("offset {} of epoch {}", placed.offset, placed.epoch);
    /// # Ok(()) }
    /// ```
    pub async fn publish(
        &self,
        channel: impl Into<String>,
        payload: Payload,
        idempotency_key: Option<String>,
    ) -> Result<Published, ControlError> {
        let message = match payload {
            Payload::Text(text) => publish_request::Message::Text(text),
            Payload::Binary(bytes) => publish_request::Message::Binary(bytes.into()),
        };
        let request = PublishRequest {
            channel: channel.into(),
            message: Some(message),
            idempotency_key: idempotency_key.unwrap_or_else(new_idempotency_key),
        };
        let deadline = tokio::time::Instant::now() + PUBLISH_DEADLINE;
        let mut wait = RETRY_FIRST;
        let mut tried = 0usize;
        loop {
            match self.client().publish(request.clone()).await {
                Ok(reply) => {
                    let reply = reply.into_inner();
                    return Ok(Published { offset: reply.offset, epoch: reply.epoch, edges: reply.edges });
                }
                Err(status) if retryable(&status) && tokio::time::Instant::now() + wait < deadline => {
                    // Round the control nodes first; wait once each has said no.
                    tried += 1;
                    if self.move_on() && !tried.is_multiple_of(self.nodes()) {
                        continue;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                }
                Err(status) => return Err(from_status(status)),
            }
        }
    }

    /// The publications of `channel` after `since` (an epoch and an offset;
    /// `None` for all history holds), at most `limit` (0: the history size).
    pub async fn history(
        &self,
        channel: impl Into<String>,
        since: Option<(&str, u64)>,
        limit: u32,
    ) -> Result<History, ControlError> {
        let (since_epoch, since_offset) = since.map_or((String::new(), 0), |(e, o)| (e.to_owned(), o));
        let request = HistoryRequest { channel: channel.into(), since_epoch, since_offset, limit };
        let reply = self.client().history(request).await.map_err(from_status)?.into_inner();
        let publications = reply
            .publications
            .into_iter()
            .filter_map(|p| {
                let payload = match p.message? {
                    publication::Message::Text(t) => Payload::Text(t),
                    publication::Message::Binary(b) => Payload::Binary(b.to_vec()),
                };
                Some((p.offset, payload))
            })
            .collect();
        Ok(History { epoch: reply.epoch, top_offset: reply.top_offset, publications, complete: reply.complete })
    }
}

/// Worth sending the same publish again: the control plane or the channel's
/// owner could not take it just now.
fn retryable(status: &tonic::Status) -> bool {
    // Cancelled: the call's own timeout ran out (a paused node answers nothing).
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
    )
}
