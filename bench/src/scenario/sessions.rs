//! `sessions`: `slip.v1` sessions on one gateway. N clients open sessions,
//! all drop at once (parked), then all resume while a publisher goes on:
//! memory per live and per parked session, the time from reconnecting to
//! the resumed session frame, and from that frame to the first live
//! publication. Parked memory is measured on a second batch, parked after a
//! first: freed socket memory stays in the process, and the first batch's
//! is what the second one's connections reuse, so the growth is the parked
//! state alone.
//!
//! On a cluster of two edges ([`after_drain`]): the sessions are on edge 0
//! when it is drained (SIGTERM, a deploy); each client, closed with 1012,
//! comes back through edge 1, which takes its session over.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::stats::Latency;
use crate::swarm::Ws;
use crate::target::Target;

/// Publications per second while the sessions resume.
const PUBLISH_EVERY: Duration = Duration::from_millis(5);

#[derive(Clone, Debug, Serialize)]
pub struct Sessions {
    pub sessions: usize,
    pub bytes_per_live_session: f64,
    pub bytes_per_parked_session: f64,
    /// Connect with the token → the resumed session frame.
    pub resume: Latency,
    /// The resumed session frame → the first live publication.
    pub first_live: Latency,
    pub recovered: usize,
}

/// A publisher sending "live N" every [`PUBLISH_EVERY`] until stopped.
struct Publishing {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Publishing {
    async fn start(target: &Target) -> anyhow::Result<Self> {
        let mut publisher = target.publisher().await?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let _ = publisher.publish(format!("live {n}")).await;
                tokio::time::sleep(PUBLISH_EVERY).await;
            }
        });
        Ok(Self { stop, task })
    }

    async fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.task.await;
    }
}

/// A `slip.v1` session through `url`.
pub(crate) async fn open(url: &str) -> anyhow::Result<Ws> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert("sec-websocket-protocol", "slip.v1".parse()?);
    Ok(tokio_tungstenite::connect_async(request).await?.0)
}

/// The session's next JSON frame (30 s at most).
pub(crate) async fn next_json(ws: &mut Ws) -> anyhow::Result<serde_json::Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await.context("no frame in 30 s")? {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text)?),
            Some(Ok(_)) => continue,
            other => anyhow::bail!("the session ended: {other:?}"),
        }
    }
}

/// Resumes a session through `url` (its token in it): the time to the
/// resumed session frame, from it to the first live publication, and
/// whether it said `recovered`.
async fn resume(url: &str) -> anyhow::Result<(Duration, Duration, bool)> {
    let started = Instant::now();
    let mut ws = open(url).await?;
    ws.send(Message::text(r#"{"type":"resume"}"#)).await?;
    let session = next_json(&mut ws).await?;
    let resumed_at = Instant::now();
    anyhow::ensure!(session["resumed"] == true, "not resumed: {session}");
    while next_json(&mut ws).await?["type"] != "publication" {}
    Ok((resumed_at - started, resumed_at.elapsed(), session["recovered"] == true))
}

/// Opens `n` sessions, reads the gateway's RSS with them live, then drops
/// them all at once with no close frame (every one is parked); their tokens.
async fn open_and_drop(target: &Target, url: &str, n: usize) -> anyhow::Result<(Vec<String>, u64)> {
    let mut tokens = Vec::with_capacity(n);
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let mut ws = open(url).await?;
        let first = next_json(&mut ws).await?;
        tokens.push(first["session"].as_str().context("no token")?.to_owned());
        sockets.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let live = target.rss_kib()?;
    drop(sockets);
    Ok((tokens, live))
}

pub async fn run(target: &Target, sessions: usize) -> anyhow::Result<Sessions> {
    let url = target.ws_urls()[0].clone();
    // One first, so one-time allocations are not counted per session.
    let mut warm = open(&url).await?;
    next_json(&mut warm).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = target.rss_kib()?;
    let (_, live) = open_and_drop(target, &url, sessions).await?;
    eprintln!("sessions: {sessions} opened and dropped");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let parked_once = target.rss_kib()?;
    let (tokens, _) = open_and_drop(target, &url, sessions).await?;
    eprintln!("sessions: {sessions} more opened and dropped; resuming them");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let parked_twice = target.rss_kib()?;

    let publishing = Publishing::start(target).await?;
    let resumes = tokens.into_iter().map(|token| {
        let url = format!("{url}?slip_resume={token}");
        async move { resume(&url).await }
    });
    let results: Vec<_> = futures_util::stream::iter(resumes).buffer_unordered(64).collect().await;
    publishing.stop().await;
    let results = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let (mut resume, mut first_live): (Vec<Duration>, Vec<Duration>) = results.iter().map(|r| (r.0, r.1)).unzip();
    let n = sessions.max(1) as f64;
    Ok(Sessions {
        sessions,
        bytes_per_live_session: live.saturating_sub(before) as f64 * 1024.0 / n,
        bytes_per_parked_session: parked_twice.saturating_sub(parked_once) as f64 * 1024.0 / n,
        resume: Latency::of(&mut resume),
        first_live: Latency::of(&mut first_live),
        recovered: results.iter().filter(|r| r.2).count(),
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct AfterDrain {
    pub sessions: usize,
    /// Reconnect (through the other edge) with the token → the resumed session frame.
    pub resume: Latency,
    /// The resumed session frame → the first live publication.
    pub first_live: Latency,
    pub recovered: usize,
}

/// Resumes at once, at most (as `run`'s): a deploy's clients come back
/// spread out by their backoff's jitter, not all in the same instant.
const RESUMING_AT_ONCE: usize = 64;

/// `n` sessions on edge 0 of a cluster while a publisher goes on; edge 0 is
/// drained; every client comes back through edge 1 as soon as its socket
/// closes (at most [`RESUMING_AT_ONCE`] resuming at once).
pub async fn after_drain(target: &Target, n: usize) -> anyhow::Result<AfterDrain> {
    let gateway = target.cluster().context("a cluster")?;
    let urls = target.ws_urls();
    anyhow::ensure!(urls.len() >= 2, "two edges needed");
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let mut ws = open(&urls[0]).await?;
        let first = next_json(&mut ws).await?;
        clients.push((ws, first["session"].as_str().context("no token")?.to_owned()));
    }
    eprintln!("sessions: {n} open on edge 0");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let publishing = Publishing::start(target).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(RESUMING_AT_ONCE));
    let other = urls[1].clone();
    let resumes: Vec<_> = clients
        .into_iter()
        .map(|(mut ws, token)| {
            let (slots, url) = (slots.clone(), format!("{other}?slip_resume={token}"));
            tokio::spawn(async move {
                // Read until the drain closes the socket.
                while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
                    if matches!(message, Message::Close(_)) {
                        break;
                    }
                }
                drop(ws);
                let _slot = slots.acquire().await?;
                resume(&url).await
            })
        })
        .collect();
    gateway.terminate_edge(0)?;
    eprintln!("sessions: edge 0 draining");
    let mut results = Vec::with_capacity(n);
    for resume in resumes {
        results.push(resume.await??);
    }
    publishing.stop().await;
    let (mut resume, mut first_live): (Vec<Duration>, Vec<Duration>) = results.iter().map(|r| (r.0, r.1)).unzip();
    Ok(AfterDrain {
        sessions: n,
        resume: Latency::of(&mut resume),
        first_live: Latency::of(&mut first_live),
        recovered: results.iter().filter(|r| r.2).count(),
    })
}
