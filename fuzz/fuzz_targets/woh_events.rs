//! WebSocket-over-HTTP bodies and grip control messages from a backend:
//! garbage is rejected without panicking, and whatever decodes re-encodes to
//! something that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slip_proto::woh;

fuzz_target!(|data: &[u8]| {
    if let Ok(events) = woh::decode(data) {
        assert_eq!(woh::decode(&woh::encode(&events)).ok(), Some(events));
    }
    let _ = woh::control(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = woh::grip_prefix(text);
    }
});
