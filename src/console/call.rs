//! One console API call: who makes it (its bearer key, or none on an open
//! server), how it reaches the node that runs a session as that caller,
//! and how its answer goes back as JSON. The routes (`api`), the event
//! stream (`events`) and the forwarding (`forward`) share it.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::response::Response;
use http::request::Parts;

use super::Console;
use super::forward::{Answer, Owner, credentials, refusal};
use crate::domain::Error;
use crate::domain::access::Caller;
use crate::domain::session::SessionId;

/// An API call's caller, from its bearer key (none on an open server),
/// and how to reach the node that runs a session as that caller.
pub(super) struct Call {
    pub(super) console: Arc<Console>,
    pub(super) caller: Caller,
    credentials: tonic::metadata::MetadataMap,
}

impl FromRequestParts<Arc<Console>> for Call {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Response> {
        // A 401 without `www-authenticate`: the page asks for a key.
        let caller = console
            .caller(&parts.headers)
            .await
            .map_err(|e| reply(refusal(e)))?;
        Ok(Self {
            console: console.clone(),
            caller,
            credentials: credentials(&parts.headers),
        })
    }
}

impl Call {
    pub(super) fn owner(&self) -> Owner<'_> {
        Owner {
            console: &self.console,
            credentials: self.credentials.clone(),
        }
    }
}

pub(super) fn reply((status, body): Answer) -> Response {
    crate::front::http::json(status, &body)
}

pub(super) fn done(outcome: Result<Answer, Error>) -> Response {
    reply(outcome.unwrap_or_else(refusal))
}

pub(super) fn session_id(id: &str) -> Result<SessionId, Error> {
    crate::wire::proto::session_id("session_id", id)
}
