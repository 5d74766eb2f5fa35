//! The admin page (`GET /admin` on a control node) in headless Chromium:
//! without a token only the login; with the address `slip admin open`
//! prints, a cluster's nodes and a channel's owner; after the owner is
//! killed, the page shows it gone and the channel owned by another node,
//! on its own (it refreshes). Three control nodes: with two, the one left
//! is no majority, and no channel moves (the page shows it not ready).

use std::time::{Duration, Instant};

use fantoccini::{Client as Browser, Locator};

use crate::browser::{browser, chromedriver};
use crate::cluster::{Cluster, admin, cluster_backend};
use crate::support::*;

/// The text of everything `css` matches.
async fn texts(page: &Browser, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for element in page.find_all(Locator::Css(css)).await.unwrap() {
        out.push(element.text().await.unwrap_or_default());
    }
    out
}

/// Waits until `done` holds of the page's `css` texts; how long it took.
async fn wait_for(page: &Browser, css: &str, what: &str, done: impl Fn(&[String]) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let seen = texts(page, css).await;
        if done(&seen) {
            return started.elapsed();
        }
        if started.elapsed() > PATIENCE * 2 {
            let state = texts(page, "#summary, #updated, #nodes tbody tr").await;
            panic!("the page never showed {what}: {css} reads {seen:?}; the page: {state:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_admin_page_shows_the_cluster_and_follows_the_death_of_a_channels_owner() {
    let backend = Backend::start(cluster_backend).await;
    let mut cluster = Cluster::start(&backend.url, 3, 2).await;
    let _a = Client::connect_url(&format!("{}/room", cluster.edges[0].ws)).await;
    let _b = Client::connect_url(&format!("{}/room", cluster.edges[1].ws)).await;
    let owner = cluster.wait_for_edges(0, "room", 2).await.owner;
    // The page is read through a node that survives.
    let dead: usize = owner.trim_start_matches("control-").parse().unwrap();
    let alive = (dead + 1) % 3;
    let api = cluster.control_api(alive);

    let (_driver, driver) = chromedriver().await;
    let profile = std::env::temp_dir().join(format!("slip-admin-page-{}", std::process::id()));
    let page = browser(&driver, &profile).await;

    // No token: the login, and nothing of the cluster.
    page.goto(&format!("{api}/admin")).await.unwrap();
    let main = page.find(Locator::Id("main")).await.unwrap();
    assert_eq!(main.attr("class").await.unwrap().as_deref(), Some("hidden"));
    assert!(page.find(Locator::Id("token")).await.unwrap().is_displayed().await.unwrap());
    assert!(texts(&page, "#nodes tbody tr").await.is_empty());
    // A token that is not one: refused, still the login.
    page.find(Locator::Id("token")).await.unwrap().send_keys("not-a-token").await.unwrap();
    page.find(Locator::Css("#login button")).await.unwrap().click().await.unwrap();
    wait_for(&page, "#login-error", "the refusal", |t| t.iter().any(|t| t.contains("refused"))).await;

    // The address `slip admin open` prints.
    let (ok, url, err) = admin(&api, SECRET, &["open"]).await;
    assert!(ok, "{err}");
    assert!(url.trim().starts_with(&format!("{api}/admin#token=")), "{url}");
    page.goto(url.trim()).await.unwrap();
    wait_for(&page, "#nodes tbody td:first-child", "every node", |t| {
        ["control-0", "control-1", "control-2", "edge-0", "edge-1"].iter().all(|n| t.iter().any(|x| x == n))
    })
    .await;
    wait_for(&page, "#channels tr[data-channel='room'] td.owner", "room's owner", |t| t == [owner.clone()]).await;
    // The token left the address bar once read.
    assert!(!page.current_url().await.unwrap().as_str().contains("token="));
    // The channel's own view: owner, subscribers, its history's tail.
    for text in ["hello", "world"] {
        cluster.grpc(alive).await.publish(crate::cluster::publish("room", text)).await.unwrap();
    }
    page.find(Locator::Css("#channels tr[data-channel='room'] button")).await.unwrap().click().await.unwrap();
    wait_for(&page, "#channel-summary", "room's view", |t| {
        t.iter().any(|s| s.contains(&format!("owner {owner}")) && s.contains("2 subscribers"))
    })
    .await;
    wait_for(&page, "#history tbody td pre", "the history's tail", |t| t == ["hello", "world"]).await;
    // The top channels carry each stream's offset and history and the
    // nodes copying it, from its owner; every node its view's term.
    let row = "#channels tr[data-channel='room'] td";
    wait_for(&page, &format!("{row}:nth-child(8), {row}:nth-child(9)"), "room's stream", |t| t == ["2", "2"]).await;
    wait_for(&page, &format!("{row}:nth-child(6)"), "room's replicas", |t| {
        t.len() == 1 && t[0].starts_with("control-") && !t[0].contains(&owner)
    })
    .await;
    wait_for(&page, "#nodes tbody td:nth-child(5)", "each node's view term", |t| {
        t.len() == 5 && t.iter().all(|term| term.parse::<u64>().is_ok_and(|term| term >= 1))
    })
    .await;
    // The p99 charts: the publishes' times (counted where they were asked)
    // and a callback's (a client connecting now).
    let _c = Client::connect_url(&format!("{}/room", cluster.edges[0].ws)).await;
    for chart in ["publishLatency", "callbackLatency"] {
        wait_for(&page, &format!("#{chart}-now"), chart, |t| {
            t.iter().any(|s| s.contains("counted in the last minute"))
        })
        .await;
    }
    // Each edge's counters come with the nodes (the page's rates and trouble columns).
    let token = slip_proto::jwt::sign(SECRET.as_bytes(), slip_proto::jwt::AUD_CONTROL_EVENT, slip_proto::jwt::now());
    let overview: serde_json::Value = reqwest::Client::new()
        .get(format!("{api}/admin/api/overview"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let edges: Vec<&serde_json::Value> =
        overview["nodes"].as_array().unwrap().iter().filter(|n| n["role"] == "edge").collect();
    assert_eq!(edges.len(), 2, "{overview}");
    assert!(edges.iter().all(|e| e["deliveries"].as_u64() >= Some(2) && e["streamGaps"] == 0), "{overview}");
    // And each control node's (asked over the links), with its lease.
    let controls: Vec<&serde_json::Value> =
        overview["nodes"].as_array().unwrap().iter().filter(|n| n["role"] == "control").collect();
    assert_eq!(controls.len(), 3, "{overview}");
    assert!(controls.iter().all(|c| c["leaseHeld"] == true && c["publishesRefused"] == 0), "{overview}");
    let published: u64 = controls.iter().filter_map(|c| c["publishes"].as_u64()).sum();
    assert!(published >= 2, "the owner fanned out both publishes: {overview}");
    let counted = |node: &serde_json::Value, field: &str| -> u64 {
        node[field].as_array().map_or(0, |counts| counts.iter().filter_map(|c| c.as_u64()).sum())
    };
    assert!(controls.iter().map(|c| counted(c, "publishLatency")).sum::<u64>() >= 2, "{overview}");
    assert!(edges.iter().map(|e| counted(e, "callbackLatency")).sum::<u64>() >= 3, "{overview}");
    assert_eq!(overview["latencyBuckets"].as_array().map(Vec::len), Some(15), "{overview}");
    if let Ok(out) = std::env::var("SLIP_ADMIN_SCREENSHOT") {
        page.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        std::fs::write(out, page.screenshot().await.unwrap()).unwrap();
    }

    // The owner dies: the page shows it gone and the channel owned by another.
    cluster.kill_control(dead).await;
    let dead_name = format!("control-{dead}");
    let gone = wait_for(&page, "#nodes tbody tr", "the dead node gone", |rows| {
        !rows.iter().any(|r| r.starts_with(&dead_name) && !r.contains("no link"))
    })
    .await;
    let moved = wait_for(&page, "#channels tr[data-channel='room'] td.owner", "the owner moved", |t| {
        t.len() == 1 && t[0].starts_with("control-") && t[0] != dead_name
    })
    .await;
    eprintln!("the page showed {dead_name} gone after {gone:?}, room owned by another after {moved:?}");
    page.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&profile);
}
