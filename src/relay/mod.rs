//! The CDP relay, the only door to a session's browser. Clients connect to
//! `ws://<cdp listen>/devtools/browser/<session id>` (`wss://` when browserd
//! has a certificate: every connection is then TLS first) with the session's
//! token (`?token=<secret>` or `Authorization: Bearer <secret>`) and are
//! relayed frame by frame to that session's browser, whose own port stays
//! on 127.0.0.1 and is never handed out. The same URL with `http(s)://` is a
//! CDP discovery endpoint for that session alone (`<url>/json/version`,
//! `/json/list`), which is what Playwright's `connect_over_cdp("http://…")`
//! asks for.
//!
//! Every client is untrusted: request heads are bounded in size and time,
//! connections are capped in total and accept failures back off (all by
//! [`crate::front`], the listener it shares with the console), connections
//! are capped per session ([`limits`]), messages and frames are bounded (an
//! oversized one closes that connection with 1009), and every client
//! message passes the per-session rules of [`policy`] (a client's
//! `Browser.close` releases the session with END_REASON_CLIENT_CLOSED) and
//! [`files`] (uploads and downloads stay inside the session's profile) on
//! its way through the frame [`pump`].
//! Every request that is not a WebSocket gets a real HTTP response.
//!
//! It asks the engine for routes and to end sessions; it never changes a
//! session itself. When a session ends, its route's token is cancelled and
//! every relayed connection is closed. It never logs a token.

mod files;
mod limits;
mod policy;
mod pump;
mod target;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, Request, State};
use axum::response::Response;
use http::StatusCode;
use http::header::{self, HeaderValue};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::domain::session::SessionId;
use crate::front::http::{self as front_http, Client, Refusal, text};
use crate::sessions::{Engine, Route};
use files::Files;
use limits::Sessions;
use pump::ws_config;
use target::Target;

/// Bytes read from a socket at a time. tungstenite zero-fills this much
/// before every read, including the one that finds the socket empty, so its
/// default (128 KiB) cost two 128 KiB memsets per relayed frame, most of the
/// relay's own CPU on small CDP messages. Large ones take more reads.
const READ_CHUNK: usize = 16 * 1024;

/// How the relay is bounded and what URL it hands out.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Base of every connect_url (`ws://host:port` or `wss://…`), as
    /// clients reach it.
    pub public_base: String,
    /// Largest message or frame, either direction.
    pub max_message_size: usize,
    /// Time a client has to finish its WebSocket handshake, and the relay
    /// to reach the session's browser.
    pub handshake_timeout: Duration,
    pub max_connections_per_session: usize,
    /// Clients of browserd's own user on this host may name host paths
    /// (see [`files`]).
    pub own_user_paths: bool,
    /// Tells browsers' own connections (a session's page can reach the
    /// relay) from those of local users.
    pub sockets: crate::browser::Sockets,
}

struct Relay {
    engine: Engine,
    config: RelayConfig,
    sessions: Arc<Sessions>,
    stop: CancellationToken,
    /// Runs the relayed connections, which outlive their requests.
    tracker: TaskTracker,
}

/// The relay's routes: every path the front door does not give the
/// console.
pub fn router(
    engine: Engine,
    config: RelayConfig,
    stop: CancellationToken,
    tracker: TaskTracker,
) -> Router {
    let relay = Arc::new(Relay {
        engine,
        sessions: Sessions::new(config.max_connections_per_session),
        config,
        stop,
        tracker,
    });
    Router::new().fallback(handle).with_state(relay)
}

/// One request: a WebSocket relayed to a live session, or an HTTP answer.
async fn handle(
    State(relay): State<Arc<Relay>>,
    Extension(client): Extension<Client>,
    mut request: Request,
) -> Response {
    let (id, route, session_slot, accept) = match relay.answer(&request) {
        Ok(accepted) => accepted,
        Err(Answer::Http(response)) => return *response,
        Err(Answer::Discovery(target, via_query)) => {
            // The token goes back in the socket's URL only if it came in
            // this one: a client that sent it as a header sends it again.
            let token = target::token(&request)
                .filter(|_| via_query)
                .map(|(token, _)| token.to_owned());
            return relay.discovery(target, token).await;
        }
    };
    let config = ws_config(relay.config.max_message_size);
    let within = relay.config.handshake_timeout;
    let (response, socket) = front_http::upgrade(&mut request, accept, config, within);
    let span = tracing::info_span!("cdp_client", session.id = %id, peer = %client.peer);
    let local = relay.config.own_user_paths.then(|| files::LocalClient {
        relay: client.local,
        peer: client.peer,
        sockets: relay.config.sockets.clone(),
    });
    let files = Files::new(route.profile.clone(), local);
    let tracker = relay.tracker.clone();
    tracker.spawn(
        async move {
            if let Some(socket) = socket.await {
                relay.pump(socket, id, route, files).await;
            }
            drop(session_slot);
        }
        .instrument(span),
    );
    response
}

impl Relay {
    /// What a request gets: a WebSocket for a live session (its route, its
    /// per-session slot, its `Sec-WebSocket-Accept`), or an HTTP answer.
    fn answer(
        &self,
        request: &Request,
    ) -> Result<(SessionId, Route, limits::SessionSlot, HeaderValue), Answer> {
        let refuse = |status, body: &str| Err(Answer::Http(Box::new(text(status, body))));
        let target = target::target(request.uri().path());
        let id = match target {
            Target::Socket(id) => id,
            Target::Version(_) | Target::List(_) => {
                if request.method() != http::Method::GET {
                    return refuse(StatusCode::METHOD_NOT_ALLOWED, "discovery takes GET");
                }
                let (_, via_query) = self.authorize(request, target)?;
                return Err(Answer::Discovery(target, via_query));
            }
            Target::Unknown => {
                return refuse(
                    StatusCode::NOT_FOUND,
                    "this is browserd's CDP relay: connect a CDP client (Playwright \
                     connect_over_cdp, Puppeteer connect) to a session's connect_url, \
                     /devtools/browser/<session id>; over http:// that URL also answers \
                     <url>/json/version",
                );
            }
        };
        let (route, _) = self.authorize(request, target)?;
        let accept = front_http::handshake(
            request,
            "this is browserd's CDP relay: connect a WebSocket client to this session's \
             connect_url (ws://…), or ask <url>/json/version for CDP discovery",
        )
        .map_err(Answer::Http)?;
        let Some(slot) = self.sessions.join(id) else {
            tracing::debug!(session.id = %id, "cdp relay: per-session connection cap reached");
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "this session already has {} CDP connections, its \
                     --cdp-max-connections-per-session: close one first",
                    self.sessions.max_per_session()
                ),
            );
        };
        Ok((id, route, slot, accept))
    }

    /// The live route the request's token opens, and whether the token
    /// came in the URL.
    fn authorize(&self, request: &Request, target: Target) -> Result<(Route, bool), Answer> {
        let (Target::Socket(id) | Target::Version(id) | Target::List(id)) = target else {
            return Err(Answer::Http(Box::new(text(
                StatusCode::NOT_FOUND,
                "unknown path",
            ))));
        };
        let Some((token, via_query)) = target::token(request) else {
            let mut response = text(
                StatusCode::UNAUTHORIZED,
                "missing token: add ?token=<token> from connect_url, or send \
                 Authorization: Bearer <token>",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return Err(Answer::Http(Box::new(response)));
        };
        // One answer for "no such live session" and "wrong token", so the
        // relay does not tell which session ids exist.
        let route = self.engine.route(id, token).ok_or_else(|| {
            Answer::Http(Box::new(text(
                StatusCode::NOT_FOUND,
                "no live session with this id and token",
            )))
        })?;
        Ok((route, via_query))
    }

    /// A discovery answer for one session, in the shape Chromium's own
    /// `/json/version` and `/json/list` have.
    async fn discovery(&self, target: Target, token: Option<String>) -> Response {
        let (Target::Version(id) | Target::List(id)) = target else {
            return text(StatusCode::NOT_FOUND, "unknown path");
        };
        let socket_url = match token {
            Some(token) => format!(
                "{}{}{id}?token={token}",
                self.config.public_base,
                target::PATH_PREFIX
            ),
            None => format!("{}{}{id}", self.config.public_base, target::PATH_PREFIX),
        };
        if let Target::Version(_) = target {
            let browser = match self.engine.read(id).await {
                Ok(session) => session.browser_version.unwrap_or_default(),
                Err(_) => String::new(),
            };
            return front_http::json(
                StatusCode::OK,
                &serde_json::json!({
                    "Browser": browser,
                    "Protocol-Version": "1.3",
                    "webSocketDebuggerUrl": socket_url,
                }),
            );
        }
        match self.engine.pages(id).await {
            Ok((pages, _)) => front_http::json(
                StatusCode::OK,
                &serde_json::Value::Array(
                    pages
                        .into_iter()
                        .map(|page| {
                            serde_json::json!({
                                "id": page.target_id,
                                "type": "page",
                                "title": page.title,
                                "url": page.url,
                            })
                        })
                        .collect(),
                ),
            ),
            Err(_) => text(
                StatusCode::NOT_FOUND,
                "no live session with this id and token",
            ),
        }
    }
}

/// Why a request does not become a relayed WebSocket.
enum Answer {
    /// A complete HTTP response.
    Http(Refusal),
    /// An authorized discovery request (and whether its token was in the
    /// URL).
    Discovery(Target, bool),
}
