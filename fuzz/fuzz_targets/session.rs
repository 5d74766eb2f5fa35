//! `slip.v1` session tokens and resume frames: garbage is rejected without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = slip_proto::session::verify(text, b"a-secret-of-at-least-thirty-two-bytes");
        let _ = slip_proto::session::parse_resume(text);
    }
});
