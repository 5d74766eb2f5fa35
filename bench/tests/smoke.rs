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
    let idle = bench(&["--clients-per-process", "7", "idle", "--connections", "20"]);
    assert!(idle.contains("connected 20 (0 failed)") && idle.contains("RSS per idle connection"), "{idle}");
    // Subscribers spread over two client processes.
    let fanout = bench(&["--clients-per-process", "3", "fanout", "--subscribers", "5", "--messages", "10"]);
    assert!(fanout.contains("delivered 50 of 50"), "{fanout}");
    let cluster = bench(&["--cluster", "2", "fanout", "--subscribers", "4", "--messages", "10"]);
    assert!(cluster.contains("delivered 40 of 40"), "{cluster}");
    let inbound = bench(&["inbound", "--clients", "5", "--messages", "5"]);
    assert!(inbound.contains("25 round trips"), "{inbound}");
    let floor = bench(&["--floor", "fanout", "--subscribers", "5", "--messages", "10"]);
    assert!(floor.contains("delivered 50 of 50"), "{floor}");
    for soak in [
        bench(&["soak", "--cycles", "300", "--every", "100", "--clients", "10"]),
        bench(&["soak", "--sessions", "--cycles", "100", "--every", "50", "--clients", "5"]),
    ] {
        assert!(soak.contains("0 cycles failed") && soak.contains("| dev |"), "{soak}");
    }
}

#[test]
fn the_admin_page_scenario_runs_and_draws_the_dashboard() {
    // scripts/test.sh installs Chromium and Prometheus (the e2e tests need them too).
    let dir = std::env::temp_dir().join(format!("slip-bench-smoke-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (page, dashboard) = (dir.join("page.png"), dir.join("dashboard.png"));
    let out = bench(&[
        "admin-page",
        "--connections",
        "8",
        "--runs",
        "1",
        "--limits",
        "3",
        "--screenshot",
        page.to_str().unwrap(),
        "--dashboard",
        dashboard.to_str().unwrap(),
    ]);
    let pictures = [&page, &dashboard].map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.contains("8 connections (0 failed) on 2 edges, 4 channels, 3 control nodes"), "{out}");
    // What the page itself showed: the cluster's connections (the 8, and
    // any of the churning clients connected just then), and 3 channel rows.
    let shown = out
        .split("the page read: view term 1 · ready · 3 control nodes, 2 edges, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(shown.is_some_and(|n| n >= 8), "{out}");
    assert!(out.contains(" ms | 3 |"), "{out}");
    assert!(pictures.iter().all(|size| *size > 10_000), "pictures of {pictures:?} bytes");
}

#[test]
fn every_scenario_runs_against_pushpin_when_installed() {
    if !std::path::Path::new("/usr/bin/pushpin").exists() {
        // scripts/test.sh installs Pushpin; on a machine without it this test has nothing to drive.
        eprintln!("Pushpin is not installed; apt-get install pushpin to run this");
        return;
    }
    let out = std::env::temp_dir().join(format!("slip-bench-smoke-{}", std::process::id()));
    let doc = out.join("page.md");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(&doc, "# Page\n<!-- compare:begin -->\n<!-- compare:end -->\nkept\n").unwrap();
    let args = ["compare", "--idle", "20", "--fanout", "5", "--inbound", "20", "--messages", "10", "--out"];
    let table = bench(&[&args[..], &[out.to_str().unwrap(), "--doc", doc.to_str().unwrap()]].concat());
    assert!(table.contains("| idle memory per connection | 20 |"), "{table}");
    assert!(table.contains("| fan-out delivered | 5 | 50 of 50 | 50 of 50 |"), "{table}");
    assert!(table.contains("| inbound round trips | 20 | 200 of 200 | 200 of 200 |"), "{table}");
    assert!(table.contains("against the floor"), "{table}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["fanout"][0]["pushpin"]["delivered"], 50, "{results}");
    for chart in ["idle-memory.svg", "connect-rate.svg", "fanout-rate.svg", "fanout-p99.svg"] {
        assert!(std::fs::read_to_string(out.join(chart)).unwrap().starts_with("<svg"), "{chart}");
    }
    let page = std::fs::read_to_string(&doc).unwrap();
    assert!(page.contains("| fan-out delivered | 5 |") && page.contains("idle-memory.svg)"), "{page}");
    assert!(page.ends_with("<!-- compare:end -->\nkept\n"), "{page}");
    std::fs::remove_dir_all(out).unwrap();
}
