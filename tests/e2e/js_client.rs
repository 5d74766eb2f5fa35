//! `@slip-sockets/client` (js/client) against a real gateway, in Node with
//! the `ws` package: its socket dies without a close frame mid-stream, and
//! the library reconnects, resumes, and delivers every publication and
//! message once, in order; the backend sees one OPEN and no CLOSE. (The
//! library is built by the README's test command, `scripts/test.sh`.)

use std::process::Stdio;

use serde_json::{Value, json};
use slip_proto::callback::{CallbackRequest, Event};
use slip_proto::pb::{PublishRequest, SendRequest, publish_request, send_request};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout, Command};

use crate::support::*;

fn room(request: &CallbackRequest) -> Reply {
    let mut out = Vec::new();
    for event in &request.events {
        if let Event::Open { connection_id } = event {
            out.push(json!({"type": "ACCEPT", "connectionId": connection_id}));
            out.push(json!({"type": "SUBSCRIBE", "connectionId": connection_id, "channel": "room"}));
            out.push(json!({"type": "TEXT", "connectionId": connection_id, "data": "hello"}));
        }
    }
    Reply::commands(out)
}

struct Node {
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    _child: tokio::process::Child,
}

impl Node {
    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(PATIENCE, self.lines.next_line()).await.expect("the client said something");
        serde_json::from_str(&line.unwrap().expect("the client is running")).unwrap()
    }

    async fn command(&mut self, line: &str) {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    }
}

fn publish(text: &str) -> PublishRequest {
    PublishRequest {
        channel: "room".into(),
        message: Some(publish_request::Message::Text(text.into())),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_js_client_resumes_after_its_socket_dies_and_misses_nothing() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/js/client/live/session.mjs");
    assert!(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/js/client/dist/index.js")).exists(),
        "build js/client first (scripts/test.sh does)"
    );
    let backend = Backend::start(room).await;
    let gateway = Gateway::start(&backend.url).await;
    let mut child = Command::new("node")
        .arg(script)
        .arg(&gateway.ws)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node");
    let mut node = Node {
        stdin: child.stdin.take().unwrap(),
        lines: BufReader::new(child.stdout.take().unwrap()).lines(),
        _child: child,
    };
    let session = node.next().await;
    assert_eq!((&session["event"], &session["resumed"]), (&json!("session"), &json!(false)));
    let id = session["id"].as_str().unwrap().to_owned();
    assert_eq!(node.next().await, json!({"event": "message", "seq": 1, "data": "hello"}));
    wait_for_subscribers(&gateway, "room", 1).await;

    let mut grpc = gateway.grpc().await;
    for i in 1..=3 {
        grpc.publish(publish(&format!("p{i}"))).await.unwrap();
        assert_eq!(node.next().await["data"], format!("p{i}"));
    }
    node.command("drop").await;
    // While it is away (it comes back within half a second): two publications and a message.
    for i in 4..=5 {
        grpc.publish(publish(&format!("p{i}"))).await.unwrap();
    }
    let away = SendRequest { connection_id: id.clone(), message: Some(send_request::Message::Text("away".into())) };
    grpc.send(away).await.unwrap();

    let resumed = node.next().await;
    assert_eq!(
        (&resumed["event"], &resumed["id"], &resumed["resumed"], &resumed["recovered"]),
        (&json!("session"), &json!(id), &json!(true), &json!(true)),
        "{resumed}"
    );
    assert!(resumed["url"].as_str().unwrap().contains("slip_resume="));
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(node.next().await);
    }
    let texts: Vec<&str> = got.iter().map(|e| e["data"].as_str().unwrap()).collect();
    assert_eq!(texts, ["p4", "p5", "away"], "what it missed, once each, in order");
    grpc.publish(publish("p6")).await.unwrap();
    assert_eq!(node.next().await["offset"], 6, "then live");
    let events = backend.events_of(&id);
    let opens = events.iter().filter(|e| matches!(e, Event::Open { .. })).count();
    let closes = events.iter().filter(|e| matches!(e, Event::Close { .. })).count();
    assert_eq!((opens, closes), (1, 0));
    node.command("close").await;
}

/// The demo page carries the library as `npm run build` makes it: the copy
/// in `src/demo` is the build's output, not a stale one.
#[test]
fn the_demo_carries_the_library_as_built() {
    let built = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/js/client/dist/slip-client.js"))
        .expect("build js/client first (scripts/test.sh does)");
    let copy = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/demo/slip-client.js")).unwrap();
    assert!(built == copy, "src/demo/slip-client.js is stale: copy js/client/dist/slip-client.js over it");
}
