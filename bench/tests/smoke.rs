//! A smoke run of every scenario at tiny sizes, on both gateways, so the
//! harness cannot rot. The figures are not checked: benchmarks are not tests.

use std::path::PathBuf;
use std::process::Command;

fn slip() -> PathBuf {
    // The root package's binary, built into the same target directory.
    PathBuf::from(env!("CARGO_BIN_EXE_slip-bench")).with_file_name("slip")
}

fn bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_slip-bench"))
        .arg("--slip")
        .arg(slip())
        .args(args)
        .output()
        .expect("slip-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "slip-bench {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn every_scenario_runs_against_slip() {
    assert!(slip().exists(), "build the slip binary first (cargo test --workspace does)");
    assert!(bench(&["idle", "--connections", "20"]).contains("RSS per idle connection"));
    let fanout = bench(&["fanout", "--subscribers", "5", "--messages", "10"]);
    assert!(fanout.contains("delivered 50 of 50"), "{fanout}");
    let cluster = bench(&["--cluster", "2", "fanout", "--subscribers", "4", "--messages", "10"]);
    assert!(cluster.contains("delivered 40 of 40"), "{cluster}");
    let inbound = bench(&["inbound", "--clients", "5", "--messages", "5"]);
    assert!(inbound.contains("25 round trips"), "{inbound}");
    let floor = bench(&["--floor", "fanout", "--subscribers", "5", "--messages", "10"]);
    assert!(floor.contains("delivered 50 of 50"), "{floor}");
}

#[test]
fn every_scenario_runs_against_pushpin_when_installed() {
    if !std::path::Path::new("/usr/bin/pushpin").exists() {
        // .ci/run installs Pushpin; on a machine without it this test has nothing to drive.
        eprintln!("Pushpin is not installed; apt-get install pushpin to run this");
        return;
    }
    let table = bench(&["compare", "--idle", "20", "--fanout", "5", "--messages", "10"]);
    assert!(table.contains("| idle memory per connection | 20 |"), "{table}");
    assert!(table.contains("| fan-out delivered | 5 | 50 of 50 | 50 of 50 | |"), "{table}");
    assert!(table.contains("| inbound round trips | 20 | 200 of 200 | 200 of 200 | |"), "{table}");
    assert!(table.contains("against the floor"), "{table}");
}
