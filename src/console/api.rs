//! The console's JSON API, under `/console/api/`. Every request names its
//! caller with `Authorization: Bearer <API key>` (none on an open server)
//! and gets what gRPC would give that caller: each route is one engine
//! method, its errors the gRPC status codes as HTTP ones, its sessions
//! and events in the protobuf JSON mapping (`browserd sessions --json`'s).
//!
//! - `GET  sessions?status=LIVE&metadata.<key>=<value>` (ListSessions)
//! - `GET  sessions/<id>` (GetSession, with its pages while LIVE)
//! - `POST sessions/<id>/release` (ReleaseSession)
//! - `POST sessions/<id>/extend` `{"timeout_seconds": n}` (ExtendSession)
//! - `POST sessions/<id>/live` `{"target_id", "control", "ttl_seconds"}`
//!   (CreateLiveViewLink)
//! - `POST links/<id>/revoke` (RevokeLiveViewLink)
//! - `GET  events?after=<seq>&session=<id>` (WatchSessions, as
//!   Server-Sent Events; `after` absent: from now)
//! - `GET  whoami`: the caller's project and whether it is an admin.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery};
use axum::response::Response;
use axum::routing::{self, any, post};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tower_http::limit::RequestBodyLimitLayer;

use super::call::{Call, done, reply, session_id};
use super::forward::{Answer, Answered, Owner, shown};
use super::{Console, events};
use crate::domain::Error;
use crate::domain::access::Caller;
use crate::domain::session::{SessionFilter, SessionStatus};
use crate::pb;
use crate::wire::json::session_json;
use crate::wire::proto::to_pb_session;

/// Largest request body: every body is a few small fields.
const MAX_BODY: usize = 4 * 1024;
/// Sessions a list answers with at most (the console shows the newest).
const LIST_LIMIT: u64 = 200;

/// The API's routes; every other method on them is 405, every other path
/// under `/console/api/` 404, both with a JSON body.
pub(super) fn routes() -> Router<Arc<Console>> {
    let at = |path: &str| format!("/console/api/{path}");
    Router::new()
        .route(
            &at("events"),
            routing::get(events::stream).fallback(not_taken),
        )
        .route(&at("whoami"), routing::get(whoami).fallback(not_taken))
        .route(
            &at("sessions"),
            routing::get(list_sessions).fallback(not_taken),
        )
        .route(
            &at("sessions/{id}"),
            routing::get(get_session).fallback(not_taken),
        )
        .route(
            &at("sessions/{id}/release"),
            post(release_session).fallback(not_taken),
        )
        .route(
            &at("sessions/{id}/extend"),
            post(extend_session).fallback(not_taken),
        )
        .route(
            &at("sessions/{id}/live"),
            post(live_link).fallback(not_taken),
        )
        .route(
            &at("links/{id}/revoke"),
            post(revoke_link).fallback(not_taken),
        )
        .route(&at("{*rest}"), any(no_route))
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
}

async fn whoami(call: Call) -> Response {
    let caller = &call.caller;
    reply((
        StatusCode::OK,
        json!({
            "project": caller.project,
            "admin": caller.admin,
            "actor": caller.actor.recorded(None),
        }),
    ))
}

async fn list_sessions(call: Call, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    done(list(&call.console, &call.caller, &query).await)
}

async fn get_session(call: Call, Path(id): Path<String>) -> Response {
    done(get(&call.owner(), &call.caller, &id).await)
}

async fn release_session(call: Call, Path(id): Path<String>) -> Response {
    done(release(&call.owner(), &call.caller, &id).await)
}

async fn extend_session(call: Call, Path(id): Path<String>, body: Body) -> Response {
    match read_body(&call.console, body).await {
        Ok(body) => done(extend(&call.owner(), &call.caller, &id, &body).await),
        Err(refused) => refused,
    }
}

async fn live_link(call: Call, Path(id): Path<String>, body: Body) -> Response {
    match read_body(&call.console, body).await {
        Ok(body) => done(live(&call.owner(), &call.caller, &id, &body).await),
        Err(refused) => refused,
    }
}

async fn revoke_link(call: Call, Path(id): Path<String>) -> Response {
    done(revoke(&call.console, &call.caller, &id).await)
}

async fn not_taken(method: Method) -> Response {
    let method = crate::domain::error::untrusted(method.as_str());
    reply((
        StatusCode::METHOD_NOT_ALLOWED,
        json!({"error": format!("{method} is not taken here")}),
    ))
}

async fn no_route() -> Response {
    reply((
        StatusCode::NOT_FOUND,
        json!({"error": "no such console API route"}),
    ))
}

/// A request body, whole, within the console's body timeout; its size is
/// bounded by the router's limit layer.
async fn read_body(console: &Console, body: Body) -> Result<Bytes, Response> {
    let read = axum::body::to_bytes(body, usize::MAX);
    match tokio::time::timeout(console.body_timeout, read).await {
        Ok(Ok(body)) => Ok(body),
        // The limit layer's error; any other is a client gone, which reads
        // no answer.
        Ok(Err(_)) => Err(reply((
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": format!("request bodies are at most {MAX_BODY} bytes")}),
        ))),
        Err(_) => Err(reply((
            StatusCode::REQUEST_TIMEOUT,
            json!({"error": "the request body did not arrive in time"}),
        ))),
    }
}

async fn list(console: &Console, caller: &Caller, query: &str) -> Result<Answer, Error> {
    let mut filter = SessionFilter::default();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name == "status" {
            let status = SessionStatus::parse(&value).ok_or_else(|| {
                Error::invalid(
                    "status",
                    "one of PENDING, LIVE, RELEASED, FAILED".to_owned(),
                )
            })?;
            filter.statuses.push(status);
        } else if let Some(key) = name.strip_prefix("metadata.") {
            filter.metadata.insert(key.to_owned(), value.into_owned());
        }
    }
    let (sessions, _) = console
        .engine
        .list(caller, filter, "", LIST_LIMIT, "")
        .await?;
    let sessions: Vec<Value> = sessions
        .iter()
        .map(|s| session_json(&to_pb_session(s, None)))
        .collect();
    Ok((StatusCode::OK, json!({"sessions": sessions})))
}

async fn get(owner: &Owner<'_>, caller: &Caller, id: &str) -> Result<Answer, Error> {
    let id = session_id(id)?;
    let session = owner.console.engine.get(caller, id).await?;
    let pages = if session.status == SessionStatus::Live {
        let pages = match owner.console.engine.live_details(caller, id).await {
            Ok((pages, _)) => Ok(pages
                .into_iter()
                .map(|p| (p.target_id, p.title, p.url))
                .collect()),
            Err(Error::Elsewhere { node, .. }) => {
                let request = pb::GetLiveDetailsRequest {
                    session_id: id.to_string(),
                };
                owner
                    .forward(&node, request, |mut c, r| async move {
                        c.get_live_details(r).await
                    })
                    .await
                    .map(|details: pb::GetLiveDetailsResponse| {
                        details
                            .pages
                            .into_iter()
                            .map(|p| (p.target_id, p.title, p.url))
                            .collect::<Vec<_>>()
                    })
            }
            Err(e) => Err(Answered::from(e)),
        };
        pages
            .unwrap_or_default()
            .into_iter()
            .map(|(target_id, title, url)| json!({"targetId": target_id, "title": title, "url": url}))
            .collect()
    } else {
        Vec::new()
    };
    Ok((
        StatusCode::OK,
        json!({"session": session_json(&to_pb_session(&session, None)), "pages": pages}),
    ))
}

async fn release(owner: &Owner<'_>, caller: &Caller, id: &str) -> Result<Answer, Error> {
    let id = session_id(id)?;
    let session = match owner.console.engine.release(caller, id).await {
        Err(Error::Elsewhere { node, .. }) => {
            let request = pb::ReleaseSessionRequest {
                session_id: id.to_string(),
            };
            let released = owner
                .forward(&node, request, |mut c, r| async move {
                    c.release_session(r).await
                })
                .await;
            return shown(released.map(|r: pb::ReleaseSessionResponse| r.session));
        }
        outcome => outcome?,
    };
    Ok((
        StatusCode::OK,
        json!({"session": session_json(&to_pb_session(&session, None))}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendBody {
    timeout_seconds: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LiveBody {
    #[serde(default)]
    target_id: Option<String>,
    #[serde(default)]
    control: bool,
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::invalid("body", e.to_string()))
}

async fn extend(
    owner: &Owner<'_>,
    caller: &Caller,
    id: &str,
    body: &[u8],
) -> Result<Answer, Error> {
    let id = session_id(id)?;
    let ExtendBody { timeout_seconds } = parse_body(body)?;
    let timeout = Duration::from_secs(timeout_seconds);
    let session = match owner.console.engine.extend(caller, id, timeout).await {
        Err(Error::Elsewhere { node, .. }) => {
            let request = pb::ExtendSessionRequest {
                session_id: id.to_string(),
                timeout: Some(crate::wire::proto::pb_duration(timeout)),
            };
            let extended = owner
                .forward(&node, request, |mut c, r| async move {
                    c.extend_session(r).await
                })
                .await;
            return shown(extended.map(|r: pb::ExtendSessionResponse| r.session));
        }
        outcome => outcome?,
    };
    Ok((
        StatusCode::OK,
        json!({"session": session_json(&to_pb_session(&session, None))}),
    ))
}

async fn live(owner: &Owner<'_>, caller: &Caller, id: &str, body: &[u8]) -> Result<Answer, Error> {
    let id = session_id(id)?;
    let LiveBody {
        target_id,
        control,
        ttl_seconds,
    } = parse_body(body)?;
    let target_id = target_id.filter(|t| !t.is_empty());
    let ttl = ttl_seconds.map(Duration::from_secs);
    let made = owner
        .console
        .engine
        .create_live_view_link(caller, id, target_id.clone(), control, ttl)
        .await;
    let (link, url) = match made {
        Err(Error::Elsewhere { node, .. }) => {
            let request = pb::CreateLiveViewLinkRequest {
                session_id: id.to_string(),
                target_id: target_id.unwrap_or_default(),
                control,
                ttl: ttl.map(crate::wire::proto::pb_duration),
            };
            let made = owner
                .forward(&node, request, |mut c, r| async move {
                    c.create_live_view_link(r).await
                })
                .await;
            return Ok(match made {
                Ok(made) => (
                    StatusCode::OK,
                    json!({
                        "url": made.url,
                        "linkId": made.link_id,
                        "expiresAt": made.expires_at.map(|t| t.to_string()),
                    }),
                ),
                Err(refused) => refused.0,
            });
        }
        outcome => outcome?,
    };
    Ok((
        StatusCode::OK,
        json!({
            "url": url,
            "linkId": link.id,
            "expiresAt": crate::wire::proto::timestamp(link.expires_at).to_string(),
        }),
    ))
}

async fn revoke(console: &Console, caller: &Caller, id: &str) -> Result<Answer, Error> {
    let at = console.engine.revoke_live_view_link(caller, id).await?;
    Ok((
        StatusCode::OK,
        json!({"revokedAt": crate::wire::proto::timestamp(at).to_string()}),
    ))
}
