//! `/metrics` counts real traffic.

use crate::support::*;

fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_move_with_traffic() {
    let backend = Backend::start(chat).await;
    let args = ["dev", "--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"];
    let (_child, lines) = spawn_slip(
        &[&args[..], &["--target-url", &backend.url, "--jwt-secret", SECRET, "--node-id", "metered"]].concat(),
        &["WebSocket:", "Metrics:"],
    )
    .await;
    let ws = lines[0].trim_end_matches('/').to_owned();
    let scrape = lines[1].clone();
    let before = reqwest::get(&scrape).await.unwrap().text().await.unwrap();
    assert!(before.contains(r#"node="metered""#), "{before}");
    // What alerts join on, and what they compare with (deploy/prometheus).
    assert!(before.contains(r#"slip_node_info{node="metered",region="",role="dev"} 1"#), "{before}");
    assert_eq!(value(&before, "slip_control_links{"), 1.0, "its edge links its control plane");
    assert_eq!(value(&before, "slip_parked_bytes_limit{"), (512u64 << 20) as f64);
    assert_eq!(value(&before, "slip_draining{"), 0.0);

    let mut ann = Client::connect_url(&ws).await;
    ann.texts(2).await;
    ann.send("hello").await;
    ann.text().await;

    let after = reqwest::get(&scrape).await.unwrap().text().await.unwrap();
    assert_eq!(value(&after, "slip_connections{"), 1.0, "{after}");
    assert_eq!(value(&after, "slip_connections_opened_total"), 1.0);
    assert!(value(&after, "slip_frames_in_total") >= 1.0);
    assert!(value(&after, "slip_frames_out_total") >= 3.0);
    assert!(value(&after, "slip_deliveries_total") >= 2.0);
    assert!(value(&after, "slip_publishes_total") >= 2.0);
    assert!(value(&after, "slip_callback_seconds_count") >= 2.0);
    drop(ann);
}

#[tokio::test]
async fn an_edge_exports_the_term_of_the_view_it_applied() {
    let backend = Backend::start(chat).await;
    let cluster = crate::cluster::Cluster::start(&backend.url, 1, 1).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = reqwest::get(&cluster.edges[0].metrics).await.unwrap().text().await.unwrap();
        // A view has term 1 or more: 0 is an edge that never said.
        if value(&text, "slip_view_term{") >= 1.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the edge's slip_view_term stayed 0:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
