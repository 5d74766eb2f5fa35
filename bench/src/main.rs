//! `slip-bench`: measures a SLIP Sockets gateway (or Pushpin, or the floor)
//! with real WebSocket clients on loopback. Scenarios live in `scenario/`,
//! the side-by-side run in `compare`, the client processes in `swarm`.

mod backend;
mod chromium;
mod compare;
mod cpus;
mod faults;
mod floor;
mod gateway;
mod plot;
mod pushpin;
mod pushpin_config;
mod scenario;
mod stats;
mod swarm;
mod target;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::scenario::{admin_page, failover, fanout, idle, inbound, sessions, soak, storm};
use crate::target::Target;

#[derive(Parser)]
#[command(name = "slip-bench", about = "Measure a SLIP Sockets gateway on loopback")]
struct Cli {
    /// The `slip` binary to measure.
    #[arg(long, default_value = "target/release/slip")]
    slip: String,
    /// Run a cluster (this many edges, and `--controls` control nodes) instead of one `slip dev`.
    #[arg(long)]
    cluster: Option<usize>,
    /// Control nodes of `--cluster`. Publishes go through the first; the
    /// channel's owner and its replica are wherever the ring puts them.
    #[arg(long, default_value_t = 1)]
    controls: usize,
    /// `SLIP_STREAM_REPLICAS` of the control nodes of `--cluster`.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
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
    /// Clients of a slip gateway subscribe as members of the channel's presence (nobody asks for
    /// join and leave frames): what presence costs idle and in fan-out.
    #[arg(long)]
    presence: bool,
    /// Clients per load-generator process (each process may hold 20,000 open files here).
    #[arg(long, default_value_t = swarm::CLIENTS_PER_PROCESS)]
    clients_per_process: usize,
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
    /// N clients each send messages one at a time; the backend echoes each in
    /// its callback reply: round-trip latency and messages per second.
    Inbound {
        #[arg(long, default_value_t = 100)]
        clients: usize,
        #[arg(long, default_value_t = 100)]
        messages: usize,
    },
    /// N `slip.v1` sessions open, all drop (parked), all resume while a
    /// publisher goes on: memory per live and parked session, resume times.
    /// With `--cluster 2`: the sessions' edge is drained (SIGTERM) instead,
    /// and they resume on the other edge.
    Sessions {
        #[arg(long, default_value_t = 1_000)]
        sessions: usize,
    },
    /// A cluster's channel owner killed (SIGKILL) mid-run, `--runs` times with
    /// the stream copied (`--replicas`) and as many without: the time to the
    /// first delivery again, and what clients lost, side by side.
    Failover {
        #[arg(long, default_value_t = 4)]
        clients: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// A seeded fault campaign (pauses, partitions, kills, rolling restarts)
    /// against a cluster whose nodes each run in a network namespace of their
    /// own, with publishers and subscribers checking that no acknowledged
    /// publish is lost, doubled or reordered. Needs root. Exits non-zero if
    /// an invariant broke.
    Faults {
        /// The first seed; `--seeds` campaigns run, on seeds from this one up
        /// [default: the seed CI runs].
        #[arg(long, default_value_t = faults::schedule::CI_SEED)]
        seed: u64,
        #[arg(long, default_value_t = 1)]
        seeds: u64,
        /// Seconds of faults per campaign.
        #[arg(long, default_value_t = 100)]
        duration: u64,
        #[arg(long, default_value_t = 3)]
        control_nodes: usize,
        #[arg(long, default_value_t = 2)]
        edges: usize,
        /// Control nodes keep their consensus state in SLIP_DATA_DIR (restarts
        /// are the same voter); without it, a restarted node joins as a new one.
        #[arg(long)]
        data_dir: bool,
    },
    /// A channel's N presence members all drop and N others join, while W
    /// `slip.v1` clients watch its joins and leaves: frames per watcher.
    PresenceStorm {
        #[arg(long, default_value_t = 5_000)]
        members: usize,
        #[arg(long, default_value_t = 10)]
        watchers: usize,
    },
    /// A cluster (`--cluster 2 --controls 3` unless given) with N presence
    /// members, each edge's clients spread over N / edges channels, one
    /// publication each: how long the admin page's overview takes to answer,
    /// and the page to show it in headless Chromium.
    AdminPage {
        #[arg(long, default_value_t = 20_000)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Channels the page lists, one set of runs each.
        #[arg(long, value_delimiter = ',', default_value = "20,200")]
        limits: Vec<usize>,
        /// Save a screenshot of the page here (PNG).
        #[arg(long)]
        screenshot: Option<PathBuf>,
        /// Scrape the cluster with Prometheus (Debian's) all along and save
        /// a picture of the Grafana dashboard's panels here (PNG).
        #[arg(long)]
        dashboard: Option<PathBuf>,
        /// Seconds of traffic (publishes, clients coming and going) after
        /// the measurements, the page open, before the pictures.
        #[arg(long, default_value_t = 0)]
        hold: u64,
    },
    /// Connect/close churn: each process's RSS and `slip_entries` every
    /// `--every` cycles, and how RSS grew after the first `--every`.
    Soak {
        #[arg(long, default_value_t = 500_000)]
        cycles: u64,
        /// Clients churning at once.
        #[arg(long, default_value_t = 100)]
        clients: usize,
        #[arg(long, default_value_t = 10_000)]
        every: u64,
        /// What the backend does: `/chat` (a join published at OPEN, a leave
        /// at CLOSE, a welcome) or `/plain` (only the welcome).
        #[arg(long, default_value = "/chat")]
        path: String,
        /// Each cycle a `slip.v1` session: opened, parked, resumed, closed.
        #[arg(long)]
        sessions: bool,
    },
    /// Both gateways, one after the other, at each size: a markdown table with ratios.
    Compare {
        /// Connection counts for idle.
        #[arg(long, value_delimiter = ',', default_value = "1000,5000,19000")]
        idle: Vec<usize>,
        /// Subscriber counts for fanout.
        #[arg(long, value_delimiter = ',', default_value = "1000,5000,19000")]
        fanout: Vec<usize>,
        /// Clients for inbound (0: skip it).
        #[arg(long, default_value_t = 1000)]
        inbound: usize,
        /// Messages per fan-out run and per inbound client.
        #[arg(long, default_value_t = 100)]
        messages: usize,
        /// Write results.json and the charts (SVG) into this directory.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace the marked section of this markdown page with the table and charts (needs --out).
        #[arg(long, requires = "out")]
        doc: Option<PathBuf>,
    },
    /// (internal) Serve the bare broadcast server in this process.
    #[command(hide = true)]
    Floor,
    /// (internal) Serve the minimal backend in this process.
    #[command(hide = true)]
    Backend,
    /// (internal) Hold clients for a parent slip-bench.
    #[command(hide = true)]
    Clients {
        #[arg(long, value_delimiter = ',')]
        urls: Vec<String>,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        offset: usize,
        #[arg(long)]
        concurrency: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cpus::set_gateway_cpus(cli.gateway_cpus.clone());
    swarm::set_clients_per_process(cli.clients_per_process);
    target::set_presence(cli.presence);
    let target = match cli.scenario {
        Scenario::Backend => return backend::serve().await,
        Scenario::Floor => return floor::serve().await,
        Scenario::Clients { urls, count, offset, concurrency } => {
            return swarm::serve(urls, count, offset, concurrency).await;
        }
        Scenario::Failover { clients, runs } => {
            let shape = crate::gateway::Shape {
                edges: cli.cluster.unwrap_or(2),
                controls: cli.controls.max(3),
                replicas: cli.replicas.max(1),
            };
            return failover::compare(&cli.slip, shape, clients, runs).await;
        }
        Scenario::Faults { seed, seeds, duration, control_nodes, edges, data_dir } => {
            let mut broken = 0;
            for seed in seed..seed + seeds {
                println!("faults: seed {seed}, {control_nodes} control nodes, {edges} edges, {duration} s");
                let config = faults::Config {
                    slip: cli.slip.clone(),
                    controls: control_nodes,
                    edges,
                    seed,
                    duration: std::time::Duration::from_secs(duration),
                    data_dir,
                };
                // Interrupted, the campaign's hosts and processes are still removed (dropped).
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
                let outcome = tokio::select! {
                    outcome = faults::run(config) => outcome?,
                    _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
                    _ = term.recv() => anyhow::bail!("terminated"),
                };
                faults::report(&outcome);
                if !outcome.holds() {
                    broken += 1;
                }
            }
            anyhow::ensure!(broken == 0, "invariants broke in {broken} of {seeds} campaigns");
            return Ok(());
        }
        Scenario::Compare { idle, fanout, inbound, messages, out, doc } => {
            let sizes = compare::Sizes { idle, fanout, inbound, messages };
            return compare::run(&cli.slip, sizes, out, doc).await;
        }
        _ if cli.floor => Target::floor().await?,
        _ if cli.pushpin => Target::pushpin(backend::start().await?).await?,
        Scenario::AdminPage { .. } => {
            let shape = crate::gateway::Shape {
                edges: cli.cluster.unwrap_or(2),
                controls: cli.controls.max(3),
                replicas: cli.replicas,
            };
            Target::slip_cluster(&cli.slip, backend::start().await?, shape).await?
        }
        _ => match cli.cluster {
            Some(edges) => {
                let shape = crate::gateway::Shape { edges, controls: cli.controls, replicas: cli.replicas };
                Target::slip_cluster(&cli.slip, backend::start().await?, shape).await?
            }
            None => Target::slip_dev(&cli.slip, backend::start().await?).await?,
        },
    };
    match cli.scenario {
        Scenario::Soak { cycles, clients, every, ref path, sessions } => {
            let what = if sessions { "session open/park/resume/close" } else { "connect/close" };
            println!("soak ({}): {cycles} {what} cycles, {clients} at a time, on {path}", target.name());
            let plan = soak::Plan { cycles, clients, every, path: path.clone(), sessions };
            println!("{}", soak::run(&target, plan).await?);
        }
        Scenario::Idle { connections } => {
            println!("idle ({}): {connections} connections", target.name());
            println!("{}", idle::run(&target, connections).await?);
        }
        Scenario::PresenceStorm { members, watchers } => {
            println!("presence storm ({}): {members} members, {watchers} watchers", target.name());
            println!("{}", storm::run(&target, members, watchers).await?);
        }
        Scenario::Fanout { subscribers, messages, window, payload } => {
            println!(
                "fanout ({}): {subscribers} subscribers, {messages} messages of {payload} bytes, window {window}",
                target.name()
            );
            let plan = fanout::Plan { subscribers, messages, window, payload };
            println!("{}", fanout::run(&target, plan).await?);
        }
        Scenario::Sessions { sessions } => {
            if target.cluster().is_some_and(|g| g.ws.len() >= 2) {
                println!("sessions ({}): {sessions} slip.v1 sessions on edge 0, edge 0 drained", target.name());
                println!("{}", serde_json::to_string_pretty(&sessions::after_drain(&target, sessions).await?)?);
            } else {
                println!("sessions ({}): {sessions} slip.v1 sessions parked and resumed", target.name());
                println!("{}", serde_json::to_string_pretty(&sessions::run(&target, sessions).await?)?);
            }
        }
        Scenario::AdminPage { connections, runs, limits, screenshot, dashboard, hold } => {
            println!("admin page ({}): {connections} presence members, {runs} runs", target.name());
            let plan = admin_page::Plan { connections, runs, limits, screenshot, dashboard, hold };
            println!("{}", admin_page::run(&target, plan).await?);
        }
        Scenario::Inbound { clients, messages } => {
            println!(
                "inbound ({}): {clients} clients × {messages} messages, each echoed by the backend",
                target.name()
            );
            println!("{}", inbound::run(&target, clients, messages).await?);
        }
        Scenario::Compare { .. }
        | Scenario::Faults { .. }
        | Scenario::Failover { .. }
        | Scenario::Backend
        | Scenario::Floor
        | Scenario::Clients { .. } => {
            unreachable!("handled above")
        }
    }
    Ok(())
}
