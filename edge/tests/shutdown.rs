//! `Edge::shutdown` on a real listener: it stops accepting, answers the
//! request in progress on an HTTP connection, closes that connection, and
//! reports every task ended.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use slip_edge::{Edge, EdgeConfig};
use slip_proto::ids::NodeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "test-secret-of-at-least-32-bytes!";
/// Bound on every wait here; a shutdown that hangs fails the test instead.
const PATIENCE: Duration = Duration::from_secs(10);

/// Reads one HTTP/1.1 response with a `Content-Length` body.
async fn response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await.expect("a response").unwrap();
        assert!(n > 0, "closed before a whole response: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0usize);
            if body.len() >= length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn shutdown_stops_accepting_answers_what_is_in_progress_and_ends_every_task() {
    let config = EdgeConfig::new(NodeId::parse("edge-1").unwrap(), "http://127.0.0.1:9/", SECRET);
    let edge = Edge::new(config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(slip_edge::server::serve(edge.clone(), listener));

    // A keep-alive connection that has been answered once and stays open.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    assert!(response(&mut idle).await.starts_with("HTTP/1.1 200"));
    // A connection whose request has only half arrived when the shutdown starts.
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    // Time for the server to read those bytes: a connection it has read
    // nothing from yet is idle, and an idle one is closed without an answer.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let shutdown = tokio::spawn({
        let edge = edge.clone();
        async move { edge.shutdown(PATIENCE).await }
    });
    tokio::time::timeout(PATIENCE, serving).await.expect("the listener stopped").unwrap().unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "nothing accepts any more");

    // The request in progress is answered, and its connection then closes.
    half.write_all(b"host: x\r\n\r\n").await.unwrap();
    let answer = response(&mut half).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, half.read_to_end(&mut rest)).await.expect("closed after its answer").unwrap();
    // The idle one is closed without a word.
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, idle.read_to_end(&mut rest)).await.expect("idle connection closed").unwrap();
    assert!(rest.is_empty());

    let unfinished = tokio::time::timeout(PATIENCE, shutdown).await.expect("shutdown returned").unwrap();
    assert_eq!(unfinished, 0, "every task of the edge ended");
}
