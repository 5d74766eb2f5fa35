//! Where gateway processes run: optionally pinned with `taskset`, the same
//! way for every gateway, so each comparison shares cores alike.

use std::sync::OnceLock;

use tokio::process::Command;

static GATEWAY_CPUS: OnceLock<Option<String>> = OnceLock::new();

pub fn set_gateway_cpus(cpus: Option<String>) {
    let _ = GATEWAY_CPUS.set(cpus);
}

/// A command for a gateway process, pinned if asked to be.
pub fn gateway_command(program: &str) -> Command {
    match GATEWAY_CPUS.get().cloned().flatten() {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.args(["-c", &cpus, program]);
            command
        }
        None => Command::new(program),
    }
}
