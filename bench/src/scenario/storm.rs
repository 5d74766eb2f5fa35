//! `presence-storm`: a channel with N presence members, watched by W
//! `slip.v1` clients that asked for join and leave frames. All N drop at
//! once and N others connect (a deploy or a network blip reconnecting
//! everyone): how many frames each watcher gets, against the changes there
//! were, and how long until every watcher's list is right again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::swarm::Swarm;
use crate::target::{Target, at_path};

/// How long a watcher's list must hold still to count as settled.
const QUIET: Duration = Duration::from_secs(2);
/// The longest a storm may take to settle before the run gives up.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Debug, Serialize)]
pub struct Storm {
    pub members: usize,
    pub watchers: usize,
    /// Presence changes the storm made: every member left, as many joined.
    pub changes: usize,
    /// Frames (join, leave, presence) per watcher during the storm: fewest, most.
    pub frames_min: usize,
    pub frames_max: usize,
    /// From the first drop to every watcher's list right again.
    pub settle_secs: f64,
    /// Watchers whose list was right at the end (all of them, or a bug).
    pub watchers_right: usize,
}

/// What one watcher saw: the members it knows, and frames counted.
#[derive(Default)]
struct Seen {
    members: HashSet<String>,
    frames: usize,
    last: Option<Instant>,
    closed: bool,
}

pub async fn run(target: &Target, members: usize, watchers: usize) -> anyhow::Result<Storm> {
    let ws = target.ws_urls().first().cloned().context("no WebSocket URL")?;
    let mut seen = Vec::new();
    for _ in 0..watchers {
        seen.push(watch(&at_path(&ws, "/watch")).await?);
    }
    let urls: Vec<String> = target.ws_urls().iter().map(|ws| at_path(ws, "/presence")).collect();
    let first = Swarm::connect(&urls, members).await?;
    anyhow::ensure!(first.failed == 0, "{} members could not connect", first.failed);
    settle(&seen, members + watchers).await?;
    for watcher in &seen {
        watcher.lock().frames = 0;
    }

    let started = Instant::now();
    drop(first);
    let second = Swarm::connect(&urls, members).await?;
    anyhow::ensure!(second.failed == 0, "{} members could not connect again", second.failed);
    settle(&seen, members + watchers).await?;
    let settle_secs = seen.iter().filter_map(|w| w.lock().last).max().map_or(0.0, |t| (t - started).as_secs_f64());
    let frames: Vec<usize> = seen.iter().map(|w| w.lock().frames).collect();
    let right = seen.iter().filter(|w| w.lock().members.len() == members + watchers).count();
    drop(second);
    Ok(Storm {
        members,
        watchers,
        changes: 2 * members,
        frames_min: frames.iter().copied().min().unwrap_or(0),
        frames_max: frames.iter().copied().max().unwrap_or(0),
        settle_secs,
        watchers_right: right,
    })
}

/// Opens a watcher (`slip.v1`, join and leave frames) and keeps its list in a task.
async fn watch(url: &str) -> anyhow::Result<Arc<Mutex<Seen>>> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert("sec-websocket-protocol", "slip.v1".parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.context("a watcher's handshake")?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let kept = seen.clone();
    tokio::spawn(async move {
        while let Some(Ok(message)) = ws.next().await {
            let Message::Text(text) = message else { continue };
            let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
            let id = || frame["connectionId"].as_str().unwrap_or_default().to_owned();
            let mut seen = kept.lock();
            match frame["type"].as_str() {
                Some("join") => {
                    seen.members.insert(id());
                }
                Some("leave") => {
                    seen.members.remove(&id());
                }
                Some("presence") => {
                    let listed = frame["members"].as_array().into_iter().flatten();
                    seen.members = listed.filter_map(|m| m["connectionId"].as_str().map(str::to_owned)).collect();
                }
                _ => continue,
            }
            seen.frames += 1;
            seen.last = Some(Instant::now());
        }
        kept.lock().closed = true;
    });
    Ok(seen)
}

/// Waits until every watcher knows `count` members and nothing changed for [`QUIET`].
async fn settle(seen: &[Arc<Mutex<Seen>>], count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let now = Instant::now();
        let settled = seen.iter().all(|w| {
            let w = w.lock();
            w.members.len() == count && w.last.is_some_and(|t| now - t >= QUIET)
        });
        if settled {
            return Ok(());
        }
        anyhow::ensure!(!seen.iter().any(|w| w.lock().closed), "a watcher was closed (a slow consumer?)");
        anyhow::ensure!(now < deadline, "the watchers did not settle on {count} members");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl std::fmt::Display for Storm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  {} members dropped and {} others joined: {} changes", self.members, self.members, self.changes)?;
        writeln!(
            f,
            "  frames per watcher: {}–{} ({:.2} per change)",
            self.frames_min,
            self.frames_max,
            self.frames_max as f64 / self.changes.max(1) as f64
        )?;
        writeln!(
            f,
            "  settled after {:.2} s; {} of {} watchers right",
            self.settle_secs, self.watchers_right, self.watchers
        )
    }
}
