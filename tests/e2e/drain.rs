//! SIGTERM: stop taking connections, fail readiness, close every socket with
//! 1012 over the grace period, deliver their CLOSE callbacks, exit in time.

use std::time::Duration;

use slip_proto::callback::Event;

use crate::support::*;

#[tokio::test]
async fn sigterm_drains_every_connection_and_exits_in_time() {
    let backend = Backend::start(accept_all).await;
    let grace = 4;
    let mut gateway = Gateway::start_with(&backend.url, &["--drain-seconds", &grace.to_string()]).await;
    let http = gateway.ws.replace("ws://", "http://");
    assert_eq!(reqwest::get(format!("{http}/readyz")).await.unwrap().status(), 200);
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(Client::connect(&gateway).await);
    }

    gateway.terminate();
    // Readiness fails and new connections are refused while it drains.
    let mut saw_unready = false;
    for _ in 0..100 {
        if let Ok(response) = reqwest::get(format!("{http}/readyz")).await
            && response.status() == 503
        {
            saw_unready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(saw_unready, "/readyz never failed during the drain");
    assert_eq!(Client::refused_status(&gateway).await, 503);

    for client in &mut clients {
        assert_eq!(client.close_code().await, 1012);
    }
    let status = gateway.exited_within(Duration::from_secs(grace + 3)).await.expect("slip exited after draining");
    assert!(status.success(), "{status:?}");
    let closes = backend
        .seen()
        .iter()
        .flat_map(|r| r.events.iter())
        .filter(|e| matches!(e, Event::Close { code: Some(1012), .. }))
        .count();
    assert_eq!(closes, 100, "every drained connection's CLOSE callback was delivered before exit");
}

#[tokio::test]
async fn connections_beyond_the_limit_get_503() {
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start_with(&backend.url, &["--max-connections", "2"]).await;
    let _a = Client::connect(&gateway).await;
    let b = Client::connect(&gateway).await;
    assert_eq!(Client::refused_status(&gateway).await, 503);
    drop(b);
    // The slot comes back once that connection's CLOSE callback is done.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if tokio_tungstenite::connect_async(format!("{}/", gateway.ws)).await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
