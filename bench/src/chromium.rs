//! Headless Chromium for the scenarios that look at a page: chromedriver on
//! a free port and a session through it (fantoccini), or one `--screenshot`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use fantoccini::{Client as Browser, ClientBuilder};
use serde_json::json;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long chromedriver may take to answer.
const PATIENCE: Duration = Duration::from_secs(60);

/// chromedriver on a free port, once it answers: its process and URL.
pub async fn chromedriver() -> anyhow::Result<(tokio::process::Child, String)> {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        anyhow::ensure!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing: apt-get install chromium chromium-driver"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let process = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let driver = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while reqwest::get(format!("{driver}/status")).await.is_err() {
        anyhow::ensure!(started.elapsed() < PATIENCE, "chromedriver never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((process, driver))
}

pub async fn open_browser(driver: &str, profile: &std::path::Path) -> anyhow::Result<Browser> {
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,2000",
    ]
    .iter()
    .map(|a| a.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect::<Vec<_>>();
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), json!({ "binary": CHROMIUM, "args": args }));
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(driver)
        .await
        .context("a Chromium session through chromedriver")
}
