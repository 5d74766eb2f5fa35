//! The edge's listener: HTTP/1.1 on any path. A WebSocket upgrade runs the
//! OPEN callback before anything is answered; `/healthz` and `/readyz` answer
//! plain requests.
//!
//! Outcomes of an upgrade (SLIP v4): ACCEPT → 101; no ACCEPT → 403; backend
//! error or bad reply → 502; backend timeout → 504. WebSocket-over-HTTP: 200
//! with OPEN first → 101; any other status → that status and body, as
//! Pushpin passes them on; a bad reply → 502; a timeout → 504. Only a 101
//! leaves a connection behind.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use slip_proto::callback::Event;
use slip_proto::ids::ConnectionId;
use slip_proto::woh::WsEvent;
use tokio::net::{TcpListener, TcpStream};

use crate::admission::Refusal;
use crate::callback::CallbackError;
use crate::config::{HANDSHAKE_TIMEOUT, TargetFormat};
use crate::connection::{self, Format};
use crate::effect::{self, Effect};
use crate::metadata;
use crate::node::{Edge, Ticket};
use crate::open::{self, Decision};
use crate::over_http::{self, Session};
use crate::session;
use slip_proto::session::SUBPROTOCOL;

type Body = Full<Bytes>;

/// Accepts connections until [`Edge::shutdown`].
pub async fn serve(edge: Arc<Edge>, listener: TcpListener) -> std::io::Result<()> {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = edge.stopping.cancelled() => return Ok(()),
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        edge.tasks.spawn(serve_http(edge.clone(), stream, peer));
    }
}

/// Bytes hyper buffers to read one request (hyper's own default is ~400 KiB):
/// room for a handshake of [`metadata::MAX_HANDSHAKE_BYTES`] and its request
/// line; beyond it hyper answers 431 itself.
const MAX_REQUEST_READ_BYTES: usize = 2 * metadata::MAX_HANDSHAKE_BYTES;

async fn serve_http(edge: Arc<Edge>, stream: TcpStream, peer: SocketAddr) {
    let stopping = edge.stopping.clone();
    let service = service_fn(move |request| handle(edge.clone(), peer, request));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .max_buf_size(MAX_REQUEST_READ_BYTES)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        _ = stopping.cancelled() => {
            // The request in progress is answered; the connection then closes.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "http connection ended with an error");
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn refused(reason: &'static str) {
    slip_metrics::metrics().upgrades_refused.get_or_create(&slip_metrics::kind(reason)).inc();
}

fn html(page: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(page.as_bytes())));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

async fn handle(
    edge: Arc<Edge>,
    peer: SocketAddr,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if !fastwebsockets::upgrade::is_upgrade_request(&request) {
        return Ok(match (request.uri().path(), &edge.config.landing_page) {
            ("/healthz", _) => plain(StatusCode::OK, "ok\n"),
            ("/readyz", _) if edge.is_ready() => plain(StatusCode::OK, "ready\n"),
            ("/readyz", _) if edge.admission.is_draining() => plain(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
            ("/readyz", _) => plain(StatusCode::SERVICE_UNAVAILABLE, "no link to the control plane\n"),
            ("/", Some(page)) => html(page),
            _ => plain(StatusCode::UPGRADE_REQUIRED, "this is a WebSocket endpoint\n"),
        });
    }
    if edge.view_term() == 0 {
        // No view of the control plane yet: a SUBSCRIBE or a publish now
        // would find no channel owner to go to, and be lost.
        refused("no_view");
        return Ok(plain(StatusCode::SERVICE_UNAVAILABLE, "not yet linked to the control plane; connect again\n"));
    }
    let slot = match edge.admit() {
        Ok(slot) => slot,
        Err(Refusal::Draining) => {
            refused("draining");
            return Ok(plain(StatusCode::SERVICE_UNAVAILABLE, "draining; connect again\n"));
        }
        Err(Refusal::Full) => {
            refused("full");
            return Ok(plain(StatusCode::SERVICE_UNAVAILABLE, "too many connections\n"));
        }
    };
    if metadata::handshake_bytes(&request) > metadata::MAX_HANDSHAKE_BYTES {
        refused("too_large");
        return Ok(plain(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "handshake headers over 16 KiB\n"));
    }
    let id = ConnectionId::generate(edge.node_id()).to_string();
    // Sessions ride on SLIP v4 callbacks; a WebSocket-over-HTTP backend picks its own subprotocol.
    let session = edge.config.target_format == TargetFormat::Slip && session::offered(&request);
    let mut metadata = metadata::from_handshake(&request, peer);
    if session {
        metadata["protocol"] = SUBPROTOCOL.into();
        if let Some(query) = metadata["query"].as_str() {
            metadata["query"] = session::without_resume_token(query).into();
        }
    }
    let metadata: Arc<str> = metadata.to_string().into();
    // A session's client coming back with its latest token resumes it; any
    // other token gets a fresh session, which still reads the client's
    // resume frame for where it stood in its channels (`rejoin`).
    let token = session.then(|| session::resume_token(&request)).flatten();
    let rejoin = token.is_some();
    let ticket = match token {
        Some(token) => {
            let ticket = edge.resume_ticket(token).await;
            if ticket.is_none() {
                slip_metrics::metrics().sessions.get_or_create(&slip_metrics::kind("refused")).inc();
            }
            ticket
        }
        None => None,
    };
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok(upgrade) => upgrade,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "bad upgrade request");
            if let Some(ticket) = ticket {
                edge.park(&ticket.id, ticket.generation, slot);
            }
            return Ok(plain(StatusCode::BAD_REQUEST, "bad WebSocket upgrade request\n"));
        }
    };
    if let Some(ticket) = ticket {
        return Ok(resumed(edge, slot, response, upgrade, ticket));
    }
    let opened = match edge.config.target_format {
        TargetFormat::Slip => open_slip(&edge, &id, &metadata).await,
        TargetFormat::WebSocketOverHttp => open_over_http(&edge, &id, &request, peer).await,
    };
    let Opened { protocol, effects, format } = match opened {
        Ok(opened) => opened,
        Err(response) => return Ok(response),
    };
    let protocol = if session { Some(SUBPROTOCOL.to_owned()) } else { protocol };
    let outbox = connection::accepted(&edge, &id, metadata.clone(), session);
    slip_metrics::metrics().connections_opened.inc();
    let mut response = response.map(|_| Full::new(Bytes::new()));
    if let Some(protocol) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        response.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    edge.clone().tasks.spawn(async move {
        // The slot is held until the connection's last callback is done.
        match upgraded_stream(upgrade).await {
            Ok((stream, early)) => {
                let opening = connection::Opening { outbox, effects, format, session, resume: None, rejoin, slot };
                connection::run(edge, id, stream, early, opening).await;
            }
            Err(e) => {
                // Accepted but gone before the upgrade finished: the backend
                // still hears that the connection closed.
                tracing::debug!(connection = %id, error = %e, "upgrade failed after ACCEPT");
                edge.connection_closed(&id);
                match format {
                    Format::Slip => {
                        let close = [Event::close(&id, Some(1006), None)];
                        let _ = edge.callbacks.post(&id, &metadata, &close).await;
                        edge.record_closed(&id);
                    }
                    Format::OverHttp(session) => {
                        let request = session.request(&id, &[WsEvent::Disconnect]);
                        let _ = edge.callbacks.post_over_http(&request).await;
                    }
                }
            }
        }
    });
    Ok(response)
}

/// A session resumed: the 101 with no OPEN callback; the connection goes on
/// under the session's id, with its metadata and subscriptions.
fn resumed(
    edge: Arc<Edge>,
    slot: crate::admission::Slot,
    response: Response<http_body_util::Empty<Bytes>>,
    upgrade: fastwebsockets::upgrade::UpgradeFut,
    ticket: Ticket,
) -> Response<Body> {
    let mut response = response.map(|_| Full::new(Bytes::new()));
    response.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL));
    edge.clone().tasks.spawn(async move {
        match upgraded_stream(upgrade).await {
            Ok((stream, early)) => {
                let id = ticket.id.clone();
                let opening = connection::Opening {
                    outbox: Arc::new(crate::outbox::Outbox::new(edge.config.outbox)),
                    effects: Vec::new(),
                    format: Format::Slip,
                    session: true,
                    resume: Some(ticket),
                    rejoin: false,
                    slot,
                };
                connection::run(edge, id, stream, early, opening).await;
            }
            // Gone again before the upgrade finished: parked again.
            Err(_) => edge.park(&ticket.id, ticket.generation, slot),
        }
    });
    response
}

/// An accepted opening: the subprotocol to answer with, what the backend's
/// reply asked for, and the callback format with what it keeps per connection.
struct Opened {
    protocol: Option<String>,
    effects: Vec<Effect>,
    format: Format,
}

fn backend_failed(id: &str, e: CallbackError) -> Response<Body> {
    if e == CallbackError::Timeout {
        tracing::warn!(connection = %id, "OPEN callback timed out");
        refused("backend_timeout");
        return plain(StatusCode::GATEWAY_TIMEOUT, "backend timed out\n");
    }
    tracing::warn!(connection = %id, error = %e, "OPEN callback failed");
    refused("backend_error");
    plain(StatusCode::BAD_GATEWAY, "backend failed\n")
}

/// SLIP v4: the reply must ACCEPT (see `open.rs`).
async fn open_slip(edge: &Edge, id: &str, metadata: &str) -> Result<Opened, Response<Body>> {
    let open = [Event::Open { connection_id: id.to_owned() }];
    let commands = edge.callbacks.post(id, metadata, &open).await.map_err(|e| backend_failed(id, e))?;
    match open::decide(id, commands) {
        Decision::Accept { protocol, commands } => {
            Ok(Opened { protocol, effects: effect::from_commands(commands), format: Format::Slip })
        }
        Decision::Refuse => {
            refused("refused");
            Err(plain(StatusCode::FORBIDDEN, "connection refused by the backend\n"))
        }
    }
}

/// WebSocket-over-HTTP: the reply must be 200 with OPEN first; any other
/// answer is passed on to the client, as Pushpin does.
async fn open_over_http<B>(
    edge: &Edge,
    id: &str,
    request: &Request<B>,
    peer: SocketAddr,
) -> Result<Opened, Response<Body>> {
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let path_and_query = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let client_ip = peer.ip().to_canonical().to_string();
    let mut session = Session::new(&headers, edge.callbacks.target(), path_and_query, &client_ip);
    let open = session.request(id, &[WsEvent::Open]);
    let reply = edge.callbacks.post_over_http(&open).await.map_err(|e| backend_failed(id, e))?;
    match session.open(&reply, id) {
        Ok((protocol, effects)) => Ok(Opened { protocol, effects, format: Format::OverHttp(session) }),
        Err(over_http::Refusal::Rejected { status, body }) => {
            refused("refused");
            let mut response = Response::new(Full::new(body));
            *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            Err(response)
        }
        Err(over_http::Refusal::BadReply(e)) => {
            tracing::warn!(connection = %id, error = %e, "bad reply to OPEN");
            refused("backend_error");
            Err(plain(StatusCode::BAD_GATEWAY, "backend failed\n"))
        }
    }
}

/// The raw TCP stream under a finished upgrade, and any bytes hyper read past
/// the handshake. fastwebsockets' own reader keeps an 8 KiB buffer per socket
/// for its whole life; we read frames ourselves with none while idle.
async fn upgraded_stream(upgrade: fastwebsockets::upgrade::UpgradeFut) -> Result<(TcpStream, Bytes), String> {
    let ws = upgrade.await.map_err(|e| e.to_string())?;
    let upgraded = ws.into_inner().into_inner();
    let parts =
        upgraded.downcast::<TokioIo<TcpStream>>().map_err(|_| "upgraded connection is not a TCP stream".to_string())?;
    Ok((parts.io.into_inner(), parts.read_buf))
}
