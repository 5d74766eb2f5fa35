//! Client WebSocket bytes, fed in arbitrary splits: the decoder returns
//! messages or an error with a close code, never panics, never grows past
//! its limit, and says the same fed whole as fed in pieces (bad UTF-8 fails
//! at the same message however the bytes come).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use slip_edge::frame::{Decoder, Message};

/// The messages decoded, and the close code it failed with, if it did.
fn decode(chunks: impl Iterator<Item = Vec<u8>>) -> (Vec<Message>, Option<u16>) {
    let mut decoder = Decoder::new(4096);
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(&chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(e) => {
                    let code = e.close_code().get();
                    assert!(matches!(code, 1002 | 1007 | 1009));
                    return (messages, Some(code));
                }
            }
        }
    }
    (messages, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let pieces = decode(rest.chunks(usize::from(split).max(1)).map(<[u8]>::to_vec));
    let whole = decode(std::iter::once(rest.to_vec()));
    assert_eq!(pieces, whole);
});
