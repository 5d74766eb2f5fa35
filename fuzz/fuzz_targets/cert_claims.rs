//! Peer certificates (DER) as the link reads their role and node: anything a
//! peer presents is refused or read, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(claims) = slip_link::tls::claims(data) {
        let _ = claims.admits(0, "edge-1");
        let _ = claims.admits(1, "control-1");
    }
});
