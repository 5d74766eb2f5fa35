//! `slip edge`, `slip control`, `slip gen-ca` and `slip gen-cert`: the nodes
//! of a cluster, linked over QUIC with mutual TLS from the cluster CA, each
//! with a certificate for its role (`slip_link::tls`).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use slip_control_plane::{ControlFrames, ControlPlane};
use slip_edge::{Edge, EdgeConfig, EdgeFrames};
use slip_link::discovery::{self, DnsPeers, TokioResolver};
use slip_link::quic::QuicNode;
use slip_link::tls::{ClusterCa, Identity};
use slip_proto::ids::NodeId;
use slip_proto::link_pb::{Hello, Role};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::{ClusterArgs, ControlArgs, EdgeArgs, GenCaArgs, GenCertArgs};

/// Longest wait on shutdown, twice: for the links to deliver what they
/// hold, then for them to say goodbye.
const LINK_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

pub fn gen_ca(args: GenCaArgs) -> anyhow::Result<()> {
    let ca = ClusterCa::generate()?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let cert = args.out.join("ca.pem");
    let key = args.out.join("ca-key.pem");
    std::fs::write(&cert, &ca.cert_pem).with_context(|| format!("writing {}", cert.display()))?;
    write_private(&key, &ca.key_pem)?;
    println!("wrote {} and {}", cert.display(), key.display());
    println!("every node gets SLIP_CLUSTER_CA={}; issue each role a certificate with `slip gen-cert`", cert.display());
    println!("keep {} off the edges", key.display());
    Ok(())
}

pub fn gen_cert(args: GenCertArgs) -> anyhow::Result<()> {
    let ca =
        ClusterCa::load(&args.cluster_ca, &args.cluster_ca_key).context("SLIP_CLUSTER_CA / SLIP_CLUSTER_CA_KEY")?;
    let role = slip_link::tls::role_named(&args.role).context("--role is edge or control")?;
    let node = args.node_id.as_deref().map(NodeId::parse).transpose().context("--node-id")?;
    let leaf = ca.issue(role, node.as_ref())?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let cert = args.out.join(format!("{}.pem", args.role));
    let key = args.out.join(format!("{}-key.pem", args.role));
    std::fs::write(&cert, &leaf.cert_pem).with_context(|| format!("writing {}", cert.display()))?;
    write_private(&key, &leaf.key_pem)?;
    let whom = node.map_or_else(|| format!("any {} node", args.role), |n| format!("{} node {n}", args.role));
    println!("wrote {} and {} for {whom}", cert.display(), key.display());
    println!("give it SLIP_CLUSTER_CERT={} SLIP_CLUSTER_KEY={}", cert.display(), key.display());
    Ok(())
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(pem.as_bytes())?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, pem: &str) -> anyhow::Result<()> {
    std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))
}

struct Node {
    id: NodeId,
    region: String,
    /// Fixed peer addresses.
    peers: Vec<SocketAddr>,
    /// Peers found through DNS, the resolver that asks, and how often.
    dns: Option<(DnsPeers, TokioResolver, std::time::Duration)>,
    /// Whether the peers are reached over IPv6 (so dial from an IPv6 socket).
    v6: bool,
}

impl Node {
    /// Starts dialing every known peer and keeps DNS discovery running.
    fn dial_peers(&self, links: &Arc<QuicNode>) {
        for peer in &self.peers {
            links.dial(*peer);
        }
        if let Some((peers, resolver, refresh)) = &self.dns {
            discovery::spawn(links.clone(), peers.clone(), resolver.clone(), *refresh);
        }
    }

    /// An unspecified address of the family the peers are reached over.
    fn dial_from(&self) -> SocketAddr {
        if self.v6 { SocketAddr::from(([0u16; 8], 0)) } else { SocketAddr::from(([0u8; 4], 0)) }
    }
}

/// This node's certificate: the one it was given, or (a control node holding
/// the CA key) one it issues itself.
fn identity(args: &ClusterArgs, ca_key: Option<&str>, role: Role, id: &NodeId) -> anyhow::Result<Identity> {
    match (&args.cluster_cert, &args.cluster_key, ca_key) {
        (Some(cert), Some(key), _) => Identity::load(&args.cluster_ca, cert, key)
            .context("SLIP_CLUSTER_CA / SLIP_CLUSTER_CERT / SLIP_CLUSTER_KEY"),
        (None, None, Some(ca_key)) => Ok(ClusterCa::load(&args.cluster_ca, ca_key)
            .context("SLIP_CLUSTER_CA / SLIP_CLUSTER_CA_KEY")?
            .identity(role, id)?),
        _ => bail!(
            "this node needs SLIP_CLUSTER_CERT and SLIP_CLUSTER_KEY: a certificate for its role (`slip gen-cert --role {}`)",
            if role == Role::Edge { "edge" } else { "control" }
        ),
    }
}

async fn node(args: &ClusterArgs) -> anyhow::Result<Node> {
    let id = crate::node_id(args.node_id.as_deref())?;
    let mut peers = Vec::new();
    let mut dns = None;
    for peer in args.peers.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        if peer.starts_with("dns:") {
            let parsed =
                DnsPeers::parse(peer).with_context(|| format!("SLIP_PEERS entry {peer:?} is not dns:NAME:PORT"))?;
            let resolver = discovery::resolver(args.dns_server)
                .map_err(anyhow::Error::msg)
                .context("SLIP_DNS_SERVER, or the system's resolv.conf")?;
            dns = Some((parsed, resolver, std::time::Duration::from_secs(args.dns_refresh_secs.max(1))));
            continue;
        }
        let addr = tokio::net::lookup_host(peer)
            .await
            .with_context(|| format!("resolving SLIP_PEERS entry {peer:?}"))?
            .next()
            .with_context(|| format!("SLIP_PEERS entry {peer:?} resolves to no address"))?;
        peers.push(addr);
    }
    let region = args.region.clone().or_else(|| std::env::var("FLY_REGION").ok()).unwrap_or_default();
    slip_metrics::init(id.as_str(), &region);
    // The family of the first peer, or of the DNS server asked.
    let v6 = match peers.first() {
        Some(peer) => peer.is_ipv6(),
        None => args.dns_server.or_else(discovery::system_nameserver).is_some_and(|s| s.is_ipv6()),
    };
    Ok(Node { id, region, peers, dns, v6 })
}

fn hello(node: &Node, role: Role, link_addr: Option<SocketAddr>) -> Hello {
    Hello {
        node_id: node.id.to_string(),
        role: role as i32,
        region: node.region.clone(),
        link_addr: link_addr.map(|a| a.to_string()).unwrap_or_default(),
        incarnation: incarnation(),
    }
}

/// This process among every one that ran under its node id: drawn once.
fn incarnation() -> u64 {
    static INCARNATION: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *INCARNATION.get_or_init(|| rand::random::<u64>() | 1)
}

/// Where other nodes can dial this control node's link.
fn advertised(args: &ControlArgs, bound: SocketAddr) -> Option<SocketAddr> {
    if args.link_advertise.is_some() {
        return args.link_advertise;
    }
    if bound.port() == 0 {
        return None;
    }
    if !bound.ip().is_unspecified() {
        return Some(bound);
    }
    let private: std::net::IpAddr = std::env::var("FLY_PRIVATE_IP").ok()?.parse().ok()?;
    Some(SocketAddr::new(private, bound.port()))
}

pub async fn edge(args: EdgeArgs) -> anyhow::Result<()> {
    // The CA key is the cluster's crown jewel; an edge faces the internet.
    if std::env::var_os("SLIP_CLUSTER_CA_KEY").is_some() {
        bail!(
            "an edge must not hold the CA key: unset SLIP_CLUSTER_CA_KEY and give it SLIP_CLUSTER_CERT and SLIP_CLUSTER_KEY from `slip gen-cert --role edge`"
        );
    }
    let node = node(&args.cluster).await?;
    slip_metrics::set_role("edge");
    if node.peers.is_empty() && node.dns.is_none() {
        bail!("an edge needs SLIP_PEERS: the link addresses of the control nodes, or dns:NAME:PORT");
    }
    let identity = identity(&args.cluster, None, Role::Edge, &node.id)?;
    let mut config = EdgeConfig::new(node.id.clone(), args.target_url.clone(), args.jwt_secret.as_bytes());
    config.region = node.region.clone();
    args.edge.apply(&mut config);
    config.max_outbound_bytes = args.outbound.bytes()?;
    let edge = Edge::new(config).context("starting the edge")?;

    // Edges only dial: they take no links.
    let frames = Arc::new(EdgeFrames(edge.clone()));
    let links = QuicNode::bind(node.dial_from(), false, &identity, hello(&node, Role::Edge, None), frames)?;
    node.dial_peers(&links);
    let ws = TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    println!("SLIP Sockets edge, node {}", node.id);
    println!("  WebSocket:   ws://{}/", ws.local_addr()?);
    println!("  Control nodes: {}", node.peers.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "));
    let stop = CancellationToken::new();
    let _stop_on_return = stop.clone().drop_guard();
    let sizes: crate::metrics_listener::ReadSizes = {
        let edge = edge.clone();
        Arc::new(move || edge.sizes())
    };
    crate::metrics_listener::start(args.cluster.metrics_listen, stop.clone(), None, sizes).await?;
    let mut websockets = tokio::spawn(slip_edge::server::serve(edge.clone(), ws));
    tokio::select! {
        r = &mut websockets => r?.context("WebSocket listener failed")?,
        _ = crate::shutdown_signal() => {
            slip_edge::drain::drain(&edge, args.edge.drain_grace()).await;
        }
        _ = edge.drain_requested.notified() => {
            slip_edge::drain::drain(&edge, args.edge.drain_grace()).await;
        }
    }
    // The listener stops; what is left of the edge's tasks ends (bounded).
    let unfinished = edge.shutdown(crate::TASKS_GRACE).await;
    if unfinished > 0 {
        tracing::warn!(tasks = unfinished, "exiting with tasks still running");
    }
    // What the links hold goes out first (a session handed over just now).
    links.flush(LINK_CLOSE_GRACE).await;
    links.close();
    // Bounded: a peer that vanished must not hold up the exit.
    let _ = tokio::time::timeout(LINK_CLOSE_GRACE, links.closed()).await;
    Ok(())
}

pub async fn control(args: ControlArgs) -> anyhow::Result<()> {
    slip_proto::jwt::check_secret(args.jwt_secret.as_bytes()).context("SLIP_JWT_SECRET")?;
    let node = node(&args.cluster).await?;
    slip_metrics::set_role("control");
    let identity = identity(&args.cluster, args.cluster_ca_key.as_deref(), Role::Control, &node.id)?;
    // The control nodes the first cluster forms with: the peers listed
    // (this node's own address aside), and this one.
    let own = [Some(args.link_listen), advertised(&args, args.link_listen)];
    let mut others: Vec<SocketAddr> = node.peers.iter().filter(|p| !own.contains(&Some(**p))).copied().collect();
    others.sort();
    others.dedup();
    let bootstrap_expect = match (args.bootstrap_expect, node.dns.is_some()) {
        (Some(expect), _) => expect.max(1),
        (None, false) => others.len() + 1,
        (None, true) => {
            bail!("SLIP_BOOTSTRAP_EXPECT is required with dns: discovery (how many control nodes form the cluster)")
        }
    };
    let mut limits = args.streams.limits()?;
    limits.max_message_bytes = args.outbound.bytes()?;
    limits.resume_window = std::time::Duration::from_secs(args.resume_secs);
    let consensus = slip_control_plane::consensus::ConsensusConfig {
        node_id: node.id.clone(),
        link_addr: advertised(&args, args.link_listen).map(|a| a.to_string()).unwrap_or_default(),
        bootstrap_expect,
        data_dir: args.data_dir.clone(),
        // A node with others to find listens for a running cluster first.
        discovery_wait: if others.is_empty() && node.dns.is_none() {
            std::time::Duration::ZERO
        } else {
            slip_control_plane::consensus::DISCOVERY_WAIT
        },
    };
    let plane = ControlPlane::clustered(limits, consensus).context("SLIP_DATA_DIR: the consensus state")?;
    plane.set_region(&node.region);
    args.lifecycle.start(&plane, args.jwt_secret.as_bytes())?;
    let links = QuicNode::bind(
        args.link_listen,
        true,
        &identity,
        hello(&node, Role::Control, advertised(&args, args.link_listen)),
        Arc::new(ControlFrames(plane.clone())),
    )?;
    // Dial every control node listed or found; dialing ourselves is noticed and dropped.
    node.dial_peers(&links);
    let api =
        TcpListener::bind(args.control_listen).await.with_context(|| format!("binding {}", args.control_listen))?;
    println!("SLIP Sockets control node, node {}", node.id);
    println!("  Control API: http://{} (gRPC slip.v1.Control, SLIP v4 HTTP JSON, GRIP /publish/)", api.local_addr()?);
    println!("  Link:        {} (QUIC, UDP)", links.local_addr()?);
    let stop = CancellationToken::new();
    let _stop_on_return = stop.clone().drop_guard();
    // On SIGTERM: stop accepting, answer what is in flight, then close the links.
    let shutdown = CancellationToken::new();
    let ready: crate::metrics_listener::Readiness = {
        let (plane, shutdown) = (plane.clone(), shutdown.clone());
        Arc::new(move || if shutdown.is_cancelled() { Err("shutting down".into()) } else { plane.readiness() })
    };
    let sizes: crate::metrics_listener::ReadSizes = {
        let plane = plane.clone();
        Arc::new(move || plane.sizes())
    };
    crate::metrics_listener::start(args.cluster.metrics_listen, stop.clone(), Some(ready.clone()), sizes).await?;
    let auth = slip_control_plane::server::ControlAuth::new(args.jwt_secret.as_bytes(), args.max_token_secs);
    let signalled = shutdown.clone();
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        tracing::info!("shutting down: answering requests in flight");
        signalled.cancel();
    });
    let grip_auth = args.grip_publish_auth.into();
    let served = slip_control_plane::server::serve(plane.clone(), auth, grip_auth, api, shutdown, ready).await;
    plane.shutdown().await;
    // What the links hold goes out first (a session handed over just now).
    links.flush(LINK_CLOSE_GRACE).await;
    links.close();
    // Bounded: a peer that vanished must not hold up the exit.
    let _ = tokio::time::timeout(LINK_CLOSE_GRACE, links.closed()).await;
    served.context("control listener failed")
}
