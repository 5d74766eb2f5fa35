//! `slip.v1` sessions at the edge (DESIGN §10): what a session's client is
//! sent. A client that offers the subprotocol gets a session frame first,
//! then every publication and every message in its JSON envelope, with its
//! place (channel, epoch, offset; or the message's number). Plain clients
//! get the same payloads as bare frames, as ever.

use bytes::Bytes;
use slip_proto::session::{self, Payload, SessionClaims};

use crate::frame;
use crate::hub::Message;

/// Whether a handshake's `Sec-WebSocket-Protocol` offers `slip.v1`.
pub fn offered<B>(request: &http::Request<B>) -> bool {
    request
        .headers()
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == session::SUBPROTOCOL)
}

/// The first frame of a new session, with its token.
pub fn opening(secret: &[u8], connection_id: &str, now: u64) -> Bytes {
    let claims = SessionClaims { connection_id: connection_id.to_owned(), generation: 0, issued: now };
    let token = session::sign(secret, &claims);
    frame::text(&session::session_frame(&token, connection_id, None))
}

/// A publication's envelope, as every session subscribed to its channel gets it.
pub fn publication(channel: &str, epoch: &str, offset: u64, payload: Payload<'_>) -> Bytes {
    frame::text(&session::publication(channel, epoch, offset, payload))
}

/// A message to one connection (a TEXT/BINARY command, `Send`).
pub struct Direct<'a>(pub Payload<'a>);

impl Message for Direct<'_> {
    fn plain(&self) -> Bytes {
        match self.0 {
            Payload::Text(text) => frame::text(text),
            Payload::Binary(data) => frame::binary(data),
        }
    }

    fn enveloped(&self, seq: u64) -> Bytes {
        frame::text(&session::message(seq, self.0))
    }
}
