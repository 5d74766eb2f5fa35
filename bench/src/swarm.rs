//! Clients spread over worker processes (the hidden `slip-bench clients`),
//! at most [`CLIENTS_PER_PROCESS`] each, so no process passes the machine's
//! open-file cap and one run can hold more sockets than one process may.
//!
//! Parent and worker talk in lines. The worker prints `connected OK FAILED
//! HANDSHAKE_MICROS...` once its clients are up. Told `fanout MESSAGES` on stdin, it reads every
//! client's deliveries; the worker holding client 0 prints `seen INDEX` as
//! that client receives (the parent's closed-loop window), and every worker
//! ends with `done LAST_RECEIPT_NANOS LATENCY_MICROS...`. Told `hold`, its
//! clients read and answer pings, reporting nothing. Closing stdin (or
//! dropping the [`Swarm`]) ends the worker and its connections.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::stats::{self, Latency};

/// Clients per worker process by default: well under the 20,000 open files a process may have here.
pub const CLIENTS_PER_PROCESS: usize = 9_000;
static PER_PROCESS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// Sets the clients per worker process (`--clients-per-process`), once, at start.
pub fn set_clients_per_process(n: usize) {
    let _ = PER_PROCESS.set(n.max(1));
}
/// Connections being opened at once, over all workers together.
pub const CONNECT_CONCURRENCY: usize = 64;
/// A handshake not answered within this long counts as failed (an overloaded
/// gateway may accept the TCP connection and never answer).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A worker stops waiting for deliveries when none arrived for this long.
pub const QUIET_TIMEOUT: Duration = Duration::from_secs(10);

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connections opened by [`connect_many`].
pub struct Connected {
    pub open: Vec<Ws>,
    pub failed: usize,
    /// Each successful handshake's time, TCP connect to 101 (OPEN callback included).
    pub handshakes: Vec<Duration>,
}

/// Opens `n` connections, client `offset + i` to `urls[(offset + i) % len]`,
/// with `{i}` in it replaced by `(offset + i) / len` (so clients `2k` and
/// `2k + 1` of two edges' URLs get the same `k`).
/// Failed handshakes are counted, not fatal: an overloaded gateway answering
/// 502 is a result to report.
pub async fn connect_many(urls: &[String], n: usize, offset: usize, concurrency: usize) -> Connected {
    let attempts = (0..n).map(|i| {
        let client = offset + i;
        let url = urls[client % urls.len()].replace("{i}", &(client / urls.len()).to_string());
        async move {
            let started = Instant::now();
            match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url)).await {
                Ok(result) => result.map(|(ws, _)| (ws, started.elapsed())).map_err(|e| e.to_string()),
                Err(_) => Err(format!("no handshake answer within {CONNECT_TIMEOUT:?}")),
            }
        }
    });
    let mut pending = futures_util::stream::iter(attempts).buffer_unordered(concurrency.max(1));
    let (mut open, mut failed, mut handshakes) = (Vec::with_capacity(n), 0, Vec::with_capacity(n));
    while let Some(result) = pending.next().await {
        match result {
            Ok((ws, took)) => {
                open.push(ws);
                handshakes.push(took);
            }
            Err(e) => {
                if failed == 0 {
                    eprintln!("connecting to {}: {e}", urls[0]);
                }
                failed += 1;
            }
        }
    }
    Connected { open, failed, handshakes }
}

/// What a worker reports during a fan-out.
pub enum Report {
    /// Client 0 received message `index`.
    Seen(usize),
    /// A worker is finished: when its last delivery arrived, and every latency.
    Done { last_nanos: u128, latencies: Vec<Duration> },
}

pub struct Swarm {
    workers: Vec<Worker>,
    pub connected: usize,
    pub failed: usize,
    /// From the first spawn to the last worker connected.
    pub connect_secs: f64,
    pub handshake: Latency,
}

struct Worker {
    stdin: ChildStdin,
    stdout: Option<tokio::io::Lines<BufReader<ChildStdout>>>,
    _process: Child,
}

impl Swarm {
    /// Spawns enough workers for `n` clients and waits until all are connected.
    pub async fn connect(urls: &[String], n: usize) -> anyhow::Result<Self> {
        let processes = n.div_ceil(*PER_PROCESS.get().unwrap_or(&CLIENTS_PER_PROCESS)).max(1);
        let concurrency = (CONNECT_CONCURRENCY / processes).max(1);
        let exe = std::env::current_exe()?;
        let started = Instant::now();
        let mut workers = Vec::with_capacity(processes);
        for p in 0..processes {
            let offset = p * n / processes;
            let count = (p + 1) * n / processes - offset;
            let mut process = tokio::process::Command::new(&exe)
                .args(["clients", "--urls", &urls.join(","), "--count", &count.to_string()])
                .args(["--offset", &offset.to_string(), "--concurrency", &concurrency.to_string()])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .context("starting a client worker")?;
            let stdin = process.stdin.take().context("worker stdin")?;
            let stdout = BufReader::new(process.stdout.take().context("worker stdout")?).lines();
            workers.push(Worker { stdin, stdout: Some(stdout), _process: process });
        }
        let (mut connected, mut failed, mut handshakes) = (0, 0, Vec::with_capacity(n));
        for worker in &mut workers {
            let line = worker.stdout.as_mut().context("worker stdout")?.next_line().await?.unwrap_or_default();
            let mut parts = line.split_whitespace().skip(1).map(str::parse::<u64>);
            match (line.starts_with("connected "), parts.next(), parts.next()) {
                (true, Some(Ok(ok)), Some(Ok(bad))) => {
                    connected += ok as usize;
                    failed += bad as usize;
                    handshakes.extend(parts.filter_map(Result::ok).map(Duration::from_micros));
                }
                _ => anyhow::bail!("a client worker printed {line:?}"),
            }
        }
        let connect_secs = started.elapsed().as_secs_f64();
        Ok(Self { workers, connected, failed, connect_secs, handshake: Latency::of(&mut handshakes) })
    }

    /// Tells every worker to read `messages` deliveries per client; reports arrive on the receiver.
    pub async fn fanout(&mut self, messages: usize) -> anyhow::Result<mpsc::Receiver<Report>> {
        let (tx, rx) = mpsc::channel(1024);
        for worker in &mut self.workers {
            worker.stdin.write_all(format!("fanout {messages}\n").as_bytes()).await?;
            worker.stdin.flush().await?;
            let mut lines = worker.stdout.take().context("a fan-out already ran on this swarm")?;
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    let report = match line.split_once(' ') {
                        Some(("seen", index)) => index.parse().map(Report::Seen).ok(),
                        Some(("done", rest)) => Some(parse_done(rest)),
                        _ => None,
                    };
                    let Some(report) = report else { continue };
                    let finished = matches!(report, Report::Done { .. });
                    if tx.send(report).await.is_err() || finished {
                        return;
                    }
                }
                // A worker that died reports nothing it did not measure.
                let _ = tx.send(Report::Done { last_nanos: 0, latencies: Vec::new() }).await;
            });
        }
        Ok(rx)
    }

    /// Tells every worker to keep its clients alive (reading, answering
    /// pings) for as long as the swarm lives; no fan-out after it.
    pub async fn hold(&mut self) -> anyhow::Result<()> {
        for worker in &mut self.workers {
            worker.stdin.write_all(b"hold\n").await?;
            worker.stdin.flush().await?;
        }
        Ok(())
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }
}

fn parse_done(rest: &str) -> Report {
    let mut numbers = rest.split(' ');
    let last_nanos = numbers.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let latencies = numbers.filter_map(|n| n.parse().ok()).map(Duration::from_micros).collect();
    Report::Done { last_nanos, latencies }
}

/// The worker: connects its clients, then follows the parent's commands.
pub async fn serve(urls: Vec<String>, count: usize, offset: usize, concurrency: usize) -> anyhow::Result<()> {
    let Connected { open: clients, failed, handshakes } = connect_many(&urls, count, offset, concurrency).await;
    let mut out = tokio::io::stdout();
    let line = line_with_micros(format!("connected {} {failed}", clients.len()), &handshakes);
    out.write_all(line.as_bytes()).await?;
    out.flush().await?;
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    let mut clients = Some(clients);
    while let Some(line) = commands.next_line().await? {
        // The clients go to the first command that takes them.
        match line.split_once(' ') {
            Some(("fanout", messages)) => {
                if let Some(clients) = clients.take() {
                    receive(clients, messages.parse()?, offset == 0, &mut out).await?;
                }
            }
            None if line == "hold" => {
                if let Some(clients) = clients.take() {
                    hold(clients);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every client reads (and drops) what it gets and answers pings, so the
/// gateway keeps it however long it stays; until the worker ends.
fn hold(clients: Vec<Ws>) {
    for ws in clients {
        tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Ping(p) = message {
                    let _ = sink.send(Message::Pong(p)).await;
                }
            }
        });
    }
}

/// Every client reads until it has `messages` deliveries; then one `done` line.
async fn receive(
    clients: Vec<Ws>,
    messages: usize,
    has_client_zero: bool,
    out: &mut tokio::io::Stdout,
) -> anyhow::Result<()> {
    let expected = clients.len() * messages;
    let (tx, mut rx) = mpsc::channel::<(usize, usize, Duration)>(65_536);
    for (client, ws) in clients.into_iter().enumerate() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            let mut received = 0;
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    Message::Text(text) => {
                        let Some((index, sent)) = stats::parse_stamped(&text) else { continue };
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
    let mut latencies = Vec::with_capacity(expected);
    let mut last_nanos = 0;
    while latencies.len() < expected {
        match tokio::time::timeout(QUIET_TIMEOUT, rx.recv()).await {
            Ok(Some((client, index, latency))) => {
                last_nanos = stats::now_nanos();
                latencies.push(latency);
                if client == 0 && has_client_zero {
                    out.write_all(format!("seen {index}\n").as_bytes()).await?;
                    out.flush().await?;
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    out.write_all(line_with_micros(format!("done {last_nanos}"), &latencies).as_bytes()).await?;
    out.flush().await?;
    Ok(())
}

/// A report line: `head`, then each duration in microseconds, space-separated.
fn line_with_micros(mut line: String, durations: &[Duration]) -> String {
    for d in durations {
        line.push(' ');
        line.push_str(&d.as_micros().to_string());
    }
    line.push('\n');
    line
}
