//! WebSocket framing (RFC 6455), server side, as pure code.
//!
//! The [`Decoder`] works on whatever bytes have arrived and keeps no buffer of
//! its own between messages, so an idle connection holds no read buffer at
//! all. Server frames are never masked, so a frame encoded once is the same
//! bytes for every recipient: fan-out shares one [`Bytes`] among them.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use slip_proto::close::CloseCode;

mod utf8;
use utf8::Utf8Check;

pub(crate) const OP_CONTINUATION: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;

/// Largest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// A complete message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    /// `code` is `None` when the close frame had no payload.
    Close {
        code: Option<CloseCode>,
        reason: String,
    },
}

/// Why a client's bytes were refused, with the close code to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("message of {0} bytes or more exceeds the limit")]
    TooBig(usize),
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
}

impl FrameError {
    pub fn close_code(&self) -> CloseCode {
        match self {
            FrameError::Protocol(_) => CloseCode::PROTOCOL_ERROR,
            FrameError::TooBig(_) => CloseCode::TOO_BIG,
            FrameError::InvalidUtf8 => CloseCode::INVALID_DATA,
        }
    }
}

struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    header_len: usize,
    payload_len: usize,
}

/// Parses a frame header if enough bytes are there; `Ok(None)` means wait for more.
fn parse_header(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    if buf[0] & 0x70 != 0 {
        return Err(FrameError::Protocol("reserved bits set without an extension"));
    }
    let opcode = buf[0] & 0x0F;
    if buf[1] & 0x80 == 0 {
        return Err(FrameError::Protocol("client frames must be masked"));
    }
    let (payload_len, len_bytes) = match buf[1] & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 2)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut len = [0u8; 8];
            len.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(len);
            if len >> 63 != 0 {
                return Err(FrameError::Protocol("payload length has its top bit set"));
            }
            (len, 8)
        }
        n => (u64::from(n), 0),
    };
    let header_len = 2 + len_bytes + 4;
    if buf.len() < header_len {
        return Ok(None);
    }
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&buf[2 + len_bytes..header_len]);
    let payload_len = usize::try_from(payload_len).map_err(|_| FrameError::TooBig(usize::MAX))?;
    Ok(Some(Header { fin, opcode, mask, header_len, payload_len }))
}

/// The mask as it applies from payload byte `offset` on.
fn rotate(mask: [u8; 4], offset: usize) -> [u8; 4] {
    std::array::from_fn(|i| mask[(offset + i) % 4])
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let v = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// Reassembles client messages from frames, enforcing the size limit before
/// the bytes of an oversized message are buffered.
pub struct Decoder {
    max_message: usize,
    /// A fragmented message in progress: (opcode, bytes so far).
    partial: Option<(u8, Vec<u8>)>,
    /// The text message in progress, checked as its bytes arrive.
    utf8: Utf8Check,
    /// Of the frame at the front, not whole yet, the payload bytes checked.
    checked: usize,
}

impl Decoder {
    pub fn new(max_message: usize) -> Self {
        Self { max_message, partial: None, utf8: Utf8Check::default(), checked: 0 }
    }

    /// How many more bytes the frame at the front of `buf` needs, if known.
    pub fn wanted(&self, buf: &[u8]) -> Option<usize> {
        let header = parse_header(buf).ok()??;
        (header.header_len + header.payload_len).checked_sub(buf.len())
    }

    /// Room to make in `buf` before the next read: what the frame at the
    /// front still needs, but never more than has already arrived (and at
    /// least `chunk`). A header that announces a large frame so reserves
    /// nothing until its bytes come: the buffer at most doubles per read.
    pub fn read_reserve(&self, buf: &[u8], chunk: usize) -> usize {
        self.wanted(buf).unwrap_or(0).min(buf.len()).max(chunk)
    }

    /// Takes the next complete message out of `buf`, or `Ok(None)` when more
    /// bytes are needed. Consumed bytes are removed from `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, FrameError> {
        loop {
            let Some(header) = parse_header(buf)? else {
                return Ok(None);
            };
            let is_control = header.opcode & 0x8 != 0;
            if is_control {
                if !matches!(header.opcode, OP_CLOSE | OP_PING | OP_PONG) {
                    return Err(FrameError::Protocol("reserved control opcode"));
                }
                if !header.fin {
                    return Err(FrameError::Protocol("fragmented control frame"));
                }
                if header.payload_len > MAX_CONTROL_PAYLOAD {
                    return Err(FrameError::Protocol("control frame longer than 125 bytes"));
                }
            } else {
                match (header.opcode, &self.partial) {
                    (OP_CONTINUATION, None) => {
                        return Err(FrameError::Protocol("continuation without a message"));
                    }
                    (OP_TEXT | OP_BINARY, Some(_)) => {
                        return Err(FrameError::Protocol("new message inside a fragmented one"));
                    }
                    (OP_CONTINUATION | OP_TEXT | OP_BINARY, _) => {}
                    _ => return Err(FrameError::Protocol("unknown opcode")),
                }
                let so_far = self.partial.as_ref().map_or(0, |(_, data)| data.len());
                let total = so_far.saturating_add(header.payload_len);
                if total > self.max_message {
                    return Err(FrameError::TooBig(total));
                }
            }
            let text = header.opcode == OP_TEXT
                || (header.opcode == OP_CONTINUATION && matches!(self.partial, Some((OP_TEXT, _))));
            if buf.len() < header.header_len + header.payload_len {
                if text {
                    // What has come of a text frame is checked now: bad
                    // UTF-8 fails before the rest of the frame arrives.
                    let arrived = buf.len() - header.header_len;
                    let mut piece = buf[header.header_len + self.checked..].to_vec();
                    unmask(&mut piece, rotate(header.mask, self.checked));
                    self.utf8.feed(&piece).map_err(|_| FrameError::InvalidUtf8)?;
                    self.checked = arrived;
                }
                return Ok(None);
            }
            buf.advance(header.header_len);
            let mut payload = buf.split_to(header.payload_len);
            unmask(&mut payload, header.mask);
            let checked = std::mem::take(&mut self.checked);
            if text {
                self.utf8.feed(&payload[checked..]).map_err(|_| FrameError::InvalidUtf8)?;
                if header.fin {
                    self.utf8.finish().map_err(|_| FrameError::InvalidUtf8)?;
                }
            }

            match header.opcode {
                OP_PING => return Ok(Some(Message::Ping(payload.freeze()))),
                OP_PONG => return Ok(Some(Message::Pong)),
                OP_CLOSE => return close_message(&payload).map(Some),
                OP_CONTINUATION => {
                    let Some((_, data)) = self.partial.as_mut() else {
                        return Err(FrameError::Protocol("continuation without a message"));
                    };
                    data.extend_from_slice(&payload);
                    if header.fin {
                        let Some((opcode, data)) = self.partial.take() else {
                            return Err(FrameError::Protocol("continuation without a message"));
                        };
                        return finish(opcode, data.into()).map(Some);
                    }
                }
                opcode if header.fin => return finish(opcode, payload.freeze()).map(Some),
                opcode => self.partial = Some((opcode, payload.to_vec())),
            }
        }
    }
}

fn finish(opcode: u8, data: Bytes) -> Result<Message, FrameError> {
    if opcode == OP_TEXT {
        String::from_utf8(data.into()).map(Message::Text).map_err(|_| FrameError::InvalidUtf8)
    } else {
        Ok(Message::Binary(data))
    }
}

fn close_message(payload: &[u8]) -> Result<Message, FrameError> {
    match payload.len() {
        0 => Ok(Message::Close { code: None, reason: String::new() }),
        1 => Err(FrameError::Protocol("close frame with a one-byte payload")),
        _ => {
            let code = CloseCode::new(u16::from_be_bytes([payload[0], payload[1]]))
                .ok_or(FrameError::Protocol("close code not allowed on the wire"))?;
            let reason = std::str::from_utf8(&payload[2..]).map_err(|_| FrameError::InvalidUtf8)?;
            Ok(Message::Close { code: Some(code), reason: reason.to_owned() })
        }
    }
}

fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    out.put_u8(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.put_u8(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.put_u8(126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(127);
            out.put_u64(n as u64);
        }
    }
    out.put_slice(payload);
    out.freeze()
}

/// An encoded text frame, ready to write to any number of sockets.
pub fn text(data: &str) -> Bytes {
    encode(OP_TEXT, data.as_bytes())
}

pub fn binary(data: &[u8]) -> Bytes {
    encode(OP_BINARY, data)
}

/// The ping the edge sends on a quiet connection.
pub fn empty_ping() -> Bytes {
    encode(OP_PING, b"")
}

/// A ping frame; `None` if `data` is longer than a control frame may carry.
pub fn ping(data: &[u8]) -> Option<Bytes> {
    (data.len() <= MAX_CONTROL_PAYLOAD).then(|| encode(OP_PING, data))
}

/// A pong frame; `None` if `data` is longer than a control frame may carry.
pub fn pong(data: &[u8]) -> Option<Bytes> {
    (data.len() <= MAX_CONTROL_PAYLOAD).then(|| encode(OP_PONG, data))
}

/// A close frame; the reason is cut to fit a control frame on a char boundary.
pub fn close(code: CloseCode, reason: &str) -> Bytes {
    let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.get().to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    encode(OP_CLOSE, &payload)
}

#[cfg(test)]
/// A client frame: masked, as a browser sends it.
pub(crate) fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8], max: usize) -> Result<Vec<Message>, FrameError> {
        let mut decoder = Decoder::new(max);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = decoder.decode(&mut buf)? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn decodes_text_binary_and_control_frames() {
        let mut bytes = client_frame(true, OP_TEXT, "héllo".as_bytes());
        bytes.extend(client_frame(true, OP_BINARY, &[0, 1, 2]));
        bytes.extend(client_frame(true, OP_PING, b"p"));
        bytes.extend(client_frame(true, OP_CLOSE, &[0x03, 0xE8, b'o', b'k']));
        assert_eq!(
            decode_all(&bytes, 1024).unwrap(),
            vec![
                Message::Text("héllo".into()),
                Message::Binary(Bytes::from_static(&[0, 1, 2])),
                Message::Ping(Bytes::from_static(b"p")),
                Message::Close { code: Some(CloseCode::NORMAL), reason: "ok".into() },
            ]
        );
    }

    #[test]
    fn reassembles_fragments_around_control_frames() {
        let mut bytes = client_frame(false, OP_TEXT, b"hel");
        bytes.extend(client_frame(true, OP_PING, b""));
        bytes.extend(client_frame(true, OP_CONTINUATION, b"lo"));
        assert_eq!(decode_all(&bytes, 1024).unwrap(), vec![Message::Ping(Bytes::new()), Message::Text("hello".into())]);
    }

    #[test]
    fn a_header_announcing_a_large_frame_reserves_nothing_more() {
        let decoder = Decoder::new(1 << 20);
        // 14 bytes: FIN text, masked, 64-bit length of 1 MiB, the mask.
        let mut header = vec![0x81, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 20).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(decoder.wanted(&header), Some(1 << 20));
        assert_eq!(decoder.read_reserve(&header, 4096), 4096, "a read's worth, not a megabyte");
        let half = vec![0u8; 512 * 1024];
        // Half has come: the other half may be reserved now.
        assert_eq!(decoder.read_reserve(&[&header[..], &half[..]].concat(), 4096), 512 * 1024);
    }

    #[test]
    fn waits_for_partial_input_byte_by_byte() {
        let bytes = client_frame(true, OP_TEXT, &[b'x'; 300]);
        let mut decoder = Decoder::new(1024);
        let mut buf = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            buf.put_u8(*b);
            let got = decoder.decode(&mut buf).unwrap();
            assert_eq!(got.is_some(), i == bytes.len() - 1);
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_bad_input_with_the_right_close_code() {
        let too_big = client_frame(true, OP_TEXT, &[b'a'; 2000]);
        // The limit is enforced from the header, before the payload arrives.
        assert_eq!(decode_all(&too_big[..8], 1024).unwrap_err().close_code().get(), 1009);
        let mut fragments = client_frame(false, OP_BINARY, &[0; 600]);
        fragments.extend(client_frame(true, OP_CONTINUATION, &[0; 600]));
        assert_eq!(decode_all(&fragments, 1024).unwrap_err().close_code().get(), 1009);
        assert_eq!(decode_all(&client_frame(true, OP_TEXT, &[0xff, 0xfe]), 1024).unwrap_err().close_code().get(), 1007);
        let unmasked = [0x81, 0x01, b'a'];
        assert_eq!(decode_all(&unmasked, 1024).unwrap_err().close_code().get(), 1002);
        assert_eq!(decode_all(&client_frame(true, 0x3, b""), 1024).unwrap_err().close_code().get(), 1002);
        // Reserved control opcodes fail the connection (RFC 6455 §5.2), binary opt-in or not.
        for opcode in 0xB..=0xF {
            assert_eq!(decode_all(&client_frame(true, opcode, b"x"), 1024).unwrap_err().close_code().get(), 1002);
        }
        assert_eq!(decode_all(&client_frame(true, OP_CONTINUATION, b"x"), 1024).unwrap_err().close_code().get(), 1002);
        assert_eq!(decode_all(&client_frame(false, OP_PING, b""), 1024).unwrap_err().close_code().get(), 1002);
        assert_eq!(decode_all(&client_frame(true, OP_CLOSE, &[3]), 1024).unwrap_err().close_code().get(), 1002);
        assert_eq!(
            decode_all(&client_frame(true, OP_CLOSE, &[0x03, 0xED]), 1024).unwrap_err().close_code().get(),
            1002
        );
    }

    #[test]
    fn bad_utf8_fails_at_the_fragment_and_the_bytes_where_it_shows() {
        // Fragments: the second has a byte no character may hold; the
        // message's end never comes (Autobahn 6.4.1, 6.4.2).
        let mut bytes = client_frame(false, OP_TEXT, "κόσμε".as_bytes());
        bytes.extend(client_frame(false, OP_CONTINUATION, b"\xce\xba\xf4\x90\x80\x80"));
        assert_eq!(decode_all(&bytes, 1024).unwrap_err().close_code().get(), 1007);
        // Within one frame, before the frame is whole (6.4.3, 6.4.4).
        let frame = client_frame(true, OP_TEXT, b"ok \xf4\x90 and much more after it");
        let mut decoder = Decoder::new(1024);
        let mut buf = BytesMut::from(&frame[..frame.len() - 20]);
        assert_eq!(decoder.decode(&mut buf).unwrap_err().close_code().get(), 1007);
        // Valid text cut anywhere, in frames and within them, passes.
        let text = "κόσμε €𝄞 hello";
        let mut frames = client_frame(false, OP_TEXT, &text.as_bytes()[..3]);
        frames.extend(client_frame(false, OP_CONTINUATION, &text.as_bytes()[3..9]));
        frames.extend(client_frame(true, OP_CONTINUATION, &text.as_bytes()[9..]));
        let mut decoder = Decoder::new(1024);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in frames {
            buf.put_u8(b);
            got.extend(decoder.decode(&mut buf).unwrap());
        }
        assert_eq!(got, vec![Message::Text(text.into())]);
        // A binary message is not text.
        assert!(decode_all(&client_frame(true, OP_BINARY, b"\xff"), 1024).is_ok());
    }

    #[test]
    fn encodes_unmasked_frames_of_every_length_class() {
        assert_eq!(&text("hi")[..], &[0x81, 2, b'h', b'i']);
        let medium = binary(&[7; 300]);
        assert_eq!(&medium[..4], &[0x82, 126, 0x01, 0x2C]);
        let large = binary(&[7; 70_000]);
        assert_eq!(&large[..2], &[0x82, 127]);
        assert_eq!(large.len(), 70_000 + 10);
        let c = close(CloseCode::NORMAL, &"é".repeat(100));
        assert!(c.len() <= 2 + 125);
        assert!(std::str::from_utf8(&c[4..]).is_ok());
        assert_eq!(ping(&[0; 125]).map(|f| f.len()), Some(127));
        assert_eq!(ping(&[0; 126]), None);
        assert_eq!(pong(&[0; 126]), None);
    }
}
