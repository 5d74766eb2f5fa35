//! `slip`: the one binary. Parses configuration and starts the libraries.

mod admin;
mod cli;
mod cluster;
mod demo;
mod dev;
mod metrics_listener;

use anyhow::Context;
use clap::Parser;
use slip_proto::ids::NodeId;

use crate::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    // Colours only for a terminal: logs written to a file or a collector stay plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
    let cli = Cli::parse();
    // No subcommand means `slip dev`, with its defaults and environment.
    let command = match cli.command.or_else(|| Cli::parse_from(["slip", "dev"]).command) {
        Some(command) => command,
        None => unreachable!("`slip dev` always parses to a command"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match command {
            Command::Dev(args) => dev::run(args).await,
            Command::Edge(args) => cluster::edge(args).await,
            Command::Control(args) => cluster::control(args).await,
            Command::GenCa(args) => cluster::gen_ca(args),
            Command::GenCert(args) => cluster::gen_cert(args),
            Command::GenSecret => {
                println!("{}", random_secret());
                Ok(())
            }
            Command::Admin(args) => admin::run(args).await,
        }
    })
}

/// This node's id: the flag, else `FLY_MACHINE_ID`, else random.
pub(crate) fn node_id(flag: Option<&str>) -> anyhow::Result<NodeId> {
    let given = flag.map(str::to_owned).or_else(|| std::env::var("FLY_MACHINE_ID").ok());
    match given {
        Some(id) => NodeId::parse(&id).context("SLIP_NODE_ID"),
        None => Ok(NodeId::random()),
    }
}

/// A new shared secret: 32 random bytes as hex.
pub(crate) fn random_secret() -> String {
    rand::random::<[u8; 32]>().iter().map(|b| format!("{b:02x}")).collect()
}

/// Longest wait, once a node has drained, for its own tasks to end (HTTP
/// connections finishing a request, waiting queries, background listeners).
pub(crate) const TASKS_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Resolves on SIGTERM or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
