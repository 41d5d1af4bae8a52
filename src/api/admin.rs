//! The tonic `AdminService`: projects, API keys and the cluster's nodes,
//! for admin keys only.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::caller_of;
use crate::access::Access;
use crate::domain::Error;
use crate::pb;
use crate::pb::admin_service_server::{AdminService, AdminServiceServer};
use crate::sessions::Engine;
use crate::store::NodeRow;
use crate::wire::proto::{pb_duration, timestamp, to_pb_key, to_pb_project};

pub struct AdminServiceHandler {
    access: Arc<Access>,
    engine: Engine,
}

impl AdminServiceHandler {
    pub fn new(access: Arc<Access>, engine: Engine) -> Self {
        Self { access, engine }
    }

    pub fn into_server(self) -> AdminServiceServer<Self> {
        AdminServiceServer::new(self)
    }

    /// Refuses every caller but an admin.
    async fn admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let caller = caller_of(&self.access, request).await?;
        Ok(Access::admin(&caller)?)
    }
}

#[tonic::async_trait]
impl AdminService for AdminServiceHandler {
    #[tracing::instrument(skip_all, fields(browserd.actor = tracing::field::Empty))]
    async fn create_project(
        &self,
        request: Request<pb::CreateProjectRequest>,
    ) -> Result<Response<pb::CreateProjectResponse>, Status> {
        self.admin(&request).await?;
        let pb::CreateProjectRequest { name, max_sessions } = request.into_inner();
        let project = self.access.create_project(&name, max_sessions).await?;
        Ok(Response::new(pb::CreateProjectResponse {
            project: Some(to_pb_project(&project)),
        }))
    }

    #[tracing::instrument(skip_all, fields(browserd.actor = tracing::field::Empty))]
    async fn list_projects(
        &self,
        request: Request<pb::ListProjectsRequest>,
    ) -> Result<Response<pb::ListProjectsResponse>, Status> {
        self.admin(&request).await?;
        let pb::ListProjectsRequest {} = request.into_inner();
        let projects = self.access.projects().await?;
        Ok(Response::new(pb::ListProjectsResponse {
            projects: projects.iter().map(to_pb_project).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(browserd.actor = tracing::field::Empty))]
    async fn update_project(
        &self,
        request: Request<pb::UpdateProjectRequest>,
    ) -> Result<Response<pb::UpdateProjectResponse>, Status> {
        self.admin(&request).await?;
        let pb::UpdateProjectRequest { name, max_sessions } = request.into_inner();
        let project = self.access.update_project(&name, max_sessions).await?;
        Ok(Response::new(pb::UpdateProjectResponse {
            project: Some(to_pb_project(&project)),
        }))
    }

    #[tracing::instrument(skip_all, fields(browserd.actor = tracing::field::Empty))]
    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        self.admin(&request).await?;
        let pb::CreateApiKeyRequest {
            project,
            admin,
            description,
        } = request.into_inner();
        let (record, key) = self.access.create_key(&project, admin, description).await?;
        tracing::info!(key.id = %record.id, project = %record.project, admin, "API key created");
        Ok(Response::new(pb::CreateApiKeyResponse {
            api_key: Some(to_pb_key(&record)),
            key,
        }))
    }

    #[tracing::instrument(skip_all, fields(browserd.actor = tracing::field::Empty))]
    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        self.admin(&request).await?;
        let pb::ListApiKeysRequest { project } = request.into_inner();
        let keys = self.access.keys(&project).await?;
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys: keys.iter().map(to_pb_key).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(browserd.actor = tracing::field::Empty))]
    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        self.admin(&request).await?;
        let pb::RevokeApiKeyRequest { id } = request.into_inner();
        let record = self.access.revoke_key(&id).await?;
        tracing::info!(key.id = %record.id, "API key revoked");
        Ok(Response::new(pb::RevokeApiKeyResponse {
            api_key: Some(to_pb_key(&record)),
        }))
    }

    #[tracing::instrument(skip_all, fields(browserd.actor = tracing::field::Empty))]
    async fn list_nodes(
        &self,
        request: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        self.admin(&request).await?;
        let pb::ListNodesRequest {} = request.into_inner();
        let nodes = self.engine.nodes().await?;
        Ok(Response::new(pb::ListNodesResponse {
            nodes: nodes.iter().map(to_pb_node).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(browserd.actor = tracing::field::Empty))]
    async fn drain_node(
        &self,
        request: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::DrainNodeResponse>, Status> {
        self.admin(&request).await?;
        let pb::DrainNodeRequest { node_id, draining } = request.into_inner();
        if node_id.is_empty() {
            return Err(Error::invalid("node_id", "required").into());
        }
        if !self.engine.set_draining(&node_id, draining).await? {
            return Err(Error::UnknownResource {
                kind: "browserd.v1.Node",
                name: node_id,
            }
            .into());
        }
        tracing::info!(node.id = %node_id, draining, "node drain changed");
        Ok(Response::new(pb::DrainNodeResponse {}))
    }
}

fn to_pb_node(node: &NodeRow) -> pb::Node {
    let NodeRow {
        id,
        epoch,
        grpc_url,
        relay_url,
        capacity,
        sessions,
        warm,
        draining,
        started_at,
        heartbeat_age,
        lapsed: _,
        lost,
    } = node;
    let count = |n: &u64| (*n).min(u64::from(u32::MAX)) as u32;
    pb::Node {
        id: id.clone(),
        grpc_url: grpc_url.clone(),
        relay_url: relay_url.clone(),
        capacity: count(capacity),
        live_sessions: count(sessions),
        warm_browsers: count(warm),
        draining: *draining,
        lost: *lost,
        lease_age: Some(pb_duration(*heartbeat_age)),
        started_at: Some(timestamp(*started_at)),
        epoch: *epoch,
    }
}
