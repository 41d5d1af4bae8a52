//! The gRPC face of the engine: protos to domain types and back (through
//! [`crate::wire::proto`], which the console and the CLI share), and engine errors to `tonic::Status` in one exhaustive place ([`status`]),
//! which also attaches the `google.rpc` error details a program acts on and
//! logs each refusal at the level its cause deserves. Holds no business
//! logic.

mod admin;
mod contexts;
mod status;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::access::Access;
use crate::cluster::{Peers, peers};
use crate::domain::Error;
use crate::domain::access::Caller;
use crate::pb;
use crate::pb::session_service_client::SessionServiceClient;
use crate::pb::session_service_server::{SessionService, SessionServiceServer};
use crate::sessions::{Engine, Target};
use crate::wire::proto::{
    self, event_kinds, metadata, optional_duration, session_id, statuses, to_pb_event,
    to_pb_session, untrusted,
};
pub use admin::AdminServiceHandler;
pub use contexts::ContextServiceHandler;
use status::watch_end;

pub struct SessionServiceHandler {
    engine: Engine,
    access: Arc<Access>,
    /// Carries calls on other nodes' sessions to those nodes.
    peers: Arc<Peers>,
}

impl SessionServiceHandler {
    pub fn new(engine: Engine, access: Arc<Access>, peers: Arc<Peers>) -> Self {
        Self {
            engine,
            access,
            peers,
        }
    }

    /// Runs `here` on this node, or, when the session runs on another node
    /// (and the call was not forwarded here already), sends the call there.
    async fn here_or_owner<Req: Clone, Res, T, Fut>(
        &self,
        metadata: &MetadataMap,
        message: &Req,
        here: impl Future<Output = Result<T, Error>>,
        answer: impl FnOnce(T) -> Res,
        call: impl FnOnce(SessionServiceClient<Channel>, Request<Req>) -> Fut,
    ) -> Result<Response<Res>, Status>
    where
        Fut: Future<Output = Result<Response<Res>, Status>>,
    {
        match here.await {
            Ok(done) => Ok(Response::new(answer(done))),
            Err(Error::Elsewhere { node, .. }) if !Peers::forwarded(metadata) => {
                self.peers
                    .call(&node, metadata, message.clone(), call)
                    .await
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn into_server(self) -> SessionServiceServer<Self> {
        SessionServiceServer::new(self)
    }

    fn show(&self, session: &crate::domain::session::Session, caller: &Caller) -> pb::Session {
        to_pb_session(session, self.engine.connect_url(session, caller))
    }
}

/// Who sent `request`, from its `authorization` metadata.
async fn caller_of<T>(access: &Access, request: &Request<T>) -> Result<Caller, Status> {
    let header = request
        .metadata()
        .get("authorization")
        .map(|v| v.as_bytes());
    let caller = access.caller(header).await?;
    // On the handler's span, so traces say who called.
    tracing::Span::current().record("browserd.actor", caller.actor.recorded(None));
    Ok(caller)
}

/// Whether a node's refusal of a new session means "try another node": it
/// is full, it takes no session now, or it cannot be reached.
fn full_or_gone(status: &Status) -> bool {
    peers::not_reached(status) || status::refuses_placement(status)
}

pub type WatchSessionsStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchSessionsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl SessionService for SessionServiceHandler {
    #[tracing::instrument(skip_all, fields(session.id = tracing::field::Empty, browserd.actor = tracing::field::Empty))]
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let caller = caller_of(&self.access, &request).await?;
        let headers = request.metadata().clone();
        let message = request.into_inner();
        let pb::CreateSessionRequest {
            timeout,
            inactivity_timeout,
            keep_alive,
            metadata: labels,
            viewport,
            user_agent,
            proxy_url,
            idempotency_key,
            context,
            egress,
        } = message.clone();
        let egress = egress.unwrap_or_default();
        let request = crate::sessions::CreateRequest {
            timeout: optional_duration("timeout", timeout)?,
            inactivity_timeout: optional_duration("inactivity_timeout", inactivity_timeout)?,
            keep_alive,
            metadata: metadata(labels),
            viewport: viewport.map(|pb::Viewport { width, height }| {
                crate::domain::launch::Viewport { width, height }
            }),
            user_agent,
            proxy_url,
            idempotency_key,
            context: context
                .map(
                    |pb::SessionContext {
                         context_id,
                         persist,
                     }| {
                        Ok::<_, Error>(crate::domain::session::SessionContext {
                            context_id: proto::context_id("context.context_id", &context_id)?,
                            persist,
                        })
                    },
                )
                .transpose()?,
            egress_allow: egress.allow,
            egress_deny: egress.deny,
        };
        // A call forwarded here is placed here: the forwarding node chose.
        let targets = if Peers::forwarded(&headers) {
            vec![Target::Here]
        } else {
            self.engine.placement(&request).await?
        };
        let tried_peers = targets.iter().any(|t| matches!(t, Target::Node(_)));
        let mut refusal = None;
        for target in targets {
            let refused = match target {
                Target::Here => match self.engine.create(&caller, request.clone()).await {
                    Ok(session) => {
                        tracing::Span::current().record("session.id", session.id.to_string());
                        return Ok(Response::new(pb::CreateSessionResponse {
                            session: Some(self.show(&session, &caller)),
                        }));
                    }
                    Err(e @ (Error::ResourceExhausted(_) | Error::NotPlaced(_))) => Status::from(e),
                    Err(e) => return Err(e.into()),
                },
                Target::Node(node) => {
                    let forwarded = self
                        .peers
                        .call(&node, &headers, message.clone(), |mut c, r| async move {
                            c.create_session(r).await
                        })
                        .await;
                    match forwarded {
                        Ok(created) => return Ok(created),
                        Err(status) if full_or_gone(&status) => status,
                        Err(status) => return Err(status),
                    }
                }
            };
            refusal = Some(refused);
        }
        Err(match refusal {
            Some(refused) if !tried_peers => refused,
            _ => status::cluster_full(),
        })
    }

    #[tracing::instrument(skip_all, fields(session.id = %untrusted(&request.get_ref().session_id), browserd.actor = tracing::field::Empty))]
    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let caller = caller_of(&self.access, &request).await?;
        let pb::GetSessionRequest { session_id: id } = request.into_inner();
        let session = self
            .engine
            .get(&caller, session_id("session_id", &id)?)
            .await?;
        Ok(Response::new(pb::GetSessionResponse {
            session: Some(self.show(&session, &caller)),
        }))
    }

    #[tracing::instrument(skip_all, fields(browserd.actor = tracing::field::Empty))]
    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let caller = caller_of(&self.access, &request).await?;
        let pb::ListSessionsRequest {
            statuses: wanted,
            metadata: labels,
            page_size,
            page_token,
            project,
        } = request.into_inner();
        let page_size = proto::page_size(page_size)?;
        let filter = crate::domain::session::SessionFilter {
            statuses: statuses(&wanted)?,
            metadata: metadata(labels),
            projects: Vec::new(),
        };
        let (sessions, next_page_token) = self
            .engine
            .list(&caller, filter, &project, page_size, &page_token)
            .await?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: sessions.iter().map(|s| self.show(s, &caller)).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(session.id = %untrusted(&request.get_ref().session_id), browserd.actor = tracing::field::Empty))]
    async fn release_session(
        &self,
        request: Request<pb::ReleaseSessionRequest>,
    ) -> Result<Response<pb::ReleaseSessionResponse>, Status> {
        let caller = caller_of(&self.access, &request).await?;
        let headers = request.metadata().clone();
        let message = request.into_inner();
        let id = session_id("session_id", &message.session_id)?;
        self.here_or_owner(
            &headers,
            &message,
            self.engine.release(&caller, id),
            |session| pb::ReleaseSessionResponse {
                session: Some(self.show(&session, &caller)),
            },
            |mut c, r| async move { c.release_session(r).await },
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(browserd.actor = tracing::field::Empty))]
    async fn release_all_sessions(
        &self,
        request: Request<pb::ReleaseAllSessionsRequest>,
    ) -> Result<Response<pb::ReleaseAllSessionsResponse>, Status> {
        let caller = caller_of(&self.access, &request).await?;
        let headers = request.metadata().clone();
        let message = request.into_inner();
        let pb::ReleaseAllSessionsRequest {
            metadata: labels,
            project,
        } = message.clone();
        // This node's sessions here, every other node's by that node, all
        // at once.
        let others = if Peers::forwarded(&headers) {
            Vec::new()
        } else {
            self.engine.running_peers().await?
        };
        let (here, there) = tokio::join!(
            self.engine.release_all(&caller, metadata(labels), &project),
            futures_util::future::join_all(others.iter().map(|node| {
                self.peers
                    .call(&node.id, &headers, message.clone(), |mut c, r| async move {
                        c.release_all_sessions(r).await
                    })
            }))
        );
        let mut released_ids: Vec<String> = here?.iter().map(ToString::to_string).collect();
        for answer in there {
            released_ids.extend(answer?.into_inner().released_ids);
        }
        Ok(Response::new(pb::ReleaseAllSessionsResponse {
            released_ids,
        }))
    }

    #[tracing::instrument(skip_all, fields(session.id = %untrusted(&request.get_ref().session_id), browserd.actor = tracing::field::Empty))]
    async fn extend_session(
        &self,
        request: Request<pb::ExtendSessionRequest>,
    ) -> Result<Response<pb::ExtendSessionResponse>, Status> {
        let caller = caller_of(&self.access, &request).await?;
        let headers = request.metadata().clone();
        let message = request.into_inner();
        let id = session_id("session_id", &message.session_id)?;
        let timeout = optional_duration("timeout", message.timeout)?
            .ok_or_else(|| Error::invalid("timeout", "required"))?;
        self.here_or_owner(
            &headers,
            &message,
            self.engine.extend(&caller, id, timeout),
            |session| pb::ExtendSessionResponse {
                session: Some(self.show(&session, &caller)),
            },
            |mut c, r| async move { c.extend_session(r).await },
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(session.id = %untrusted(&request.get_ref().session_id), browserd.actor = tracing::field::Empty))]
    async fn get_live_details(
        &self,
        request: Request<pb::GetLiveDetailsRequest>,
    ) -> Result<Response<pb::GetLiveDetailsResponse>, Status> {
        let caller = caller_of(&self.access, &request).await?;
        let headers = request.metadata().clone();
        let message = request.into_inner();
        let id = session_id("session_id", &message.session_id)?;
        let here = async {
            let (pages, session) = self.engine.live_details(&caller, id).await?;
            let links = self
                .engine
                .page_live_view_urls(&caller, &session, &pages)
                .await;
            Ok((pages, self.engine.connect_url(&session, &caller), links))
        };
        self.here_or_owner(
            &headers,
            &message,
            here,
            |(pages, connect_url, links)| pb::GetLiveDetailsResponse {
                pages: pages
                    .into_iter()
                    .zip(links)
                    .map(|(p, live_view_url)| pb::Page {
                        target_id: p.target_id,
                        url: p.url,
                        title: p.title,
                        live_view_url,
                    })
                    .collect(),
                connect_url: connect_url.unwrap_or_default(),
            },
            |mut c, r| async move { c.get_live_details(r).await },
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(session.id = %untrusted(&request.get_ref().session_id), browserd.actor = tracing::field::Empty))]
    async fn create_live_view_link(
        &self,
        request: Request<pb::CreateLiveViewLinkRequest>,
    ) -> Result<Response<pb::CreateLiveViewLinkResponse>, Status> {
        let caller = caller_of(&self.access, &request).await?;
        let headers = request.metadata().clone();
        let message = request.into_inner();
        let pb::CreateLiveViewLinkRequest {
            session_id: id,
            target_id,
            control,
            ttl,
        } = message.clone();
        let id = session_id("session_id", &id)?;
        let ttl = optional_duration("ttl", ttl)?;
        let target_id = Some(target_id).filter(|t| !t.is_empty());
        self.here_or_owner(
            &headers,
            &message,
            self.engine
                .create_live_view_link(&caller, id, target_id, control, ttl),
            |(link, url)| pb::CreateLiveViewLinkResponse {
                url,
                link_id: link.id,
                expires_at: Some(proto::timestamp(link.expires_at)),
            },
            |mut c, r| async move { c.create_live_view_link(r).await },
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(browserd.actor = tracing::field::Empty))]
    async fn revoke_live_view_link(
        &self,
        request: Request<pb::RevokeLiveViewLinkRequest>,
    ) -> Result<Response<pb::RevokeLiveViewLinkResponse>, Status> {
        let caller = caller_of(&self.access, &request).await?;
        let pb::RevokeLiveViewLinkRequest { link_id } = request.into_inner();
        let revoked_at = self.engine.revoke_live_view_link(&caller, &link_id).await?;
        Ok(Response::new(pb::RevokeLiveViewLinkResponse {
            revoked_at: Some(proto::timestamp(revoked_at)),
        }))
    }

    type WatchSessionsStream = WatchSessionsStream;

    #[tracing::instrument(skip_all, fields(browserd.actor = tracing::field::Empty))]
    async fn watch_sessions(
        &self,
        request: Request<pb::WatchSessionsRequest>,
    ) -> Result<Response<Self::WatchSessionsStream>, Status> {
        let caller = caller_of(&self.access, &request).await?;
        let pb::WatchSessionsRequest {
            session_ids,
            statuses: wanted,
            metadata: labels,
            after_sequence,
            kinds,
            project,
        } = request.into_inner();
        let filter = crate::domain::session::EventFilter {
            session_ids: session_ids
                .iter()
                .enumerate()
                .map(|(i, id)| session_id(&format!("session_ids[{i}]"), id))
                .collect::<Result<_, _>>()?,
            statuses: statuses(&wanted)?,
            metadata: metadata(labels),
            kinds: event_kinds(&kinds)?,
            projects: Vec::new(),
        };
        let events = self
            .engine
            .watch(&caller, filter, &project, after_sequence)
            .await?;
        let span = tracing::Span::current();
        let stream = events.map(move |item| match item {
            Ok(event) => Ok(pb::WatchSessionsResponse {
                event: Some(to_pb_event(&event)),
            }),
            Err(end) => Err(span.in_scope(|| watch_end(end))),
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
