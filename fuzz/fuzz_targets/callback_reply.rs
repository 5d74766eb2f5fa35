//! Callback replies and control requests: any bytes give Ok or a clear error, never a panic,
//! and whatever parses turns into link actions without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slip_proto::command::{Source, parse};
use slip_proto::route::action;

fuzz_target!(|data: &[u8]| {
    for source in [Source::CallbackReply, Source::ControlRequest] {
        if let Ok(commands) = parse(data, source) {
            for command in commands {
                let _ = action(command);
            }
        }
    }
});
