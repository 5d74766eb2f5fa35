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

pub struct Gateway {
    child: Child,
    pub ws: String,
    pub control: String,
    secret: String,
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
    pub async fn start(slip: &str, backend: &Backend) -> anyhow::Result<Self> {
        let mut child = Command::new(slip)
            .args(["dev", "--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0"])
            .args(["--target-url", &backend.url, "--jwt-secret", &backend.secret])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {slip} (build it with cargo build --release)"))?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let (mut ws, mut control) = (None, None);
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.trim().strip_prefix("WebSocket:") {
                ws = Some(url.trim().to_owned());
            }
            if let Some(rest) = line.trim().strip_prefix("Control API:") {
                control = rest.split_whitespace().next().map(str::to_owned);
            }
            if ws.is_some() && control.is_some() {
                break;
            }
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            ws: ws.context("no WebSocket URL printed")?,
            control: control.context("no control URL printed")?,
            secret: backend.secret.clone(),
        })
    }

    /// Resident set size of the gateway process, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let pid = self.child.id().context("gateway exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
        Ok(line.split_whitespace().nth(1).context("VmRSS value")?.parse()?)
    }

    pub async fn grpc(&self) -> anyhow::Result<ControlClient<InterceptedService<Channel, Auth>>> {
        let channel = tonic::transport::Endpoint::from_shared(self.control.clone())?.connect().await?;
        Ok(ControlClient::with_interceptor(channel, Auth(self.secret.clone())))
    }
}
