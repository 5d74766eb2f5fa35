//! The Grafana dashboard over a live cluster, without Grafana: Debian's
//! Prometheus scrapes every node each second while a scenario runs, then
//! `deploy/grafana/preview.py` asks it each panel's queries and draws them
//! on the dashboard's grid, and headless Chromium takes the picture.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;

const PROMETHEUS: &str = "/usr/bin/prometheus";
/// The drawing script, from the repository's root (or from this crate's).
const PREVIEW: &str = "deploy/grafana/preview.py";
const PREVIEW_FROM_CRATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/preview.py");
/// How long Prometheus may take to answer after it starts.
const PATIENCE: Duration = Duration::from_secs(30);

/// A Prometheus scraping the nodes, and its files (removed when dropped).
pub struct Scraper {
    process: tokio::process::Child,
    dir: PathBuf,
    pub url: String,
    started: Instant,
}

impl Drop for Scraper {
    fn drop(&mut self) {
        let _ = self.process.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Scraper {
    /// Starts Prometheus scraping `metrics` (the nodes' `/metrics` URLs) every second.
    pub async fn start(metrics: &[String]) -> anyhow::Result<Self> {
        anyhow::ensure!(Path::new(PROMETHEUS).exists(), "{PROMETHEUS} is missing: apt-get install prometheus");
        let dir = std::env::temp_dir().join(format!("slip-bench-prometheus-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let targets: Vec<String> = metrics
            .iter()
            .map(|m| format!("\"{}\"", m.trim_start_matches("http://").trim_end_matches("/metrics")))
            .collect();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: slip\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let process = tokio::process::Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting prometheus")?;
        let url = format!("http://127.0.0.1:{port}");
        let scraper = Self { process, dir, url, started: Instant::now() };
        while reqwest::get(format!("{}/-/ready", scraper.url)).await.map_or(true, |r| !r.status().is_success()) {
            anyhow::ensure!(scraper.started.elapsed() < PATIENCE, "prometheus never said ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(scraper)
    }

    /// Draws the dashboard over everything scraped so far and saves its picture at `png`.
    pub async fn picture(&self, png: &Path) -> anyhow::Result<()> {
        // Two more scrapes, so the last moments are in.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let page = self.dir.join("dashboard.html");
        let minutes = (self.started.elapsed().as_secs_f64() / 60.0).max(1.0);
        let script = if Path::new(PREVIEW).exists() { PREVIEW } else { PREVIEW_FROM_CRATE };
        let dashboard = Path::new(script).with_file_name("slip-sockets.json");
        let drawn = tokio::process::Command::new("python3")
            .arg(script)
            .arg("--dashboard")
            .arg(&dashboard)
            .args(["--prometheus", &self.url, "--minutes", &format!("{minutes:.2}")])
            .arg("--out")
            .arg(&page)
            .output()
            .await
            .context("running python3 deploy/grafana/preview.py")?;
        let said = String::from_utf8_lossy(&drawn.stdout).into_owned();
        anyhow::ensure!(drawn.status.success(), "preview.py failed: {}", String::from_utf8_lossy(&drawn.stderr));
        // "PATH: N panels, H px high"
        let high: u32 = said.split_whitespace().rev().nth(2).and_then(|h| h.parse().ok()).unwrap_or(2000);
        let shot = tokio::process::Command::new(crate::chromium::CHROMIUM)
            .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
            .arg(format!("--user-data-dir={}", self.dir.join("chromium").display()))
            .arg(format!("--window-size=1400,{high}"))
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("file://{}", page.display()))
            .output()
            .await
            .context("running chromium")?;
        anyhow::ensure!(shot.status.success(), "chromium failed: {}", String::from_utf8_lossy(&shot.stderr));
        Ok(())
    }
}
