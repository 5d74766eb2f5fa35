//! Bytes from a peer on a link stream: frames or a clear error, never a panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = slip_link::framing::decode(&mut buf) {
        let _ = slip_link::framing::lane(&frame);
    }
});
