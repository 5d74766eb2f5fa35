//! Links over QUIC (quinn). One connection per pair of nodes that talk; on
//! it each side opens its own one-way streams: a control stream (Hello
//! first, then commands, queries and replies) and [`DATA_LANES`] streams for
//! channel traffic, a channel always on the same one. Frames queue per
//! stream (bounded) and a writer per stream drains its queue in batches.
//!
//! Dialing retries with backoff until the node closes; whoever dialed, both
//! ends use the connection both ways. A peer that sends garbage has its
//! connection closed. Every task of the node is tracked: [`QuicNode::close`]
//! stops them all, and [`QuicNode::closed`] waits until they have.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use parking_lot::Mutex;
use slip_proto::ids::NodeId;
use slip_proto::link_pb::{Frame, Hello, Member, Members, Role, frame::Kind};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::framing::{self, DATA_LANES};
use crate::tls::{CertClaims, Identity, SERVER_NAME, TlsError};
use crate::{Budget, FrameHandler, LINK_QUEUE_FRAMES, Link, LinkError, same_link};

/// The peer must say Hello within this long of the connection opening.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest wait between attempts to dial a peer.
pub const DIAL_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));
/// How often a link's round-trip time is sampled into its metric.
const RTT_SAMPLE: Duration = Duration::from_secs(5);
/// Frames written per batch on one stream.
const WRITE_BATCH: usize = 256;
/// Bytes read per read call on one stream.
const READ_CHUNK: usize = 16 * 1024;
/// Application close codes.
const CLOSE_SELF: u32 = 1;
const CLOSE_BAD_FRAME: u32 = 2;
/// The peer's Hello claims a role or id its certificate does not give it.
const CLOSE_NOT_ADMITTED: u32 = 3;

/// A link to a peer over one QUIC connection, frames on its streams.
pub struct QuicLink {
    peer: NodeId,
    connection: quinn::Connection,
    /// Frames with their encoded size, which the budget holds until written.
    control: mpsc::Sender<(Frame, usize)>,
    lanes: Vec<mpsc::Sender<(Frame, usize)>>,
    budget: Budget,
}

impl Link for QuicLink {
    fn peer(&self) -> &NodeId {
        &self.peer
    }

    fn send(&self, frame: Frame) -> Result<(), LinkError> {
        let queue = match framing::lane(&frame) {
            Some(lane) => &self.lanes[lane],
            None => &self.control,
        };
        let size = prost::Message::encoded_len(&frame);
        if !self.budget.take(size) {
            return Err(LinkError::Full(self.peer.to_string()));
        }
        queue.try_send((frame, size)).map_err(|e| {
            self.budget.give(size);
            match e {
                mpsc::error::TrySendError::Full(_) => LinkError::Full(self.peer.to_string()),
                mpsc::error::TrySendError::Closed(_) => LinkError::Down(self.peer.to_string()),
            }
        })
    }

    fn rtt(&self) -> Option<Duration> {
        Some(self.connection.rtt())
    }
}

/// What the peer's leaf certificate lets it be.
fn peer_claims(connection: &quinn::Connection) -> Result<CertClaims, String> {
    let identity = connection.peer_identity().ok_or("no peer certificate")?;
    let chain = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .map_err(|_| "peer certificate of an unknown kind")?;
    let leaf = chain.first().ok_or("empty peer certificate chain")?;
    crate::tls::claims(leaf).map_err(|e| e.to_string())
}

/// How a connection ended without an error.
enum Ended {
    Closed,
    /// We dialed our own address (a peer list that names every node).
    Myself,
}

/// This node's QUIC endpoint: dials peers and, if bound to listen, accepts them.
///
/// Membership lives here too: a control node tells every peer which control
/// nodes it links to ([`Members`]), and any node dials members it has not
/// dialed yet, so a node told of one control node finds them all.
pub struct QuicNode {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    hello: Hello,
    handler: Arc<dyn FrameHandler>,
    /// Addresses this node keeps a link to (dialing or linked).
    dialing: Mutex<HashSet<SocketAddr>>,
    /// Live links, with the peer's Hello.
    live: Mutex<Vec<(Hello, Arc<dyn Link>)>>,
    /// Every task this node runs (dialers, the acceptor, connections, streams).
    tasks: TaskTracker,
    /// Cancelled by `close`: dialers and discovery stop.
    stopping: CancellationToken,
    /// Cancelled by `flush`: each stream's writer writes what is queued,
    /// ends its stream and waits for the peer to have it all.
    flushing: CancellationToken,
    /// The streams' writers (in `tasks` too), for `flush` to wait on.
    writers: TaskTracker,
}

/// Why a QUIC link endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// The certificates would not do.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The endpoint's address could not be bound.
    #[error("binding the link endpoint on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// This node's certificate does not let it be the node it says it is.
    #[error("this node's certificate does not let it be {node:?}: {reason}")]
    NotAdmitted {
        /// The node id asked for.
        node: String,
        /// Why the certificate does not give it.
        reason: String,
    },
}

impl QuicNode {
    /// An endpoint on `addr`; with `accept` it takes links from peers too.
    pub fn bind(
        addr: SocketAddr,
        accept: bool,
        identity: &Identity,
        hello: Hello,
        handler: Arc<dyn FrameHandler>,
    ) -> Result<Arc<Self>, QuicError> {
        // Peers would refuse us anyway; better to say so at start.
        identity
            .claims()
            .admits(hello.role, &hello.node_id)
            .map_err(|reason| QuicError::NotAdmitted { node: hello.node_id.clone(), reason })?;
        let server = if accept { Some(identity.server_config()?) } else { None };
        let socket = std::net::UdpSocket::bind(addr).map_err(|source| QuicError::Bind { addr, source })?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| QuicError::Bind { addr, source: std::io::Error::other("no async runtime") })?;
        let endpoint = quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket, runtime)
            .map_err(|source| QuicError::Bind { addr, source })?;
        let node = Arc::new(Self {
            endpoint,
            client: identity.client_config()?,
            hello,
            handler,
            dialing: Mutex::new(HashSet::new()),
            live: Mutex::new(Vec::new()),
            tasks: TaskTracker::new(),
            stopping: CancellationToken::new(),
            flushing: CancellationToken::new(),
            writers: TaskTracker::new(),
        });
        if accept {
            node.tasks.spawn(node.clone().accept_loop());
        }
        Ok(node)
    }

    /// Runs `task` as one of this node's own, stopped and awaited with it.
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let stopping = self.stopping.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = task => {}
                _ = stopping.cancelled() => {}
            }
        });
    }

    /// Stops keeping a link to `addr`: no further attempts once a link to it
    /// ends (a live link stays up until then). For peers that left DNS.
    pub fn forget(&self, addr: SocketAddr) {
        self.dialing.lock().remove(&addr);
    }

    /// Before [`QuicNode::close`]: every stream writes what is queued on it
    /// and ends, and this waits (at most `grace`) until the peers have
    /// acknowledged all of it. Closing a connection drops what it has not
    /// sent: the last answer a node gave on its way out (a session handed
    /// over by a draining edge) would be lost, and its asker would think
    /// the node died with it. Nothing sent on the links after this goes out.
    pub async fn flush(&self, grace: Duration) {
        self.flushing.cancel();
        self.writers.close();
        if tokio::time::timeout(grace, self.writers.wait()).await.is_err() {
            tracing::warn!(?grace, "links closed with frames not yet acknowledged");
        }
    }

    /// Closes every link of this node at once (peers hear it immediately)
    /// and stops its tasks; see [`QuicNode::closed`]. What the links have
    /// queued is dropped: [`QuicNode::flush`] first sends it.
    pub fn close(&self) {
        self.stopping.cancel();
        self.endpoint.close(0u32.into(), b"shutting down");
        self.tasks.close();
    }

    /// Resolves once every task of a closed node has ended and the peers
    /// have been told (the endpoint is idle).
    pub async fn closed(&self) {
        self.tasks.wait().await;
        self.endpoint.wait_idle().await;
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Keeps a link to `addr` up for as long as the node lives (once per address).
    pub fn dial(self: &Arc<Self>, addr: SocketAddr) {
        if !self.dialing.lock().insert(addr) {
            return;
        }
        let node = self.clone();
        // Not cancelled mid-link: a link ends when the endpoint closes, and
        // then it is reported down like any other.
        self.tasks.spawn(async move {
            let (first, longest) = DIAL_BACKOFF;
            let mut wait = first;
            while !node.stopping.is_cancelled() {
                match node.endpoint.connect_with(node.client.clone(), addr, SERVER_NAME) {
                    Ok(connecting) => match connecting.await {
                        Ok(connection) => {
                            wait = first;
                            match node.clone().run(connection).await {
                                Ok(Ended::Myself) => {
                                    tracing::debug!(%addr, "that address is this node; not dialing it");
                                    // Keep it in `dialing`, so membership never dials it again either.
                                    return;
                                }
                                Ok(Ended::Closed) => {}
                                Err(e) => tracing::debug!(%addr, error = %e, "link ended"),
                            }
                        }
                        Err(e) => tracing::debug!(%addr, error = %e, "dialing a peer failed"),
                    },
                    Err(e) => tracing::warn!(%addr, error = %e, "cannot dial peer"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = node.stopping.cancelled() => return,
                }
                wait = (wait * 2).min(longest);
                if !node.dialing.lock().contains(&addr) {
                    tracing::debug!(%addr, "no longer dialing a forgotten peer");
                    return;
                }
            }
        });
    }

    async fn accept_loop(self: Arc<Self>) {
        while let Some(incoming) = self.endpoint.accept().await {
            let node = self.clone();
            self.tasks.spawn(async move {
                match incoming.await {
                    Ok(connection) => {
                        if let Err(e) = node.run(connection).await {
                            tracing::debug!(error = %e, "accepted link ended");
                        }
                    }
                    // Includes peers whose certificate does not chain to our CA.
                    Err(e) => tracing::info!(error = %e, "refused a link"),
                }
            });
        }
    }

    /// Runs one connection: Hello both ways, then streams until it closes.
    async fn run(self: Arc<Self>, connection: quinn::Connection) -> Result<Ended, String> {
        let mut control = connection.open_uni().await.map_err(|e| e.to_string())?;
        let mut hello = BytesMut::new();
        framing::encode(&Frame { kind: Some(Kind::Hello(self.hello.clone())) }, &mut hello)
            .map_err(|e| e.to_string())?;
        control.write_all(&hello).await.map_err(|e| e.to_string())?;

        let mut their_control = tokio::time::timeout(HELLO_TIMEOUT, connection.accept_uni())
            .await
            .map_err(|_| "peer sent no Hello in time".to_string())?
            .map_err(|e| e.to_string())?;
        let mut buf = BytesMut::new();
        let theirs = tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut their_control, &mut buf))
            .await
            .map_err(|_| "peer sent no Hello in time".to_string())??;
        let Some(Kind::Hello(their_hello)) = theirs.kind else {
            connection.close(CLOSE_BAD_FRAME.into(), b"hello first");
            return Err("peer's first frame was not Hello".into());
        };
        let Ok(peer) = NodeId::parse(&their_hello.node_id) else {
            connection.close(CLOSE_BAD_FRAME.into(), b"bad node id");
            return Err(format!("peer sent a bad node id {:?}", their_hello.node_id));
        };
        if peer.as_str() == self.hello.node_id {
            connection.close(CLOSE_SELF.into(), b"that is me");
            return Ok(Ended::Myself);
        }
        // The peer is who its certificate says, or nobody.
        if let Err(reason) = peer_claims(&connection).and_then(|c| c.admits(their_hello.role, peer.as_str())) {
            connection.close(CLOSE_NOT_ADMITTED.into(), b"hello does not match certificate");
            return Err(format!("refused {peer}: {reason}"));
        }

        let budget = Budget::default();
        let (control_queue, control_frames) = mpsc::channel(LINK_QUEUE_FRAMES);
        self.spawn_writer(control, control_frames, &budget, &connection);
        let mut lanes = Vec::with_capacity(DATA_LANES);
        for _ in 0..DATA_LANES {
            let stream = connection.open_uni().await.map_err(|e| e.to_string())?;
            let (queue, frames) = mpsc::channel(LINK_QUEUE_FRAMES);
            self.spawn_writer(stream, frames, &budget, &connection);
            lanes.push(queue);
        }
        let link: Arc<dyn Link> = Arc::new(QuicLink {
            peer: peer.clone(),
            connection: connection.clone(),
            control: control_queue,
            lanes,
            budget,
        });
        tracing::info!(peer = %peer, role = their_hello.role, addr = %connection.remote_address(), "link up");
        self.handler.on_link_up(&their_hello, link.clone());
        let metrics = slip_metrics::metrics();
        metrics.link_ups.inc();
        let rtt = metrics.link_rtt_seconds.get_or_create(&slip_metrics::peer(peer.as_str())).clone();
        self.live.lock().push((their_hello.clone(), link.clone()));
        self.members_changed(&their_hello, &link);

        self.tasks.spawn(read_loop(their_control, buf, peer.clone(), self.clone(), connection.clone()));
        loop {
            tokio::select! {
                stream = connection.accept_uni() => match stream {
                    Ok(stream) => {
                        self.tasks.spawn(read_loop(stream, BytesMut::new(), peer.clone(), self.clone(), connection.clone()));
                    }
                    Err(_) => break,
                },
                _ = connection.closed() => break,
                _ = tokio::time::sleep(RTT_SAMPLE) => {
                    rtt.set(connection.rtt().as_secs_f64());
                }
            }
        }
        tracing::info!(peer = %peer, reason = %connection.close_reason().map(|r| r.to_string()).unwrap_or_default(), "link down");
        self.live.lock().retain(|(_, l)| !same_link(l, &link));
        self.handler.on_link_down(&peer, &link);
        self.members_changed(&their_hello, &link);
        Ok(Ended::Closed)
    }

    fn spawn_writer(
        &self,
        stream: quinn::SendStream,
        frames: mpsc::Receiver<(Frame, usize)>,
        budget: &Budget,
        connection: &quinn::Connection,
    ) {
        let writer = write_loop(stream, frames, budget.clone(), connection.clone(), self.flushing.clone());
        self.tasks.spawn(self.writers.track_future(writer));
    }

    /// A control node tells its peers of the control nodes it links to:
    /// everyone when a control node came or went, the new peer when any did.
    fn members_changed(&self, peer: &Hello, link: &Arc<dyn Link>) {
        if self.hello.role != Role::Control as i32 {
            return;
        }
        let live = self.live.lock().clone();
        let mut members = vec![Member { node_id: self.hello.node_id.clone(), link_addr: self.hello.link_addr.clone() }];
        for (hello, _) in live.iter().filter(|(h, _)| h.role == Role::Control as i32) {
            if !members.iter().any(|m| m.node_id == hello.node_id) {
                members.push(Member { node_id: hello.node_id.clone(), link_addr: hello.link_addr.clone() });
            }
        }
        let frame = Frame { kind: Some(Kind::Members(Members { members })) };
        let targets: Vec<Arc<dyn Link>> = if peer.role == Role::Control as i32 {
            live.into_iter().map(|(_, l)| l).collect()
        } else {
            vec![link.clone()]
        };
        for target in targets {
            let _ = target.send(frame.clone());
        }
    }

    /// Frames from a peer: membership is ours, the rest the node's.
    fn on_frame(self: &Arc<Self>, from: &NodeId, frame: Frame) {
        let Some(Kind::Members(members)) = frame.kind else {
            self.handler.on_frame(from, frame);
            return;
        };
        for member in members.members {
            if member.node_id == self.hello.node_id {
                continue;
            }
            match member.link_addr.parse::<SocketAddr>() {
                Ok(addr) => self.dial(addr),
                Err(_) if member.link_addr.is_empty() => {}
                Err(_) => tracing::debug!(addr = member.link_addr, "member address is not ip:port"),
            }
        }
    }
}

async fn read_frame(stream: &mut quinn::RecvStream, buf: &mut BytesMut) -> Result<Frame, String> {
    loop {
        if let Some(frame) = framing::decode(buf).map_err(|e| e.to_string())? {
            return Ok(frame);
        }
        buf.reserve(READ_CHUNK);
        if stream.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("stream ended".into());
        }
    }
}

async fn read_loop(
    mut stream: quinn::RecvStream,
    mut buf: BytesMut,
    peer: NodeId,
    node: Arc<QuicNode>,
    connection: quinn::Connection,
) {
    loop {
        match framing::decode(&mut buf) {
            Ok(Some(frame)) => {
                node.on_frame(&peer, frame);
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(peer = %peer, error = %e, "bad frame; closing the link");
                connection.close(CLOSE_BAD_FRAME.into(), b"bad frame");
                return;
            }
        }
        if buf.is_empty() {
            buf = BytesMut::new();
        }
        buf.reserve(READ_CHUNK);
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Drains one stream's queue until the queue's senders are gone or the
/// connection closes (the link may outlive it in a handler's hands). Once
/// `flushing`, it writes what is queued, ends the stream and returns when
/// the peer has acknowledged every byte (or the connection is gone).
async fn write_loop(
    mut stream: quinn::SendStream,
    mut frames: mpsc::Receiver<(Frame, usize)>,
    budget: Budget,
    connection: quinn::Connection,
    flushing: CancellationToken,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut out = BytesMut::new();
    loop {
        let taken = tokio::select! {
            taken = frames.recv_many(&mut batch, WRITE_BATCH) => taken,
            _ = connection.closed() => return,
            _ = flushing.cancelled() => {
                // Bounded: the queue holds at most LINK_QUEUE_FRAMES.
                frames.close();
                while let Ok(item) = frames.try_recv() {
                    batch.push(item);
                }
                let taken: usize = batch.iter().map(|(_, size)| size).sum();
                for (frame, _) in batch.drain(..) {
                    if let Err(e) = framing::encode(&frame, &mut out) {
                        tracing::warn!(error = %e, "frame not sent");
                    }
                }
                let written = stream.write_all(&out).await;
                budget.give(taken);
                if written.is_ok() && stream.finish().is_ok() {
                    let _ = stream.stopped().await;
                }
                return;
            }
        };
        if taken == 0 {
            break;
        }
        let mut taken = 0;
        for (frame, size) in batch.drain(..) {
            taken += size;
            if let Err(e) = framing::encode(&frame, &mut out) {
                tracing::warn!(error = %e, "frame not sent");
            }
        }
        let written = stream.write_all(&out).await;
        // Written (or never to be): either way no longer queued here.
        budget.give(taken);
        if written.is_err() {
            return;
        }
        out.clear();
        if out.capacity() > 1024 * 1024 {
            out = BytesMut::new();
        }
    }
    let _ = stream.finish();
}
