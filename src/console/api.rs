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

use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_stream::StreamExt;

use super::Console;
use crate::access::Caller;
use crate::api::convert::{to_pb_event, to_pb_session};
use crate::cli::output::{event_json, session_json};
use crate::pb;
use crate::relay::http::{self as relay_http, Head};
use crate::sessions::Error;
use crate::sessions::model::{EventFilter, SessionFilter, SessionId, SessionStatus};

/// The API's path prefix.
pub const PREFIX: &str = "/console/api/";
/// Largest request body: every body is a few small fields.
const MAX_BODY: usize = 4 * 1024;
/// Sessions a list answers with at most (the console shows the newest).
const LIST_LIMIT: u64 = 200;
/// A comment line sent on an idle event stream, so a vanished browser is
/// noticed (its write fails) and proxies keep the stream open.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// An API answer: a status and a JSON body.
type Answer = (StatusCode, Value);

pub async fn serve<S>(console: &Console, mut stream: S, head: Head, early: Vec<u8>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let route = head.path[PREFIX.len()..].trim_end_matches('/').to_owned();
    let body = if head.method == "POST" {
        match read_body(console, &mut stream, &head, early).await {
            Ok(body) => body,
            Err((status, message)) => {
                let response = answer(status, json!({"error": message}));
                return console.respond(stream, &response).await;
            }
        }
    } else {
        Vec::new()
    };
    let caller = match console.caller(&head).await {
        Ok(caller) => caller,
        Err(e) => {
            // A 401 without `www-authenticate`: the page asks for a key.
            let (status, body) = refusal(e);
            return console.respond(stream, &answer(status, body)).await;
        }
    };
    let parts: Vec<&str> = route.split('/').collect();
    let owner = Owner {
        console,
        credentials: credentials(&head),
    };
    let outcome = match (head.method.as_str(), parts.as_slice()) {
        ("GET", ["events"]) => return events(console, stream, &head, caller).await,
        ("GET", ["whoami"]) => Ok((
            StatusCode::OK,
            json!({
                "project": caller.project,
                "admin": caller.admin,
                "actor": caller.actor.recorded(None),
            }),
        )),
        ("GET", ["sessions"]) => list(console, &caller, &head.query).await,
        ("GET", ["sessions", id]) => get(&owner, &caller, id).await,
        ("POST", ["sessions", id, "release"]) => release(&owner, &caller, id).await,
        ("POST", ["sessions", id, "extend"]) => extend(&owner, &caller, id, &body).await,
        ("POST", ["sessions", id, "live"]) => live(&owner, &caller, id, &body).await,
        ("POST", ["links", id, "revoke"]) => revoke(console, &caller, id).await,
        (_, ["events" | "whoami" | "sessions"])
        | (_, ["sessions", _])
        | (_, ["sessions", _, "release" | "extend" | "live"])
        | (_, ["links", _, "revoke"]) => Ok((
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": format!("{} is not taken here", relay_http_method(&head.method))}),
        )),
        _ => Ok((
            StatusCode::NOT_FOUND,
            json!({"error": "no such console API route"}),
        )),
    };
    let (status, body) = outcome.unwrap_or_else(refusal);
    console.respond(stream, &answer(status, body)).await;
}

fn relay_http_method(method: &str) -> String {
    crate::sessions::error::untrusted(method)
}

fn answer(status: StatusCode, body: Value) -> Vec<u8> {
    relay_http::console_response(status, "application/json", body.to_string().as_bytes())
}

/// An engine error as the HTTP status of its gRPC code, and its message.
fn refusal(error: Error) -> Answer {
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

async fn read_body<S>(
    console: &Console,
    stream: &mut S,
    head: &Head,
    mut body: Vec<u8>,
) -> Result<Vec<u8>, (StatusCode, String)>
where
    S: AsyncRead + Unpin,
{
    let length = head.content_length.unwrap_or(body.len());
    if length > MAX_BODY || body.len() > MAX_BODY {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request bodies are at most {MAX_BODY} bytes"),
        ));
    }
    let read = async {
        let mut chunk = [0u8; 1024];
        while body.len() < length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
    };
    if tokio::time::timeout(console.body_timeout, read)
        .await
        .is_err()
        || body.len() < length
    {
        return Err((
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time".into(),
        ));
    }
    body.truncate(length);
    Ok(body)
}

fn session_id(id: &str) -> Result<SessionId, Error> {
    crate::api::convert::session_id("session_id", id)
}

/// The query's value of `name`, percent-decoded.
fn query_values<'a>(query: &'a str) -> impl Iterator<Item = (String, String)> + 'a {
    query.split('&').filter_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        Some((percent_decode(name)?, percent_decode(value)?))
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

async fn list(console: &Console, caller: &Caller, query: &str) -> Result<Answer, Error> {
    let mut filter = SessionFilter::default();
    for (name, value) in query_values(query) {
        if name == "status" {
            let status = SessionStatus::parse(&value).ok_or_else(|| {
                Error::invalid(
                    "status",
                    "one of PENDING, LIVE, RELEASED, FAILED".to_owned(),
                )
            })?;
            filter.statuses.push(status);
        } else if let Some(key) = name.strip_prefix("metadata.") {
            filter.metadata.insert(key.to_owned(), value);
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
                timeout: Some(crate::api::convert::pb_duration(timeout)),
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
                ttl: ttl.map(crate::api::convert::pb_duration),
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
            "expiresAt": crate::api::convert::timestamp(link.expires_at).to_string(),
        }),
    ))
}

async fn revoke(console: &Console, caller: &Caller, id: &str) -> Result<Answer, Error> {
    let at = console.engine.revoke_live_view_link(caller, id).await?;
    Ok((
        StatusCode::OK,
        json!({"revokedAt": crate::api::convert::timestamp(at).to_string()}),
    ))
}

/// WatchSessions as Server-Sent Events: each event is `id: <sequence>` and
/// `data: <event JSON>`; an `event: end` with the reason closes a stream
/// the server ends (a lag: reconnect with `after` = the last id).
async fn events<S>(console: &Console, mut stream: S, head: &Head, caller: Caller)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Ok(_permit) = console.event_streams.clone().try_acquire_owned() else {
        let response = answer(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": "too many console event streams are open: close one first"}),
        );
        return console.respond(stream, &response).await;
    };
    let mut filter = EventFilter::default();
    let mut after = None;
    let mut bad = None;
    for (name, value) in query_values(&head.query) {
        match name.as_str() {
            "after" => match value.parse::<u64>() {
                Ok(n) => after = Some(n),
                Err(_) => bad = Some(Error::invalid("after", "a sequence number")),
            },
            "session" => match session_id(&value) {
                Ok(id) => filter.session_ids.push(id),
                Err(e) => bad = Some(e),
            },
            _ => {}
        }
    }
    let watched = match bad {
        Some(e) => Err(e),
        None => console.engine.watch(&caller, filter, "", after).await,
    };
    let mut events = match watched {
        Ok(events) => events,
        Err(e) => {
            let (status, body) = refusal(e);
            return console.respond(stream, &answer(status, body)).await;
        }
    };
    let start = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\nconnection: close\r\n{}\r\n",
        relay_http::CONSOLE_HEADERS
    );
    if stream.write_all(start.as_bytes()).await.is_err() {
        return;
    }
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(KEEPALIVE, events.next()) => next,
            () = console.stop.cancelled() => Ok(None),
        };
        let chunk = match next {
            Ok(Some(Ok(event))) => format!(
                "id: {}\ndata: {}\n\n",
                event.sequence,
                event_json(&to_pb_event(&event))
            ),
            Ok(Some(Err(end))) => format!(
                "event: end\ndata: {}\n\n",
                json!({"error": end.to_string()})
            ),
            Ok(None) => return,
            Err(_) => ": keepalive\n\n".to_owned(),
        };
        let ended = chunk.starts_with("event: end");
        if stream.write_all(chunk.as_bytes()).await.is_err()
            || stream.flush().await.is_err()
            || ended
        {
            return;
        }
    }
}

/// A refusal as answered to the page: this node's, or another node's.
struct Answered(Answer);

impl From<Error> for Answered {
    fn from(error: Error) -> Self {
        Self(refusal(error))
    }
}

/// How the console reaches the node that runs a session: the caller's own
/// key, as the gRPC API forwards it (see [`crate::cluster`]).
struct Owner<'a> {
    console: &'a Console,
    credentials: tonic::metadata::MetadataMap,
}

impl Owner<'_> {
    async fn forward<Req, Res, Fut>(
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
fn credentials(head: &Head) -> tonic::metadata::MetadataMap {
    let mut metadata = tonic::metadata::MetadataMap::new();
    if let Some(value) = head
        .bearer
        .as_ref()
        .and_then(|key| format!("Bearer {key}").parse().ok())
    {
        metadata.insert("authorization", value);
    }
    metadata
}

/// A session another node answered with, as the page gets it.
fn shown(answered: Result<Option<pb::Session>, Answered>) -> Result<Answer, Error> {
    Ok(match answered {
        Ok(session) => (
            StatusCode::OK,
            json!({"session": session_json(&session.unwrap_or_default())}),
        ),
        Err(refused) => refused.0,
    })
}
