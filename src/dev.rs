//! `slip dev`: an edge and a control plane in one process, joined by the
//! in-memory link, so the same routing code runs as in a cluster.

use std::sync::Arc;

use anyhow::Context;
use slip_control_plane::{ControlFrames, ControlPlane};
use slip_edge::{Edge, EdgeConfig, EdgeFrames};
use slip_link::memory;
use tokio::net::TcpListener;

use crate::cli::DevArgs;
use crate::node_id;

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let secret = args.jwt_secret.clone().unwrap_or_else(crate::random_secret);
    let node = node_id(args.node_id.as_deref())?;
    slip_metrics::init(node.as_str(), &std::env::var("FLY_REGION").unwrap_or_default());

    let ws = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the WebSocket listener {}", args.listen))?;
    let control = TcpListener::bind(args.control_listen)
        .await
        .with_context(|| format!("binding the control listener {}", args.control_listen))?;
    let ws_addr = ws.local_addr()?;
    let control_addr = control.local_addr()?;

    // No backend given: run the demo chat backend in this process.
    let demo = args.target_url.is_none();
    let target_url = match &args.target_url {
        Some(url) => url.clone(),
        None => crate::demo::start(&secret, &format!("http://{control_addr}")).await?,
    };
    let mut config = EdgeConfig::new(node.clone(), target_url.clone(), secret.as_bytes());
    args.edge.apply(&mut config);
    if demo {
        config.landing_page = Some(crate::demo::PAGE.into());
    }
    let edge = Edge::new(config).context("starting the edge")?;
    let plane = ControlPlane::new(node.clone());

    // The in-memory link, both ways: edge → control and control → edge.
    edge.add_control_link(memory::link(node.clone(), node.clone(), Arc::new(ControlFrames(plane.clone()))));
    plane.add_edge_link(memory::link(node.clone(), node.clone(), Arc::new(EdgeFrames(edge.clone()))));

    println!("SLIP Sockets dev gateway, node {node}");
    if demo {
        println!("  Demo chat:   http://{ws_addr}/   (open it in two browser tabs)");
    }
    println!("  WebSocket:   ws://{ws_addr}/");
    println!("  Control API: http://{control_addr} (gRPC slip.v1.Control, SLIP v4 HTTP JSON, GRIP /publish/)");
    if demo {
        println!("  Callbacks:   the built-in demo backend (set SLIP_TARGET_URL to use your own)");
    } else {
        println!("  Callbacks:   POST {target_url}");
    }
    println!("  JWT secret:  {secret}");
    if let Some(listen) = args.metrics_listen {
        crate::metrics_listener::start(listen).await?;
    }

    let secret_bytes = secret.into_bytes();
    let mut websockets = tokio::spawn(slip_edge::server::serve(edge.clone(), ws));
    let grip_auth = args.grip_publish_auth.into();
    let stop_control = tokio_util::sync::CancellationToken::new();
    let control_stopped = stop_control.clone();
    let mut control_api = tokio::spawn(async move {
        slip_control_plane::server::serve(plane, &secret_bytes, grip_auth, control, control_stopped).await
    });
    tokio::select! {
        r = &mut websockets => r?.context("WebSocket listener failed")?,
        r = &mut control_api => r?.context("control listener failed")?,
        _ = crate::shutdown_signal() => {
            // The listeners keep serving while draining: upgrades get 503, /readyz fails.
            slip_edge::drain::drain(&edge, args.edge.drain_grace()).await;
            // Then the control API stops accepting and answers what is in flight.
            stop_control.cancel();
            control_api.await?.context("control listener failed")?;
        }
    }
    Ok(())
}
