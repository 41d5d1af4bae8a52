//! The console's answers as the page gets them: engine errors and gRPC
//! statuses as HTTP ones, and calls on another node's session forwarded to
//! that node as the page's own caller (see [`crate::cluster`]).

use http::StatusCode;
use http::header::HeaderMap;
use serde_json::json;

use super::Console;
use crate::domain::Error;
use crate::front::http::bearer;
use crate::pb;
use crate::wire::json::session_json;

/// An API answer: a status and a JSON body.
pub(super) type Answer = (StatusCode, serde_json::Value);

/// An engine error as the HTTP status of its gRPC code, and its message.
pub(super) fn refusal(error: Error) -> Answer {
    status_answer(tonic::Status::from(error))
}

/// A gRPC status (this node's, or the answer of the node that runs the
/// session) as an HTTP status and the status's message.
fn status_answer(status: tonic::Status) -> Answer {
    let http = match status.code() {
        tonic::Code::InvalidArgument | tonic::Code::OutOfRange => StatusCode::BAD_REQUEST,
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::AlreadyExists | tonic::Code::Aborted => StatusCode::CONFLICT,
        tonic::Code::FailedPrecondition => StatusCode::CONFLICT,
        tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (
        http,
        json!({"error": status.message(), "code": format!("{:?}", status.code())}),
    )
}

/// A refusal as answered to the page: this node's, or another node's.
pub(super) struct Answered(pub(super) Answer);

impl From<Error> for Answered {
    fn from(error: Error) -> Self {
        Self(refusal(error))
    }
}

/// How the console reaches the node that runs a session: the caller's own
/// key, as the gRPC API forwards it (see [`crate::cluster`]).
pub(super) struct Owner<'a> {
    pub(super) console: &'a Console,
    pub(super) credentials: tonic::metadata::MetadataMap,
}

impl Owner<'_> {
    pub(super) async fn forward<Req, Res, Fut>(
        &self,
        node: &str,
        message: Req,
        call: impl FnOnce(
            crate::pb::session_service_client::SessionServiceClient<tonic::transport::Channel>,
            tonic::Request<Req>,
        ) -> Fut,
    ) -> Result<Res, Answered>
    where
        Fut: std::future::Future<Output = Result<tonic::Response<Res>, tonic::Status>>,
    {
        let answered = self
            .console
            .peers
            .call(node, &self.credentials, message, call)
            .await;
        answered
            .map(tonic::Response::into_inner)
            .map_err(|s| Answered(status_answer(s)))
    }
}

/// The `authorization` the page sent, for a call forwarded as its caller.
pub(super) fn credentials(headers: &HeaderMap) -> tonic::metadata::MetadataMap {
    let mut metadata = tonic::metadata::MetadataMap::new();
    if let Some(value) = bearer(headers).and_then(|key| format!("Bearer {key}").parse().ok()) {
        metadata.insert("authorization", value);
    }
    metadata
}

/// A session another node answered with, as the page gets it.
pub(super) fn shown(answered: Result<Option<pb::Session>, Answered>) -> Result<Answer, Error> {
    Ok(match answered {
        Ok(session) => (
            StatusCode::OK,
            json!({"session": session_json(&session.unwrap_or_default())}),
        ),
        Err(refused) => refused.0,
    })
}
