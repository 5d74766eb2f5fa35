//! gRPC `slip.v1.Control`: thin translations onto [`ControlPlane`].

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use slip_proto::close::CloseCode;
use slip_proto::link_pb::{
    CloseConnection, ConnectionCommand, Message, channel_event, connection_command::Op, message,
};
use slip_proto::pb::control_server::{Control, ControlServer};
use slip_proto::pb::{
    ChannelInfo, CloseChannelReply, CloseChannelRequest, CloseReply, CloseRequest, ConnectionInfo, GetChannelRequest,
    GetConnectionRequest, HistoryReply, HistoryRequest, Member, PresenceReply, PresenceRequest, Publication,
    PublishReply, PublishRequest, PublishStreamReply, SendReply, SendRequest, SetMetadataReply, SetMetadataRequest,
    SubscriptionReply, SubscriptionRequest, publication, publish_request, send_request,
};
use slip_proto::route;
use tonic::{Request, Response, Status, Streaming};

use crate::auth;
use crate::plane::{ControlError, ControlPlane, Published, Receipt};

/// The most a `PublishStream` call may carry before it is cut off.
pub const MAX_STREAM_PUBLISHES: u64 = 100_000_000;
/// Publishes of one `PublishStream` awaiting their owner's confirmation at
/// once; past it the stream waits for the oldest.
pub const MAX_STREAM_IN_FLIGHT: usize = 1024;

impl From<ControlError> for Status {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Invalid(m) => Status::invalid_argument(m),
            ControlError::NotFound(m) => Status::not_found(m),
            ControlError::Unavailable(m) => Status::unavailable(m),
        }
    }
}

pub struct ControlService {
    plane: Arc<ControlPlane>,
}

/// Refuses calls without a valid `authorization: Bearer <jwt>`.
#[derive(Clone)]
pub struct Authenticator {
    auth: auth::ControlAuth,
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        match self.auth.check(header) {
            Ok(()) => Ok(request),
            Err(e) => Err(Status::unauthenticated(e.to_string())),
        }
    }
}

impl Authenticator {
    pub fn new(auth: auth::ControlAuth) -> Self {
        Self { auth }
    }
}

/// The gRPC service; `server.rs` puts it behind the JWT check.
pub fn server(plane: Arc<ControlPlane>) -> ControlServer<ControlService> {
    ControlServer::new(ControlService { plane })
}

fn publish_body(message: Option<publish_request::Message>) -> Result<channel_event::Body, Status> {
    match message {
        Some(publish_request::Message::Text(text)) => Ok(channel_event::Body::Text(text)),
        Some(publish_request::Message::Binary(data)) => Ok(channel_event::Body::Binary(data)),
        None => Err(Status::invalid_argument("publish needs text or binary")),
    }
}

fn check_size(len: usize, max: usize) -> Result<(), Status> {
    slip_proto::limits::check_message_size_within(len, max).map_err(Status::invalid_argument)
}

impl ControlService {
    /// Sends one publish on its way; its confirmation is waited on apart.
    fn publish_start(&self, request: PublishRequest) -> Result<Receipt, Status> {
        let body = publish_body(request.message)?;
        if let channel_event::Body::Text(t) = &body {
            check_size(t.len(), self.plane.max_message_bytes())?;
        }
        if let channel_event::Body::Binary(b) = &body {
            check_size(b.len(), self.plane.max_message_bytes())?;
        }
        let mut publish = route::publish(request.channel, body);
        publish.idempotency_key = request.idempotency_key;
        Ok(self.plane.publish_start(publish)?)
    }

    async fn confirmed(&self, receipt: Receipt) -> Result<Published, Status> {
        Ok(receipt.wait(&self.plane).await?)
    }

    async fn command(&self, connection_id: String, op: Op) -> Result<(), Status> {
        Ok(self.plane.connection_command(route::connection(connection_id, op), true).await?)
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn publish(&self, request: Request<PublishRequest>) -> Result<Response<PublishReply>, Status> {
        let receipt = self.publish_start(request.into_inner())?;
        let published = self.confirmed(receipt).await?;
        Ok(Response::new(PublishReply { offset: published.offset, edges: published.edges, epoch: published.epoch }))
    }

    async fn publish_stream(
        &self,
        request: Request<Streaming<PublishRequest>>,
    ) -> Result<Response<PublishStreamReply>, Status> {
        let mut stream = request.into_inner();
        let mut published = 0;
        // Started in order as they come; confirmed in order, many at a time.
        let mut waiting = FuturesOrdered::new();
        let mut ended = false;
        while !ended || !waiting.is_empty() {
            tokio::select! {
                next = stream.next(), if !ended && waiting.len() < MAX_STREAM_IN_FLIGHT => match next {
                    Some(request) => {
                        let receipt = self.publish_start(request?)?;
                        waiting.push_back(self.confirmed(receipt));
                    }
                    None => ended = true,
                },
                Some(confirmed) = waiting.next(), if !waiting.is_empty() => {
                    confirmed?;
                    published += 1;
                    if published >= MAX_STREAM_PUBLISHES {
                        return Err(Status::resource_exhausted("publish stream too long; open a new one"));
                    }
                }
            }
        }
        Ok(Response::new(PublishStreamReply { published }))
    }

    async fn send(&self, request: Request<SendRequest>) -> Result<Response<SendReply>, Status> {
        let request = request.into_inner();
        let body = match request.message {
            Some(send_request::Message::Text(t)) => {
                check_size(t.len(), self.plane.max_message_bytes())?;
                message::Body::Text(t)
            }
            Some(send_request::Message::Binary(b)) => {
                check_size(b.len(), self.plane.max_message_bytes())?;
                message::Body::Binary(b)
            }
            None => return Err(Status::invalid_argument("send needs text or binary")),
        };
        self.command(request.connection_id, Op::Send(Message { body: Some(body) })).await?;
        Ok(Response::new(SendReply {}))
    }

    async fn close(&self, request: Request<CloseRequest>) -> Result<Response<CloseReply>, Status> {
        let request = request.into_inner();
        let code = match request.code {
            0 => route::DEFAULT_CLOSE_CODE,
            code => CloseCode::from_u32(code)
                .ok_or_else(|| Status::invalid_argument(format!("close code {code} may not be sent")))?,
        };
        let close = CloseConnection { code: code.into(), reason: request.reason };
        self.command(request.connection_id, Op::Close(close)).await?;
        Ok(Response::new(CloseReply {}))
    }

    async fn close_channel(
        &self,
        request: Request<CloseChannelRequest>,
    ) -> Result<Response<CloseChannelReply>, Status> {
        let channel = request.into_inner().channel;
        self.plane.publish(route::publish(channel, channel_event::Body::CloseChannel(true))).await?;
        Ok(Response::new(CloseChannelReply {}))
    }

    async fn subscribe(&self, request: Request<SubscriptionRequest>) -> Result<Response<SubscriptionReply>, Status> {
        let request = request.into_inner();
        slip_proto::channel::validate(&request.channel).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let presence = match request.presence_json.trim() {
            "" => String::new(),
            json => {
                let info: serde_json::Value = serde_json::from_str(json)
                    .map_err(|e| Status::invalid_argument(format!("presence is not JSON: {e}")))?;
                slip_proto::command::check_presence(&info).map_err(Status::invalid_argument)?;
                info.to_string()
            }
        };
        let command = ConnectionCommand {
            presence,
            join_leave: request.join_leave,
            ..route::connection(request.connection_id, Op::Subscribe(request.channel))
        };
        self.plane.connection_command(command, true).await?;
        Ok(Response::new(SubscriptionReply {}))
    }

    async fn unsubscribe(&self, request: Request<SubscriptionRequest>) -> Result<Response<SubscriptionReply>, Status> {
        let request = request.into_inner();
        slip_proto::channel::validate(&request.channel).map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.command(request.connection_id, Op::Unsubscribe(request.channel)).await?;
        Ok(Response::new(SubscriptionReply {}))
    }

    async fn set_metadata(&self, request: Request<SetMetadataRequest>) -> Result<Response<SetMetadataReply>, Status> {
        let request = request.into_inner();
        let json = if request.metadata_json.trim().is_empty() { "null".to_owned() } else { request.metadata_json };
        let value: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| Status::invalid_argument(format!("metadata is not JSON: {e}")))?;
        let compact = value.to_string();
        if compact.len() > slip_proto::limits::MAX_METADATA_BYTES {
            return Err(Status::invalid_argument("metadata too large"));
        }
        self.command(request.connection_id, Op::SetMetadata(compact)).await?;
        Ok(Response::new(SetMetadataReply {}))
    }

    async fn get_connection(&self, request: Request<GetConnectionRequest>) -> Result<Response<ConnectionInfo>, Status> {
        let state = self.plane.get_connection(&request.into_inner().connection_id).await?;
        Ok(Response::new(ConnectionInfo {
            connection_id: state.connection_id,
            metadata_json: state.metadata_json,
            channels: state.channels,
            edge: state.edge,
            region: state.region,
        }))
    }

    async fn get_channel(&self, request: Request<GetChannelRequest>) -> Result<Response<ChannelInfo>, Status> {
        let summary = self.plane.get_channel(&request.into_inner().channel).await?;
        Ok(Response::new(summary.into()))
    }

    async fn history(&self, request: Request<HistoryRequest>) -> Result<Response<HistoryReply>, Status> {
        let request = request.into_inner();
        let history =
            self.plane.history(&request.channel, &request.since_epoch, request.since_offset, request.limit).await?;
        let publications = history
            .publications
            .into_iter()
            .filter_map(|p| {
                let message = match p.event.body? {
                    channel_event::Body::Text(t) => publication::Message::Text(t),
                    channel_event::Body::Binary(b) => publication::Message::Binary(b),
                    _ => return None,
                };
                Some(Publication { offset: p.offset, message: Some(message) })
            })
            .collect();
        Ok(Response::new(HistoryReply {
            epoch: history.epoch.to_string(),
            top_offset: history.top_offset,
            publications,
            complete: history.complete,
        }))
    }

    async fn presence(&self, request: Request<PresenceRequest>) -> Result<Response<PresenceReply>, Status> {
        let request = request.into_inner();
        let (members, count) = self.plane.presence(&request.channel, request.limit).await?;
        let members = members.into_iter().map(|(connection_id, info)| Member { connection_id, info }).collect();
        Ok(Response::new(PresenceReply { members, count }))
    }
}
