//! The control port to stock gRPC tools: the standard health service follows
//! readiness (serving once a member of the view, not while draining or before
//! it joined), and server reflection lets a client with no `.proto` list the
//! services and call `Publish` (grpcio's own health and reflection modules
//! from PyPI, as `grpcurl` would).

use std::time::Duration;

use serde_json::Value;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::*;

/// The overall health status the node at `url` reports now (no token: probes have none).
async fn health(url: &str) -> Result<ServingStatus, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let reply = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await?;
    Ok(reply.into_inner().status())
}

/// Waits (bounded) until the node at `url` reports `want`.
async fn health_becomes(url: &str, want: ServingStatus) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = health(url).await;
        if now.as_ref().is_ok_and(|s| *s == want) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "health never became {want:?}: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_stock_client_finds_health_and_publishes_by_reflection() {
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start(&backend.url).await;
    health_becomes(&gateway.control, ServingStatus::Serving).await;
    let address = gateway.control.trim_start_matches("http://").to_owned();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/grpc/discover.py");
    let output = tokio::process::Command::new("python3")
        .args([script, &address, &control_token(), "found"])
        .output()
        .await
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "discover.py failed (pip install grpcio grpcio-health-checking grpcio-reflection): {stderr}"
    );
    let found: Value = serde_json::from_slice(&output.stdout).unwrap();
    for service in ["", "slip.v1.Control", "slip.v1.Admin"] {
        assert_eq!(found["health"][service], "SERVING", "{found}");
    }
    assert_eq!(found["unknownService"], "NOT_FOUND");
    let services: Vec<&str> = found["services"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    for service in ["slip.v1.Control", "slip.v1.Admin", "grpc.health.v1.Health"] {
        assert!(services.contains(&service), "reflection lists {service}: {services:?}");
    }
    assert_eq!(found["publishFields"], serde_json::json!(["binary", "channel", "idempotency_key", "text"]));
    let offset = found["publishReply"]["offset"].as_str().unwrap();
    assert_eq!(offset, "1", "the Publish built from reflection went in: {found}");

    // It is the stream's first publication, with the text the script sent.
    let request = slip_proto::pb::HistoryRequest { channel: "found".into(), ..Default::default() };
    let history = gateway.grpc().await.history(request).await.unwrap().into_inner();
    assert_eq!(history.epoch, found["publishReply"]["epoch"].as_str().unwrap());
    let texts: Vec<_> = history.publications.iter().map(|p| p.message.clone()).collect();
    assert_eq!(texts, [Some(slip_proto::pb::publication::Message::Text("found by reflection".into()))]);
}

#[tokio::test]
async fn health_is_not_serving_while_draining() {
    let backend = Backend::start(accept_all).await;
    let mut gateway = Gateway::start_with(&backend.url, &["--drain-seconds", "4"]).await;
    health_becomes(&gateway.control, ServingStatus::Serving).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(Client::connect(&gateway).await);
    }
    gateway.terminate();
    // The drain closes the clients over 4 s; health says so from its start.
    health_becomes(&gateway.control, ServingStatus::NotServing).await;
    assert_eq!(clients[0].close_code().await, 1012);
    assert!(gateway.exited_within(Duration::from_secs(10)).await.is_some());
}

#[tokio::test]
async fn a_control_node_is_not_serving_until_it_is_a_member_of_the_view() {
    let ca = CaDir::new();
    let (api, link, others) = (free_port(), free_port(), free_ports(2));
    // Three control nodes configured, two expected to form the first view,
    // one started: it cannot form it alone.
    let peers = [link, others[0], others[1]].map(|p| format!("127.0.0.1:{p}")).join(",");
    let (cert, key) = (ca.cert(), ca.key());
    // Control node `id` on these ports, expecting two nodes to form the view.
    let start = |id: &'static str, api: u16, link: u16| {
        let (api, link) = (format!("127.0.0.1:{api}"), format!("127.0.0.1:{link}"));
        let args: Vec<String> = [
            "control",
            "--node-id",
            id,
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
            "--bootstrap-expect",
            "2",
        ]
        .map(str::to_owned)
        .into();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            (spawn_slip(&args, &["Control API:"]).await.0, format!("http://{api}"))
        }
    };
    let (_node, url) = start("control-0", api, link).await;
    health_becomes(&url, ServingStatus::NotServing).await;
    // And it stays so: no view forms with fewer than the nodes expected.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(health(&url).await.unwrap(), ServingStatus::NotServing);

    // A second node is the one expected: both form the view and serve.
    let (_second, url_1) = start("control-1", free_port(), others[0]).await;
    health_becomes(&url, ServingStatus::Serving).await;
    health_becomes(&url_1, ServingStatus::Serving).await;
}
