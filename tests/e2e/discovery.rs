//! `SLIP_PEERS=dns:NAME:PORT`: control nodes found and lost through a real
//! DNS server on loopback, with the nodes on 127.0.0.2, 127.0.0.3 and
//! 127.0.0.4 sharing one port, as Fly machines share one on their private
//! addresses.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use slip_proto::pb::GetChannelRequest;
use tokio::net::UdpSocket;

use crate::support::*;
use crate::support::{CaDir, free_port};

const NAME: &str = "control.slip.test";

/// A DNS server answering NAME with whatever `records` holds.
async fn dns_server(records: Arc<Mutex<Vec<IpAddr>>>) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let addresses = records.lock().clone();
            if let Some(reply) = answer(&buf[..n], &addresses) {
                let _ = socket.send_to(&reply, from).await;
            }
        }
    });
    addr
}

/// The answer to one query: the A or AAAA records asked for.
fn answer(query: &[u8], ips: &[IpAddr]) -> Option<Vec<u8>> {
    use hickory_resolver::proto::op::{Message, OpCode};
    use hickory_resolver::proto::rr::rdata::{A, AAAA};
    use hickory_resolver::proto::rr::{RData, Record, RecordType};
    let query = Message::from_vec(query).ok()?;
    let question = query.queries.first()?.clone();
    let mut reply = Message::response(query.metadata.id, OpCode::Query);
    reply.metadata.recursion_available = true;
    for ip in ips {
        let rdata = match (ip, question.query_type()) {
            (IpAddr::V4(v4), RecordType::A) => RData::A(A(*v4)),
            (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(*v6)),
            _ => continue,
        };
        reply.add_answer(Record::from_rdata(question.name().clone(), 1, rdata));
    }
    reply.add_query(question);
    reply.to_vec().ok()
}

/// A UDP port free on 127.0.0.2, 127.0.0.3 and 127.0.0.4.
fn shared_port() -> u16 {
    loop {
        let socket = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.3", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.4", port)).is_ok()
        {
            return port;
        }
    }
}

async fn channel(api: &str, channel: &str) -> Option<slip_proto::pb::ChannelInfo> {
    let mut grpc = grpc_to(api).await;
    grpc.get_channel(GetChannelRequest { channel: channel.into() }).await.ok().map(|r| r.into_inner())
}

/// Waits until `check` holds for the channel as seen through `api`.
async fn eventually(api: &str, name: &str, what: &str, check: impl Fn(&slip_proto::pb::ChannelInfo) -> bool) {
    let deadline = Instant::now() + PATIENCE * 2;
    loop {
        let info = channel(api, name).await;
        if info.as_ref().is_some_and(&check) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never {what}; last seen {info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn control_nodes_come_and_go_through_dns() {
    let records = Arc::new(Mutex::new(vec!["127.0.0.2".parse::<IpAddr>().unwrap()]));
    let dns = dns_server(records.clone()).await;
    let backend = Backend::start(accept_all_into_path_channel).await;
    let ca = CaDir::new();
    let (cert, key, (edge_cert, edge_key)) = (ca.cert(), ca.key(), ca.leaf("edge"));
    let port = shared_port();
    let peers = format!("dns:{NAME}:{port}");
    let apis: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let common = ["--cluster-ca", &cert, "--jwt-secret", SECRET, "--metrics-listen", "127.0.0.1:0"];
    let control_cert = ["--cluster-ca-key", &key];
    let edge_cert = ["--cluster-cert", &edge_cert, "--cluster-key", &edge_key];
    let discovery = ["--peers", &peers, "--dns-server", &dns, "--dns-refresh-secs", "1"];
    // The first control node forms the cluster alone; later ones join it.
    let control = |i: usize| {
        let (api, link, id) = (apis[i].clone(), format!("127.0.0.{}:{port}", i + 2), format!("control-{i}"));
        let (common, control_cert, discovery) = (common.to_vec(), control_cert.to_vec(), discovery.to_vec());
        async move {
            let args = ["control", "--node-id", &id, "--control-listen", &api, "--link-listen", &link];
            let expect = ["--bootstrap-expect", "1"];
            spawn_slip(&[&args[..], &expect, &common, &control_cert, &discovery].concat(), &["Link:"]).await.0
        }
    };
    let _c0 = control(0).await;
    let edge_args = ["edge", "--node-id", "edge-0", "--listen", "127.0.0.1:0", "--target-url", &backend.url];
    let (_edge, lines) = spawn_slip(&[&edge_args[..], &common, &edge_cert, &discovery].concat(), &["WebSocket:"]).await;
    let ws = lines[0].trim_end_matches('/').to_owned();
    wait_edge_ready(&ws).await;

    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push(Client::connect_url(&format!("{ws}/ch-{i}")).await);
    }
    let api0 = format!("http://{}", apis[0]);
    // Only control-0 is in the cluster: it owns everything.
    for i in 0..20 {
        eventually(&api0, &format!("ch-{i}"), "belonged to control-0", |c| c.owner == "control-0" && c.edges == 1)
            .await;
    }

    // control-1 starts: it finds control-0 through DNS and is admitted; once
    // in DNS itself, the edge finds it, and its channels' interest reaches it.
    let mut c1 = control(1).await;
    records.lock().push("127.0.0.3".parse().unwrap());
    in_the_ring(&api0, "control-1").await;
    let mut moved = Vec::new();
    for i in 0..20 {
        let name = format!("ch-{i}");
        eventually(&api0, &name, "settled with its interest at its owner", |c| c.edges == 1).await;
        if channel(&api0, &name).await.is_some_and(|c| c.owner == "control-1") {
            moved.push(name);
        }
    }
    assert!(!moved.is_empty(), "no channel moved to control-1 once it joined");
    let api1 = format!("http://{}", apis[1]);
    for name in &moved {
        eventually(&api1, name, "reached control-1 with its interest", |c| c.owner == "control-1" && c.edges == 1)
            .await;
    }

    // A third joins, so that one of three can die and a majority goes on.
    let _c2 = control(2).await;
    records.lock().push("127.0.0.4".parse().unwrap());
    in_the_ring(&api0, "control-2").await;

    // control-1 leaves DNS and dies: the others agree it is gone and take its channels.
    records.lock().retain(|ip| *ip != "127.0.0.3".parse::<IpAddr>().unwrap());
    c1.kill().await.unwrap();
    for name in &moved {
        eventually(&api0, name, "left control-1", |c| c.owner != "control-1" && !c.owner.is_empty() && c.edges == 1)
            .await;
    }
}

/// Waits until `node` owns one of the test's channels, as seen through `api`.
async fn in_the_ring(api: &str, node: &str) {
    let deadline = Instant::now() + PATIENCE * 2;
    loop {
        for i in 0..20 {
            if channel(api, &format!("ch-{i}")).await.is_some_and(|c| c.owner == node) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{node} never joined the ring");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Accepts each client and subscribes it to the channel its path names.
fn accept_all_into_path_channel(request: &slip_proto::callback::CallbackRequest) -> Reply {
    let mut reply = accept_all(request);
    if let Some(slip_proto::callback::Event::Open { connection_id }) = request.events.first() {
        let channel = request.metadata["path"].as_str().unwrap_or("/x").trim_start_matches('/').to_owned();
        reply.body["events"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "SUBSCRIBE", "connectionId": connection_id, "channel": channel}));
    }
    reply
}
