//! What is measured: our gateway (one `slip dev`, or a small cluster) or
//! Pushpin, behind one interface so every scenario runs the same on both.

use anyhow::Context;
use slip_proto::pb::{PublishRequest, publish_request};

use crate::backend::Backend;
use crate::gateway::{Auth, Gateway};
use crate::pushpin::{PUBLISH_URL, Pushpin};

pub enum Target {
    Slip(Gateway),
    Pushpin(Pushpin),
    /// The bare broadcast server: its process, client URL and publish URL.
    Floor(tokio::process::Child, String, String),
}

static PRESENCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Clients of a slip gateway subscribe as members of the channel's presence (`--presence`), once, at start.
pub fn set_presence(on: bool) {
    let _ = PRESENCE.set(on);
}

/// `ws` (a gateway's WebSocket URL) with `path` instead of its own.
pub fn at_path(ws: &str, path: &str) -> String {
    let scheme_end = ws.find("://").map_or(0, |i| i + 3);
    let host_end = ws[scheme_end..].find('/').map_or(ws.len(), |i| scheme_end + i);
    format!("{}{path}", &ws[..host_end])
}

impl Target {
    pub async fn slip_dev(slip: &str, backend: Backend) -> anyhow::Result<Self> {
        Ok(Target::Slip(Gateway::dev(slip, backend).await?))
    }

    /// Control nodes and edges, each its own process.
    pub async fn slip_cluster(slip: &str, backend: Backend, shape: crate::gateway::Shape) -> anyhow::Result<Self> {
        Ok(Target::Slip(Gateway::cluster(slip, backend, shape).await?))
    }

    pub async fn pushpin(backend: Backend) -> anyhow::Result<Self> {
        Ok(Target::Pushpin(Pushpin::start(backend).await?))
    }

    /// Starts the floor in its own process.
    pub async fn floor() -> anyhow::Result<Self> {
        use tokio::io::AsyncBufReadExt;
        let exe = std::env::current_exe()?;
        let mut process = crate::cpus::gateway_command(&exe.to_string_lossy())
            .arg("floor")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = process.stdout.take().context("floor stdout")?;
        let line = tokio::io::BufReader::new(stdout).lines().next_line().await?.unwrap_or_default();
        let mut parts = line.split_whitespace();
        let (Some(ws), Some(publish)) = (parts.next(), parts.next()) else {
            anyhow::bail!("the floor printed {line:?}");
        };
        Ok(Target::Floor(process, ws.to_owned(), publish.to_owned()))
    }
}

/// A gRPC client of a control node's API, with its token.
pub type ControlClient = slip_proto::pb::control_client::ControlClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Auth>,
>;

pub enum Publisher {
    Grpc(ControlClient),
    Http(reqwest::Client),
    /// POST the text itself to this URL (the floor).
    Raw(reqwest::Client, String),
}

impl Target {
    pub fn name(&self) -> String {
        match self {
            Target::Slip(Gateway { shape: Some(s), .. }) => {
                format!("slip ({} control, {} edges, {} replicas)", s.controls, s.edges, s.replicas)
            }
            Target::Slip(..) => "slip dev".into(),
            Target::Pushpin(..) => "Pushpin".into(),
            Target::Floor(..) => "floor (bare fastwebsockets)".into(),
        }
    }

    /// Client URLs; clients are spread over them round-robin. With
    /// [`set_presence`], a slip gateway's clients are members of the
    /// channel's presence.
    pub fn ws_urls(&self) -> Vec<String> {
        match self {
            Target::Slip(g) if PRESENCE.get().is_some_and(|on| *on) => {
                g.ws.iter().map(|ws| at_path(ws, "/presence")).collect()
            }
            Target::Slip(g) => g.ws.clone(),
            Target::Pushpin(p) => vec![p.ws_url()],
            Target::Floor(_, ws, _) => vec![ws.clone()],
        }
    }

    /// Resident memory of all the target's processes, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        match self {
            Target::Slip(g) => g.rss_kib(),
            Target::Pushpin(p) => p.rss_kib(),
            Target::Floor(process, ..) => crate::gateway::rss_of(process.id().context("the floor exited")?),
        }
    }

    /// The `slip` gateway (`slip dev` or a cluster), if the target is one.
    pub fn slip(&self) -> Option<&Gateway> {
        match self {
            Target::Slip(g) => Some(g),
            _ => None,
        }
    }

    /// The cluster's gateway, if the target is a cluster of `slip` processes.
    pub fn cluster(&self) -> Option<&Gateway> {
        match self {
            Target::Slip(g) if g.shape.is_some() => Some(g),
            _ => None,
        }
    }

    pub async fn publisher(&self) -> anyhow::Result<Publisher> {
        Ok(match self {
            Target::Slip(g) => Publisher::Grpc(g.grpc().await?),
            Target::Pushpin(..) => Publisher::Http(reqwest::Client::new()),
            Target::Floor(_, _, publish) => Publisher::Raw(reqwest::Client::new(), publish.clone()),
        })
    }
}

impl Publisher {
    /// Publishes one text message to the channel "bench".
    pub async fn publish(&mut self, text: String) -> anyhow::Result<()> {
        match self {
            Publisher::Grpc(client) => {
                let request = PublishRequest {
                    channel: "bench".into(),
                    message: Some(publish_request::Message::Text(text)),
                    ..Default::default()
                };
                client.publish(request).await.context("publishing over gRPC")?;
            }
            Publisher::Http(http) => {
                let body =
                    serde_json::json!({"items": [{"channel": "bench", "formats": {"ws-message": {"content": text}}}]});
                let response = http.post(PUBLISH_URL).json(&body).send().await.context("publishing to Pushpin")?;
                anyhow::ensure!(response.status().is_success(), "Pushpin answered {}", response.status());
            }
            Publisher::Raw(http, url) => {
                http.post(url.as_str()).body(text).send().await.context("publishing to the floor")?;
            }
        }
        Ok(())
    }
}
