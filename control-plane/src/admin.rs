//! gRPC `slip.v1.Admin`, for `slip admin`: thin translations onto [`ControlPlane`].

use std::sync::Arc;

use slip_proto::pb::admin_server::{Admin, AdminServer};
use slip_proto::pb::{ChannelInfo, ChannelsReply, ChannelsRequest, DrainReply, DrainRequest, NodesReply, NodesRequest};
use tonic::{Request, Response, Status};

use crate::plane::ControlPlane;

/// Channels listed when the request does not say how many.
const DEFAULT_TOP_CHANNELS: usize = 20;
/// Most channels listed at once.
const MAX_TOP_CHANNELS: usize = 1000;

pub struct AdminService {
    plane: Arc<ControlPlane>,
}

/// The Admin service behind the same JWT check as Control.
pub fn server(plane: Arc<ControlPlane>) -> AdminServer<AdminService> {
    AdminServer::new(AdminService { plane })
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn nodes(&self, _request: Request<NodesRequest>) -> Result<Response<NodesReply>, Status> {
        Ok(Response::new(NodesReply { nodes: self.plane.nodes().await }))
    }

    async fn channels(&self, request: Request<ChannelsRequest>) -> Result<Response<ChannelsReply>, Status> {
        let limit = match request.into_inner().limit {
            0 => DEFAULT_TOP_CHANNELS,
            n => (n as usize).min(MAX_TOP_CHANNELS),
        };
        let channels = self.plane.top_channels(limit).await.into_iter().map(ChannelInfo::from).collect();
        Ok(Response::new(ChannelsReply { channels }))
    }

    async fn drain(&self, request: Request<DrainRequest>) -> Result<Response<DrainReply>, Status> {
        let connections = self.plane.drain_edge(&request.into_inner().node_id).await?;
        Ok(Response::new(DrainReply { connections }))
    }
}
