//! The docs' own commands, run as a reader would paste them.

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// The indented block that follows `heading` in a markdown file.
fn snippet(file: &str, heading: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let after = text.split_once(heading).unwrap_or_else(|| panic!("{file} has no {heading:?}")).1;
    after
        .lines()
        .skip_while(|l| !l.starts_with("    "))
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A chat backend on the docs' port 3000 that trusts any caller: the test
/// cannot know the secret the snippet makes up, and does not need to.
async fn chat_on_3000() -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new().fallback(|body: axum::body::Bytes| async move {
        let request: Value = serde_json::from_slice(&body).unwrap_or_default();
        let id = &request["connectionId"];
        let mut out = Vec::new();
        for event in request["events"].as_array().into_iter().flatten() {
            match event["type"].as_str() {
                Some("OPEN") => {
                    out.push(json!({"type": "ACCEPT", "connectionId": id}));
                    out.push(json!({"type": "SUBSCRIBE", "connectionId": id, "channel": "room"}));
                }
                Some("TEXT") => out.push(json!({"type": "PUBLISH_TEXT", "channelId": "room", "data": event["data"]})),
                _ => {}
            }
        }
        axum::Json(json!({ "events": out }))
    });
    let listener =
        tokio::net::TcpListener::bind("127.0.0.1:3000").await.expect("port 3000 is free, as the docs assume");
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() })
}

/// Kills the snippet's whole process group when the test ends, however it ends.
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").args(["-s", "KILL", "--", &format!("-{}", self.0)]).status();
    }
}

#[tokio::test]
async fn the_local_cluster_of_operations_md_runs_as_written() {
    let script = snippet("docs/operations.md", "### A cluster on one machine");
    assert!(script.contains("slip gen-ca") && script.contains("slip edge"), "{script}");
    let _backend = chat_on_3000().await;
    let dir = std::env::temp_dir().join(format!("slip-docs-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_slip")).parent().unwrap().to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut child = std::process::Command::new("bash")
        .args(["-e", "-c", &format!("{script}\nwait")])
        .current_dir(&dir)
        .env("PATH", path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let _group = Group(child.id() as i32);

    // Both edges take clients once linked; a message sent on one reaches the other.
    let mut clients = Vec::new();
    for url in ["ws://127.0.0.1:8080/", "ws://127.0.0.1:8081/"] {
        let deadline = tokio::time::Instant::now() + PATIENCE * 3;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the snippet exited: {status}");
            }
            match tokio_tungstenite::connect_async(url).await {
                Ok((ws, _)) => {
                    clients.push(Client { ws });
                    break;
                }
                Err(e) => assert!(tokio::time::Instant::now() < deadline, "{url} never took a client: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // The subscriptions reach the channel's owner asynchronously: say it until it is heard.
    let deadline = tokio::time::Instant::now() + PATIENCE * 3;
    loop {
        clients[0].send("hello from e1").await;
        if let Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(500), futures_util::StreamExt::next(&mut clients[1].ws)).await
        {
            assert_eq!(t.as_str(), "hello from e1");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a message never crossed the cluster");
    }
    for port in [9090, 9190, 9091, 9092] {
        let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap();
        assert_eq!(metrics.status(), 200, "metrics on {port}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
