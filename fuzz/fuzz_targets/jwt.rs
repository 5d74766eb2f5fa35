//! Tokens: garbage is rejected without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = slip_proto::jwt::verify(token, b"secret", slip_proto::jwt::AUD_CONTROL_EVENT, 1_000);
        let _ = slip_proto::jwt::bearer(token);
    }
});
