//! DNS answers from the network: addresses or a clear error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let id = data.first().map_or(0, |b| u16::from(*b));
    let _ = slip_link::dns::answers(id, data);
    let _ = slip_link::dns::answer(data, &["127.0.0.1".parse().unwrap()]);
});
