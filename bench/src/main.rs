//! `slip-bench`: starts a `slip dev` gateway with a minimal backend and
//! measures it with real WebSocket clients on loopback.
//!
//! - `idle`: RSS of the gateway process per idle connection.
//! - `fanout`: deliveries per second and publish→receive latency to N
//!   subscribers of one channel, publishing closed-loop (never more than a
//!   window of messages ahead of the slowest-to-be-checked subscriber).

mod backend;
mod cpus;
mod floor;
mod gateway;
mod pushpin;
mod stats;
mod target;

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::gateway::Gateway;
use crate::target::Target;

#[derive(Parser)]
#[command(name = "slip-bench", about = "Measure a SLIP Sockets gateway on loopback")]
struct Cli {
    /// The `slip` binary to measure.
    #[arg(long, default_value = "target/release/slip")]
    slip: String,
    /// Run a cluster (one control node, this many edges) instead of one `slip dev`.
    #[arg(long)]
    cluster: Option<usize>,
    /// Measure Pushpin (installed with apt-get install pushpin) instead.
    #[arg(long)]
    pushpin: bool,
    /// Measure the floor (a bare fastwebsockets broadcast server) instead.
    #[arg(long)]
    floor: bool,
    /// Pin every gateway process (ours, Pushpin's, the floor) to these CPUs (taskset list, e.g. "0").
    /// Run slip-bench itself pinned elsewhere so clients and gateway never share a core.
    #[arg(long)]
    gateway_cpus: Option<String>,
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
    /// Both gateways, one after the other, at each size: a markdown table with ratios.
    Compare {
        /// Connection counts for idle.
        #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
        idle: Vec<usize>,
        /// Subscriber counts for fanout.
        #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
        fanout: Vec<usize>,
        #[arg(long, default_value_t = 200)]
        messages: usize,
    },
    /// N clients each send messages one at a time; the backend echoes each in
    /// its callback reply: round-trip latency and messages per second.
    Inbound {
        #[arg(long, default_value_t = 100)]
        clients: usize,
        #[arg(long, default_value_t = 100)]
        messages: usize,
    },
    /// (internal) Serve the bare broadcast server in this process.
    #[command(hide = true)]
    Floor,
    /// (internal) Serve the minimal backend in this process.
    #[command(hide = true)]
    Backend,
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
    cpus::set_gateway_cpus(cli.gateway_cpus.clone());
    match cli.scenario {
        Scenario::Backend => return backend::serve().await,
        Scenario::Floor => return floor::serve().await,
        _ => {}
    }
    let backend = backend::start().await?;
    if let Scenario::Compare { idle, fanout, messages } = cli.scenario {
        return compare(&cli.slip, &backend, &idle, &fanout, messages).await;
    }
    let target =
        if cli.floor { Target::floor().await? } else { start(&cli.slip, &backend, cli.cluster, cli.pushpin).await? };
    match cli.scenario {
        Scenario::Idle { connections } => {
            let r = idle(&target, connections).await?;
            println!("idle ({}): {connections} connections", target.name());
            println!("  RSS before: {} KiB, after: {} KiB", r.before_kib, r.after_kib);
            println!("  RSS per idle connection: {:.0} bytes ({:.2} KiB)", r.per_connection, r.per_connection / 1024.0);
            println!(
                "  connected in {:.2} s ({:.0} connections/s with the OPEN callback)",
                r.connect_secs, r.connect_rate
            );
        }
        Scenario::Fanout { subscribers, messages, window, payload } => {
            let r = fanout(&target, subscribers, messages, window, payload).await?;
            println!(
                "fanout ({}): {subscribers} subscribers, {messages} messages of {payload} bytes, window {window}",
                target.name()
            );
            println!("  delivered {} of {} in {:.2} s: {:.0} deliveries/s", r.delivered, r.expected, r.secs, r.rate);
            println!("  publish→receive latency: {}", r.latency);
        }
        Scenario::Inbound { clients, messages } => {
            let r = inbound(&target, clients, messages).await?;
            println!(
                "inbound ({}): {clients} clients × {messages} messages, each echoed by the backend",
                target.name()
            );
            println!("  {} round trips in {:.2} s: {:.0} messages/s", r.round_trips, r.secs, r.rate);
            println!("  client→backend→client latency: {}", r.latency);
        }
        Scenario::Compare { .. } | Scenario::Backend | Scenario::Floor => unreachable!("handled above"),
    }
    Ok(())
}

async fn start(
    slip: &str,
    backend: &backend::Backend,
    cluster: Option<usize>,
    pushpin: bool,
) -> anyhow::Result<Target> {
    Ok(if pushpin {
        Target::Pushpin(pushpin::Pushpin::start(&backend.over_http).await?)
    } else {
        match cluster {
            Some(edges) => Target::Slip(Gateway::cluster(slip, backend, edges.max(1)).await?),
            None => Target::Slip(Gateway::dev(slip, backend).await?),
        }
    })
}

/// Every scenario at every size on both gateways, as a markdown table.
async fn compare(
    slip: &str,
    backend: &backend::Backend,
    sizes: &[usize],
    fanouts: &[usize],
    messages: usize,
) -> anyhow::Result<()> {
    println!("| scenario | size | slip dev | Pushpin | slip / Pushpin |");
    println!("|---|---|---|---|---|");
    // Between runs: a pause, so one gateway's sockets are gone before the next
    // starts, and a fresh backend, so no run inherits another's connections.
    let settle = || tokio::time::sleep(Duration::from_secs(2));
    let _ = backend;
    for &n in sizes {
        settle().await;
        let ours = idle(&start(slip, &backend::start().await?, None, false).await?, n).await?;
        settle().await;
        let theirs = idle(&start(slip, &backend::start().await?, None, true).await?, n).await?;
        println!(
            "| idle memory per connection | {n} | {:.1} KiB | {:.1} KiB | {:.2} |",
            ours.per_connection / 1024.0,
            theirs.per_connection / 1024.0,
            ours.per_connection / theirs.per_connection
        );
        println!(
            "| new connections/s (with OPEN callback) | {n} | {:.0} | {:.0} | {:.2} |",
            ours.connect_rate,
            theirs.connect_rate,
            ours.connect_rate / theirs.connect_rate
        );
    }
    for &n in sizes.iter().take(1) {
        settle().await;
        let ours = inbound(&start(slip, &backend::start().await?, None, false).await?, n, messages).await?;
        settle().await;
        let theirs = inbound(&start(slip, &backend::start().await?, None, true).await?, n, messages).await?;
        println!("| inbound echoes/s | {n} | {:.0} | {:.0} | {:.2} |", ours.rate, theirs.rate, ours.rate / theirs.rate);
        println!("| inbound round trip p50 / p99 | {n} | {} | {} | |", ours.latency_short, theirs.latency_short);
        println!(
            "| inbound round trips | {n} | {} of {} | {} of {} | |",
            ours.round_trips,
            n * messages,
            theirs.round_trips,
            n * messages
        );
    }
    for &n in fanouts {
        settle().await;
        let ours = fanout(&start(slip, &backend::start().await?, None, false).await?, n, messages, 32, 64).await?;
        settle().await;
        let theirs = fanout(&start(slip, &backend::start().await?, None, true).await?, n, messages, 32, 64).await?;
        println!(
            "| fan-out deliveries/s | {n} | {:.0} | {:.0} | {:.2} |",
            ours.rate,
            theirs.rate,
            ours.rate / theirs.rate
        );
        println!("| fan-out latency p50 / p99 | {n} | {} | {} | |", ours.latency_short, theirs.latency_short);
        println!(
            "| fan-out delivered | {n} | {} of {} | {} of {} | |",
            ours.delivered, ours.expected, theirs.delivered, theirs.expected
        );
        settle().await;
        let floor = fanout(&Target::floor().await?, n, messages, 32, 64).await?;
        println!(
            "| fan-out deliveries/s against the floor (bare fastwebsockets, in the Pushpin column) | {n} | {:.0} | {:.0} | {:.2} |",
            ours.rate,
            floor.rate,
            ours.rate / floor.rate
        );
    }
    Ok(())
}

struct InboundResult {
    round_trips: usize,
    secs: f64,
    rate: f64,
    latency: String,
    latency_short: String,
}

/// Every client sends `messages` texts, each after the echo of the previous.
async fn inbound(target: &Target, clients: usize, messages: usize) -> anyhow::Result<InboundResult> {
    let connections = connect_many(&target.ws_urls(), clients).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for ws in connections {
        tasks.push(tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            let mut latencies = Vec::with_capacity(messages);
            for i in 0..messages {
                let sent = Instant::now();
                let text = format!("echo {i}");
                if sink.send(Message::text(text.clone())).await.is_err() {
                    break;
                }
                // Wait for our echo; publishes to "bench" are not expected here.
                loop {
                    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
                        Ok(Some(Ok(Message::Text(t)))) if t.as_str() == text => {
                            latencies.push(sent.elapsed());
                            break;
                        }
                        Ok(Some(Ok(Message::Ping(p)))) => {
                            let _ = sink.send(Message::Pong(p)).await;
                        }
                        Ok(Some(Ok(_))) => {}
                        _ => return latencies,
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(clients * messages);
    for task in tasks {
        latencies.extend(task.await?);
    }
    let secs = started.elapsed().as_secs_f64();
    let round_trips = latencies.len();
    let latency = stats::summary(&mut latencies);
    Ok(InboundResult {
        round_trips,
        secs,
        rate: round_trips as f64 / secs,
        latency,
        latency_short: stats::p50_p99(&latencies),
    })
}

struct IdleResult {
    before_kib: u64,
    after_kib: u64,
    per_connection: f64,
    connect_secs: f64,
    connect_rate: f64,
}

struct FanoutResult {
    delivered: usize,
    expected: usize,
    secs: f64,
    rate: f64,
    latency: String,
    latency_short: String,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `n` connections, spread round-robin over the edges' URLs.
async fn connect_many(urls: &[String], n: usize) -> anyhow::Result<Vec<Ws>> {
    let mut out = Vec::with_capacity(n);
    let mut pending =
        futures_util::stream::iter((0..n).map(|i| tokio_tungstenite::connect_async(urls[i % urls.len()].clone())))
            .buffer_unordered(CONNECT_CONCURRENCY);
    while let Some(result) = pending.next().await {
        out.push(result.with_context(|| format!("connecting to {}", urls[0]))?.0);
    }
    Ok(out)
}

async fn idle(target: &Target, connections: usize) -> anyhow::Result<IdleResult> {
    let urls = target.ws_urls();
    // One connection first, so one-time allocations (pools, maps) are not counted per connection.
    let warm = connect_many(&urls, 1).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = target.rss_kib()?;
    let started = Instant::now();
    let held = connect_many(&urls, connections).await?;
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = target.rss_kib()?;
    drop(held);
    drop(warm);
    Ok(IdleResult {
        before_kib: before,
        after_kib: after,
        per_connection: after.saturating_sub(before) as f64 * 1024.0 / connections as f64,
        connect_secs,
        connect_rate: connections as f64 / connect_secs,
    })
}

async fn fanout(
    target: &Target,
    subscribers: usize,
    messages: usize,
    window: usize,
    payload: usize,
) -> anyhow::Result<FanoutResult> {
    let clients = connect_many(&target.ws_urls(), subscribers).await?;
    // Let subscriptions settle (Pushpin subscribes after the OPEN round trip).
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Every subscriber reports (client, message index, latency) as it receives.
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
    let mut publisher = target.publisher().await?;
    let filler = "x".repeat(payload);
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(subscribers * messages);
    let mut checked_up_to = 0usize;
    let mut sent = 0usize;
    while sent < messages || latencies.len() < subscribers * messages {
        // Closed loop: publish while within the window of what client 0 has seen.
        while sent < messages && sent < checked_up_to + window {
            publisher.publish(format!("{sent} {} {filler}", stats::now_nanos())).await?;
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
    let secs = started.elapsed().as_secs_f64();
    let delivered = latencies.len();
    let latency = stats::summary(&mut latencies);
    Ok(FanoutResult {
        delivered,
        expected: subscribers * messages,
        secs,
        rate: delivered as f64 / secs,
        latency,
        latency_short: stats::p50_p99(&latencies),
    })
}

fn parse(text: &str) -> Option<(usize, u128)> {
    let mut parts = text.splitn(3, ' ');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}
