//! The example backends, unchanged, through a real edge: the Rust one with
//! the SDK and the Python one with no SDK at all.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::*;

#[path = "../../examples/chat.rs"]
#[allow(dead_code)]
mod chat_example;

/// The chat of the original README, seen by two clients.
async fn chat_works(gateway: &Gateway) {
    let mut ann = Client::connect(gateway).await;
    let first = ann.texts(2).await;
    assert_eq!(first, ["New connection has joined!", "Welcome to the cool channel, be nice or get out"]);
    let mut bob = Client::connect(gateway).await;
    bob.texts(2).await;
    assert_eq!(ann.text().await, "New connection has joined!");
    ann.send("hello").await;
    let said = ann.text().await;
    assert!(said.ends_with(" says hello"), "{said}");
    assert_eq!(bob.text().await, said);
    ann.send("quit").await;
    assert_eq!(ann.close_code().await, 1000);
    assert_eq!(bob.text().await, "A Connection has left");
}

#[tokio::test]
async fn the_rust_example_with_the_sdk() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let publisher = slip_sockets::Publisher::new("http://127.0.0.1:1", SECRET);
    tokio::spawn(async move { axum::serve(listener, chat_example::app(publisher)).await });
    let gateway = Gateway::start(&format!("http://{addr}/ws")).await;
    chat_works(&gateway).await;
}

#[tokio::test]
async fn the_python_example_on_the_python_library() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/chat-python/server.py");
    let mut python = tokio::process::Command::new("python3")
        .arg(script)
        .env("PORT", port.to_string())
        .env("SLIP_JWT_SECRET", SECRET)
        // The library as `pip install ./py` would put it on the path.
        .env("PYTHONPATH", concat!(env!("CARGO_MANIFEST_DIR"), "/py/src"))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs the example");
    let mut lines = BufReader::new(python.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(PATIENCE, lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(ready.contains("/ws"), "{ready}");
    let gateway = Gateway::start(&format!("http://127.0.0.1:{port}/ws")).await;
    chat_works(&gateway).await;

    // And it refuses callbacks that are not from the gateway.
    let forged = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/ws"))
        .header(
            "authorization",
            format!("Bearer {}", slip_proto::jwt::sign(b"wrong", "WebSocketEvent", slip_proto::jwt::now())),
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
}

#[tokio::test]
async fn the_sdk_publishes_over_http_and_grpc() {
    use slip_sockets::{ControlError, Publisher};
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start(&backend.url).await;
    let mut client = Client::connect(&gateway).await;
    let id = nth_open(&backend, 0).await;

    let http = Publisher::new(gateway.control.clone(), SECRET);
    http.poll_for_connection(&id, 1000).await.unwrap();
    http.subscribe(&id, "news").await.unwrap();
    http.publish_text("news", "via http").await.unwrap();
    http.send_text(&id, "direct via http").await.unwrap();
    assert_eq!(client.texts(2).await, ["via http", "direct via http"]);

    let grpc = Publisher::grpc(gateway.control.clone(), SECRET).await.unwrap();
    grpc.publish_text("news", "via grpc").await.unwrap();
    grpc.send_text(&id, "direct via grpc").await.unwrap();
    assert_eq!(client.texts(2).await, ["via grpc", "direct via grpc"]);
    grpc.unsubscribe(&id, "news").await.unwrap();
    grpc.publish_text("news", "nobody").await.unwrap();
    grpc.set_metadata(&id, serde_json::json!({"vip": true})).await.unwrap();
    let missing = format!("{}.00000000000000000000", id.split('.').next().unwrap());
    assert!(matches!(grpc.send_text(&missing, "x").await, Err(ControlError::NotFound(_))));

    let wrong = Publisher::new(gateway.control.clone(), "not the secret");
    assert_eq!(wrong.publish_text("news", "x").await, Err(ControlError::Unauthorized));
    let wrong = Publisher::grpc(gateway.control.clone(), "not the secret").await.unwrap();
    assert_eq!(wrong.publish_text("news", "x").await, Err(ControlError::Unauthorized));

    grpc.close(&id).await.unwrap();
    assert_eq!(client.close_code().await, 1000);
}

/// The original README's handler in TypeScript (`examples/nextjs-chat`, on
/// `js/slip-sockets`), type-checked, then served by Node's HTTP server as
/// Next.js would call it, as the backend of a real `slip dev`: real
/// WebSocket clients chat through it, a publish through `publisher.send`
/// reaches them, and a callback it did not get from the gateway is refused.
#[tokio::test]
async fn the_original_readme_handler_in_typescript() {
    let root = env!("CARGO_MANIFEST_DIR");
    let example = format!("{root}/examples/nextjs-chat");
    let tsc = format!("{root}/js/node_modules/typescript/bin/tsc");
    let checked = std::process::Command::new("node")
        .args([tsc.as_str(), "-p", &format!("{example}/tsconfig.routes.json")])
        .status()
        .expect("node runs tsc (scripts/test.sh installs js/)");
    assert!(checked.success(), "the route handlers type-check");
    let bundle = std::env::temp_dir().join(format!("slip-routes-{}.mjs", std::process::id()));
    let bundled = std::process::Command::new(format!("{root}/js/node_modules/.bin/esbuild"))
        .arg(format!("{example}/routes.ts"))
        .args(["--bundle", "--format=esm", "--platform=node", "--log-level=warning"])
        .arg(format!("--alias:slip-sockets={root}/js/slip-sockets/src/index.ts"))
        .arg(format!("--outfile={}", bundle.display()))
        .status()
        .expect("esbuild");
    assert!(bundled.success());

    let port = crate::support::free_port();
    let gateway = Gateway::start(&format!("http://127.0.0.1:{port}/api/slip")).await;
    let mut node = tokio::process::Command::new("node")
        .arg(format!("{example}/serve-routes.mjs"))
        .arg(&bundle)
        .env("PORT", port.to_string())
        .env("SLIP_CONTROL_API", format!("{}/", gateway.control))
        .env("SLIP_JWT_SECRET", SECRET)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node serves the routes");
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(PATIENCE, lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(ready.contains("/api/slip"), "{ready}");
    chat_and_announce(&gateway, port).await;

    // Callbacks not from the gateway: 403, as the handler answers a `null` connection.
    for token in [
        slip_proto::jwt::sign(b"wrong", "WebSocketEvent", slip_proto::jwt::now()),
        slip_proto::jwt::sign(SECRET.as_bytes(), "ControlEvent", slip_proto::jwt::now()),
        slip_proto::jwt::sign(SECRET.as_bytes(), "WebSocketEvent", slip_proto::jwt::now() - 120),
    ] {
        let refused = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/api/slip"))
            .header("authorization", format!("Bearer {token}"))
            .body(r#"{"connectionId":"x","metadata":null,"events":[{"type":"OPEN","connectionId":"x"}]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403);
        assert_eq!(refused.text().await.unwrap(), "Invalid token");
    }
    let _ = std::fs::remove_file(bundle);
}

/// The Next.js example as its users run it: built by `next build`
/// (scripts/test.sh), served by `next start` as the backend of a real
/// `slip dev`. Real WebSocket clients chat through its route handler, its
/// announce route publishes through the control API, and its page renders.
#[tokio::test]
async fn the_nextjs_example_builds_and_serves() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/nextjs-chat");
    let next = format!("{example}/node_modules/next/dist/bin/next");
    assert!(
        std::path::Path::new(&format!("{example}/.next/BUILD_ID")).exists() && std::path::Path::new(&next).exists(),
        "examples/nextjs-chat is not built: scripts/test.sh runs npm ci and next build there"
    );
    let port = crate::support::free_port();
    let gateway = Gateway::start(&format!("http://127.0.0.1:{port}/api/slip")).await;
    let _next = tokio::process::Command::new("node")
        .args([next.as_str(), "start", "-p", &port.to_string(), "-H", "127.0.0.1"])
        .current_dir(example)
        .env("SLIP_CONTROL_API", format!("{}/", gateway.control))
        .env("SLIP_JWT_SECRET", SECRET)
        .env("NEXT_TELEMETRY_DISABLED", "1")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs next start");
    let page = format!("http://127.0.0.1:{port}/");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let html = loop {
        if let Ok(response) = reqwest::get(&page).await
            && response.status().is_success()
        {
            break response.text().await.unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "next start did not serve {page}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(html.contains("Cool channel"), "the page renders: {html}");

    chat_and_announce(&gateway, port).await;
}

/// The chat through the example's routes on `port`, then a publish from
/// elsewhere in the app: its announce route's `publisher.send`, signed by
/// the library, accepted by the gateway's control API.
async fn chat_and_announce(gateway: &Gateway, port: u16) {
    chat_works(gateway).await;
    // Bob left with `chat_works`: his goodbye may reach Carol at any point.
    let mut carol = Client::connect(gateway).await;
    let until = |want: &'static str| {
        let others = ["New connection has joined!", "A Connection has left"];
        move |text: String| {
            assert!(text == want || others.contains(&text.as_str()), "Carol got {text:?}");
            text == want
        }
    };
    // Her welcome comes after her SUBSCRIBE ran.
    let welcomed = until("Welcome to the cool channel, be nice or get out");
    while !welcomed(carol.text().await) {}
    let announced = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/announce"))
        .body("an announcement")
        .send()
        .await
        .unwrap();
    assert_eq!(announced.status(), 204);
    let got = until("an announcement");
    while !got(carol.text().await) {}
}
