//! The floor: a bare fastwebsockets broadcast server, no callbacks, no
//! routing, no queues bounded in bytes. What this machine can do at best, so
//! we can say how far from it the gateway is. Runs in its own process
//! (the hidden `slip-bench floor` command).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use fastwebsockets::{Frame, OpCode, Payload};
use http_body_util::Empty;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::{Mutex, mpsc};

/// Messages queued per client before the floor drops for it.
const QUEUE: usize = 1024;

type Subscribers = Arc<Mutex<Vec<mpsc::Sender<Bytes>>>>;

/// Serves until killed; prints `<ws url> <publish url>`.
pub async fn serve() -> anyhow::Result<()> {
    let subscribers: Subscribers = Arc::default();
    let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let ws_addr = ws.local_addr()?;
    let publish = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let publish_addr = publish.local_addr()?;
    let subs = subscribers.clone();
    let app = axum::Router::new().route(
        "/publish",
        axum::routing::post(move |body: Bytes| {
            let subs = subs.clone();
            async move {
                for subscriber in subs.lock().await.iter() {
                    let _ = subscriber.try_send(body.clone());
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(publish, app).await });
    println!("ws://{ws_addr}/ http://{publish_addr}/publish");
    loop {
        let (stream, _) = ws.accept().await?;
        let _ = stream.set_nodelay(true);
        let subscribers = subscribers.clone();
        tokio::spawn(async move {
            let service = service_fn(move |mut request| {
                let subscribers = subscribers.clone();
                async move {
                    let Ok((response, upgrade)) = fastwebsockets::upgrade::upgrade(&mut request) else {
                        return Ok::<_, Infallible>(hyper::Response::new(Empty::<Bytes>::new()));
                    };
                    let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
                    subscribers.lock().await.push(tx);
                    tokio::spawn(async move {
                        let Ok(mut ws) = upgrade.await else { return };
                        while let Some(message) = rx.recv().await {
                            let frame = Frame::new(true, OpCode::Text, None, Payload::Borrowed(&message));
                            if ws.write_frame(frame).await.is_err() {
                                return;
                            }
                        }
                    });
                    Ok(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}
