//! `idle`: N connections held open; the gateway's RSS per connection, and how
//! fast they were opened (each one includes the OPEN callback round trip).

use std::time::Duration;

use serde::Serialize;

use crate::stats::Latency;
use crate::swarm::{self, Swarm};
use crate::target::Target;

#[derive(Clone, Debug, Serialize)]
pub struct Idle {
    pub connections: usize,
    pub failed: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub bytes_per_connection: f64,
    pub connect_secs: f64,
    pub connects_per_sec: f64,
    /// TCP connect to 101, the OPEN callback included.
    pub handshake: Latency,
    /// Kernel TCP buffer memory (`/proc/net/sockstat` `mem`, all sockets of
    /// the machine: on loopback both ends of each connection) per connection.
    pub kernel_bytes_per_connection: f64,
}

/// Pages of TCP buffer memory in use, machine-wide.
fn kernel_tcp_pages() -> u64 {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    sockstat
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "mem").nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Bytes per page, for `/proc/net/sockstat`.
const PAGE_BYTES: f64 = 4096.0;

pub async fn run(target: &Target, connections: usize) -> anyhow::Result<Idle> {
    let urls = target.ws_urls();
    // One connection first, so one-time allocations (pools, maps) are not counted per connection.
    let warm = swarm::connect_many(&urls, 1, 0, 1).await.open;
    anyhow::ensure!(!warm.is_empty(), "{} refused the first connection", target.name());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = target.rss_kib()?;
    let kernel_before = kernel_tcp_pages();
    let swarm = Swarm::connect(&urls, connections).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = target.rss_kib()?;
    let kernel_after = kernel_tcp_pages();
    let held = swarm.connected.max(1);
    let result = Idle {
        connections: swarm.connected,
        failed: swarm.failed,
        rss_before_kib: before,
        rss_after_kib: after,
        bytes_per_connection: after.saturating_sub(before) as f64 * 1024.0 / held as f64,
        connect_secs: swarm.connect_secs,
        connects_per_sec: swarm.connected as f64 / swarm.connect_secs,
        handshake: swarm.handshake,
        kernel_bytes_per_connection: kernel_after.saturating_sub(kernel_before) as f64 * PAGE_BYTES / held as f64,
    };
    drop(swarm);
    drop(warm);
    Ok(result)
}

impl std::fmt::Display for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  connected {} ({} failed)", self.connections, self.failed)?;
        writeln!(f, "  RSS before: {} KiB, after: {} KiB", self.rss_before_kib, self.rss_after_kib)?;
        writeln!(
            f,
            "  RSS per idle connection: {:.0} bytes ({:.2} KiB)",
            self.bytes_per_connection,
            self.bytes_per_connection / 1024.0
        )?;
        writeln!(
            f,
            "  kernel TCP buffers: {:.0} bytes per connection (machine-wide, both ends)",
            self.kernel_bytes_per_connection
        )?;
        writeln!(
            f,
            "  connected in {:.2} s ({:.0} connections/s with the OPEN callback)",
            self.connect_secs, self.connects_per_sec
        )?;
        write!(f, "  handshake latency: {}", self.handshake)
    }
}
