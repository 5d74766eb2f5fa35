//! `admin-page`: a cluster holding many channels and connections, and how
//! long the admin page takes to show it. Every client is a presence member
//! of its own channel on each edge (clients `2k` and `2k + 1` of two edges
//! share channel `ck`), every channel gets a publication, then: the
//! overview's answer (what the page reads on each refresh) timed over HTTP,
//! and, in headless Chromium, the time from navigation to the first full
//! picture on screen (the page marks it on `<body data-rendered-ms>`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use fantoccini::{Client as Browser, Locator};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;
use slip_proto::pb::{PublishRequest, publish_request};

use crate::chromium::{chromedriver, open_browser};
use crate::gateway::Gateway;
use crate::scenario::dashboard::Scraper;
use crate::stats::Latency;
use crate::swarm::Swarm;
use crate::target::{Target, at_path};

/// How long the cluster may take to count every connection, and the page to render.
const PATIENCE: Duration = Duration::from_secs(60);
/// Publishes in flight at once while every channel gets its publication.
const PUBLISH_CONCURRENCY: usize = 64;
/// Publishes a second while the page is measured.
const STEADY_RATE: u32 = 100;
/// Clients connecting (and leaving) a second meanwhile.
const CHURN_RATE: u32 = 20;
/// The page's token lives this long (the runs take well under it).
const TOKEN_SECS: u64 = 900;

pub struct Plan {
    pub connections: usize,
    /// Page loads (and overview answers) per channel limit.
    pub runs: usize,
    /// The channel limits the page is opened with (`?limit=`).
    pub limits: Vec<usize>,
    /// Save a screenshot of the page (the first limit) here.
    pub screenshot: Option<PathBuf>,
    /// Scrape the nodes with Prometheus all along and save a picture of
    /// the Grafana dashboard's panels here.
    pub dashboard: Option<PathBuf>,
    /// Seconds of traffic after the measurements, the page open, before
    /// the pictures.
    pub hold: u64,
}

#[derive(Debug, Serialize)]
pub struct View {
    pub limit: usize,
    /// `GET /admin/api/overview?limit=`: the answer's time and size.
    pub overview: Latency,
    pub overview_bytes: usize,
    /// Navigation to the first full picture on screen, in Chromium.
    pub page: Latency,
    /// Channel rows the page showed.
    pub rows: usize,
}

#[derive(Debug, Serialize)]
pub struct AdminPage {
    pub connections: usize,
    pub failed: usize,
    pub channels: usize,
    pub edges: usize,
    pub control_nodes: usize,
    /// What the page's summary line read.
    pub summary: String,
    pub views: Vec<View>,
}

pub async fn run(target: &Target, plan: Plan) -> anyhow::Result<AdminPage> {
    let gateway = target.cluster().context("admin-page measures a cluster: pass --cluster N --controls M")?;
    anyhow::ensure!(!plan.limits.is_empty(), "no channel limit to open the page with");
    let edges = gateway.ws.len();
    let urls: Vec<String> = gateway.ws.iter().map(|ws| at_path(ws, "/ch/c{i}")).collect();
    let channels = plan.connections.div_ceil(edges);
    let scraper = match &plan.dashboard {
        Some(_) => Some(Scraper::start(&gateway.metrics).await?),
        None => None,
    };
    let mut swarm = Swarm::connect(&urls, plan.connections).await?;
    swarm.hold().await?;
    let api = gateway.controls[0].trim_end_matches('/').to_owned();
    let token = gateway.control_token(TOKEN_SECS);
    let http = reqwest::Client::new();
    counted(&http, &api, &token, swarm.connected as u64).await?;
    publish_each(gateway, channels).await?;
    // Traffic while the page is measured, for its charts and the dashboard's.
    let traffic = tokio::spawn(publish_steadily(gateway.grpc().await?, channels));
    let churn = tokio::spawn(churn_steadily(gateway.ws.clone()));

    let mut views = Vec::new();
    for limit in &plan.limits {
        let (overview, overview_bytes) = time_overview(&http, &api, &token, *limit, channels, plan.runs).await?;
        views.push(View { limit: *limit, overview, overview_bytes, page: Latency::default(), rows: 0 });
    }
    let (_driver, driver) = chromedriver().await?;
    let profile = std::env::temp_dir().join(format!("slip-bench-admin-page-{}", std::process::id()));
    let browser = open_browser(&driver, &profile).await?;
    let mut summary = String::new();
    let measured = async {
        let page = |limit: usize| format!("{api}/admin?limit={limit}#token={token}");
        for view in views.iter_mut() {
            let mut times = Vec::with_capacity(plan.runs);
            for _ in 0..plan.runs {
                browser.goto("about:blank").await?;
                browser.goto(&page(view.limit)).await?;
                times.push(rendered(&browser).await?);
            }
            view.page = Latency::of(&mut times);
            view.rows = browser.find_all(Locator::Css("#channels tbody tr")).await?.len();
            summary = browser.find(Locator::Id("summary")).await?.text().await?;
        }
        // The traffic goes on for `hold` seconds with the page open: its charts fill in.
        browser.goto("about:blank").await?;
        browser.goto(&page(plan.limits[0])).await?;
        rendered(&browser).await?;
        tokio::time::sleep(Duration::from_secs(plan.hold)).await;
        if let Some(path) = &plan.screenshot {
            // With the top channel's own view open below the lists.
            browser.find(Locator::Css("#channels tbody button")).await?.click().await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            browser.execute("window.scrollTo(0, 0)", vec![]).await?;
            std::fs::write(path, browser.screenshot().await?)?;
        }
        anyhow::Ok(())
    }
    .await;
    let _ = browser.close().await;
    let _ = std::fs::remove_dir_all(&profile);
    measured?;
    if let (Some(scraper), Some(png)) = (&scraper, &plan.dashboard) {
        scraper.picture(&std::path::absolute(png)?).await?;
    }
    traffic.abort();
    churn.abort();
    Ok(AdminPage {
        connections: swarm.connected,
        failed: swarm.failed,
        channels,
        edges,
        control_nodes: gateway.controls.len(),
        summary,
        views,
    })
}

/// The overview, read with the token.
async fn overview(http: &reqwest::Client, api: &str, token: &str, limit: usize) -> anyhow::Result<(Value, usize)> {
    let body = http
        .get(format!("{api}/admin/api/overview?limit={limit}"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    Ok((serde_json::from_slice(&body)?, body.len()))
}

/// Waits until the edges, as the control node hears them, hold `connections`.
async fn counted(http: &reqwest::Client, api: &str, token: &str, connections: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let (o, _) = overview(http, api, token, 1).await?;
        let held: u64 = o["nodes"].as_array().into_iter().flatten().filter_map(|n| n["connections"].as_u64()).sum();
        if held >= connections {
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < PATIENCE, "the cluster counts {held} of {connections} connections");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One publication to each channel, so every stream has an offset and a history.
async fn publish_each(gateway: &Gateway, channels: usize) -> anyhow::Result<()> {
    let client = gateway.grpc().await?;
    let publishes = (0..channels).map(|k| {
        let mut client = client.clone();
        async move {
            let request = PublishRequest {
                channel: format!("c{k}"),
                message: Some(publish_request::Message::Text(format!("hello c{k}"))),
                ..Default::default()
            };
            client.publish(request).await
        }
    });
    let mut results = futures_util::stream::iter(publishes).buffer_unordered(PUBLISH_CONCURRENCY);
    while let Some(result) = results.next().await {
        result.context("publishing to a channel")?;
    }
    Ok(())
}

/// Publishes to channels in turn, [`STEADY_RATE`] a second, until aborted.
async fn publish_steadily(mut client: crate::target::ControlClient, channels: usize) {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / STEADY_RATE);
    for n in 0.. {
        tick.tick().await;
        let request = PublishRequest {
            channel: format!("c{}", (n * 7919) % channels.max(1)),
            message: Some(publish_request::Message::Text(format!("steady {n}"))),
            ..Default::default()
        };
        let _ = client.publish(request).await;
    }
}

/// Clients coming and going, [`CHURN_RATE`] a second, each saying one
/// message (callbacks for OPEN, TEXT and CLOSE), until aborted.
async fn churn_steadily(edges: Vec<String>) {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / CHURN_RATE);
    for n in 0.. {
        tick.tick().await;
        let url = at_path(&edges[n % edges.len()], "/ch/churn");
        tokio::spawn(async move {
            if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await {
                let _ = ws.send(Message::text("hello")).await;
                let _ = ws.close(None).await;
            }
        });
    }
}

async fn time_overview(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    limit: usize,
    channels: usize,
    runs: usize,
) -> anyhow::Result<(Latency, usize)> {
    let (mut times, mut bytes) = (Vec::with_capacity(runs), 0);
    for _ in 0..runs {
        let started = Instant::now();
        let (o, size) = overview(http, api, token, limit).await?;
        times.push(started.elapsed());
        bytes = size;
        let listed = o["channels"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(listed == limit.min(channels), "the overview listed {listed} channels, not {limit}");
    }
    Ok((Latency::of(&mut times), bytes))
}

/// Waits for the page's mark of its first full picture; the time it gives.
async fn rendered(browser: &Browser) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let mark = browser.execute("return document.body.dataset.renderedMs || null", vec![]).await?;
        if let Some(ms) = mark.as_str().and_then(|m| m.parse::<f64>().ok()) {
            return Ok(Duration::from_secs_f64(ms / 1000.0));
        }
        anyhow::ensure!(started.elapsed() < PATIENCE, "the page never rendered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl std::fmt::Display for AdminPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  {} connections ({} failed) on {} edges, {} channels, {} control nodes",
            self.connections, self.failed, self.edges, self.channels, self.control_nodes
        )?;
        writeln!(f, "  the page read: {}", self.summary)?;
        writeln!(f, "  | channels listed | overview answer p50 / p99 | its size | page on screen p50 / max | rows |")?;
        writeln!(f, "  |---|---|---|---|---|")?;
        for v in &self.views {
            writeln!(
                f,
                "  | {} | {} | {:.1} KiB | {:.0} / {:.0} ms | {} |",
                v.limit,
                v.overview.short(),
                v.overview_bytes as f64 / 1024.0,
                v.page.p50_ms,
                v.page.max_ms,
                v.rows
            )?;
        }
        Ok(())
    }
}
