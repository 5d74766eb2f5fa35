//! The backend library of SLIP Sockets: read a callback, answer it, and push
//! to clients at any time.
//!
//! The gateway POSTs every socket event to your backend. [`Publisher::parse_request`]
//! checks the signature and gives you a [`Connection`]: its events to handle
//! and a reply to build. [`Publisher`] also sends commands through the control
//! plane whenever you like, over HTTP JSON or gRPC.
//!
//! ```
//! use slip_sockets::{InEvent, Publisher};
//!
//! # let secret = "s3cret";
//! # let token = slip_sockets::testing::callback_token(secret);
//! # let authorization = format!("Bearer {token}");
//! # let body = br#"{"connectionId":"n.0123456789abcdef0123","metadata":null,
//! #   "events":[{"type":"OPEN","connectionId":"n.0123456789abcdef0123"}]}"#;
//! let publisher = Publisher::new("http://127.0.0.1:7070", secret);
//! // In your HTTP handler: the Authorization header and the body.
//! let Some(mut connection) = publisher.parse_request(Some(&authorization), body) else {
//!     return; // answer 403 "Invalid token"
//! };
//! for event in connection.in_events.clone() {
//!     match event {
//!         InEvent::Open { .. } => {
//!             connection.accept();
//!             connection.subscribe("cool-channel");
//!             connection.publish_text("cool-channel", "New connection has joined!");
//!             connection.send_text("Welcome to the cool channel, be nice or get out");
//!         }
//!         InEvent::Text { data, .. } if data == "quit" => {
//!             connection.close();
//!         }
//!         InEvent::Text { connection_id, data } => {
//!             connection.publish_text("cool-channel", format!("{connection_id} says {data}"));
//!         }
//!         InEvent::Binary { .. } => {}
//!         InEvent::Close { .. } => {
//!             connection.publish_text("cool-channel", "A Connection has left");
//!         }
//!     }
//! }
//! let reply: String = connection.end_response(); // answer 200 with this body
//! # assert!(reply.starts_with(r#"{"events":[{"type":"ACCEPT""#));
//! ```

#![warn(missing_docs)]

mod connection;
mod control;
mod payload;
mod presence;
mod publisher;
mod stream;
mod subscription;

#[cfg(feature = "axum")]
mod extract;

pub use connection::Connection;
pub use control::{ControlError, GrpcControl, HttpControl, Signer, Transport};
#[cfg(feature = "axum")]
pub use extract::Callback;
pub use payload::Payload;
pub use presence::Presence;
pub use publisher::{MAX_CALLBACK_BYTES, Publisher, Verifier};
/// A command, as the gateway reads it (for [`Connection::queue_event`] and [`Transport::run`]).
///
/// ```
/// let command = slip_sockets::Command::PublishText { channel_id: "news".into(), data: "hi".into(), idempotency_key: None };
/// assert_eq!(serde_json::to_string(&command).unwrap(), r#"{"type":"PUBLISH_TEXT","channelId":"news","data":"hi"}"#);
/// ```
pub use slip_proto::command::Command;
pub use stream::{History, PUBLISH_DEADLINE, Published, new_idempotency_key};
pub use subscription::Subscription;

/// One socket event from the gateway. Matching on it is exhaustive: a kind
/// you did not handle is a compile error, not a surprise at run time.
///
/// ```
/// use slip_sockets::InEvent;
/// let event: InEvent = serde_json::from_str(r#"{"type":"TEXT","connectionId":"n.0123456789abcdef0123","data":"hi"}"#).unwrap();
/// assert!(matches!(event, InEvent::Text { ref data, .. } if data == "hi"));
/// ```
pub use slip_proto::callback::Event as InEvent;

/// Helpers for tests of backends: tokens as the gateway signs them.
pub mod testing {
    /// A token as the gateway puts on callbacks, signed with `secret`, valid for 60 s.
    ///
    /// ```
    /// let token = slip_sockets::testing::callback_token("s3cret");
    /// assert_eq!(token.split('.').count(), 3);
    /// ```
    pub fn callback_token(secret: &str) -> String {
        slip_proto::jwt::sign(secret.as_bytes(), slip_proto::jwt::AUD_WEBSOCKET_EVENT, slip_proto::jwt::now())
    }
}
