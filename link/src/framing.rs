//! Frames on a byte stream: a big-endian `u32` length, then the encoded
//! [`Frame`]. Pure code: the QUIC link and the fuzzer both use it.

use bytes::{Buf, BufMut, BytesMut};
use prost::Message;
use slip_proto::link_pb::{Frame, Query, frame::Kind, query};

/// Largest encoded frame accepted on a link, in bytes: a 128 KiB message with
/// its channel name and envelope fits many times over.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Independent streams per link for channel traffic. A channel always takes
/// the same one, so its frames stay in order; different channels rarely
/// share one, so a busy channel seldom delays another.
pub const DATA_LANES: usize = 8;

/// A frame that could not be read off the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// Its length prefix is over the largest frame.
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    /// Its bytes are not a frame.
    #[error("frame is not a valid link frame: {0}")]
    Invalid(String),
}

/// Appends one length-prefixed frame to `out`.
pub fn encode(frame: &Frame, out: &mut BytesMut) -> Result<(), FramingError> {
    let len = frame.encoded_len();
    if len > MAX_FRAME_BYTES {
        return Err(FramingError::TooLarge(len));
    }
    out.reserve(4 + len);
    out.put_u32(len as u32);
    frame.encode(out).map_err(|e| FramingError::Invalid(e.to_string()))
}

/// Takes the next whole frame out of `buf`; `Ok(None)` means wait for more bytes.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, FramingError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(FramingError::TooLarge(len));
    }
    if buf.len() < 4 + len {
        // No room is reserved for what the header announces: the reader's
        // buffer grows with the bytes that actually arrive.
        return Ok(None);
    }
    buf.advance(4);
    let body = buf.split_to(len);
    Frame::decode(body.freeze()).map(Some).map_err(|e| FramingError::Invalid(e.to_string()))
}

/// Which stream of a link a frame travels on: channel traffic on the lane of
/// its channel, everything else on the control stream (`None`). Interest
/// too, so a SUBSCRIBE followed by a PUBLISH reaches the owner in that
/// order (presence too: a member joins after its subscription); and a
/// history question, so the owner answers it after the
/// interest the edge sent before asking: every publication the answer does
/// not hold reaches that edge as a Deliver (a resumed session's replay and
/// its live stream meet with nothing between them).
pub fn lane(frame: &Frame) -> Option<usize> {
    let channel = match frame.kind.as_ref()? {
        Kind::Query(Query { kind: Some(query::Kind::History(h)), .. }) => &h.channel,
        Kind::Publish(p) => &p.channel,
        Kind::Deliver(d) => &d.channel,
        Kind::Interest(i) => &i.channel,
        Kind::Replicate(r) => &r.channel,
        Kind::Replicated(r) => &r.channel,
        Kind::Head(h) => &h.channel,
        Kind::Presence(p) => &p.channel,
        Kind::PresenceChanges(p) => &p.channel,
        Kind::Occupancy(o) => &o.channel,
        Kind::Hello(_)
        | Kind::Command(_)
        | Kind::Query(_)
        | Kind::Reply(_)
        | Kind::Members(_)
        | Kind::Drain(_)
        | Kind::SessionMoved(_)
        | Kind::SessionRecord(_)
        | Kind::ConnectionRecord(_)
        | Kind::Consensus(_)
        | Kind::View(_) => {
            return None;
        }
    };
    // FNV-1a: only this sender needs to agree with itself.
    let hash = channel.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    Some((hash % DATA_LANES as u64) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slip_proto::link_pb::{HistoryQuery, Interest, Publish};

    fn interest(channel: &str) -> Frame {
        Frame { kind: Some(Kind::Interest(Interest { channel: channel.into(), present: true, ..Default::default() })) }
    }

    #[test]
    fn a_header_announcing_a_large_frame_reserves_nothing() {
        let mut buf = BytesMut::with_capacity(16);
        buf.put_u32(MAX_FRAME_BYTES as u32);
        buf.put_slice(&[0; 8]);
        assert_eq!(decode(&mut buf), Ok(None));
        assert!(buf.capacity() < 1024, "still {} bytes, not the {MAX_FRAME_BYTES} announced", buf.capacity());
    }

    #[test]
    fn round_trips_in_any_split() {
        let frames: Vec<Frame> = (0..50).map(|i| interest(&format!("channel-{i}"))).collect();
        let mut wire = BytesMut::new();
        for f in &frames {
            encode(f, &mut wire).unwrap();
        }
        let wire = wire.freeze();
        for split in [1, 3, 7, 64, wire.len()] {
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for chunk in wire.chunks(split) {
                buf.extend_from_slice(chunk);
                while let Some(frame) = decode(&mut buf).unwrap() {
                    out.push(frame);
                }
            }
            assert_eq!(out, frames);
        }
    }

    #[test]
    fn rejects_oversized_and_garbage() {
        let mut huge = BytesMut::from(&(MAX_FRAME_BYTES as u32 + 1).to_be_bytes()[..]);
        assert_eq!(decode(&mut huge), Err(FramingError::TooLarge(MAX_FRAME_BYTES + 1)));
        let mut garbage = BytesMut::from(&[0, 0, 0, 3, 0xff, 0xff, 0xff][..]);
        assert!(matches!(decode(&mut garbage), Err(FramingError::Invalid(_))));
    }

    #[test]
    fn a_channel_keeps_its_lane_for_every_kind_of_frame() {
        let publish = Frame { kind: Some(Kind::Publish(Publish { channel: "c".into(), ..Default::default() })) };
        assert_eq!(lane(&publish), lane(&interest("c")));
        let history = HistoryQuery { channel: "c".into(), ..Default::default() };
        let question = Frame { kind: Some(Kind::Query(Query { id: 1, kind: Some(query::Kind::History(history)) })) };
        assert_eq!(lane(&question), lane(&interest("c")), "a history question goes behind the interest");
        assert!(lane(&publish).is_some_and(|l| l < DATA_LANES));
        assert_eq!(lane(&Frame { kind: None }), None);
    }
}
