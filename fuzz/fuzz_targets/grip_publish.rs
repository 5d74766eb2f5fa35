//! GRIP publish bodies and publisher tokens: garbage is rejected without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = slip_proto::grip::parse(data);
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = slip_proto::jwt::verify_grip(token, b"secret", 1_000);
    }
});
