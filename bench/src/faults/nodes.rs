//! The cluster under fault: `slip control` and `slip edge` processes, each
//! in its own host (`netns.rs`), that the campaign kills, restarts, pauses
//! (SIGSTOP) and resumes, and asks whether they are ready.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

use super::netns::Net;

/// The shared secret of the campaign's cluster and backend.
pub const SECRET: &str = "fault-campaign-secret-of-32-bytes-or-more";
/// Ports every node uses on its own address.
pub const CONTROL_PORT: u16 = 7070;
pub const LINK_PORT: u16 = 7071;
pub const METRICS_PORT: u16 = 9090;
pub const WS_PORT: u16 = 8080;
/// Longest a node may take to print that it listens.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// What the nodes log (`SLIP_FAULTS_LOG` overrides), kept for a campaign that fails.
const LOG_LEVEL: &str = "info,raft=warn";
/// Where the control nodes send lifecycle events, on the backend.
pub const EVENTS_PATH: &str = "/events";
/// The resume window of edges and control nodes (`SLIP_RESUME_SECS`): short,
/// so that a session given up during a fault gets its CLOSE and leaves
/// presence within the campaign, long enough for every fault's sessions to
/// resume in it.
pub const RESUME_SECS: u64 = 20;
/// Publications each control node keeps per channel: enough for a
/// subscriber's edge to catch up after the longest fault.
const HISTORY_SIZE: &str = "20000";

/// One node: where it runs, how to start it, and its process when it runs.
struct Node {
    host: usize,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    paused: bool,
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Nodes {
    // Processes go before the hosts they run in (fields drop in order).
    controls: Vec<Node>,
    edges: Vec<Node>,
    pub net: Net,
    slip: String,
    /// Every node's log (stderr), a file each, appended across restarts.
    logs: PathBuf,
    _files: TempDir,
}

/// What the cluster looks like.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub controls: usize,
    pub edges: usize,
    /// Control nodes keep their consensus state on disk (a restart is the
    /// same voter) or not (a restart joins as a new one).
    pub data_dir: bool,
}

fn run_slip(slip: &str, args: &[&str], env: &[(&str, &Path)]) -> anyhow::Result<()> {
    let mut command = std::process::Command::new(slip);
    command.args(args).stdout(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let status = command.status().with_context(|| format!("running {slip}"))?;
    anyhow::ensure!(status.success(), "slip {args:?} failed");
    Ok(())
}

impl Nodes {
    /// Processes for `shape` in the hosts of `net` (controls first, then
    /// edges); the edges call the backend at `backend_port` on this
    /// machine's address on the bridge.
    pub async fn start(slip: &str, shape: Shape, net: Net, backend_port: u16) -> anyhow::Result<Self> {
        anyhow::ensure!(net.hosts.len() >= shape.controls + shape.edges, "not enough hosts");
        let dir = std::env::temp_dir().join(format!("slip-faults-{:016x}", rand::random::<u64>()));
        let files = TempDir(dir.clone());
        let d = dir.to_str().context("temp dir")?;
        run_slip(slip, &["gen-ca", "--out", d], &[])?;
        for role in ["edge", "control"] {
            let env = [("SLIP_CLUSTER_CA", dir.join("ca.pem")), ("SLIP_CLUSTER_CA_KEY", dir.join("ca-key.pem"))];
            let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
            run_slip(slip, &["gen-cert", "--role", role, "--out", d], &env)?;
        }
        let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let ip = |host: usize| net.hosts[host].ip;
        let peers: Vec<String> = (0..shape.controls).map(|i| format!("{}:{LINK_PORT}", ip(i))).collect();
        let common = |role: &str| {
            vec![
                ("SLIP_JWT_SECRET".to_owned(), SECRET.to_owned()),
                ("SLIP_CLUSTER_CA".to_owned(), file("ca.pem")),
                ("SLIP_CLUSTER_CERT".to_owned(), file(&format!("{role}.pem"))),
                ("SLIP_CLUSTER_KEY".to_owned(), file(&format!("{role}-key.pem"))),
                ("SLIP_PEERS".to_owned(), peers.join(",")),
                ("SLIP_RESUME_SECS".to_owned(), RESUME_SECS.to_string()),
                ("RUST_LOG".to_owned(), std::env::var("SLIP_FAULTS_LOG").unwrap_or_else(|_| LOG_LEVEL.into())),
            ]
        };
        let controls = (0..shape.controls)
            .map(|i| {
                let mut env = common("control");
                env.extend([
                    ("SLIP_NODE_ID".to_owned(), format!("control-{i}")),
                    ("SLIP_CONTROL_LISTEN".to_owned(), format!("{}:{CONTROL_PORT}", ip(i))),
                    ("SLIP_LINK_LISTEN".to_owned(), format!("{}:{LINK_PORT}", ip(i))),
                    ("SLIP_METRICS_LISTEN".to_owned(), format!("{}:{METRICS_PORT}", ip(i))),
                    ("SLIP_HISTORY_SIZE".to_owned(), HISTORY_SIZE.to_owned()),
                    ("SLIP_EVENTS_URL".to_owned(), format!("http://{}:{backend_port}{EVENTS_PATH}", net.here)),
                ]);
                if shape.data_dir {
                    env.push(("SLIP_DATA_DIR".to_owned(), file(&format!("control-{i}"))));
                }
                Node { host: i, args: vec!["control".into()], env, child: None, paused: false }
            })
            .collect();
        let edges = (0..shape.edges)
            .map(|j| {
                let host = shape.controls + j;
                let mut env = common("edge");
                env.extend([
                    ("SLIP_NODE_ID".to_owned(), format!("edge-{j}")),
                    ("SLIP_LISTEN".to_owned(), format!("{}:{WS_PORT}", ip(host))),
                    ("SLIP_METRICS_LISTEN".to_owned(), format!("{}:{METRICS_PORT}", ip(host))),
                    ("SLIP_TARGET_URL".to_owned(), format!("http://{}:{backend_port}/", net.here)),
                ]);
                Node { host, args: vec!["edge".into()], env, child: None, paused: false }
            })
            .collect();
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let mut nodes = Self { controls, edges, net, slip: slip.to_owned(), logs, _files: files };
        for i in 0..shape.controls {
            nodes.start_control(i).await?;
        }
        for j in 0..shape.edges {
            nodes.start_edge(j).await?;
        }
        Ok(nodes)
    }

    pub fn controls(&self) -> usize {
        self.controls.len()
    }

    pub fn edges(&self) -> usize {
        self.edges.len()
    }

    pub fn control_ip(&self, i: usize) -> Ipv4Addr {
        self.net.hosts[self.controls[i].host].ip
    }

    pub fn edge_ip(&self, j: usize) -> Ipv4Addr {
        self.net.hosts[self.edges[j].host].ip
    }

    /// The control API of every control node.
    pub fn control_urls(&self) -> Vec<String> {
        (0..self.controls.len()).map(|i| format!("http://{}:{CONTROL_PORT}", self.control_ip(i))).collect()
    }

    /// Host index of control node `i` and of edge `j`.
    pub fn control_host(&self, i: usize) -> usize {
        self.controls[i].host
    }

    pub fn edge_host(&self, j: usize) -> usize {
        self.edges[j].host
    }

    pub async fn start_control(&mut self, i: usize) -> anyhow::Result<()> {
        let log = self.logs.join(format!("control-{i}.log"));
        let child = spawn(&self.net, &self.slip, &self.controls[i], "Control API:", &log).await?;
        self.controls[i].child = Some(child);
        self.controls[i].paused = false;
        Ok(())
    }

    pub async fn start_edge(&mut self, j: usize) -> anyhow::Result<()> {
        let log = self.logs.join(format!("edge-{j}.log"));
        let child = spawn(&self.net, &self.slip, &self.edges[j], "WebSocket:", &log).await?;
        self.edges[j].child = Some(child);
        self.edges[j].paused = false;
        Ok(())
    }

    /// SIGKILL: no goodbye to anyone.
    pub async fn kill_control(&mut self, i: usize) {
        if let Some(mut child) = self.controls[i].child.take() {
            let _ = child.kill().await;
        }
    }

    pub async fn kill_edge(&mut self, j: usize) {
        if let Some(mut child) = self.edges[j].child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERM, then waits for the process to exit (bounded).
    pub async fn stop_control(&mut self, i: usize) {
        if let Some(mut child) = self.controls[i].child.take() {
            signal(&child, "-TERM");
            if tokio::time::timeout(Duration::from_secs(15), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }

    /// SIGSTOP (`pause` true) or SIGCONT.
    pub fn pause_control(&mut self, i: usize, pause: bool) {
        if let Some(child) = &self.controls[i].child {
            signal(child, if pause { "-STOP" } else { "-CONT" });
            self.controls[i].paused = pause;
        }
    }

    /// Copies every node's log to `into` (a campaign that failed keeps them).
    pub fn keep_logs(&self, into: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(into)?;
        for entry in std::fs::read_dir(&self.logs)? {
            let entry = entry?;
            std::fs::copy(entry.path(), into.join(entry.file_name()))?;
        }
        Ok(())
    }

    /// Every paused process goes on.
    pub fn resume_all(&mut self) {
        for i in 0..self.controls.len() {
            if self.controls[i].paused {
                self.pause_control(i, false);
            }
        }
    }

    /// Whether control node `i` answers `/readyz` with 200.
    pub async fn ready(&self, i: usize) -> bool {
        let url = format!("http://{}:{METRICS_PORT}/readyz", self.control_ip(i));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build();
        match client {
            Ok(client) => client.get(url).send().await.is_ok_and(|r| r.status().is_success()),
            Err(_) => false,
        }
    }

    /// Waits until every running control node is ready; false if `within` passed first.
    pub async fn all_ready(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut ready = true;
            for i in 0..self.controls.len() {
                if self.controls[i].child.is_some() && !self.ready(i).await {
                    ready = false;
                    break;
                }
            }
            if ready {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        // A stopped process ignores SIGKILL until continued on some kernels: continue first.
        self.resume_all();
    }
}

fn signal(child: &Child, signal: &str) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill").args([signal, &pid.to_string()]).status();
    }
}

/// Starts `node` in its host, its log appended to `log`, and waits for it to print `label`.
async fn spawn(net: &Net, slip: &str, node: &Node, label: &str, log: &Path) -> anyhow::Result<Child> {
    let mut command = net.command(node.host, slip);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    command.args(&node.args).stdout(Stdio::piped()).stderr(log).kill_on_drop(true);
    for (k, v) in &node.env {
        command.env(k, v);
    }
    let mut child = command.spawn().with_context(|| format!("starting {slip} in host {}", node.host))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(START_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim().starts_with(label) {
                return true;
            }
        }
        false
    })
    .await;
    if !matches!(found, Ok(true)) {
        bail!("{slip} {:?} in host {} did not start", node.args, node.host);
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(child)
}
