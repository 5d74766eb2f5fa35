//! `inbound`: every client sends messages one at a time, each after the echo
//! of the previous; the backend echoes each in its callback reply. Round-trip
//! latency and messages per second. Clients live in this process, so sizes
//! stay under one process's open-file cap.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use crate::stats::Latency;
use crate::swarm::{self, CONNECT_CONCURRENCY};
use crate::target::Target;

/// A client gives up on an echo after this long.
const ECHO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Serialize)]
pub struct Inbound {
    pub clients: usize,
    pub round_trips: usize,
    pub expected: usize,
    pub secs: f64,
    pub echoes_per_sec: f64,
    pub latency: Latency,
}

pub async fn run(target: &Target, clients: usize, messages: usize) -> anyhow::Result<Inbound> {
    let swarm::Connected { open: connections, failed, .. } =
        swarm::connect_many(&target.ws_urls(), clients, 0, CONNECT_CONCURRENCY).await;
    anyhow::ensure!(failed == 0, "{failed} of {clients} clients could not connect to {}", target.name());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for ws in connections {
        tasks.push(tokio::spawn(echoes(ws, messages)));
    }
    let mut latencies = Vec::with_capacity(clients * messages);
    for task in tasks {
        latencies.extend(task.await?);
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(Inbound {
        clients,
        round_trips: latencies.len(),
        expected: clients * messages,
        secs,
        echoes_per_sec: latencies.len() as f64 / secs,
        latency: Latency::of(&mut latencies),
    })
}

/// One client's round trips, until one times out.
async fn echoes(ws: swarm::Ws, messages: usize) -> Vec<Duration> {
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
            match tokio::time::timeout(ECHO_TIMEOUT, stream.next()).await {
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
}

impl std::fmt::Display for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  {} round trips in {:.2} s: {:.0} messages/s", self.round_trips, self.secs, self.echoes_per_sec)?;
        write!(f, "  client→backend→client latency: {}", self.latency)
    }
}
