//! `slip-bench faults`: a seeded campaign of pauses, partitions, kills and
//! rolling restarts against a cluster whose every node runs in a network
//! namespace of its own (`netns.rs`), while publishers and subscribers on
//! this machine reach every node. At the end, `checker.rs` says whether any
//! acknowledged publish was lost, doubled or reordered at a subscriber, or
//! two messages ever shared a place in a stream, and `ledger.rs` whether the
//! backend got every connection's CLOSE, presence ended right and each
//! channel was occupied and vacated once; and the figures say what
//! the faults cost (publishes acknowledged and refused while they lasted,
//! how long a channel waited, how long the cluster took to be ready again).
//! Needs root (namespaces) and iproute2.

pub mod checker;
pub mod ledger;
mod netns;
mod nodes;
pub mod schedule;
mod workload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use parking_lot::Mutex;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use self::checker::{ChannelLog, SubscriberLog, Verdict};
use self::ledger::{Findings, Ledger, PresenceSeen};
use self::nodes::{Nodes, Shape};
use self::schedule::Fault;

/// Channels published to, each by one publisher.
pub const CHANNELS: usize = 3;
/// Longest the cluster may take to be ready at start, or after a fault.
const READY_WITHIN: Duration = Duration::from_secs(45);
/// Quiet time before the first fault and after the last.
const SETTLE: Duration = Duration::from_secs(3);
/// How long subscribers are read after the publishers stop.
const DRAIN: Duration = Duration::from_secs(4);
/// Longest presence may take to list exactly the subscribers connected at
/// the end: a session given up during a fault leaves when its window ends.
const PRESENCE_WITHIN: Duration = Duration::from_secs(nodes::RESUME_SECS + 15);
/// Longest the CLOSEs may take once every client left, and the VACATEDs.
const CLOSES_WITHIN: Duration = Duration::from_secs(nodes::RESUME_SECS + 25);

#[derive(Debug, Clone)]
pub struct Config {
    pub slip: String,
    pub controls: usize,
    pub edges: usize,
    pub seed: u64,
    pub duration: Duration,
    /// Whether control nodes keep their consensus state on disk.
    pub data_dir: bool,
}

/// What one fault cost.
#[derive(Debug, Clone, Serialize)]
pub struct FaultCost {
    pub fault: Fault,
    /// Publishes acknowledged and refused from the fault's start to its heal.
    pub acknowledged: usize,
    pub refused: usize,
    /// The longest any channel went without an acknowledged publish, from the fault's start on.
    pub longest_wait_ms: u64,
    /// From the heal to every control node ready again.
    pub ready_after_ms: u64,
    /// A partition: what a cut-off control node answered a publish sent to
    /// it directly (no retries), once its lease had surely ended, and how fast.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minority_answer: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub seed: u64,
    pub controls: usize,
    pub edges: usize,
    pub seconds: u64,
    pub verdict: Verdict,
    /// CLOSEs, presence and lifecycle events.
    pub gateway: Findings,
    pub faults: Vec<FaultCost>,
    /// Where the nodes' logs were kept, when an invariant broke.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<String>,
}

impl Outcome {
    /// Every invariant held: the streams' (nothing acknowledged lost,
    /// doubled or reordered) and the gateway's (CLOSEs, presence, lifecycle).
    pub fn holds(&self) -> bool {
        self.verdict.holds() && self.gateway.hold()
    }
}

pub async fn run(config: Config) -> anyhow::Result<Outcome> {
    let root = std::process::Command::new("id").arg("-u").output().context("running id")?;
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        bail!("the fault campaign makes network namespaces: run it as root");
    }
    let started = Instant::now();
    let hosts = config.controls + config.edges;
    let net = netns::Net::new(hosts)?;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let backend = workload::backend(net.here, ledger.clone()).await?;
    let shape = Shape { controls: config.controls, edges: config.edges, data_dir: config.data_dir };
    let mut nodes = Nodes::start(&config.slip, shape, net, backend).await?;
    anyhow::ensure!(nodes.all_ready(READY_WITHIN).await, "the cluster never became ready");
    edges_ready(&nodes).await?;

    let stop = CancellationToken::new();
    let stop_subscribers = CancellationToken::new();
    let channels: Vec<String> = (0..CHANNELS).map(|i| format!("faults-{i}")).collect();
    let mut tasks = Vec::new();
    let mut subscribers = Vec::new();
    let edge_ips: Vec<_> = (0..nodes.edges()).map(|j| nodes.edge_ip(j)).collect();
    for (j, ip) in edge_ips.iter().enumerate() {
        for channel in &channels {
            for session in [false, true] {
                let kind = if session { "session" } else { "plain" };
                let log = Arc::new(Mutex::new(SubscriberLog {
                    name: format!("{kind} {channel} on edge-{j}"),
                    tag: format!("{kind}-{channel}-edge-{j}"),
                    channel: channel.clone(),
                    session,
                    ..Default::default()
                }));
                subscribers.push(log.clone());
                let stop = stop_subscribers.clone();
                tasks.push(if session {
                    tokio::spawn(workload::session(edge_ips.clone(), j, channel.clone(), log, stop))
                } else {
                    tokio::spawn(workload::plain(*ip, channel.clone(), log, stop))
                });
            }
        }
    }
    // Every subscription in place before the first publish.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut publishers = Vec::new();
    for channel in &channels {
        let log = Arc::new(Mutex::new(ChannelLog { channel: channel.clone(), ..Default::default() }));
        publishers.push(log.clone());
        tasks.push(tokio::spawn(workload::publisher(nodes.control_urls(), channel.clone(), log, stop.clone())));
    }
    tokio::time::sleep(SETTLE).await;

    let plan = schedule::plan(config.seed, config.controls, config.edges, config.duration);
    let mut costs = Vec::new();
    for (i, fault) in plan.into_iter().enumerate() {
        let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        println!("  fault {} at {:.3} (unix): {fault:?}", i + 1, unix.as_secs_f64());
        let start = Instant::now();
        let mut minority_answer = None;
        let healed = apply(&mut nodes, &fault, &mut minority_answer).await?;
        let ready = nodes.all_ready(READY_WITHIN).await;
        let ready_after = healed.elapsed();
        anyhow::ensure!(ready, "the cluster was not ready again {READY_WITHIN:?} after {fault:?}");
        let (acknowledged, refused, longest_wait) = during(&publishers, start, healed);
        costs.push(FaultCost {
            fault,
            acknowledged,
            refused,
            longest_wait_ms: longest_wait.as_millis() as u64,
            ready_after_ms: ready_after.as_millis() as u64,
            minority_answer,
        });
        tokio::time::sleep(schedule::gap(config.seed, i)).await;
    }
    tokio::time::sleep(SETTLE).await;
    stop.cancel();
    tokio::time::sleep(DRAIN).await;
    let presence = presence_at_end(&nodes, &channels, &subscribers).await;
    let stopped = Instant::now();
    stop_subscribers.cancel();
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    // Every CLOSE in, and every channel vacated, or the time is up.
    let deadline = Instant::now() + CLOSES_WITHIN;
    loop {
        let done = {
            let ledger = ledger.lock();
            ledger.unclosed() == 0 && ledger.all_vacated(&channels)
        };
        if done || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let channel_logs: Vec<ChannelLog> = publishers.iter().map(|l| std::mem::take(&mut *l.lock())).collect();
    let subscriber_logs: Vec<SubscriberLog> = subscribers.iter().map(|l| std::mem::take(&mut *l.lock())).collect();
    let verdict = checker::check(&channel_logs, &subscriber_logs);
    let gateway = ledger::check(&ledger.lock(), &subscriber_logs, &presence, &channels, stopped);
    let logs = if verdict.holds() && gateway.hold() {
        None
    } else {
        let into = std::env::temp_dir().join(format!("slip-faults-seed-{}-{}", config.seed, config.controls));
        nodes.keep_logs(&into)?;
        Some(into.display().to_string())
    };
    drop(nodes);
    Ok(Outcome {
        seed: config.seed,
        controls: config.controls,
        edges: config.edges,
        seconds: started.elapsed().as_secs(),
        verdict,
        gateway,
        faults: costs,
        logs,
    })
}

/// Each channel's presence once it lists exactly the subscribers connected
/// now (plain ones whose edge never dropped them, and every session), or
/// as it stands when `PRESENCE_WITHIN` is up.
async fn presence_at_end(
    nodes: &Nodes,
    channels: &[String],
    subscribers: &[Arc<Mutex<SubscriberLog>>],
) -> Vec<PresenceSeen> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + PRESENCE_WITHIN;
    let urls = nodes.control_urls();
    for channel in channels {
        let connected: Vec<String> = subscribers
            .iter()
            .map(|s| s.lock())
            .filter(|s| &s.channel == channel && (s.session || !s.broken))
            .map(|s| s.tag.clone())
            .collect();
        let mut last = PresenceSeen { channel: channel.clone(), connected, ..PresenceSeen::default() };
        for attempt in 0usize.. {
            if let Ok((members, count)) = presence(&urls[attempt % urls.len()], channel).await {
                (last.members, last.count) = (members, count);
                let mut listed = last.members.clone();
                listed.sort();
                let mut wanted = last.connected.clone();
                wanted.sort();
                if listed == wanted && count == wanted.len() as u64 {
                    break;
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        seen.push(last);
    }
    seen
}

/// A channel's presence through the control node at `url`: each member's `who`, and the count.
async fn presence(url: &str, channel: &str) -> anyhow::Result<(Vec<String>, u64)> {
    use slip_proto::pb::PresenceRequest;
    use slip_proto::pb::control_client::ControlClient;
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())?.timeout(Duration::from_secs(5));
    let channel_ = tokio::time::timeout(Duration::from_secs(5), endpoint.connect()).await??;
    let mut client = ControlClient::with_interceptor(channel_, slip_sockets::Signer::new(nodes::SECRET.as_bytes()));
    let reply = client.presence(PresenceRequest { channel: channel.to_owned(), limit: 0 }).await?.into_inner();
    let who = |info: &str| serde_json::from_str::<serde_json::Value>(info).ok()?["who"].as_str().map(str::to_owned);
    Ok((reply.members.iter().map(|m| who(&m.info).unwrap_or_default()).collect(), reply.count))
}

/// Waits until every edge answers `/readyz` (linked, with the view).
async fn edges_ready(nodes: &Nodes) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build()?;
    let deadline = Instant::now() + READY_WITHIN;
    for j in 0..nodes.edges() {
        let url = format!("http://{}:{}/readyz", nodes.edge_ip(j), nodes::WS_PORT);
        while !client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
            anyhow::ensure!(Instant::now() < deadline, "edge-{j} never became ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Carries out a fault and heals it; returns when it was healed.
async fn apply(nodes: &mut Nodes, fault: &Fault, minority_answer: &mut Option<String>) -> anyhow::Result<Instant> {
    let secs = |s: &u64| Duration::from_secs(*s);
    match fault {
        Fault::Pause { control, secs: s } => {
            nodes.pause_control(*control, true);
            tokio::time::sleep(secs(s)).await;
            nodes.pause_control(*control, false);
        }
        Fault::Partition { controls, edges, secs: s } => {
            let cut: Vec<usize> = controls
                .iter()
                .map(|c| nodes.control_host(*c))
                .chain(edges.iter().map(|e| nodes.edge_host(*e)))
                .collect();
            let hosts = nodes.controls() + nodes.edges();
            for a in &cut {
                for b in (0..hosts).filter(|b| !cut.contains(b)) {
                    nodes.net.cut(*a, b)?;
                }
            }
            // Once its lease has surely ended, a cut-off node refuses at once.
            let probe_after = Duration::from_millis(2_500);
            tokio::time::sleep(probe_after).await;
            if let Some(c) = controls.first() {
                *minority_answer = Some(probe(&nodes.control_urls()[*c]).await);
            }
            tokio::time::sleep(secs(s).saturating_sub(probe_after)).await;
            nodes.net.heal()?;
        }
        Fault::KillControl { control, secs: s } => {
            nodes.kill_control(*control).await;
            tokio::time::sleep(secs(s)).await;
            nodes.start_control(*control).await?;
        }
        Fault::KillEdge { edge, secs: s } => {
            nodes.kill_edge(*edge).await;
            tokio::time::sleep(secs(s)).await;
            nodes.start_edge(*edge).await?;
        }
        Fault::Roll => {
            for control in 0..nodes.controls() {
                nodes.stop_control(control).await;
                nodes.start_control(control).await?;
                let deadline = Instant::now() + READY_WITHIN;
                while !nodes.ready(control).await {
                    anyhow::ensure!(Instant::now() < deadline, "control-{control} not ready after its restart");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    Ok(Instant::now())
}

/// One publish sent straight to `url`, no retries: what it answered, and how fast.
async fn probe(url: &str) -> String {
    use slip_proto::pb::control_client::ControlClient;
    use slip_proto::pb::{PublishRequest, publish_request};
    let started = Instant::now();
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.to_owned()) else { return "bad url".into() };
    let answer = async {
        let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
        let mut client = ControlClient::with_interceptor(channel, slip_sockets::Signer::new(nodes::SECRET.as_bytes()));
        let request = PublishRequest {
            channel: "faults-probe".into(),
            message: Some(publish_request::Message::Text("probe".into())),
            idempotency_key: format!("probe-{}", rand::random::<u64>()),
        };
        client.publish(request).await.map(|_| "confirmed".to_owned()).map_err(|s| format!("{:?}", s.code()))
    };
    let answer = match tokio::time::timeout(Duration::from_secs(10), answer).await {
        Ok(Ok(ok)) => ok,
        Ok(Err(e)) => e,
        Err(_) => "no answer in 10 s".into(),
    };
    format!("{answer} after {} ms", started.elapsed().as_millis())
}

/// Publishes acknowledged and refused between `start` and `end`, and the
/// longest any channel waited for an acknowledgement from `start` on.
fn during(publishers: &[Arc<Mutex<ChannelLog>>], start: Instant, end: Instant) -> (usize, usize, Duration) {
    let (mut acknowledged, mut refused, mut longest) = (0, 0, Duration::ZERO);
    for log in publishers {
        let log = log.lock();
        acknowledged += log.acked.iter().filter(|a| a.at >= start && a.at <= end).count();
        refused += log.unacked.iter().filter(|(_, at)| *at >= start && *at <= end).count();
        let mut last = start;
        for a in log.acked.iter().filter(|a| a.at >= start) {
            longest = longest.max(a.at.saturating_duration_since(last));
            last = a.at;
        }
    }
    (acknowledged, refused, longest)
}

/// Prints one campaign's outcome, as a line a reader scans and the JSON.
pub fn report(outcome: &Outcome) {
    let v = &outcome.verdict;
    println!(
        "seed {} ({} control nodes, {} edges, {} s, {} faults): {} acknowledged, {} refused; lost {}, doubled {}, reordered {}, collisions {}, epochs {:?}, {} complete subscribers",
        outcome.seed,
        outcome.controls,
        outcome.edges,
        outcome.seconds,
        outcome.faults.len(),
        v.acknowledged,
        v.refused,
        v.lost(),
        v.doubled(),
        v.reordered(),
        v.collisions.len(),
        v.epochs,
        v.complete_subscribers,
    );
    let g = &outcome.gateway;
    println!(
        "  CLOSEs: {} accepted, {} unclosed, {} repeats, {} bad, {} outlived; presence: {} ghosts, {} missing; lifecycle {:?}, {} flaps, {} repeats",
        g.accepted,
        g.unclosed,
        g.close_repeats,
        g.bad_closes.len(),
        g.outlived.len(),
        g.presence_ghosts,
        g.presence_missing,
        g.lifecycle,
        g.lifecycle_flaps,
        g.lifecycle_repeats,
    );
    if outcome.holds() {
        println!("invariants held");
    } else {
        println!("INVARIANTS BROKEN");
        for s in v.subscribers.iter().filter(|s| s.lost + s.doubled + s.reordered > 0) {
            println!("  {s:?}");
        }
        for c in v.collisions.iter().take(20) {
            println!("  collision {c}");
        }
        for line in g.bad_closes.iter().chain(&g.outlived).chain(&g.presence_detail).chain(&g.lifecycle_bad).take(40) {
            println!("  {line}");
        }
        if let Some(logs) = &outcome.logs {
            println!("  the nodes' logs: {logs}");
        }
    }
    if let Ok(json) = serde_json::to_string(outcome) {
        println!("{json}");
    }
}
