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

/// `slip_entries{structure}` of one scrape, by structure.
fn entries(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with("slip_entries{"))
        .filter_map(|l| {
            let structure = l.split("structure=\"").nth(1)?.split('"').next()?.to_owned();
            Some((structure, l.rsplit(' ').next()?.parse::<f64>().ok()?))
        })
        .collect()
}

/// What a node keeps for its connections goes with them: after 200 clients
/// of the seed's chat came and went (each publishing its join and its
/// leave), nothing is left for any of them, and history's age index holds
/// one entry for the chat's channel, not one a publication (it held all 400
/// for the whole age bound: the ~110 bytes a connection ever opened of #27).
#[tokio::test]
async fn what_a_node_keeps_for_its_connections_goes_with_them() {
    let backend = Backend::start(chat).await;
    let args = ["dev", "--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"];
    let (_child, lines) = spawn_slip(
        &[&args[..], &["--target-url", &backend.url, "--jwt-secret", SECRET]].concat(),
        &["WebSocket:", "Metrics:"],
    )
    .await;
    let ws = lines[0].trim_end_matches('/').to_owned();
    let scrape = lines[1].clone();
    for _ in 0..10 {
        let mut clients = Vec::new();
        for _ in 0..20 {
            let mut client = Client::connect_url(&ws).await;
            client.texts(1).await;
            clients.push(client);
        }
        drop(clients);
    }
    // Every CLOSE callback done and its leave published: 400 publications.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let held = loop {
        let text = reqwest::get(&scrape).await.unwrap().text().await.unwrap();
        let held = entries(&text);
        if value(&text, "slip_publishes_total") >= 400.0 && value(&text, "slip_connections{") == 0.0 {
            break held;
        }
        assert!(tokio::time::Instant::now() < deadline, "the 200 clients never all left:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    for structure in [
        "hub_connections",
        "hub_subscriptions",
        "hub_channels",
        "local_presence_connections",
        "close_records",
        "close_due",
        "parked_sessions",
        "session_deadlines",
        "session_records",
        "moved_sessions",
        "presence_members",
        "interest_channels",
    ] {
        assert_eq!(held.get(structure), Some(&0.0), "{structure} is left with entries: {held:?}");
    }
    assert_eq!(held.get("streams"), Some(&1.0), "{held:?}");
    assert_eq!(held.get("history_publications"), Some(&100.0), "history's count bound: {held:?}");
    assert_eq!(held.get("stream_age_index"), Some(&1.0), "one entry for the one stream: {held:?}");
}
