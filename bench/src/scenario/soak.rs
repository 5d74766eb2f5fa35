//! `soak`: connect/close churn, as a load balancer in front of an edge makes
//! it. `clients` at a time connect (to `path`, which picks what the backend
//! does: `/chat` is the seed's chat, publishing a join at OPEN and a leave at
//! CLOSE; `/plain` only welcomes), read the backend's welcome, and close with
//! a close frame, `cycles` times in all. Every `every` cycles: each
//! process's RSS and its `slip_entries`. What counts: that RSS after many
//! cycles stands where it stood after the first `every`, and that no
//! structure keeps growing. With `sessions`, each cycle is a `slip.v1`
//! session's whole life: opened, dropped without a close (parked), resumed
//! with its token, then closed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use crate::gateway::rss_of;
use crate::scenario::sessions;
use crate::target::{Target, at_path};

/// Longest wait for a handshake, the welcome, or the close's answer.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the progress is looked at.
const TICK: Duration = Duration::from_millis(100);
/// Quiet time after the last cycle before the last sample: the CLOSE
/// callbacks and their publishes land.
const SETTLE: Duration = Duration::from_secs(3);

pub struct Plan {
    pub cycles: u64,
    pub clients: usize,
    pub every: u64,
    pub path: String,
    pub sessions: bool,
}

#[derive(Debug, Serialize)]
pub struct Sample {
    pub cycles: u64,
    pub secs: f64,
    /// Per process: its name, RSS in KiB, and its `slip_entries` by structure.
    pub processes: Vec<(String, u64, BTreeMap<String, f64>)>,
}

#[derive(Debug, Serialize)]
pub struct Soak {
    pub path: String,
    pub sessions: bool,
    pub clients: usize,
    pub failed: u64,
    pub samples: Vec<Sample>,
}

pub async fn run(target: &Target, plan: Plan) -> anyhow::Result<Soak> {
    let gateway = target.slip().context("soak reads slip's processes: run it against slip dev or --cluster")?;
    let processes = gateway.processes();
    let urls: Vec<String> = target.ws_urls().iter().map(|ws| at_path(ws, &plan.path)).collect();
    let (claimed, done, failed) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let mut samples = vec![sample(&processes, 0, started).await];
    let mut workers = Vec::new();
    for c in 0..plan.clients {
        let url = urls[c % urls.len()].clone();
        let (claimed, done, failed, cycles) = (claimed.clone(), done.clone(), failed.clone(), plan.cycles);
        let sessions = plan.sessions;
        workers.push(tokio::spawn(async move {
            while claimed.fetch_add(1, Ordering::Relaxed) < cycles {
                let result = if sessions { session_cycle(&url).await } else { cycle(&url).await };
                if result.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut next = plan.every.max(1);
    while done.load(Ordering::Relaxed) < plan.cycles {
        tokio::time::sleep(TICK).await;
        let now = done.load(Ordering::Relaxed);
        if now >= next && now < plan.cycles {
            samples.push(sample(&processes, now, started).await);
            println!("{}", line(samples.last().expect("just pushed")));
            next = (now / plan.every.max(1) + 1) * plan.every.max(1);
        }
    }
    for worker in workers {
        worker.await?;
    }
    tokio::time::sleep(SETTLE).await;
    samples.push(sample(&processes, done.load(Ordering::Relaxed), started).await);
    Ok(Soak {
        path: plan.path,
        sessions: plan.sessions,
        clients: plan.clients,
        failed: failed.load(Ordering::Relaxed),
        samples,
    })
}

/// One connect, welcome, close.
async fn cycle(url: &str) -> anyhow::Result<()> {
    let (mut ws, _) = tokio::time::timeout(STEP_TIMEOUT, tokio_tungstenite::connect_async(url)).await??;
    let welcome = tokio::time::timeout(STEP_TIMEOUT, async {
        while let Some(message) = ws.next().await {
            if matches!(message?, Message::Text(_)) {
                return Ok(());
            }
        }
        anyhow::bail!("closed before the welcome")
    });
    welcome.await??;
    ws.send(Message::Close(None)).await?;
    // The gateway's close answers ours; then the socket ends.
    let _ = tokio::time::timeout(STEP_TIMEOUT, async { while let Some(Ok(_)) = ws.next().await {} }).await;
    Ok(())
}

/// A session opened, parked (dropped with no close), resumed, then closed.
async fn session_cycle(url: &str) -> anyhow::Result<()> {
    let mut ws = tokio::time::timeout(STEP_TIMEOUT, sessions::open(url)).await??;
    let first = sessions::next_json(&mut ws).await?;
    let token = first["session"].as_str().context("no session token")?.to_owned();
    drop(ws);
    let separator = if url.contains('?') { '&' } else { '?' };
    let mut ws =
        tokio::time::timeout(STEP_TIMEOUT, sessions::open(&format!("{url}{separator}slip_resume={token}"))).await??;
    ws.send(Message::text(r#"{"type":"resume"}"#)).await?;
    let session = sessions::next_json(&mut ws).await?;
    anyhow::ensure!(session["resumed"] == true, "not resumed: {session}");
    ws.send(Message::Close(None)).await?;
    let _ = tokio::time::timeout(STEP_TIMEOUT, async { while let Some(Ok(_)) = ws.next().await {} }).await;
    Ok(())
}

async fn sample(processes: &[(String, u32, String)], cycles: u64, started: Instant) -> Sample {
    let mut out = Vec::new();
    for (name, pid, metrics) in processes {
        let rss = rss_of(*pid).unwrap_or(0);
        let text = match reqwest::get(metrics).await {
            Ok(answer) => answer.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        out.push((name.clone(), rss, entries(&text)));
    }
    Sample { cycles, secs: started.elapsed().as_secs_f64(), processes: out }
}

/// `slip_entries{structure}` of one scrape.
fn entries(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with("slip_entries{"))
        .filter_map(|l| {
            let structure = l.split("structure=\"").nth(1)?.split('"').next()?.to_owned();
            Some((structure, l.rsplit(' ').next()?.parse::<f64>().ok()?))
        })
        .collect()
}

/// A sample as one line: cycles, time, each process's RSS, and its
/// structures that hold anything.
fn line(s: &Sample) -> String {
    let processes: Vec<String> = s
        .processes
        .iter()
        .map(|(name, rss, entries)| {
            let held: Vec<String> =
                entries.iter().filter(|(_, n)| **n > 0.0).map(|(k, n)| format!("{k}={n}")).collect();
            format!("{name} {:.1} MiB [{}]", *rss as f64 / 1024.0, held.join(" "))
        })
        .collect();
    format!("  {:>8} cycles {:>6.0} s  {}", s.cycles, s.secs, processes.join("  "))
}

impl std::fmt::Display for Soak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (Some(first), Some(last)) = (self.samples.get(1), self.samples.last()) else { return Ok(()) };
        writeln!(f, "{}", line(last))?;
        writeln!(f, "  {} cycles failed", self.failed)?;
        writeln!(
            f,
            "  | process | RSS at start | after {} cycles | after {} | growth since {} cycles |",
            first.cycles, last.cycles, first.cycles
        )?;
        writeln!(f, "  |---|---|---|---|---|")?;
        let start = &self.samples[0];
        for (i, (name, rss, _)) in last.processes.iter().enumerate() {
            let (at_start, at_first) = (start.processes[i].1, first.processes[i].1);
            let growth = *rss as f64 - at_first as f64;
            let per_cycle = growth * 1024.0 / (last.cycles.saturating_sub(first.cycles).max(1)) as f64;
            writeln!(
                f,
                "  | {name} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:+.2} MiB ({per_cycle:+.1} bytes a cycle) |",
                at_start as f64 / 1024.0,
                at_first as f64 / 1024.0,
                *rss as f64 / 1024.0,
                growth / 1024.0
            )?;
        }
        Ok(())
    }
}
