//! CI's fault campaign: `slip-bench faults` with the CI seed (a pause, a
//! partition and a kill of control nodes, 50 s) against a cluster of three
//! control nodes and two edges, each in a network namespace of its own.
//! It fails when any acknowledged publish was lost, doubled or reordered at
//! a subscriber, or two messages shared a place in a stream; when presence
//! at the end is not the subscribers connected; when an accepted connection
//! got no CLOSE or went on after it; or when a channel was not occupied and
//! vacated exactly once. Longer
//! campaigns: `slip-bench faults --seeds 20` (docs/benchmarks.md).

use std::path::PathBuf;
use std::process::Command;

#[test]
fn a_short_fault_campaign_keeps_every_acknowledged_publish() {
    let slip = PathBuf::from(env!("CARGO_BIN_EXE_slip-bench")).with_file_name("slip");
    assert!(slip.exists(), "build the slip binary first (cargo test --workspace does)");
    let out = Command::new(env!("CARGO_BIN_EXE_slip-bench"))
        .arg("--slip")
        .arg(&slip)
        .args(["faults", "--seed", "5", "--duration", "50", "--control-nodes", "3", "--edges", "2"])
        .output()
        .expect("slip-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the campaign failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("invariants held"), "{stdout}");
    assert!(stdout.contains("Pause") && stdout.contains("Partition") && stdout.contains("KillControl"), "{stdout}");
}
