//! fly.toml cannot be deployed from here (no flyctl, no network), so this
//! checks what can be checked: each process command starts the real binary
//! with fly.toml's environment, the ports are the binary's defaults, and the
//! signal and timeouts fit the drain.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::CaDir;
use crate::support::*;

fn fly() -> toml::Table {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fly.toml")).unwrap();
    text.parse().expect("fly.toml is valid TOML")
}

fn help(command: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slip")).args([command, "--help"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn ports_signal_and_timeouts_fit_the_binary() {
    let fly = fly();
    assert_eq!(fly["kill_signal"].as_str(), Some("SIGTERM"));
    let env = fly["env"].as_table().unwrap();
    let drain: i64 = env["SLIP_DRAIN_SECONDS"].as_str().unwrap().parse().unwrap();
    assert!(fly["kill_timeout"].as_integer().unwrap() >= drain + 5, "kill_timeout must cover SLIP_DRAIN_SECONDS");

    // One public service: the edges' WebSocket port, checked on /readyz, never auto-stopped.
    let services = fly["services"].as_array().unwrap();
    assert_eq!(services.len(), 1, "only the edges are public");
    let service = services[0].as_table().unwrap();
    assert_eq!(service["processes"].as_array().unwrap()[0].as_str(), Some("edge"));
    let port = service["internal_port"].as_integer().unwrap();
    assert!(help("edge").contains(&format!("[default: [::]:{port}]")), "edge listens on {port} by default");
    assert!(matches!(service["auto_stop_machines"].as_str(), Some("off")));
    let concurrency = service["concurrency"].as_table().unwrap();
    assert!(concurrency["hard_limit"].as_integer().unwrap() >= 50_000, "no low hard_limit");
    assert_eq!(service["http_checks"].as_array().unwrap()[0]["path"].as_str(), Some("/readyz"));

    // Metrics and the private ports are the binary's defaults.
    let metrics = fly["metrics"].as_table().unwrap();
    let metrics_port = metrics["port"].as_integer().unwrap();
    for command in ["edge", "control"] {
        assert!(help(command).contains(&format!("[default: [::]:{metrics_port}]")), "{command} metrics port");
    }
    let control = help("control");
    assert!(control.contains("[default: [::]:7070]") && control.contains("[default: [::]:7071]"));
    let peers = env["SLIP_PEERS"].as_str().unwrap();
    assert!(peers.starts_with("dns:control.process.") && peers.ends_with(":7071"), "{peers}");

    // The control nodes: a first cluster of at least three (a majority
    // survives one loss), consensus state on a volume, readiness checked
    // on the metrics port so a rolling deploy waits for each.
    let expect: usize = env["SLIP_BOOTSTRAP_EXPECT"].as_str().unwrap().parse().unwrap();
    assert!(expect >= 3, "SLIP_BOOTSTRAP_EXPECT {expect}");
    let data = env["SLIP_DATA_DIR"].as_str().unwrap();
    let mounts = fly["mounts"].as_array().unwrap();
    assert!(
        mounts.iter().any(|m| m["destination"].as_str() == Some(data) && m["processes"][0].as_str() == Some("control"))
    );
    let ready = fly["checks"]["control_ready"].as_table().unwrap();
    assert_eq!((ready["path"].as_str(), ready["port"].as_integer()), (Some("/readyz"), Some(metrics_port)));
    assert_eq!(ready["processes"].as_array().unwrap()[0].as_str(), Some("control"));
}

#[tokio::test]
async fn every_process_command_starts_with_the_fly_environment() {
    let fly = fly();
    let ca = CaDir::new();
    let data = TempDir::new();
    let env = fly["env"].as_table().unwrap();
    let processes = fly["processes"].as_table().unwrap();
    let mut names: Vec<&String> = processes.keys().collect();
    names.sort();
    assert_eq!(names, ["control", "edge"]);
    for (name, command) in processes {
        // Each group's leaf, as docs/deploy-fly.md sets them; no process holds the CA key.
        let (cert, key) = ca.leaf(name);
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_slip"))
            .args(command.as_str().unwrap().split_whitespace())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap())))
            // The secrets fly.toml leaves out.
            .env("SLIP_JWT_SECRET", SECRET)
            .env("SLIP_CLUSTER_CA", ca.cert())
            .env("SLIP_CLUSTER_CERT", cert)
            .env("SLIP_CLUSTER_KEY", key)
            .env("SLIP_TARGET_URL", "http://127.0.0.1:9/")
            // Loopback only, here: every listener on a free port, DNS to a port nobody answers.
            .env("SLIP_LISTEN", "127.0.0.1:0")
            .env("SLIP_CONTROL_LISTEN", "127.0.0.1:0")
            .env("SLIP_LINK_LISTEN", "127.0.0.1:0")
            .env("SLIP_METRICS_LISTEN", "127.0.0.1:0")
            .env("SLIP_DNS_SERVER", "127.0.0.1:9")
            // Never the machine's /data.
            .env("SLIP_DATA_DIR", data.path())
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await;
        let line = first.ok().and_then(|l| l.ok()).flatten().unwrap_or_default();
        assert!(line.starts_with("SLIP Sockets"), "process {name} ({command}) did not start: {line:?}");
        child.kill().await.unwrap();
    }
}
