//! `slip-bench`: starts a `slip dev` gateway with a minimal backend and
//! measures it with real WebSocket clients on loopback.
//!
//! - `idle`: RSS of the gateway process per idle connection.
//! - `fanout`: deliveries per second and publish→receive latency to N
//!   subscribers of one channel, publishing closed-loop (never more than a
//!   window of messages ahead of the slowest-to-be-checked subscriber).

mod backend;
mod gateway;
mod stats;

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use slip_proto::pb::{PublishRequest, publish_request};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::gateway::Gateway;

#[derive(Parser)]
#[command(name = "slip-bench", about = "Measure a SLIP Sockets gateway on loopback")]
struct Cli {
    /// The `slip` binary to measure.
    #[arg(long, default_value = "target/release/slip")]
    slip: String,
    /// Run a cluster (one control node, this many edges) instead of one `slip dev`.
    #[arg(long)]
    cluster: Option<usize>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// N idle connections; gateway RSS per connection.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
    },
    /// N subscribers of one channel; deliveries per second and latency.
    Fanout {
        #[arg(long, default_value_t = 1_000)]
        subscribers: usize,
        #[arg(long, default_value_t = 500)]
        messages: usize,
        /// Publishes allowed ahead of what the checked subscriber has received.
        #[arg(long, default_value_t = 32)]
        window: usize,
        /// Payload bytes per message (besides the timestamp).
        #[arg(long, default_value_t = 64)]
        payload: usize,
    },
}

/// Connections opened at once while building up load.
const CONNECT_CONCURRENCY: usize = 64;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let backend = backend::start().await?;
    let gateway = match cli.cluster {
        Some(edges) => Gateway::cluster(&cli.slip, &backend, edges.max(1)).await?,
        None => Gateway::dev(&cli.slip, &backend).await?,
    };
    match cli.scenario {
        Scenario::Idle { connections } => idle(&gateway, connections).await,
        Scenario::Fanout { subscribers, messages, window, payload } => {
            fanout(&gateway, subscribers, messages, window, payload).await
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `n` connections, spread round-robin over the edges' URLs.
async fn connect_many(urls: &[String], n: usize) -> anyhow::Result<Vec<Ws>> {
    let mut out = Vec::with_capacity(n);
    let mut pending =
        futures_util::stream::iter((0..n).map(|i| tokio_tungstenite::connect_async(urls[i % urls.len()].clone())))
            .buffer_unordered(CONNECT_CONCURRENCY);
    while let Some(result) = pending.next().await {
        out.push(result.context("connecting")?.0);
    }
    Ok(out)
}

async fn idle(gateway: &Gateway, connections: usize) -> anyhow::Result<()> {
    // One connection first, so one-time allocations (pools, hub maps) are not counted per connection.
    anyhow::ensure!(gateway.ws.len() == 1, "idle measures one slip dev process; drop --cluster");
    let warm = connect_many(&gateway.ws, 1).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = gateway.rss_kib()?;
    let started = Instant::now();
    let held = connect_many(&gateway.ws, connections).await?;
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = gateway.rss_kib()?;
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / connections as f64;
    println!("idle: {connections} connections");
    println!("  gateway RSS before: {before} KiB, after: {after} KiB");
    println!("  RSS per idle connection: {per:.0} bytes ({:.2} KiB)", per / 1024.0);
    println!(
        "  connected in {connect_secs:.2} s ({:.0} connections/s with the OPEN callback)",
        connections as f64 / connect_secs
    );
    drop(held);
    drop(warm);
    Ok(())
}

async fn fanout(
    gateway: &Gateway,
    subscribers: usize,
    messages: usize,
    window: usize,
    payload: usize,
) -> anyhow::Result<()> {
    let clients = connect_many(&gateway.ws, subscribers).await?;
    // Every subscriber reports (message index, latency) as it receives.
    let (tx, mut rx) = mpsc::channel::<(usize, usize, Duration)>(65_536);
    for (client, ws) in clients.into_iter().enumerate() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            let mut received = 0;
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    Message::Text(text) => {
                        let Some((index, sent)) = parse(&text) else { continue };
                        received += 1;
                        if tx.send((client, index, stats::since(sent))).await.is_err() || received == messages {
                            break;
                        }
                    }
                    Message::Ping(p) => {
                        let _ = sink.send(Message::Pong(p)).await;
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        });
    }
    drop(tx);
    let mut grpc = gateway.grpc().await?;
    let filler = "x".repeat(payload);
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(subscribers * messages);
    let mut checked_up_to = 0usize;
    let mut sent = 0usize;
    while sent < messages || latencies.len() < subscribers * messages {
        // Closed loop: publish while within the window of what client 0 has seen.
        while sent < messages && sent < checked_up_to + window {
            let text = format!("{sent} {} {filler}", stats::now_nanos());
            let request =
                PublishRequest { channel: "bench".into(), message: Some(publish_request::Message::Text(text)) };
            grpc.publish(request).await.context("publishing")?;
            sent += 1;
        }
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some((client, index, latency))) => {
                if client == 0 {
                    checked_up_to = checked_up_to.max(index + 1);
                }
                latencies.push(latency);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let expected = subscribers * messages;
    let delivered = latencies.len();
    let shape = if gateway.ws.len() > 1 {
        format!("cluster of 1 control node and {} edges", gateway.ws.len())
    } else {
        "slip dev".into()
    };
    println!("fanout ({shape}): {subscribers} subscribers, {messages} messages of {payload} bytes, window {window}");
    println!("  delivered {delivered} of {expected} in {elapsed:.2} s: {:.0} deliveries/s", delivered as f64 / elapsed);
    println!("  publish→receive latency: {}", stats::summary(&mut latencies));
    Ok(())
}

fn parse(text: &str) -> Option<(usize, u128)> {
    let mut parts = text.splitn(3, ' ');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}
