//! GRIP publishing (`POST /publish/` on the control port) driven by the
//! unmodified GRIP libraries a Pushpin backend uses: Python `gripcontrol`
//! and Node `@fanoutio/grip` (`scripts/test.sh` installs both).

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use slip_proto::callback::{CallbackRequest, Event};

use crate::support::*;

/// Accepts every connection and subscribes it to "room".
fn join_room(request: &CallbackRequest) -> Reply {
    let mut reply = accept_all(request);
    if let Some(Event::Open { connection_id }) = request.events.first() {
        let commands = reply.body["events"].as_array_mut().unwrap();
        commands.push(json!({"type": "SUBSCRIBE", "connectionId": connection_id, "channel": "room"}));
    }
    reply
}

fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/grip").join(name).display().to_string()
}

/// Runs a publisher script; returns whether it succeeded and what it printed
/// on stdout (stderr carries library warnings, e.g. about short keys).
fn run(program: &str, file: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .arg(script(file))
        .args(args)
        .current_dir(script(""))
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named") && !stderr.contains("ERR_MODULE_NOT_FOUND"),
        "a GRIP library is missing (scripts/test.sh installs them): {stderr}"
    );
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn python(gateway: &Gateway, key: &str, kind: &str) -> (bool, String) {
    run("python3", "publish.py", &[&gateway.control, key, "room", kind])
}

fn node(gateway: &Gateway, key: &str, kind: &str) -> (bool, String) {
    run("node", "publish.mjs", &[&gateway.control, key, "room", kind])
}

#[tokio::test]
async fn python_and_node_grip_libraries_publish_to_subscribers() {
    let backend = Backend::start(join_room).await;
    let gateway = Gateway::start(&backend.url).await;
    let mut client = Client::connect(&gateway).await;
    nth_open(&backend, 0).await;
    wait_for_subscribers(&gateway, "room", 1).await;

    assert_eq!(python(&gateway, SECRET, "text"), (true, "published\n".into()));
    assert_eq!(client.text().await, "hello from gripcontrol");
    assert!(python(&gateway, SECRET, "binary").0);
    assert_eq!(client.binary().await, [0, 1, 254]);
    assert_eq!(node(&gateway, SECRET, "text"), (true, "published\n".into()));
    assert_eq!(client.text().await, "hello from @fanoutio/grip");
    assert!(node(&gateway, SECRET, "binary").0);
    assert_eq!(client.binary().await, [0, 1, 254]);

    // Publishing needs the shared key, unlike on Pushpin.
    let (ok, printed) = python(&gateway, "not the key", "text");
    assert!(!ok && printed.contains("401"), "{printed}");
    let (ok, printed) = node(&gateway, "not the key", "text");
    assert!(!ok && printed.contains("401"), "{printed}");
    client.silent_for(std::time::Duration::from_millis(300)).await;

    // The reply counts receivers.
    let token = control_token();
    let body = json!({"items": [
        {"channel": "room", "formats": {"ws-message": {"content": "counted"}}},
        {"channel": "nobody", "formats": {"ws-message": {"content": "lost"}}},
        {"channel": "room", "formats": {"http-stream": {"content": "not for sockets"}}},
    ]});
    let (status, reply) = grip_post(&gateway, Some(&token), &body.to_string()).await;
    assert_eq!(status, 200, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["items"][0]["receivers"], 1, "{reply}");
    assert_eq!(reply["items"][1]["receivers"], 0, "{reply}");
    assert_eq!(reply["skipped"], 1, "{reply}");
    assert_eq!(client.text().await, "counted");

    // A bad body is refused whole, with a reason.
    let (status, reply) = grip_post(&gateway, Some(&token), r#"{"items":[{"channel":""}]}"#).await;
    assert_eq!(status, 400);
    assert!(reply.contains("item 0"), "{reply}");

    // action close, with the code the publisher chose.
    assert!(python(&gateway, SECRET, "close").0);
    assert_eq!(client.close_code().await, 4001);
}

#[tokio::test]
async fn node_close_and_publishing_without_auth_when_turned_off() {
    let backend = Backend::start(join_room).await;
    let gateway = Gateway::start_with(&backend.url, &["--grip-publish-auth", "none"]).await;
    let mut client = Client::connect(&gateway).await;
    nth_open(&backend, 0).await;
    wait_for_subscribers(&gateway, "room", 1).await;
    // No key at all: the library sends no Authorization header.
    assert_eq!(python(&gateway, "", "text"), (true, "published\n".into()));
    assert_eq!(client.text().await, "hello from gripcontrol");
    let (status, _) = grip_post(&gateway, None, r#"{"items":[]}"#).await;
    assert_eq!(status, 200);
    assert!(node(&gateway, "any", "close").0);
    assert_eq!(client.close_code().await, 4002);
}

async fn grip_post(gateway: &Gateway, token: Option<&str>, body: &str) -> (u16, String) {
    let mut request = reqwest::Client::new().post(format!("{}/publish/", gateway.control)).body(body.to_owned());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}
