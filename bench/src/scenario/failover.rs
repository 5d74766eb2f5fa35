//! `failover`: a cluster whose channel owner is killed with SIGKILL while a
//! publisher sends a numbered message every few milliseconds through another
//! control node (each with an idempotency key, retried until confirmed, as
//! the SDK does). Measured per run: the time from the kill to the first
//! delivery again (of a message first sent after the kill, at every
//! client), and per client what was lost or doubled of what was confirmed.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use serde::Serialize;
use slip_proto::pb::{GetChannelRequest, PublishRequest, publish_request};
use tokio_tungstenite::tungstenite::Message;

use crate::gateway::{Gateway, Shape};

/// Time between two publishes.
const EVERY: Duration = Duration::from_millis(5);
/// When the owner is killed, after the first publish.
const KILL_AFTER: Duration = Duration::from_secs(1);
/// How long the publisher goes on once every client has a delivery again.
const GO_ON_FOR: Duration = Duration::from_secs(1);
/// A publish not confirmed within this long (retries included) is given up.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);
/// Longest a run waits, after the kill, for every client to hear again.
const RUN_DEADLINE: Duration = Duration::from_secs(30);
/// How long clients are read after the last publish.
const DRAIN: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// From SIGKILL to the first delivery, at every client, of a message first sent after it.
    pub recovery_ms: f64,
    pub sent: usize,
    pub confirmed: usize,
    /// Confirmed messages some client never received (summed over clients).
    pub lost: usize,
    /// Deliveries beyond the first of a message (summed over clients).
    pub doubled: usize,
    /// Deliveries that came after a later message (summed over clients).
    pub reordered: usize,
    /// Epochs the confirmations named (1: the stream went on).
    pub epochs: usize,
}

/// One run on a fresh cluster of `shape`, with `clients` subscribers.
pub async fn run(slip: &str, shape: Shape, clients: usize) -> anyhow::Result<Run> {
    anyhow::ensure!(shape.controls >= 2, "failover needs --controls 2 or more");
    let mut gateway = Gateway::cluster(slip, crate::backend::start().await?, shape).await?;
    let connected = crate::swarm::connect_many(&gateway.ws, clients, 0, clients).await;
    anyhow::ensure!(connected.failed == 0, "{} clients failed to connect", connected.failed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let info = gateway.grpc_to(0).await?.get_channel(GetChannelRequest { channel: "bench".into() }).await?;
    let owner = gateway.control_index(&info.into_inner().owner).context("the channel's owner is not ours")?;
    let mut grpc = gateway.grpc_to((owner + 1) % shape.controls).await?;

    // Each client's deliveries, (index, when); and the highest index each has seen, live.
    let highest: Arc<Vec<AtomicUsize>> = Arc::new((0..clients).map(|_| AtomicUsize::new(0)).collect());
    let readers: Vec<_> = connected
        .open
        .into_iter()
        .enumerate()
        .map(|(n, ws)| {
            let highest = highest.clone();
            tokio::spawn(async move {
                let (_, mut read) = ws.split();
                let mut seen = Vec::new();
                while let Some(Ok(message)) = read.next().await {
                    if let Message::Text(text) = message
                        && let Ok(index) = text.as_str().parse::<usize>()
                    {
                        seen.push((index, Instant::now()));
                        highest[n].fetch_max(index, Ordering::Relaxed);
                    }
                }
                seen
            })
        })
        .collect();

    let started = Instant::now();
    let (mut killed, mut first_after, mut heard_at) = (None::<Instant>, None::<usize>, None::<Instant>);
    let mut places = Vec::new();
    loop {
        let index = places.len();
        if killed.is_none() && started.elapsed() >= KILL_AFTER {
            gateway.kill_control(owner).await?;
            killed = Some(Instant::now());
            first_after = Some(index);
        }
        if let Some(first) = first_after
            && heard_at.is_none()
            && highest.iter().all(|h| h.load(Ordering::Relaxed) >= first)
        {
            heard_at = Some(Instant::now());
        }
        let done = heard_at.is_some_and(|at| at.elapsed() >= GO_ON_FOR);
        if done || killed.is_some_and(|at| at.elapsed() >= RUN_DEADLINE) {
            break;
        }
        let request = PublishRequest {
            channel: "bench".into(),
            message: Some(publish_request::Message::Text(index.to_string())),
            idempotency_key: format!("bench-{index}"),
        };
        let deadline = Instant::now() + PUBLISH_DEADLINE;
        let placed = loop {
            match grpc.publish(request.clone()).await {
                Ok(reply) => break Some(reply.into_inner()),
                Err(_) if Instant::now() < deadline => tokio::time::sleep(EVERY).await,
                Err(_) => break None,
            }
        };
        places.push(placed.map(|p| p.epoch));
        tokio::time::sleep(EVERY).await;
    }
    tokio::time::sleep(DRAIN).await;
    // The gateway's processes go, the clients' sockets close, the readers end.
    drop(gateway);
    let (killed, first_after) = (killed.context("never killed")?, first_after.unwrap_or(places.len()));
    let confirmed: Vec<usize> = (0..places.len()).filter(|i| places[*i].is_some()).collect();
    let epochs: HashSet<&String> = places.iter().flatten().collect();
    let mut run = Run {
        recovery_ms: 0.0,
        sent: places.len(),
        confirmed: confirmed.len(),
        lost: 0,
        doubled: 0,
        reordered: 0,
        epochs: epochs.len(),
    };
    for reader in readers {
        let seen = reader.await?;
        let back = seen.iter().find(|(i, _)| *i >= first_after).map(|(_, at)| at.duration_since(killed));
        let back = back.unwrap_or(RUN_DEADLINE);
        run.recovery_ms = run.recovery_ms.max(back.as_secs_f64() * 1000.0);
        let got: HashSet<usize> = seen.iter().map(|(i, _)| *i).collect();
        run.lost += confirmed.iter().filter(|i| !got.contains(i)).count();
        run.doubled += seen.len() - got.len();
        run.reordered += seen.windows(2).filter(|w| w[1].0 < w[0].0).count();
    }
    Ok(run)
}

/// One figure of a run, for the table.
type Figure = fn(&Run) -> f64;

/// `runs` runs with the stream copied and as many without, alternating, and
/// a markdown table of both side by side.
pub async fn compare(slip: &str, shape: Shape, clients: usize, runs: usize) -> anyhow::Result<()> {
    let without = Shape { replicas: 0, ..shape };
    let (mut with_copies, mut without_copies) = (Vec::new(), Vec::new());
    for n in 0..runs {
        for (shape, results) in [(shape, &mut with_copies), (without, &mut without_copies)] {
            let run = run(slip, shape, clients).await?;
            eprintln!("run {n}, {} replicas: {}", shape.replicas, serde_json::to_string(&run)?);
            results.push(run);
        }
    }
    println!("{}", serde_json::json!({"with_copies": with_copies, "without_copies": without_copies}));
    println!();
    println!(
        "{} control nodes, {} edges, {clients} subscribers; the channel's owner gets SIGKILL 1 s into a publish every 5 ms; {runs} runs each",
        shape.controls, shape.edges
    );
    println!();
    println!("| | {} replica(s) | no copies | ratio |", shape.replicas);
    println!("|---|---|---|---|");
    let median = |runs: &[Run], f: Figure| {
        let mut values: Vec<f64> = runs.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(0.0)
    };
    let rows: [(&str, Figure); 6] = [
        ("kill → first delivery again at every client, median (ms)", |r| r.recovery_ms),
        ("confirmed messages per run, median", |r| r.confirmed as f64),
        ("lost (confirmed, never received), median over runs, summed over clients", |r| r.lost as f64),
        ("doubled, median", |r| r.doubled as f64),
        ("out of order, median", |r| r.reordered as f64),
        ("epochs per run, median", |r| r.epochs as f64),
    ];
    for (label, f) in rows {
        let (a, b) = (median(&with_copies, f), median(&without_copies, f));
        let ratio = if b > 0.0 { format!("{:.2}", a / b) } else { "–".into() };
        println!("| {label} | {a:.0} | {b:.0} | {ratio} |");
    }
    let worst = |runs: &[Run]| runs.iter().map(|r| r.recovery_ms).fold(0.0, f64::max);
    println!(
        "| kill → first delivery again, worst of the runs (ms) | {:.0} | {:.0} | |",
        worst(&with_copies),
        worst(&without_copies)
    );
    Ok(())
}
