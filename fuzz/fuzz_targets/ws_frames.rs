//! Client WebSocket bytes, fed in arbitrary splits: the decoder returns
//! messages or an error with a close code, never panics, never grows past its limit.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use slip_edge::frame::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let mut decoder = Decoder::new(4096);
    let mut buf = BytesMut::new();
    for chunk in rest.chunks(usize::from(split).max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) => {
                    assert!(matches!(e.close_code().get(), 1002 | 1007 | 1009));
                    return;
                }
            }
        }
    }
});
