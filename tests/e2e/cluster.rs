//! The cluster: `slip control` and `slip edge` processes on loopback, linked
//! over QUIC with the cluster CA, a real backend, real clients.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use slip_proto::callback::{CallbackRequest, Event};
use slip_proto::pb::{
    GetChannelRequest, GetConnectionRequest, PublishRequest, SendRequest, publish_request, send_request,
};
use tokio::process::Child;

use crate::support::*;

/// Subscribes each client to the channel named by its path; `pub:CH:TEXT`
/// publishes, `send:ID:TEXT` sends to another connection.
pub(crate) fn cluster_backend(request: &CallbackRequest) -> Reply {
    let mut out = Vec::new();
    for event in &request.events {
        match event {
            Event::Open { connection_id } => {
                let channel = request.metadata["path"].as_str().unwrap_or("/").trim_start_matches('/').to_owned();
                out.push(json!({"type": "ACCEPT", "connectionId": connection_id}));
                if !channel.is_empty() {
                    out.push(json!({"type": "SUBSCRIBE", "connectionId": connection_id, "channel": channel}));
                }
            }
            Event::Text { data, .. } => {
                let mut parts = data.splitn(3, ':');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("pub"), Some(channel), Some(text)) => {
                        out.push(json!({"type": "PUBLISH_TEXT", "channelId": channel, "data": text}))
                    }
                    (Some("send"), Some(id), Some(text)) => {
                        out.push(json!({"type": "TEXT", "connectionId": id, "data": text}))
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Reply::commands(out)
}

struct ControlNode {
    id: String,
    api_port: u16,
    link_port: u16,
    /// Where its `/metrics`, `/healthz` and `/readyz` answer.
    metrics: String,
    child: Option<Child>,
}

impl ControlNode {
    fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }
}

pub(crate) struct EdgeNode {
    pub(crate) ws: String,
    /// Its `/metrics` page.
    pub(crate) metrics: String,
    child: Option<Child>,
}

impl EdgeNode {
    /// Waits until the edge answers `/readyz` (linked, with the control
    /// plane's view): before, it refuses clients with 503.
    pub(crate) async fn wait_ready(&self) {
        wait_edge_ready(&self.ws).await;
    }
}

pub(crate) struct Cluster {
    ca: CaDir,
    backend: String,
    controls: Vec<ControlNode>,
    pub(crate) edges: Vec<EdgeNode>,
    control_flags: Vec<String>,
}

impl Cluster {
    pub(crate) async fn start(backend: &str, controls: usize, edges: usize) -> Self {
        Self::start_with(backend, controls, edges, &[]).await
    }

    /// A cluster whose control nodes take `control_flags` too.
    pub(crate) async fn start_with(backend: &str, controls: usize, edges: usize, control_flags: &[&str]) -> Self {
        let (api_ports, link_ports) = (free_ports(controls), free_ports(controls));
        let mut cluster = Self {
            ca: CaDir::new(),
            backend: backend.to_owned(),
            control_flags: control_flags.iter().map(|f| f.to_string()).collect(),
            controls: (0..controls)
                .map(|i| ControlNode {
                    metrics: String::new(),
                    id: format!("control-{i}"),
                    api_port: api_ports[i],
                    link_port: link_ports[i],
                    child: None,
                })
                .collect(),
            edges: Vec::new(),
        };
        for i in 0..controls {
            cluster.start_control(i).await;
        }
        for i in 0..edges {
            let edge = cluster.start_edge(&format!("edge-{i}"), &cluster.ca).await;
            cluster.edges.push(edge);
        }
        cluster.wait_linked().await;
        for i in 0..controls {
            cluster.wait_ready(i).await;
        }
        for edge in &cluster.edges {
            edge.wait_ready().await;
        }
        cluster
    }

    /// Waits until every control node links to every other node: until then
    /// an edge's ring may name an owner the control nodes' rings do not.
    async fn wait_linked(&self) {
        let expected = self.controls.len() + self.edges.len();
        let deadline = Instant::now() + PATIENCE * 2;
        for control in &self.controls {
            let channel = tonic::transport::Endpoint::from_shared(control.api()).unwrap().connect().await.unwrap();
            let mut admin =
                slip_proto::pb::admin_client::AdminClient::with_interceptor(channel, Auth::bearer(&control_token()));
            loop {
                let nodes = admin.nodes(slip_proto::pb::NodesRequest {}).await.map(|n| n.into_inner().nodes.len());
                if nodes.as_ref().is_ok_and(|n| *n >= expected) {
                    break;
                }
                assert!(Instant::now() < deadline, "{} never saw all {expected} nodes: {nodes:?}", control.id);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    fn peers(&self) -> String {
        self.controls.iter().map(|c| format!("127.0.0.1:{}", c.link_port)).collect::<Vec<_>>().join(",")
    }

    async fn start_control(&mut self, i: usize) {
        let peers = self.peers();
        let (cert, key) = (self.ca.cert(), self.ca.key());
        let node = &mut self.controls[i];
        let api = format!("127.0.0.1:{}", node.api_port);
        let link = format!("127.0.0.1:{}", node.link_port);
        let args = [
            "control",
            "--node-id",
            &node.id,
            "--control-listen",
            &api,
            "--link-listen",
            &link,
            "--peers",
            &peers,
            "--cluster-ca",
            &cert,
            "--cluster-ca-key",
            &key,
            "--jwt-secret",
            SECRET,
            "--metrics-listen",
            "127.0.0.1:0",
        ];
        let args: Vec<&str> = args.into_iter().chain(self.control_flags.iter().map(String::as_str)).collect();
        let (child, lines) = spawn_slip(&args, &["Control API:", "Link:", "Metrics:"]).await;
        node.metrics = lines[2].trim_end_matches("/metrics").to_owned();
        node.child = Some(child);
    }

    /// Waits until control node `i` answers `/readyz` with 200: a member of
    /// the agreed view, with its lease, caught up.
    pub(crate) async fn wait_ready(&self, i: usize) {
        let url = format!("{}/readyz", self.controls[i].metrics);
        let deadline = Instant::now() + PATIENCE * 3;
        loop {
            let answer = reqwest::get(&url).await;
            if answer.as_ref().is_ok_and(|a| a.status() == 200) {
                return;
            }
            let why = match answer {
                Ok(a) => a.text().await.unwrap_or_default(),
                Err(e) => e.to_string(),
            };
            assert!(Instant::now() < deadline, "control-{i} never became ready: {why}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn start_edge(&self, id: &str, ca: &CaDir) -> EdgeNode {
        self.start_edge_with_peers(id, ca, &self.peers()).await
    }

    async fn start_edge_with_peers(&self, id: &str, ca: &CaDir, peers: &str) -> EdgeNode {
        let (ca_cert, (cert, key)) = (ca.cert(), ca.leaf("edge"));
        let args = [
            "edge",
            "--node-id",
            id,
            "--listen",
            "127.0.0.1:0",
            "--peers",
            peers,
            "--cluster-ca",
            &ca_cert,
            "--cluster-cert",
            &cert,
            "--cluster-key",
            &key,
            "--target-url",
            &self.backend,
            "--jwt-secret",
            SECRET,
            "--metrics-listen",
            "127.0.0.1:0",
        ];
        let (child, lines) = spawn_slip(&args, &["WebSocket:", "Metrics:"]).await;
        EdgeNode { ws: lines[0].trim_end_matches('/').to_owned(), metrics: lines[1].clone(), child: Some(child) }
    }

    pub(crate) async fn kill_control(&mut self, i: usize) {
        if let Some(mut child) = self.controls[i].child.take() {
            child.kill().await.unwrap(); // SIGKILL: no goodbye on the links
        }
    }

    pub(crate) async fn kill_edge(&mut self, i: usize) {
        if let Some(mut child) = self.edges[i].child.take() {
            child.kill().await.unwrap();
        }
    }

    /// SIGTERM to edge `i`: it drains (its sessions parked, its plain
    /// connections closed with their CLOSEs) and exits; waits for the exit.
    pub(crate) async fn drain_edge(&mut self, i: usize) {
        if let Some(mut child) = self.edges[i].child.take() {
            let pid = child.id().unwrap().to_string();
            assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
            tokio::time::timeout(PATIENCE * 4, child.wait()).await.expect("the edge exited").unwrap();
        }
    }

    /// Control node `i`'s `/metrics` page.
    pub(crate) fn control_metrics(&self, i: usize) -> String {
        format!("{}/metrics", self.controls[i].metrics)
    }

    /// Control node `i`'s control API (gRPC and HTTP).
    pub(crate) fn control_api(&self, i: usize) -> String {
        self.controls[i].api()
    }

    pub(crate) async fn grpc(&self, i: usize) -> Grpc {
        grpc_to(&self.controls[i].api()).await
    }

    /// Waits until control node `via` names an owner of `channel` that `wanted` accepts.
    async fn wait_for_owner(&self, via: usize, channel: &str, wanted: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + PATIENCE * 2;
        loop {
            let mut grpc = self.grpc(via).await;
            let info = grpc.get_channel(GetChannelRequest { channel: channel.into() }).await.map(|i| i.into_inner());
            if info.as_ref().is_ok_and(|info| wanted(&info.owner)) {
                return;
            }
            assert!(Instant::now() < deadline, "control-{via} never named the owner wanted: {info:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until control node `via` links to `controls` control nodes, itself included.
    async fn wait_for_members(&self, via: usize, controls: usize) {
        let deadline = Instant::now() + PATIENCE * 2;
        loop {
            let channel =
                tonic::transport::Endpoint::from_shared(self.controls[via].api()).unwrap().connect().await.unwrap();
            let mut admin =
                slip_proto::pb::admin_client::AdminClient::with_interceptor(channel, Auth::bearer(&control_token()));
            let nodes = admin.nodes(slip_proto::pb::NodesRequest {}).await.map(|n| n.into_inner().nodes);
            let count = nodes.as_ref().map(|n| n.iter().filter(|n| n.role == "control").count());
            if count.as_ref().is_ok_and(|c| *c == controls) {
                return;
            }
            assert!(Instant::now() < deadline, "control-{via} never counted {controls} control nodes: {count:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the channel's owner, asked through control node `via`, counts `edges` interested edges.
    pub(crate) async fn wait_for_edges(&self, via: usize, channel: &str, edges: u32) -> slip_proto::pb::ChannelInfo {
        let deadline = Instant::now() + PATIENCE * 2;
        loop {
            let mut grpc = self.grpc(via).await;
            let last = grpc.get_channel(GetChannelRequest { channel: channel.into() }).await.map(|i| i.into_inner());
            if let Ok(info) = &last
                && info.edges == edges
            {
                return info.clone();
            }
            assert!(
                Instant::now() < deadline,
                "channel {channel} never had {edges} interested edges via control-{via}: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub(crate) fn publish(channel: &str, text: &str) -> PublishRequest {
    PublishRequest {
        channel: channel.into(),
        message: Some(publish_request::Message::Text(text.into())),
        ..Default::default()
    }
}

/// The connection id the backend saw opened on `edge`.
async fn opened_on(backend: &Backend, edge: &str) -> String {
    let prefix = format!("{edge}.");
    backend.wait_until("an OPEN on the edge", |seen| seen.iter().any(|r| r.connection_id.starts_with(&prefix))).await;
    backend.opened().into_iter().find(|id| id.starts_with(&prefix)).unwrap()
}

/// An edge that has not heard the control plane's view refuses upgrades
/// (503, connect again) rather than let in clients whose SUBSCRIBE and
/// publishes would have no owner to go to; it lets them in once it has.
#[tokio::test]
async fn an_edge_lets_clients_in_only_once_it_knows_the_view() {
    let backend = Backend::start(chat).await;
    let mut cluster = Cluster::start(&backend.url, 1, 0).await;
    // Its one control node is down: the edge starts with no view.
    cluster.kill_control(0).await;
    let edge = cluster.start_edge("edge-0", &cluster.ca).await;
    match tokio_tungstenite::connect_async(format!("{}/", edge.ws)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 503),
        other => panic!("expected a 503, got {:?}", other.map(|(_, r)| r.status())),
    }
    let metrics = reqwest::get(&edge.metrics).await.unwrap().text().await.unwrap();
    let refused = metrics.lines().find(|l| l.starts_with("slip_upgrades_refused_total") && l.contains("no_view"));
    assert!(refused.is_some_and(|l| l.ends_with(" 1")), "{refused:?}");
    // The control node back (same address): the edge hears the view and lets clients in.
    cluster.start_control(0).await;
    let deadline = Instant::now() + PATIENCE * 2;
    loop {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(format!("{}/", edge.ws)).await {
            let mut client = Client { ws };
            assert_eq!(client.text().await, "New connection has joined!", "its publish found the owner");
            break;
        }
        assert!(Instant::now() < deadline, "the edge never let a client in");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn publish_through_any_control_node_reaches_every_edge() {
    let backend = Backend::start(cluster_backend).await;
    let cluster = Cluster::start(&backend.url, 3, 2).await;
    let mut a = Client::connect_url(&format!("{}/room", cluster.edges[0].ws)).await;
    let mut b = Client::connect_url(&format!("{}/room", cluster.edges[1].ws)).await;
    cluster.wait_for_edges(0, "room", 2).await;

    for i in 0..3 {
        let text = format!("via control-{i}");
        cluster.grpc(i).await.publish(publish("room", &text)).await.unwrap();
        assert_eq!(a.text().await, text);
        assert_eq!(b.text().await, text);
    }

    // A PUBLISH_TEXT in a callback reply on edge 0 reaches edge 1.
    a.send("pub:room:from a").await;
    assert_eq!(a.text().await, "from a");
    assert_eq!(b.text().await, "from a");

    // Connection-addressed commands route by the edge inside the id.
    let b_id = opened_on(&backend, "edge-1").await;
    let send = SendRequest { connection_id: b_id.clone(), message: Some(send_request::Message::Text("direct".into())) };
    cluster.grpc(2).await.send(send).await.unwrap();
    assert_eq!(b.text().await, "direct");
    let info =
        cluster.grpc(0).await.get_connection(GetConnectionRequest { connection_id: b_id.clone() }).await.unwrap();
    assert_eq!(info.into_inner().edge, "edge-1");
    a.send(&format!("send:{b_id}:hi from edge 0")).await;
    assert_eq!(b.text().await, "hi from edge 0");
}

#[tokio::test]
async fn order_per_channel_and_channels_reach_only_their_own() {
    let backend = Backend::start(cluster_backend).await;
    let cluster = Cluster::start(&backend.url, 3, 2).await;
    let mut subscribers = Vec::new();
    for i in 0..4 {
        subscribers.push(Client::connect_url(&format!("{}/ordered", cluster.edges[i % 2].ws)).await);
    }
    let info = cluster.wait_for_edges(1, "ordered", 2).await;
    assert_eq!(info.subscribers, 4);
    // Through the owner: one link frame per interested edge, not per subscriber.
    let owner = cluster.controls.iter().position(|c| c.id == info.owner).unwrap();
    let mut grpc = cluster.grpc(owner).await;
    let reply = grpc.publish(publish("ordered", "first")).await.unwrap().into_inner();
    assert_eq!((reply.edges, reply.offset), (2, 1));
    for subscriber in &mut subscribers {
        assert_eq!(subscriber.text().await, "first");
    }
    for i in 0..1000 {
        grpc.publish(publish("ordered", &i.to_string())).await.unwrap();
    }
    let expected: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    for subscriber in &mut subscribers {
        assert_eq!(subscriber.texts(1000).await, expected);
    }

    // 100 channels spread over the ring, one subscriber each, alternating edges.
    let mut clients = Vec::new();
    for i in 0..100 {
        clients.push(Client::connect_url(&format!("{}/ch-{i}", cluster.edges[i % 2].ws)).await);
    }
    for i in 0..100 {
        cluster.wait_for_edges(i % 3, &format!("ch-{i}"), 1).await;
    }
    let owners: std::collections::HashSet<String> = {
        let mut owners = std::collections::HashSet::new();
        for i in 0..100 {
            let info =
                cluster.grpc(0).await.get_channel(GetChannelRequest { channel: format!("ch-{i}") }).await.unwrap();
            owners.insert(info.into_inner().owner);
        }
        owners
    };
    assert_eq!(owners.len(), 3, "100 channels should spread over all 3 control nodes");
    for i in 0..100 {
        cluster.grpc(i % 3).await.publish(publish(&format!("ch-{i}"), &format!("for ch-{i}"))).await.unwrap();
    }
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.text().await, format!("for ch-{i}"));
    }
    for client in clients.iter_mut().take(10) {
        client.silent_for(Duration::from_millis(100)).await;
    }
}

/// Publishes probes through control node `via` until both clients got one; returns how long it took.
async fn until_both_receive(cluster: &Cluster, via: usize, a: &mut Client, b: &mut Client) -> Duration {
    let started = Instant::now();
    let (mut a_got, mut b_got) = (false, false);
    let mut n = 0;
    while !(a_got && b_got) {
        assert!(started.elapsed() < PATIENCE * 3, "publishes never reached both edges again");
        let _ = cluster.grpc(via).await.publish(publish("room", &format!("probe {n}"))).await;
        n += 1;
        a_got |= receives_soon(a).await;
        b_got |= receives_soon(b).await;
    }
    started.elapsed()
}

async fn receives_soon(client: &mut Client) -> bool {
    use futures_util::StreamExt;
    let mut got = false;
    while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_millis(100), client.ws.next()).await {
        got |= message.is_text();
    }
    got
}

#[tokio::test]
async fn losing_a_control_node_costs_seconds_not_subscriptions() {
    let backend = Backend::start(cluster_backend).await;
    let mut cluster = Cluster::start(&backend.url, 3, 2).await;
    let mut a = Client::connect_url(&format!("{}/room", cluster.edges[0].ws)).await;
    let mut b = Client::connect_url(&format!("{}/room", cluster.edges[1].ws)).await;
    let info = cluster.wait_for_edges(0, "room", 2).await;
    let owner = cluster.controls.iter().position(|c| c.id == info.owner).unwrap();
    let survivor = (owner + 1) % 3;

    cluster.kill_control(owner).await;
    let recovered = until_both_receive(&cluster, survivor, &mut a, &mut b).await;
    println!("after kill -9 of the owner, publishes reached both edges again in {recovered:?}");
    let moved = cluster.wait_for_edges(survivor, "room", 2).await;
    assert_ne!(moved.owner, info.owner);

    cluster.start_control(owner).await;
    let started = Instant::now();
    loop {
        let now = cluster.wait_for_edges(survivor, "room", 2).await;
        if now.owner == info.owner {
            break;
        }
        assert!(started.elapsed() < PATIENCE * 2, "the restarted node never took its channel back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("the restarted owner took its channel back in {:?}", started.elapsed());
    let back = until_both_receive(&cluster, owner, &mut a, &mut b).await;
    println!("publishes through the restarted owner reached both edges in {back:?}");
}

#[tokio::test]
async fn a_dead_edge_loses_its_interest() {
    let backend = Backend::start(cluster_backend).await;
    let mut cluster = Cluster::start(&backend.url, 2, 2).await;
    let _a = Client::connect_url(&format!("{}/room", cluster.edges[0].ws)).await;
    let _b = Client::connect_url(&format!("{}/room", cluster.edges[1].ws)).await;
    cluster.wait_for_edges(0, "room", 2).await;
    cluster.kill_edge(1).await;
    cluster.wait_for_edges(1, "room", 1).await;
}

#[tokio::test]
async fn a_node_with_another_ca_cannot_link() {
    let backend = Backend::start(cluster_backend).await;
    let cluster = Cluster::start(&backend.url, 2, 1).await;
    let stranger_ca = CaDir::new();
    let stranger = cluster.start_edge("stranger", &stranger_ca).await;
    let mut member = Client::connect_url(&format!("{}/room", cluster.edges[0].ws)).await;
    cluster.wait_for_edges(0, "room", 1).await;
    cluster.grpc(0).await.publish(publish("room", "members only")).await.unwrap();
    assert_eq!(member.text().await, "members only");
    // Never linked, the stranger never has a view: it lets nobody in.
    match tokio_tungstenite::connect_async(format!("{}/room", stranger.ws)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 503),
        other => panic!("the stranger let a client in: {:?}", other.map(|(_, r)| r.status())),
    }
    let info = cluster.wait_for_edges(1, "room", 1).await;
    assert_eq!(info.subscribers, 1);
}

#[tokio::test]
async fn an_edge_told_of_one_control_node_finds_the_others() {
    let backend = Backend::start(cluster_backend).await;
    let cluster = Cluster::start(&backend.url, 3, 0).await;
    let first_only = format!("127.0.0.1:{}", cluster.controls[0].link_port);
    let edge = cluster.start_edge_with_peers("edge-0", &cluster.ca, &first_only).await;
    edge.wait_ready().await;
    // Channels owned by every control node, each with a subscriber on the edge.
    let mut clients = Vec::new();
    for i in 0..30 {
        clients.push(Client::connect_url(&format!("{}/ch-{i}", edge.ws)).await);
    }
    let mut owners = std::collections::HashSet::new();
    for i in 0..30 {
        owners.insert(cluster.wait_for_edges(i % 3, &format!("ch-{i}"), 1).await.owner);
    }
    assert_eq!(owners.len(), 3, "the edge announced interest to all three owners");
    for (i, client) in clients.iter_mut().enumerate() {
        cluster.grpc(i % 3).await.publish(publish(&format!("ch-{i}"), "found you")).await.unwrap();
        assert_eq!(client.text().await, "found you");
    }
}

/// Runs `slip admin` against a control node; returns (success, stdout, stderr).
pub(crate) async fn admin(api: &str, secret: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_slip"))
        .args(["admin", "--control", api, "--jwt-secret", secret])
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) async fn admin_json(api: &str, args: &[&str]) -> serde_json::Value {
    let (ok, out, err) = admin(api, SECRET, &[&["--json"], args].concat()).await;
    assert!(ok, "slip admin {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|_| panic!("not JSON: {out}"))
}

#[tokio::test]
async fn the_admin_cli_against_a_live_cluster() {
    let backend = Backend::start(cluster_backend).await;
    let mut cluster = Cluster::start(&backend.url, 2, 2).await;
    let mut a = Client::connect_url(&format!("{}/room", cluster.edges[0].ws)).await;
    let mut b = Client::connect_url(&format!("{}/room", cluster.edges[1].ws)).await;
    cluster.wait_for_edges(0, "room", 2).await;
    let api = cluster.controls[0].api();

    let nodes = admin_json(&api, &["nodes"]).await;
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 4, "{nodes:?}");
    let role = |r: &str| nodes.iter().filter(|n| n["role"] == r).count();
    assert_eq!((role("control"), role("edge")), (2, 2));
    assert!(nodes.iter().filter(|n| n["role"] == "edge").all(|n| n["connections"] == 1));
    let share: f64 = nodes.iter().map(|n| n["ring_share"].as_f64().unwrap()).sum();
    assert!((share - 1.0).abs() < 0.01, "ring shares add up to {share}");

    assert_eq!(
        admin_json(&api, &["stats"]).await,
        serde_json::json!({"connections": 2, "control_nodes": 2, "edges": 2})
    );
    let mut c = Client::connect_url(&format!("{}/lobby", cluster.edges[0].ws)).await;
    cluster.wait_for_edges(0, "lobby", 1).await;
    let top = admin_json(&api, &["channels"]).await;
    assert_eq!(top[0]["channel"], "room");
    assert_eq!((top[0]["subscribers"].as_u64(), top[0]["edges"].as_u64()), (Some(2), Some(2)));
    assert_eq!(top[1]["channel"], "lobby");
    c.send("pub:lobby:x").await;
    let room = admin_json(&api, &["channel", "room"]).await;
    assert_eq!((room["edges"].as_u64(), room["subscribers"].as_u64()), (Some(2), Some(2)));

    let b_id = opened_on(&backend, "edge-1").await;
    let connection = admin_json(&api, &["connection", &b_id]).await;
    assert_eq!(connection["edge"], "edge-1");
    assert_eq!(connection["channels"], serde_json::json!(["room"]));

    admin_json(&api, &["publish", "room", "from the admin"]).await;
    assert_eq!(a.text().await, "from the admin");
    assert_eq!(b.text().await, "from the admin");
    let (ok, table, _) = admin(&api, SECRET, &["send", &b_id, "just b"]).await;
    assert!(ok && table.contains("sent"), "{table}");
    assert_eq!(b.text().await, "just b");
    let (ok, table, _) = admin(&api, SECRET, &["nodes"]).await;
    assert!(ok && table.starts_with("NODE") && table.contains("edge-1"), "{table}");

    // Errors say what to do.
    let (ok, _, err) = admin(&api, "wrong secret", &["nodes"]).await;
    assert!(!ok && err.contains("SLIP_JWT_SECRET"), "{err}");
    let (ok, _, err) = admin("http://127.0.0.1:9", SECRET, &["nodes"]).await;
    assert!(!ok && err.contains("SLIP_CONTROL_URL"), "{err}");

    // Drain edge-1 remotely: its client gets 1012 and the process exits.
    let drained = admin_json(&api, &["drain", "edge-1"]).await;
    assert_eq!(drained["connections"], 1);
    assert_eq!(b.close_code().await, 1012);
    let edge = cluster.edges[1].child.as_mut().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), edge.wait()).await.expect("edge-1 exited").unwrap();
    assert!(status.success());
}

/// SUBSCRIBE then PUBLISH_TEXT in one control request: the publish reaches
/// the new subscriber, every time, whichever control node is asked and
/// whichever owns the channel (the confirmation travels behind the interest).
#[tokio::test]
async fn a_publish_never_overtakes_the_subscribe_before_it() {
    let backend = Backend::start(cluster_backend).await;
    let cluster = Cluster::start(&backend.url, 3, 1).await;
    let mut client = Client::connect_url(&format!("{}/", cluster.edges[0].ws)).await;
    let id = nth_open(&backend, 0).await;
    let http = reqwest::Client::new();
    let post = |via: usize, body: serde_json::Value| {
        let request = http.post(format!("{}/", cluster.controls[via].api())).bearer_auth(control_token()).json(&body);
        async move { request.send().await.unwrap() }
    };
    // Until the whole ring is linked and agreed, a subscription may go to an
    // owner that is not the one publishes go to: warm up until each control
    // node's publish arrives.
    for via in 0..3 {
        let channel = format!("warm-{via}");
        let subscribe = json!({"events": [{"type": "SUBSCRIBE", "connectionId": id, "channel": channel}]});
        post(via, subscribe).await;
        let publish = json!({"events": [{"type": "PUBLISH_TEXT", "channelId": channel, "data": channel}]});
        let deadline = Instant::now() + PATIENCE;
        loop {
            post(via, publish.clone()).await;
            if let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_millis(200), client.ws.next()).await {
                break;
            }
            assert!(Instant::now() < deadline, "control-{via} never reached the edge");
        }
    }
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_millis(300), client.ws.next()).await {}

    let rounds = 150;
    for i in 0..rounds {
        let channel = format!("fresh-{i}");
        let body = json!({"events": [
            {"type": "SUBSCRIBE", "connectionId": id, "channel": channel},
            {"type": "PUBLISH_TEXT", "channelId": channel, "data": format!("m-{i}")},
        ]});
        let response = post(i % 3, body).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    // A 200 means the publish is on its way, not delivered: wait for all of
    // them, or for a silence that says the rest are lost.
    let mut got = Vec::new();
    while got.len() < rounds {
        match tokio::time::timeout(PATIENCE, client.ws.next()).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text)))) => {
                // A late copy of the warm-up's is not what this test counts.
                if !text.starts_with("warm-") {
                    got.push(text.to_string());
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    let want: Vec<String> = (0..rounds).map(|i| format!("m-{i}")).collect();
    let lost: Vec<&String> = want.iter().filter(|m| !got.contains(m)).collect();
    assert!(lost.is_empty(), "{} of {rounds} publishes overtook their subscribe: {lost:?}", lost.len());
    // Each exactly once; channels are independent streams, so no order across them.
    got.sort_by_key(|m| m[2..].parse::<usize>().unwrap_or(usize::MAX));
    assert_eq!(got, want, "each exactly once");
}

/// SIGTERM to a control node: it stops accepting, answers the request in
/// flight, closes its links and exits.
#[tokio::test]
async fn a_control_node_answers_requests_in_flight_on_sigterm() {
    let backend = Backend::start(cluster_backend).await;
    let mut cluster = Cluster::start(&backend.url, 1, 1).await;
    let _client = Client::connect_url(&format!("{}/room", cluster.edges[0].ws)).await;
    cluster.wait_for_edges(0, "room", 1).await;
    let api = cluster.controls[0].api();
    // A request that takes a while: wait 3 s for a connection that never comes.
    let body = json!({"events": [
        {"type": "POLL_FOR_CONNECTION", "connectionId": "edge-0.00000000000000000000", "timeout": 3000},
    ]});
    let request = reqwest::Client::new().post(format!("{api}/")).bearer_auth(control_token()).json(&body).send();
    let in_flight = tokio::spawn(request);
    // Time for the request to get in (nothing outside the node says it
    // has): far more than a loopback request takes, and the poll lasts 3 s.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let child = cluster.controls[0].child.as_mut().unwrap();
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());

    // No new client gets in...
    let addr = api.trim_start_matches("http://");
    let deadline = Instant::now() + PATIENCE;
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "the listener never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...the one in flight gets its answer...
    let response = in_flight.await.unwrap().expect("answered, not cut off");
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    // ...and the node exits.
    let exited = tokio::time::timeout(PATIENCE, child.wait()).await.expect("exits after answering").unwrap();
    assert!(exited.success(), "{exited}");
}

/// A reply's PUBLISH_TEXT goes to the channel's owner (another process) and
/// back before the reply's next command runs: the chat's newcomer hears its
/// own announcement before its welcome, over QUIC too.
#[tokio::test]
async fn a_reply_publish_comes_back_before_the_next_command() {
    let backend = Backend::start(chat).await;
    let cluster = Cluster::start(&backend.url, 3, 1).await;
    // Kept open: a client leaving would announce it to the next one.
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut client = Client::connect_url(&format!("{}/", cluster.edges[0].ws)).await;
        assert_eq!(
            client.texts(2).await,
            ["New connection has joined!", "Welcome to the cool channel, be nice or get out"]
        );
        clients.push(client);
    }
}

#[tokio::test]
async fn publishes_through_any_control_node_share_one_stream_and_its_history() {
    let backend = Backend::start(cluster_backend).await;
    let cluster = Cluster::start(&backend.url, 2, 1).await;
    let (mut offsets, mut epochs) = (Vec::new(), Vec::new());
    for i in 0..6 {
        // Alternately through the owner and the other node: the other forwards
        // it and answers only once the owner has said where it went.
        let mut grpc = cluster.grpc(i % 2).await;
        let reply = grpc.publish(publish("ledger", &format!("m{i}"))).await.unwrap().into_inner();
        offsets.push(reply.offset);
        epochs.push(reply.epoch);
    }
    assert_eq!(offsets, [1, 2, 3, 4, 5, 6]);
    assert!(!epochs[0].is_empty() && epochs.iter().all(|e| *e == epochs[0]), "{epochs:?}");
    for via in 0..2 {
        let request = slip_proto::pb::HistoryRequest { channel: "ledger".into(), ..Default::default() };
        let history = cluster.grpc(via).await.history(request).await.unwrap().into_inner();
        assert!(history.complete);
        assert_eq!((history.epoch.as_str(), history.top_offset), (epochs[0].as_str(), 6));
        let got: Vec<(u64, String)> = history
            .publications
            .into_iter()
            .map(|p| match p.message {
                Some(slip_proto::pb::publication::Message::Text(t)) => (p.offset, t),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, (0..6).map(|i| (i + 1, format!("m{i}"))).collect::<Vec<_>>(), "via control-{via}");
    }
}

/// The SDK's publish retries an unavailable control plane with one
/// idempotency key: with the channel's owner killed, a publish through
/// another node fails until the others agree the dead one is gone, and then
/// goes in, once, into the same stream (its replica held the copy).
#[tokio::test]
async fn the_sdk_gets_a_publish_in_once_across_the_death_of_its_owner() {
    let backend = Backend::start(cluster_backend).await;
    let mut cluster = Cluster::start(&backend.url, 3, 1).await;
    let mut client = Client::connect_url(&format!("{}/room", cluster.edges[0].ws)).await;
    let info = cluster.wait_for_edges(0, "room", 1).await;
    let owner = cluster.controls.iter().position(|c| c.id == info.owner).unwrap();
    let survivor = (owner + 1) % 3;
    let sdk = slip_sockets::GrpcControl::connect(cluster.controls[survivor].api(), SECRET.as_bytes()).await.unwrap();
    let before = sdk.publish("room", slip_sockets::Payload::Text("before".into()), None).await.unwrap();
    assert_eq!(client.text().await, "before");

    cluster.kill_control(owner).await;
    // Forwarded to a dead owner, it is not confirmed; the SDK tries again with
    // the same key until the survivor owns the channel itself.
    let after = sdk.publish("room", slip_sockets::Payload::Text("after".into()), None).await.unwrap();
    assert_eq!((after.epoch.as_str(), after.offset), (before.epoch.as_str(), before.offset + 1), "the stream went on");
    let mut texts = Vec::new();
    while let Ok(text) = tokio::time::timeout(Duration::from_secs(2), client.text()).await {
        texts.push(text);
    }
    assert_eq!(texts, ["after"], "delivered once");
    let request = slip_proto::pb::HistoryRequest { channel: "room".into(), ..Default::default() };
    let history = cluster.grpc(survivor).await.history(request).await.unwrap().into_inner();
    let offsets: Vec<u64> = history.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [before.offset, after.offset], "both in the stream, once each: {history:?}");
    assert!(history.complete);
}

/// The TypeScript library (js/slip-sockets) publishes once through a failover.
#[tokio::test]
async fn the_typescript_publisher_gets_each_publish_in_once_across_the_death_of_its_owner() {
    a_library_publishes_once_across_the_death_of_its_owner("node", "publish.mjs").await;
}

/// The Python library (py/) publishes once through a failover.
#[tokio::test]
async fn the_python_publisher_gets_each_publish_in_once_across_the_death_of_its_owner() {
    a_library_publishes_once_across_the_death_of_its_owner("python3", "publish.py").await;
}

/// A backend's publisher in another language (`tests/e2e/publishers/SCRIPT`,
/// given every control node's HTTP API) publishes numbered messages, each
/// with its own key, while the channel's owner is killed (SIGKILL) after the
/// first few; then sends every key again, as after a lost answer. Every
/// publish is confirmed with its epoch and offset, the offsets are
/// consecutive in one epoch, a key sent again reports its first offset, and
/// each subscriber (one per edge) gets every message once, in order.
async fn a_library_publishes_once_across_the_death_of_its_owner(program: &str, script: &str) {
    use std::collections::{BTreeMap, HashSet};
    use tokio::io::{AsyncBufReadExt, BufReader};
    const COUNT: u64 = 60;
    const KILL_AFTER: u64 = 10;

    let backend = Backend::start(cluster_backend).await;
    let mut cluster = Cluster::start(&backend.url, 3, 2).await;
    let channel = format!("lib-{}", script.replace('.', "-"));
    let mut clients = Vec::new();
    for edge in 0..2 {
        clients.push(Client::connect_url(&format!("{}/{channel}", cluster.edges[edge].ws)).await);
    }
    let info = cluster.wait_for_edges(0, &channel, 2).await;
    let owner = cluster.controls.iter().position(|c| c.id == info.owner).unwrap();
    let apis = cluster.controls.iter().map(ControlNode::api).collect::<Vec<_>>().join(",");
    let path = format!("{}/tests/e2e/publishers/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = tokio::process::Command::new(program)
        .args([path.as_str(), &apis, SECRET, &channel, &COUNT.to_string()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{program} runs {script}: {e}"));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut first, mut again, mut history) = (BTreeMap::new(), BTreeMap::new(), serde_json::Value::Null);
    loop {
        let line = tokio::time::timeout(PATIENCE * 6, lines.next_line()).await;
        let line = line.expect("the publisher went quiet").unwrap().expect("the publisher exited before it was done");
        let record: serde_json::Value = serde_json::from_str(&line).unwrap();
        if record["done"] == true {
            break;
        }
        if !record["history"].is_null() {
            history = record["history"].clone();
            continue;
        }
        assert!(record["error"].is_null(), "{script}: a publish was not confirmed: {record}");
        let i = record["i"].as_u64().unwrap();
        let placed = (record["epoch"].as_str().unwrap().to_owned(), record["offset"].as_u64().unwrap());
        if record["again"] == true {
            again.insert(i, placed);
        } else {
            first.insert(i, placed);
            if i + 1 == KILL_AFTER {
                cluster.kill_control(owner).await;
            }
        }
    }
    assert_eq!(first.len() as u64, COUNT, "{script}");
    let epochs: HashSet<&String> = first.values().map(|(epoch, _)| epoch).collect();
    assert_eq!(epochs.len(), 1, "{script}: one stream across the failover: {first:?}");
    let base = first[&0].1;
    assert!(base >= 1);
    for (i, (_, offset)) in &first {
        assert_eq!(*offset, base + i, "{script}: consecutive offsets, none taken twice: {first:?}");
    }
    assert_eq!(again, first, "{script}: a key sent again reports where its first publish went in");
    // The library's history read: every message once, at the offset its publish reported.
    let held: Vec<(u64, String)> = serde_json::from_value(history["publications"].clone()).unwrap();
    let published: Vec<(u64, String)> = first.iter().map(|(i, (_, offset))| (*offset, format!("m{i}"))).collect();
    assert_eq!(held, published, "{script}: history");
    assert_eq!((&history["epoch"], &history["complete"]), (&serde_json::json!(first[&0].0), &serde_json::json!(true)));
    let expected: Vec<String> = (0..COUNT).map(|i| format!("m{i}")).collect();
    for (edge, client) in clients.iter_mut().enumerate() {
        let mut texts = Vec::new();
        while let Ok(text) = tokio::time::timeout(Duration::from_secs(3), client.text()).await {
            texts.push(text);
        }
        assert_eq!(texts, expected, "{script}: the subscriber on edge-{edge} got each message once, in order");
    }
}

/// What a run of [`confirmed_publishes_survive`] kills, mid-run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// The channel's owner, with SIGKILL.
    Owner,
    /// The node holding the owner's copy.
    Replica,
    /// The owner; then, once it has been started again, has caught up and
    /// owns the channel again, the same node once more.
    OwnerAfterItCameBack,
}

/// The streams guarantee (docs/streams.md) under a crash: a publisher sends numbered messages
/// every 10 ms with idempotency keys (the SDK retrying each until it is
/// confirmed), through a node that is killed by none of the faults, while
/// `fault` kills a holder of the stream. Every confirmed message reaches every
/// subscriber, on both edges, exactly once and in order, and History
/// afterwards returns them all, with consecutive offsets in one epoch.
async fn confirmed_publishes_survive(fault: Fault) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let backend = Backend::start(cluster_backend).await;
    // History holds every message of the run.
    let mut cluster = Cluster::start_with(&backend.url, 3, 2, &["--history-size", "5000"]).await;
    let mut clients = Vec::new();
    for edge in 0..2 {
        for _ in 0..2 {
            clients.push(Client::connect_url(&format!("{}/ledger", cluster.edges[edge].ws)).await);
        }
    }
    let info = cluster.wait_for_edges(0, "ledger", 2).await;
    let index = |id: &str| cluster.controls.iter().position(|c| c.id == id).unwrap();
    let ring =
        slip_proto::ring::Ring::new(cluster.controls.iter().map(|c| slip_proto::ids::NodeId::parse(&c.id).unwrap()));
    let owner = index(&info.owner);
    let replica = index(ring.successors("ledger", 1)[0].as_str());
    let entry = (0..3).find(|i| *i != owner && *i != replica).unwrap();
    let sdk = slip_sockets::GrpcControl::connect(cluster.controls[entry].api(), SECRET.as_bytes()).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let publisher = tokio::spawn(async move {
        let mut confirmed = Vec::new();
        while !stopped.load(Ordering::Relaxed) {
            let i = confirmed.len();
            let placed = sdk.publish("ledger", slip_sockets::Payload::Text(format!("m{i}")), None).await;
            confirmed.push(placed.map_err(|e| e.to_string()));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        confirmed
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    match fault {
        Fault::Owner => {
            cluster.kill_control(owner).await;
            cluster.wait_for_owner(entry, "ledger", |o| o != info.owner).await;
        }
        Fault::Replica => {
            cluster.kill_control(replica).await;
            cluster.wait_for_members(entry, 2).await;
        }
        Fault::OwnerAfterItCameBack => {
            cluster.kill_control(owner).await;
            cluster.wait_for_owner(entry, "ledger", |o| o != info.owner).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            cluster.start_control(owner).await;
            cluster.wait_for_owner(entry, "ledger", |o| o == info.owner).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            cluster.kill_control(owner).await;
            cluster.wait_for_owner(entry, "ledger", |o| o != info.owner).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let confirmed = publisher.await.unwrap();
    let sent = confirmed.len();
    let failed: Vec<_> = confirmed.iter().enumerate().filter(|(_, r)| r.is_err()).collect();
    assert!(failed.is_empty(), "{fault:?}: the SDK's retries got every publish in: {failed:?}");
    let places: Vec<(u64, String)> = confirmed.into_iter().map(Result::unwrap).map(|p| (p.offset, p.epoch)).collect();
    let epoch = places[0].1.clone();
    assert!(places.iter().all(|(_, e)| *e == epoch), "{fault:?}: one epoch across the failover");
    let offsets: Vec<u64> = places.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (1..=sent as u64).collect::<Vec<_>>(), "{fault:?}: consecutive offsets");

    let expected: Vec<String> = (0..sent).map(|i| format!("m{i}")).collect();
    for (n, client) in clients.iter_mut().enumerate() {
        let mut got = Vec::new();
        while got.len() < sent {
            match client.next_text(PATIENCE).await {
                Some(text) => got.push(text),
                None => break,
            }
        }
        let lost: Vec<_> = expected.iter().filter(|m| !got.contains(m)).collect();
        let doubled = got.len() - got.iter().collect::<std::collections::HashSet<_>>().len();
        let number = |m: &String| m[1..].parse::<usize>().unwrap_or(usize::MAX);
        let reordered = got.windows(2).filter(|w| number(&w[1]) < number(&w[0])).count();
        println!(
            "{fault:?}, client {n}: {sent} confirmed, {} received, {} lost, {doubled} doubled, {reordered} out of order",
            got.len(),
            lost.len()
        );
        assert_eq!(got, expected, "{fault:?}, client {n}: lost {lost:?}, doubled {doubled}");
    }
    let request = slip_proto::pb::HistoryRequest { channel: "ledger".into(), limit: 5000, ..Default::default() };
    let history = cluster.grpc(entry).await.history(request).await.unwrap().into_inner();
    assert_eq!(history.epoch, epoch);
    let held: Vec<u64> = history.publications.iter().map(|p| p.offset).collect();
    assert_eq!(held, offsets, "{fault:?}: History holds every one");
    assert!(history.complete);
}

#[tokio::test]
async fn every_confirmed_publish_survives_the_death_of_its_owner_exactly_once_in_order() {
    confirmed_publishes_survive(Fault::Owner).await;
}

#[tokio::test]
async fn every_confirmed_publish_survives_the_death_of_its_replica_exactly_once_in_order() {
    confirmed_publishes_survive(Fault::Replica).await;
}

#[tokio::test]
async fn every_confirmed_publish_survives_an_owner_that_came_back_and_died_again() {
    confirmed_publishes_survive(Fault::OwnerAfterItCameBack).await;
}

/// Every copy of the stream is lost: with copies on, that takes a majority
/// of the control nodes (every majority holds one), so here replication is
/// off and the owner dies. The next owner starts a new epoch, and History
/// says the old one is gone.
#[tokio::test]
async fn losing_every_copy_of_a_stream_starts_a_new_epoch_and_says_so() {
    let backend = Backend::start(cluster_backend).await;
    let mut cluster = Cluster::start_with(&backend.url, 3, 1, &["--stream-replicas", "0"]).await;
    let mut grpc = cluster.grpc(0).await;
    let mut last = None;
    for i in 0..5 {
        last = Some(grpc.publish(publish("ledger", &format!("m{i}"))).await.unwrap().into_inner());
    }
    let first = last.unwrap();
    let index = |cluster: &Cluster, id: &str| cluster.controls.iter().position(|c| c.id == id).unwrap();
    let info = cluster.grpc(0).await.get_channel(GetChannelRequest { channel: "ledger".into() }).await.unwrap();
    let owner = index(&cluster, &info.into_inner().owner);
    let dead_owner = cluster.controls[owner].id.clone();
    cluster.kill_control(owner).await;
    let survivor = (0..3).find(|i| *i != owner).unwrap();
    // Asked through a survivor until the others agreed the owner is gone.
    let deadline = Instant::now() + PATIENCE * 3;
    let taken = loop {
        let mut grpc = grpc_to(&cluster.controls[survivor].api()).await;
        let info = grpc.get_channel(GetChannelRequest { channel: "ledger".into() }).await;
        if let Ok(info) = info.map(|i| i.into_inner())
            && info.owner != dead_owner
        {
            break info;
        }
        assert!(Instant::now() < deadline, "the ring never dropped {dead_owner}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut grpc = cluster.grpc(index(&cluster, &taken.owner)).await;
    let fresh = grpc.publish(publish("ledger", "after")).await.unwrap().into_inner();
    assert_ne!(fresh.epoch, first.epoch, "a new epoch: continuity was lost");
    assert_eq!(fresh.offset, 1);
    let since = slip_proto::pb::HistoryRequest {
        channel: "ledger".into(),
        since_epoch: first.epoch.clone(),
        since_offset: 5,
        limit: 0,
    };
    let history = grpc.history(since).await.unwrap().into_inner();
    assert!(!history.complete, "offsets of the lost epoch mean nothing now");
    assert_eq!(history.epoch, fresh.epoch);
}

/// A `slip.v1` session whose client drops on one edge and comes back on the
/// other: the new edge takes the session over from the old one through the
/// control plane (subscriptions, metadata, the message sent meanwhile), the
/// client gets what it missed once each, in order, then live ones, and
/// commands to its connection id now reach it there. The backend saw one
/// OPEN and no CLOSE.
#[tokio::test]
async fn a_session_resumes_on_another_edge_and_its_commands_follow_it() {
    use crate::sessions::{json_frame, session_client};

    let backend = Backend::start(cluster_backend).await;
    let cluster = Cluster::start(&backend.url, 1, 2).await;
    let (mut client, _) = session_client(&format!("{}/room", cluster.edges[0].ws)).await;
    let first = json_frame(&mut client).await;
    let (token, id) =
        (first["session"].as_str().unwrap().to_owned(), first["connectionId"].as_str().unwrap().to_owned());
    cluster.wait_for_edges(0, "room", 1).await;
    let mut grpc = cluster.grpc(0).await;
    let mut epoch = String::new();
    for i in 1..=2 {
        grpc.publish(publish("room", &format!("p{i}"))).await.unwrap();
        let got = json_frame(&mut client).await;
        epoch = got["epoch"].as_str().unwrap().to_owned();
    }
    drop(client);
    wait_for_gauge(&cluster.edges[0].metrics, "slip_session_deadlines", 1.0).await;
    grpc.publish(publish("room", "p3")).await.unwrap();
    let away = SendRequest { connection_id: id.clone(), message: Some(send_request::Message::Text("away".into())) };
    grpc.send(away).await.unwrap();

    let url = format!("{}/room?slip_resume={token}", cluster.edges[1].ws);
    let (mut back, _) = session_client(&url).await;
    back.send(&json!({"type": "resume", "seq": 0, "channels": {"room": {"epoch": epoch, "offset": 2}}}).to_string())
        .await;
    let session = json_frame(&mut back).await;
    assert_eq!(
        (&session["connectionId"], &session["resumed"], &session["recovered"]),
        (&json!(id), &json!(true), &json!(true)),
        "{session}"
    );
    assert_eq!(json_frame(&mut back).await["data"], "p3");
    assert_eq!(json_frame(&mut back).await, json!({"type": "message", "seq": 1, "data": "away"}));
    grpc.publish(publish("room", "p4")).await.unwrap();
    assert_eq!(json_frame(&mut back).await["offset"], 4, "live, through the new edge");
    let after = SendRequest { connection_id: id.clone(), message: Some(send_request::Message::Text("after".into())) };
    grpc.send(after).await.unwrap();
    assert_eq!(json_frame(&mut back).await, json!({"type": "message", "seq": 2, "data": "after"}));
    let state = grpc.get_connection(GetConnectionRequest { connection_id: id.clone() }).await.unwrap().into_inner();
    assert_eq!(state.edge, "edge-1");
    let events = backend.events_of(&id);
    let opens = events.iter().filter(|e| matches!(e, Event::Open { .. })).count();
    let closes = events.iter().filter(|e| matches!(e, Event::Close { .. })).count();
    assert_eq!((opens, closes), (1, 0));
}

/// The edge holding a session is killed (`kill -9`) while its client is
/// away; the client resumes on the other edge. The session goes on from the
/// record its control node kept (its subscription, same connection id, no
/// OPEN): the publications it missed come from history, and `recovered` is
/// false with `lost` naming the direct messages that died with the edge.
#[tokio::test]
async fn a_session_whose_edge_died_resumes_elsewhere_from_history() {
    use crate::sessions::{json_frame, session_client};

    let backend = Backend::start(cluster_backend).await;
    let mut cluster = Cluster::start(&backend.url, 1, 2).await;
    let (mut client, _) = session_client(&format!("{}/room", cluster.edges[0].ws)).await;
    let first = json_frame(&mut client).await;
    let (token, id) =
        (first["session"].as_str().unwrap().to_owned(), first["connectionId"].as_str().unwrap().to_owned());
    cluster.wait_for_edges(0, "room", 1).await;
    let mut grpc = cluster.grpc(0).await;
    grpc.publish(publish("room", "p1")).await.unwrap();
    let p1 = json_frame(&mut client).await;
    let epoch = p1["epoch"].as_str().unwrap().to_owned();
    drop(client);
    cluster.kill_edge(0).await;
    cluster.wait_for_edges(0, "room", 0).await;
    for i in 2..=3 {
        grpc.publish(publish("room", &format!("p{i}"))).await.unwrap();
    }

    let url = format!("{}/room?slip_resume={token}", cluster.edges[1].ws);
    let (mut back, _) = session_client(&url).await;
    back.send(&json!({"type": "resume", "seq": 0, "channels": {"room": {"epoch": epoch, "offset": 1}}}).to_string())
        .await;
    let session = json_frame(&mut back).await;
    assert_eq!(
        (&session["connectionId"], &session["resumed"], &session["recovered"], &session["lost"]),
        (&json!(id), &json!(true), &json!(false), &json!(["#messages"])),
        "{session}"
    );
    assert_eq!(json_frame(&mut back).await["data"], "p2");
    assert_eq!(json_frame(&mut back).await["data"], "p3");
    grpc.publish(publish("room", "p4")).await.unwrap();
    assert_eq!(json_frame(&mut back).await["offset"], 4, "then live");
    let send = SendRequest { connection_id: id.clone(), message: Some(send_request::Message::Text("here".into())) };
    grpc.send(send).await.unwrap();
    assert_eq!(json_frame(&mut back).await, json!({"type": "message", "seq": 1, "data": "here"}));
    let opens = backend.events_of(&id).iter().filter(|e| matches!(e, Event::Open { .. })).count();
    assert_eq!(opens, 1);
}

/// A deploy: the edge holding a session gets SIGTERM while publications go
/// on. It parks the session and closes with 1012; the client comes back on
/// the other edge, which takes the session over from the draining one:
/// every publication reaches it once, in order, `recovered` is true, and
/// the backend saw one OPEN and no CLOSE.
#[tokio::test]
async fn a_drained_edge_hands_its_sessions_to_the_edge_their_clients_come_back_to() {
    use crate::sessions::{json_frame, session_client};

    let backend = Backend::start(cluster_backend).await;
    let cluster = Cluster::start(&backend.url, 1, 2).await;
    let (mut client, _) = session_client(&format!("{}/room", cluster.edges[0].ws)).await;
    let first = json_frame(&mut client).await;
    let (mut token, id) =
        (first["session"].as_str().unwrap().to_owned(), first["connectionId"].as_str().unwrap().to_owned());
    cluster.wait_for_edges(0, "room", 1).await;

    // A publisher, steady, through the control node.
    let mut grpc = cluster.grpc(0).await;
    let publisher = tokio::spawn(async move {
        for i in 1..=60 {
            grpc.publish(publish("room", &format!("p{i}"))).await.unwrap();
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    let mut got: Vec<u64> = Vec::new();
    let mut epoch = String::new();
    while got.len() < 10 {
        let frame = json_frame(&mut client).await;
        epoch = frame["epoch"].as_str().unwrap().to_owned();
        got.push(frame["offset"].as_u64().unwrap());
    }
    let pid = cluster.edges[0].child.as_ref().unwrap().id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // Read until the edge closes us (1012), then come back on the other edge.
    loop {
        match client.ws.next().await {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                got.push(frame["offset"].as_u64().unwrap());
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(close))) => {
                assert_eq!(close.map(|c| u16::from(c.code)), Some(1012));
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
    let last = *got.last().unwrap();
    let url = format!("{}/room?slip_resume={token}", cluster.edges[1].ws);
    let (mut back, _) = session_client(&url).await;
    back.send(&json!({"type": "resume", "seq": 0, "channels": {"room": {"epoch": epoch, "offset": last}}}).to_string())
        .await;
    let session = json_frame(&mut back).await;
    assert_eq!(
        (&session["connectionId"], &session["resumed"], &session["recovered"]),
        (&json!(id), &json!(true), &json!(true)),
        "{session}"
    );
    token = session["session"].as_str().unwrap().to_owned();
    assert!(!token.is_empty());
    while got.len() < 60 {
        got.push(json_frame(&mut back).await["offset"].as_u64().unwrap());
    }
    publisher.await.unwrap();
    assert_eq!(got, (1..=60).collect::<Vec<u64>>(), "each once, in order, across the drain");
    let events = backend.events_of(&id);
    let opens = events.iter().filter(|e| matches!(e, Event::Open { .. })).count();
    let closes = events.iter().filter(|e| matches!(e, Event::Close { .. })).count();
    assert_eq!((opens, closes), (1, 0));
}

/// What a browser tab on `@slip-sockets/client` is put through.
#[derive(Debug, Clone, Copy, PartialEq)]
enum EdgeFault {
    /// SIGTERM: the edge drains.
    Drain,
    /// SIGKILL.
    Kill,
}

/// A page on `@slip-sockets/client` in headless Chromium, subscribed through
/// edge 0 of a cluster (one control node, two edges) while publications go
/// on steadily; edge 0 is drained or killed, and the page comes back through
/// edge 1 by itself. Every publication reaches it once, in order; after a
/// drain `recovered` is true; after a kill it is told what could not be
/// recovered (the messages kept on the dead edge).
async fn a_browser_session_survives(fault: EdgeFault) {
    use fantoccini::Locator;

    const PUBLICATIONS: u64 = 80;
    let backend = Backend::start(cluster_backend).await;
    let mut cluster = Cluster::start(&backend.url, 1, 2).await;
    let library = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/js/client/dist/slip-client.js"))
        .expect("build js/client first (scripts/test.sh does)");
    let urls = json!([format!("{}/room", cluster.edges[0].ws), format!("{}/room", cluster.edges[1].ws)]);
    let page = format!(
        r#"<!doctype html><meta charset="utf-8"><pre id="got"></pre><pre id="sessions"></pre>
<script type="module">
{library}
const got = [], sessions = [];
const client = new SlipClient({urls}, {{ minDelayMs: 100, maxDelayMs: 1000 }});
client.on("publication", (p) => {{ got.push(p.offset); document.getElementById("got").textContent = got.join(","); }});
client.on("session", (s) => {{ sessions.push(s); document.getElementById("sessions").textContent = JSON.stringify(sessions); }});
</script>"#
    );
    let site = axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(page) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site_url = format!("http://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, site).await.unwrap() });

    let (_driver, driver) = crate::browser::chromedriver().await;
    let profile = std::env::temp_dir().join(format!("slip-session-{}-{fault:?}", std::process::id()));
    let tab = crate::browser::browser(&driver, &profile).await;
    tab.goto(&site_url).await.unwrap();
    let read = |id: &'static str| {
        let tab = tab.clone();
        async move { tab.find(Locator::Id(id)).await.unwrap().text().await.unwrap() }
    };
    let offsets = |text: String| -> Vec<u64> { text.split(',').filter_map(|o| o.parse().ok()).collect() };
    cluster.wait_for_edges(0, "room", 1).await;

    let mut grpc = cluster.grpc(0).await;
    let publisher = tokio::spawn(async move {
        for i in 1..=PUBLICATIONS {
            grpc.publish(publish("room", &format!("p{i}"))).await.unwrap();
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    let deadline = Instant::now() + PATIENCE;
    while offsets(read("got").await).len() < 10 {
        assert!(Instant::now() < deadline, "the page got nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match fault {
        EdgeFault::Drain => {
            let pid = cluster.edges[0].child.as_ref().unwrap().id().unwrap().to_string();
            assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        }
        EdgeFault::Kill => cluster.kill_edge(0).await,
    }
    publisher.await.unwrap();
    let deadline = Instant::now() + PATIENCE * 3;
    let got = loop {
        let got = offsets(read("got").await);
        if got.len() as u64 >= PUBLICATIONS || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let sessions: serde_json::Value = serde_json::from_str(&read("sessions").await).unwrap();
    println!("{fault:?}: {} publications received; sessions {sessions}", got.len());
    assert_eq!(got, (1..=PUBLICATIONS).collect::<Vec<u64>>(), "{fault:?}: each once, in order");
    let resumed = sessions.as_array().unwrap().last().unwrap();
    assert_eq!(resumed["resumed"], true, "{fault:?}: {sessions}");
    match fault {
        EdgeFault::Drain => assert_eq!((&resumed["recovered"], &resumed["lost"]), (&json!(true), &json!([]))),
        EdgeFault::Kill => {
            assert_eq!((&resumed["recovered"], &resumed["lost"]), (&json!(false), &json!(["#messages"])))
        }
    }
    tab.close().await.unwrap();
    server.abort();
    let _ = std::fs::remove_dir_all(profile);
}

#[tokio::test]
async fn a_browser_session_survives_a_drain_of_its_edge() {
    a_browser_session_survives(EdgeFault::Drain).await;
}

#[tokio::test]
async fn a_browser_session_survives_a_kill_of_its_edge() {
    a_browser_session_survives(EdgeFault::Kill).await;
}
