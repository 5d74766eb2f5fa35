//! Pushpin (Debian's package), run with a private config so the conformance
//! suite can be checked against it: its own run and log directories,
//! WebSocket-over-HTTP to one backend, Grip-Sig signed with the test secret.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::support::SECRET;

#[path = "../../bench/src/pushpin_config.rs"]
mod pushpin_config;

/// Where clients connect (Pushpin's default port).
pub const WS_PORT: u16 = 7999;
/// Pushpin's GRIP publish endpoint (its default).
pub const CONTROL: &str = "http://127.0.0.1:5561";

pub struct Pushpin {
    runner: Child,
    dir: PathBuf,
}

impl Pushpin {
    /// Starts Pushpin in front of `backend` (host:port), or `None` when it is
    /// not installed or cannot run here (it must be started as root).
    pub async fn start(backend: &str) -> Option<Self> {
        let shipped = std::fs::read_to_string("/etc/pushpin/pushpin.conf").ok()?;
        let dir = std::env::temp_dir().join(format!("slip-e2e-pushpin-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("run")).ok()?;
        std::fs::create_dir_all(dir.join("log")).ok()?;
        let config = pushpin_config::private_config(&shipped, &dir, WS_PORT, &[("sig_key", SECRET)]);
        std::fs::write(dir.join("pushpin.conf"), config).ok()?;
        std::fs::write(dir.join("routes"), format!("* {backend},over_http\n")).ok()?;
        let chown = Command::new("chown").args(["-R", "pushpin"]).arg(&dir).status().await.ok()?;
        if !chown.success() {
            return None;
        }
        let script = format!("ulimit -n 4096 && exec pushpin --config {}/pushpin.conf", dir.display());
        let runner = Command::new("runuser")
            .args(["-u", "pushpin", "--", "sh", "-c", &script])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .ok()?;
        let pushpin = Self { runner, dir };
        for _ in 0..100 {
            let ws = tokio::net::TcpStream::connect(("127.0.0.1", WS_PORT)).await.is_ok();
            if ws && tokio::net::TcpStream::connect(("127.0.0.1", 5561)).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                return Some(pushpin);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("Pushpin did not start listening; see {}/log", pushpin.dir.display());
    }
}

impl Drop for Pushpin {
    fn drop(&mut self) {
        if let Some(pid) = self.runner.id() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
        std::thread::sleep(Duration::from_secs(2));
        // Anything of this Pushpin still there: every process names our directory.
        let _ = std::process::Command::new("pkill").arg("-KILL").arg("-f").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
