//! The tonic `ContextService`: protos to [`crate::contexts`] and back.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::caller_of;
use crate::access::Access;
use crate::contexts::Contexts;
use crate::pb;
use crate::pb::context_service_server::{ContextService, ContextServiceServer};
use crate::wire::proto::{context_id, metadata, page_size, to_pb_context, untrusted};

pub struct ContextServiceHandler {
    contexts: Contexts,
    access: Arc<Access>,
}

impl ContextServiceHandler {
    pub fn new(contexts: Contexts, access: Arc<Access>) -> Self {
        Self { contexts, access }
    }

    pub fn into_server(self) -> ContextServiceServer<Self> {
        ContextServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl ContextService for ContextServiceHandler {
    #[tracing::instrument(skip_all, fields(browserd.actor = tracing::field::Empty))]
    async fn create_context(
        &self,
        request: Request<pb::CreateContextRequest>,
    ) -> Result<Response<pb::CreateContextResponse>, Status> {
        let caller = caller_of(&self.access, &request).await?;
        let pb::CreateContextRequest {
            name,
            metadata: labels,
        } = request.into_inner();
        let context = self
            .contexts
            .create(&caller, name, metadata(labels))
            .await?;
        Ok(Response::new(pb::CreateContextResponse {
            context: Some(to_pb_context(&context)),
        }))
    }

    #[tracing::instrument(skip_all, fields(context.id = %untrusted(&request.get_ref().context_id), browserd.actor = tracing::field::Empty))]
    async fn get_context(
        &self,
        request: Request<pb::GetContextRequest>,
    ) -> Result<Response<pb::GetContextResponse>, Status> {
        let caller = caller_of(&self.access, &request).await?;
        let pb::GetContextRequest { context_id: id } = request.into_inner();
        let context = self
            .contexts
            .get(&caller, context_id("context_id", &id)?)
            .await?;
        Ok(Response::new(pb::GetContextResponse {
            context: Some(to_pb_context(&context)),
        }))
    }

    #[tracing::instrument(skip_all, fields(browserd.actor = tracing::field::Empty))]
    async fn list_contexts(
        &self,
        request: Request<pb::ListContextsRequest>,
    ) -> Result<Response<pb::ListContextsResponse>, Status> {
        let caller = caller_of(&self.access, &request).await?;
        let pb::ListContextsRequest {
            metadata: labels,
            page_size: size,
            page_token,
            project,
        } = request.into_inner();
        let (contexts, next_page_token) = self
            .contexts
            .list(
                &caller,
                metadata(labels),
                &project,
                page_size(size)?,
                &page_token,
            )
            .await?;
        Ok(Response::new(pb::ListContextsResponse {
            contexts: contexts.iter().map(to_pb_context).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(context.id = %untrusted(&request.get_ref().context_id), browserd.actor = tracing::field::Empty))]
    async fn delete_context(
        &self,
        request: Request<pb::DeleteContextRequest>,
    ) -> Result<Response<pb::DeleteContextResponse>, Status> {
        let caller = caller_of(&self.access, &request).await?;
        let pb::DeleteContextRequest { context_id: id } = request.into_inner();
        self.contexts
            .delete(&caller, context_id("context_id", &id)?)
            .await?;
        Ok(Response::new(pb::DeleteContextResponse {}))
    }
}
