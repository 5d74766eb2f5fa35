//! The gateway under test, as a child process.

use std::process::Stdio;

use anyhow::Context;
use slip_proto::jwt;
use slip_proto::pb::control_client::ControlClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::backend::Backend;

/// The gateway under test: one `slip dev`, or a control node and edges.
pub struct Gateway {
    children: Vec<Child>,
    /// WebSocket URLs, one per edge; clients are spread over them.
    pub ws: Vec<String>,
    /// Each control node's API (a cluster's, in order; `slip dev`'s one).
    pub controls: Vec<String>,
    /// Each process's `/metrics` URL, a cluster's control nodes first.
    pub metrics: Vec<String>,
    /// What was started: `None` for `slip dev`.
    pub shape: Option<Shape>,
    secret: String,
    _ca: Option<TempDir>,
    /// Owned, so the backend lives exactly as long as the gateway in front of it.
    _backend: Backend,
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn spawn(slip: &str, args: &[&str], labels: &[&str]) -> anyhow::Result<(Child, Vec<String>)> {
    let mut child = crate::cpus::gateway_command(slip)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {slip} (build it with cargo build --release)"))?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut found: Vec<Option<String>> = vec![None; labels.len()];
    while let Some(line) = lines.next_line().await? {
        for (label, slot) in labels.iter().zip(found.iter_mut()) {
            if let Some(rest) = line.trim().strip_prefix(label) {
                *slot = rest.split_whitespace().next().map(str::to_owned);
            }
        }
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let found = found.into_iter().collect::<Option<Vec<_>>>().context("slip exited before printing its addresses")?;
    Ok((child, found))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[derive(Clone)]
pub struct Auth(String);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let token = jwt::sign(self.0.as_bytes(), jwt::AUD_CONTROL_EVENT, jwt::now());
        let value = format!("Bearer {token}").parse().map_err(|_| tonic::Status::internal("token"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

impl Gateway {
    /// One `slip dev` process.
    pub async fn dev(slip: &str, backend: Backend) -> anyhow::Result<Self> {
        let args = ["dev", "--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0", "--target-url", &backend.url];
        let args = [&args[..], &["--jwt-secret", &backend.secret, "--metrics-listen", "127.0.0.1:0"]].concat();
        let (child, found) = spawn(slip, &args, &["WebSocket:", "Control API:", "Metrics:"]).await?;
        Ok(Self {
            children: vec![child],
            ws: vec![found[0].clone()],
            controls: vec![found[1].clone()],
            metrics: vec![found[2].clone()],
            shape: None,
            secret: backend.secret.clone(),
            _ca: None,
            _backend: backend,
        })
    }

    /// A cluster on loopback: `slip control` and `slip edge` processes.
    pub async fn cluster(slip: &str, backend: Backend, shape: Shape) -> anyhow::Result<Self> {
        let Shape { edges, controls, replicas } = shape;
        let (edges, controls) = (edges.max(1), controls.max(1));
        let dir = std::env::temp_dir().join(format!("slip-bench-ca-{}", std::process::id()));
        let ca = TempDir(dir.clone());
        let status = Command::new(slip).args(["gen-ca", "--out"]).arg(&dir).stdout(Stdio::null()).status().await?;
        anyhow::ensure!(status.success(), "slip gen-ca failed");
        let (cert, key) = (dir.join("ca.pem").display().to_string(), dir.join("ca-key.pem").display().to_string());
        let status = Command::new(slip)
            .args(["gen-cert", "--role", "edge", "--cluster-ca", &cert, "--cluster-ca-key", &key, "--out"])
            .arg(&dir)
            .stdout(Stdio::null())
            .status()
            .await?;
        anyhow::ensure!(status.success(), "slip gen-cert failed");
        let (edge_cert, edge_key) =
            (dir.join("edge.pem").display().to_string(), dir.join("edge-key.pem").display().to_string());
        let links: Vec<String> =
            (0..controls).map(|_| free_port().map(|p| format!("127.0.0.1:{p}"))).collect::<Result<_, _>>()?;
        let link = links.join(",");
        let replicas = replicas.to_string();
        let mut children = Vec::new();
        let mut apis = Vec::new();
        let mut metrics = Vec::new();
        for (i, listen) in links.iter().enumerate() {
            let id = format!("control-{i}");
            let control_args = [
                "control",
                "--node-id",
                &id,
                "--control-listen",
                "127.0.0.1:0",
                "--link-listen",
                listen,
                "--peers",
                &link,
                "--stream-replicas",
                &replicas,
                "--cluster-ca",
                &cert,
                "--cluster-ca-key",
                &key,
                "--jwt-secret",
                &backend.secret,
                "--metrics-listen",
                "127.0.0.1:0",
            ];
            let (control, found) = spawn(slip, &control_args, &["Control API:", "Metrics:"]).await?;
            children.push(control);
            apis.push(found[0].clone());
            metrics.push(found[1].clone());
        }
        let mut ws = Vec::new();
        for i in 0..edges {
            let id = format!("edge-{i}");
            let edge_args = [
                "edge",
                "--node-id",
                &id,
                "--listen",
                "127.0.0.1:0",
                "--peers",
                &link,
                "--cluster-ca",
                &cert,
                "--cluster-cert",
                &edge_cert,
                "--cluster-key",
                &edge_key,
                "--target-url",
                &backend.url,
                "--jwt-secret",
                &backend.secret,
                "--metrics-listen",
                "127.0.0.1:0",
            ];
            let (edge, found) = spawn(slip, &edge_args, &["WebSocket:", "Metrics:"]).await?;
            children.push(edge);
            ws.push(found[0].clone());
            metrics.push(found[1].clone());
        }
        // Let the nodes link (and the ring form) before clients arrive.
        tokio::time::sleep(std::time::Duration::from_millis(500 + 500 * controls as u64)).await;
        for url in &metrics[..controls] {
            ready(&url.replace("/metrics", "/readyz")).await?;
        }
        // An edge lets clients in once it has the control plane's view.
        for url in &ws {
            ready(&format!("{}/readyz", url.trim_end_matches('/').replacen("ws://", "http://", 1))).await?;
        }
        Ok(Self {
            children,
            ws,
            controls: apis,
            metrics: metrics.clone(),
            shape: Some(shape),
            secret: backend.secret.clone(),
            _ca: Some(ca),
            _backend: backend,
        })
    }

    /// Each process: its name (`dev`, `control-0`, `edge-0`, …), pid and `/metrics` URL.
    pub fn processes(&self) -> Vec<(String, u32, String)> {
        let names: Vec<String> = match &self.shape {
            None => vec!["dev".into()],
            Some(shape) => (0..shape.controls.max(1))
                .map(|i| format!("control-{i}"))
                .chain((0..shape.edges.max(1)).map(|i| format!("edge-{i}")))
                .collect(),
        };
        names
            .into_iter()
            .zip(&self.children)
            .zip(&self.metrics)
            .filter_map(|((name, child), metrics)| Some((name, child.id()?, metrics.clone())))
            .collect()
    }

    /// Resident set size of the gateway's processes, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        self.children.iter().map(|c| rss_of(c.id().context("gateway exited")?)).sum()
    }

    pub async fn grpc(&self) -> anyhow::Result<ControlClient<InterceptedService<Channel, Auth>>> {
        self.grpc_to(0).await
    }

    /// The control API of control node `i`.
    pub async fn grpc_to(&self, i: usize) -> anyhow::Result<ControlClient<InterceptedService<Channel, Auth>>> {
        let api = self.controls.get(i).context("no such control node")?;
        let channel = tonic::transport::Endpoint::from_shared(api.clone())?.connect().await?;
        Ok(ControlClient::with_interceptor(channel, Auth(self.secret.clone())))
    }

    /// A control token good for `secs`, as `slip admin open` signs one.
    pub fn control_token(&self, secs: u64) -> String {
        jwt::sign_for(self.secret.as_bytes(), jwt::AUD_CONTROL_EVENT, jwt::now(), secs)
    }

    /// Which control node (of a cluster) has node id `id`.
    pub fn control_index(&self, id: &str) -> Option<usize> {
        let i: usize = id.strip_prefix("control-")?.parse().ok()?;
        (i < self.controls.len()).then_some(i)
    }

    /// SIGTERM to edge `i` of a cluster, as a deploy does: it drains.
    pub fn terminate_edge(&self, i: usize) -> anyhow::Result<()> {
        anyhow::ensure!(self.shape.is_some() && i < self.ws.len(), "no edge {i} to drain");
        let pid = self.children[self.controls.len() + i].id().context("the edge exited")?;
        let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
        Ok(())
    }

    /// SIGKILL to control node `i` of a cluster (its processes come first).
    pub async fn kill_control(&mut self, i: usize) -> anyhow::Result<()> {
        anyhow::ensure!(self.shape.is_some() && i < self.controls.len(), "no control node {i} to kill");
        self.children[i].kill().await.context("killing a control node")
    }
}

/// What `Gateway::cluster` starts.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub edges: usize,
    pub controls: usize,
    /// Copies of each stream beyond its owner's (`SLIP_STREAM_REPLICAS`).
    pub replicas: usize,
}

/// Waits until a control node answers `/readyz` (a member of the agreed
/// view, with its lease); a build without that endpoint is taken as ready.
async fn ready(url: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(answer) = reqwest::get(url).await
            && (answer.status().is_success() || answer.status() == reqwest::StatusCode::NOT_FOUND)
        {
            return Ok(());
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "{url} never said ready");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Resident set size of one process, in KiB.
pub fn rss_of(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("VmRSS value")?.parse()?)
}
