//! Pushpin, the baseline: a private config
//! (no system services touched), the delivery throttle removed, the open-file
//! limit raised, every process on loopback, run as the `pushpin` user.
//! Install it with `apt-get install pushpin`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::backend::Backend;

/// Where clients connect.
pub const WS_PORT: u16 = 7999;
/// Pushpin's HTTP publish endpoint (its default).
pub const PUBLISH_URL: &str = "http://127.0.0.1:5561/publish/";
/// Open files Pushpin may use: as many as this machine allows a process.
const FILE_LIMIT: u32 = 20_000;
/// Processes that make up a running Pushpin.
const PROCESS_NAMES: [&str; 5] = ["pushpin", "condure", "pushpin-proxy", "pushpin-handler", "zurl"];

pub struct Pushpin {
    runner: Child,
    dir: PathBuf,
    /// Owned, so the backend lives exactly as long as the gateway in front of it.
    _backend: Backend,
}

impl Pushpin {
    /// Starts Pushpin routing every request to `backend` (host:port) with WebSocket-over-HTTP.
    pub async fn start(backend: Backend) -> anyhow::Result<Self> {
        if !std::path::Path::new("/etc/pushpin/pushpin.conf").exists() {
            bail!("Pushpin is not installed: apt-get install pushpin");
        }
        if running_pids().next().is_some() {
            bail!("a Pushpin is already running; stop it first");
        }
        let dir = std::env::temp_dir().join(format!("slip-bench-pushpin-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("run"))?;
        std::fs::create_dir_all(dir.join("log"))?;
        let shipped = std::fs::read_to_string("/etc/pushpin/pushpin.conf")?;
        // The delivery throttle off: the shipped config caps deliveries at 2,500/s.
        let overrides = [("message_rate", "0"), ("message_hwm", "1000000")];
        let config = crate::pushpin_config::private_config(&shipped, &dir, WS_PORT, &overrides);
        std::fs::write(dir.join("pushpin.conf"), config)?;
        std::fs::write(dir.join("routes"), format!("* {},over_http\n", backend.over_http))?;
        let status = Command::new("chown").args(["-R", "pushpin"]).arg(&dir).status().await?;
        anyhow::ensure!(status.success(), "chown of the Pushpin directory failed");
        let script = format!("ulimit -n {FILE_LIMIT} && exec pushpin --config {}/pushpin.conf", dir.display());
        let runner = crate::cpus::gateway_command("runuser")
            .args(["-u", "pushpin", "--", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting pushpin")?;
        let pushpin = Self { runner, dir, _backend: backend };
        // Ready when it answers HTTP on its client port.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", WS_PORT)).await.is_ok()
                && tokio::net::TcpStream::connect(("127.0.0.1", 5561)).await.is_ok()
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
                return Ok(pushpin);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("Pushpin did not start listening; see {}/log", pushpin.dir.display())
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{WS_PORT}/")
    }

    /// Resident memory of all Pushpin processes together, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        running_pids().map(crate::gateway::rss_of).sum()
    }
}

impl Drop for Pushpin {
    fn drop(&mut self) {
        // The runner stops its children on SIGTERM.
        if let Some(pid) = self.runner.id() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
        for _ in 0..50 {
            if running_pids().next().is_none() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // A process still there after 5 s (pushpin-proxy, under load) would
        // make the next run refuse to start: kill it.
        for pid in running_pids() {
            let _ = std::process::Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Process ids of running Pushpin processes.
fn running_pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc").into_iter().flatten().flatten().filter_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
        PROCESS_NAMES.contains(&comm.trim()).then_some(pid)
    })
}
