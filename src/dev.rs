//! `slip dev`: an edge and a control plane in one process, joined by the
//! in-memory link, so the same routing code runs as in a cluster.

use std::sync::Arc;

use anyhow::Context;
use slip_control_plane::{ControlFrames, ControlPlane};
use slip_edge::{Edge, EdgeConfig, EdgeFrames};
use slip_link::memory;
use slip_proto::ids::{MAX_NODE_ID_BYTES, NodeId};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::DevArgs;
use crate::node_id;

/// Longest `slip dev` waits at start for its control plane's first view
/// (it forms in milliseconds) before letting clients in.
const VIEW_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let secret = args.jwt_secret.clone().unwrap_or_else(crate::random_secret);
    let node = node_id(args.node_id.as_deref())?;
    slip_metrics::init(node.as_str(), &std::env::var("FLY_REGION").unwrap_or_default());
    slip_metrics::set_role("dev");

    let ws = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the WebSocket listener {}", args.listen))?;
    let control = TcpListener::bind(args.control_listen)
        .await
        .with_context(|| format!("binding the control listener {}", args.control_listen))?;
    let ws_addr = ws.local_addr()?;
    let control_addr = control.local_addr()?;
    // Stops the background listeners (demo backend, metrics) last of all.
    let stop = CancellationToken::new();
    let _stop_on_return = stop.clone().drop_guard();

    // No backend given: run the demo chat backend in this process.
    let demo = args.target_url.is_none();
    let target_url = match &args.target_url {
        Some(url) => url.clone(),
        None => crate::demo::start(&secret, &format!("http://{control_addr}"), stop.clone()).await?,
    };
    let mut config = EdgeConfig::new(node.clone(), target_url.clone(), secret.as_bytes());
    args.edge.apply(&mut config);
    config.max_outbound_bytes = args.outbound.bytes()?;
    // One process: if the edge dies, so does the control plane that would send its CLOSEs.
    config.record_connections = false;
    if demo {
        config.landing_page = Some(crate::demo::page().into());
    }
    let edge = Edge::new(config).context("starting the edge")?;
    // The control plane is a node of its own, as in a cluster: a reply
    // addressed to one of the two must never be taken by the other.
    let control_node = control_node_id(&node);
    let mut limits = args.streams.limits()?;
    limits.max_message_bytes = args.outbound.bytes()?;
    limits.resume_window = std::time::Duration::from_secs(args.edge.resume_secs);
    let plane = ControlPlane::with_limits(control_node.clone(), limits);
    args.lifecycle.start(&plane, secret.as_bytes())?;

    // The in-memory link, both ways: edge → control and control → edge.
    let to_control = memory::link(node.clone(), control_node.clone(), Arc::new(ControlFrames(plane.clone())));
    edge.add_control_link(to_control);
    plane.add_edge_link(memory::link(control_node, node.clone(), Arc::new(EdgeFrames(edge.clone()))));
    // Clients are let in once the edge knows the control plane's view: a
    // SUBSCRIBE or a publish before it would have no owner to go to.
    let deadline = tokio::time::Instant::now() + VIEW_WAIT;
    while edge.view_term() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    if edge.view_term() == 0 {
        tracing::warn!(?VIEW_WAIT, "the control plane formed no view in time; serving anyway");
    }

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
        let sizes: crate::metrics_listener::ReadSizes = {
            let (edge, plane) = (edge.clone(), plane.clone());
            Arc::new(move || edge.sizes().into_iter().chain(plane.sizes()).collect())
        };
        crate::metrics_listener::start(listen, stop.clone(), None, sizes).await?;
    }

    let secret_bytes = secret.into_bytes();
    let mut websockets = tokio::spawn(slip_edge::server::serve(edge.clone(), ws));
    let grip_auth = args.grip_publish_auth.into();
    let control_auth = slip_control_plane::server::ControlAuth::new(&secret_bytes, args.max_token_secs);
    let stop_control = CancellationToken::new();
    let control_stopped = stop_control.clone();
    let api_plane = plane.clone();
    // gRPC health: not serving from the moment the edge starts to drain.
    let draining = CancellationToken::new();
    let ready: slip_control_plane::health::Readiness = {
        let (plane, draining) = (plane.clone(), draining.clone());
        Arc::new(move || if draining.is_cancelled() { Err("draining".into()) } else { plane.readiness() })
    };
    let mut control_api = tokio::spawn(async move {
        slip_control_plane::server::serve(api_plane, control_auth, grip_auth, control, control_stopped, ready).await
    });
    tokio::select! {
        r = &mut websockets => r?.context("WebSocket listener failed")?,
        r = &mut control_api => r?.context("control listener failed")?,
        _ = crate::shutdown_signal() => {
            // The listeners keep serving while draining: upgrades get 503, /readyz fails.
            draining.cancel();
            slip_edge::drain::drain(&edge, args.edge.drain_grace()).await;
            // Then the control API stops accepting and answers what is in flight.
            stop_control.cancel();
            control_api.await?.context("control listener failed")?;
            // Then every task of the edge and the plane ends (bounded).
            edge.shutdown(crate::TASKS_GRACE).await;
            plane.shutdown().await;
        }
    }
    Ok(())
}

/// The id of `slip dev`'s control plane: the edge's, with `-control`.
fn control_node_id(edge: &NodeId) -> NodeId {
    const SUFFIX: &str = "-control";
    let stem = &edge.as_str()[..edge.as_str().len().min(MAX_NODE_ID_BYTES - SUFFIX.len())];
    NodeId::parse(&format!("{stem}{SUFFIX}")).expect("an id's prefix and a valid suffix make a valid id")
}
