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
//! Every client is untrusted: request heads are bounded in size and time
//! ([`http`]), connections are capped in total and per session and accept
//! failures back off ([`limits`]), messages and frames are bounded (an
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
pub(crate) mod http;
mod limits;
mod policy;
mod pump;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ::http::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::{TlsAcceptor, rustls, server::TlsStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::sessions::model::SessionId;
use crate::sessions::{Engine, Route};
use files::Files;
use http::{Head, HeadError, Target};
use limits::{AcceptBackoff, Connections};
use pump::ws_config;

pub use limits::raise_descriptor_limit;

/// Bytes read from a socket at a time. tungstenite zero-fills this much
/// before every read, including the one that finds the socket empty, so its
/// default (128 KiB) cost two 128 KiB memsets per relayed frame, most of the
/// relay's own CPU on small CDP messages. Large ones take more reads.
const READ_CHUNK: usize = 16 * 1024;

/// Connections over the total cap still get their 503 (the only way a
/// client learns why), but only this many at once, each for at most
/// [`REFUSAL_TIME`]; past that they are closed unanswered.
const MAX_REFUSALS: usize = 64;
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// A client's connection: plain, or TLS over TCP (boxed: a TLS session is
/// large, and is moved into the WebSocket).
type ClientStream = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// How the relay is bounded and what URL it hands out.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Base of every connect_url (`ws://host:port` or `wss://…`), as
    /// clients reach it.
    pub public_base: String,
    /// Largest message or frame, either direction.
    pub max_message_size: usize,
    /// Time a client has to send its request head.
    pub handshake_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_session: usize,
    /// Clients of browserd's own user on this host may name host paths
    /// (see [`files`]).
    pub own_user_paths: bool,
    /// Tells browsers' own connections (a session's page can reach the
    /// relay) from those of local users.
    pub sockets: crate::browser::Sockets,
    /// Serve every connection over TLS with this config.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The web console and live view, served under `/console` (see
    /// [`crate::console`]); `None`: those paths are unknown.
    pub console: Option<Arc<crate::console::Console>>,
}

struct Relay {
    engine: Engine,
    config: RelayConfig,
    connections: Arc<Connections>,
    /// Permits for answering connections over the total cap.
    refusals: Arc<Semaphore>,
    stop: CancellationToken,
}

/// Accepts relay connections until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    config: RelayConfig,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    limits::check_descriptor_budget(config.max_connections);
    let relay = Arc::new(Relay {
        engine,
        connections: Connections::new(config.max_connections, config.max_connections_per_session),
        config,
        refusals: Arc::new(Semaphore::new(MAX_REFUSALS)),
        stop: stop.clone(),
    });
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(e) => {
                let pause = backoff.failed(&e);
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = stop.cancelled() => return,
                }
            }
        };
        match relay.connections.open() {
            Some(slot) => {
                let relay = relay.clone();
                tracker.spawn(async move {
                    relay.connection(stream, peer).await;
                    drop(slot);
                });
            }
            None => relay.refuse_busy(stream, peer, &tracker),
        }
    }
}

impl Relay {
    /// Answers 503 to a connection over the total cap, if answering cannot
    /// itself exhaust anything (over TLS, after a handshake that shares the
    /// answer's time).
    fn refuse_busy(&self, stream: TcpStream, peer: SocketAddr, tracker: &TaskTracker) {
        tracing::debug!(%peer, "cdp relay: connection cap reached");
        let Ok(permit) = self.refusals.clone().try_acquire_owned() else {
            return;
        };
        let body = format!(
            "browserd's CDP relay has {} connections open, its --cdp-max-connections: try again later",
            self.connections.max()
        );
        let stop = self.stop.clone();
        let tls = self.config.tls.clone();
        tracker.spawn(async move {
            let deadline = Instant::now() + REFUSAL_TIME;
            if let Some(stream) = secure(stream, peer, tls, deadline, &stop).await {
                let response = http::text(StatusCode::SERVICE_UNAVAILABLE, &body);
                http::respond_and_close(stream, &response, REFUSAL_TIME, &stop).await;
            }
            drop(permit);
        });
    }

    /// One accepted connection: its TLS handshake, if any, and request head
    /// within the handshake timeout, then a WebSocket relay or an HTTP
    /// answer.
    async fn connection(&self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        // Taken from the TCP socket before TLS hides it: [`files`] finds
        // the client's socket owner by these two addresses.
        let Ok(relay_addr) = stream.local_addr() else {
            return;
        };
        let within = self.config.handshake_timeout;
        let deadline = Instant::now() + within;
        let tls = self.config.tls.clone();
        let Some(mut stream) = secure(stream, peer, tls, deadline, &self.stop).await else {
            return;
        };
        let read = tokio::select! {
            read = tokio::time::timeout_at(deadline, http::read_head(&mut stream)) => read,
            () = self.stop.cancelled() => return,
        };
        let (head, early) = match read {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "cdp relay: bad request head");
                let response = match e {
                    HeadError::TooLarge => http::text(
                        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        "request head too large",
                    ),
                    HeadError::Malformed(_) => {
                        http::text(StatusCode::BAD_REQUEST, "malformed HTTP request")
                    }
                    HeadError::Closed | HeadError::Io(_) => return,
                };
                return http::respond_and_close(stream, &response, within, &self.stop).await;
            }
            Err(_) => {
                tracing::debug!(%peer, "cdp relay: handshake timed out");
                let body = format!(
                    "no complete request within --cdp-handshake-timeout ({})",
                    humantime::format_duration(within)
                );
                let response = http::text(StatusCode::REQUEST_TIMEOUT, &body);
                return http::respond_and_close(stream, &response, within, &self.stop).await;
            }
        };
        if crate::console::is_console_path(&head.path)
            && let Some(console) = &self.config.console
        {
            // The console bounds its own requests (bodies, streams,
            // viewers); this connection's slot is held until it returns.
            return console.serve(stream, head, early, peer, relay_addr).await;
        }
        match self.answer(&head) {
            Ok((id, route, session_slot)) => {
                let Some(key) = head.ws_key.as_deref() else {
                    return;
                };
                let switched = http::switching_protocols(key);
                match tokio::time::timeout(within, stream.write_all(&switched)).await {
                    Ok(Ok(())) => {}
                    _ => return,
                }
                let client = WebSocketStream::from_partially_read(
                    stream,
                    early,
                    Role::Server,
                    Some(ws_config(self.config.max_message_size)),
                )
                .await;
                let span = tracing::info_span!("cdp_client", session.id = %id, %peer);
                let local = self.config.own_user_paths.then(|| files::LocalClient {
                    relay: relay_addr,
                    peer,
                    sockets: self.config.sockets.clone(),
                });
                let files = Files::new(route.profile.clone(), local);
                self.pump(client, id, route, files).instrument(span).await;
                drop(session_slot);
            }
            Err(Answer::Http(response)) => {
                http::respond_and_close(stream, &response, within, &self.stop).await;
            }
            Err(Answer::Discovery(target, via_query)) => {
                let response = self.discovery(&head, target, via_query).await;
                http::respond_and_close(stream, &response, within, &self.stop).await;
            }
        }
    }

    /// What a request head gets: a WebSocket for a live session (its route
    /// and its per-session slot), or an HTTP answer.
    fn answer(&self, head: &Head) -> Result<(SessionId, Route, limits::SessionSlot), Answer> {
        let refuse = |status, body: &str| Err(Answer::Http(http::text(status, body)));
        let id = match http::target(&head.path) {
            Target::Socket(id) => id,
            target @ (Target::Version(_) | Target::List(_)) => {
                if head.method != "GET" {
                    return refuse(StatusCode::METHOD_NOT_ALLOWED, "discovery takes GET");
                }
                let (_, via_query) = self.authorize(head)?;
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
        let (route, _) = self.authorize(head)?;
        if !head.upgrade || head.method != "GET" {
            return refuse(
                StatusCode::BAD_REQUEST,
                "this is browserd's CDP relay: connect a WebSocket client to this session's \
                 connect_url (ws://…), or ask <url>/json/version for CDP discovery",
            );
        }
        if head.ws_version.as_deref() != Some("13") {
            return Err(Answer::Http(http::upgrade_required(
                "this relay speaks WebSocket version 13",
            )));
        }
        if head.ws_key.is_none() {
            return refuse(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
        }
        let Some(slot) = self.connections.join(id) else {
            tracing::debug!(session.id = %id, "cdp relay: per-session connection cap reached");
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "this session already has {} CDP connections, its \
                     --cdp-max-connections-per-session: close one first",
                    self.connections.max_per_session()
                ),
            );
        };
        Ok((id, route, slot))
    }

    /// The live route the request's token opens, and whether the token
    /// came in the URL.
    fn authorize(&self, head: &Head) -> Result<(Route, bool), Answer> {
        let (Target::Socket(id) | Target::Version(id) | Target::List(id)) =
            http::target(&head.path)
        else {
            return Err(Answer::Http(http::text(
                StatusCode::NOT_FOUND,
                "unknown path",
            )));
        };
        let Some((token, via_query)) = head.token() else {
            return Err(Answer::Http(http::unauthorized(
                "missing token: add ?token=<token> from connect_url, or send \
                 Authorization: Bearer <token>",
            )));
        };
        // One answer for "no such live session" and "wrong token", so the
        // relay does not tell which session ids exist.
        let route = self.engine.route(id, token).ok_or_else(|| {
            Answer::Http(http::text(
                StatusCode::NOT_FOUND,
                "no live session with this id and token",
            ))
        })?;
        Ok((route, via_query))
    }

    /// A discovery answer for one session, in the shape Chromium's own
    /// `/json/version` and `/json/list` have.
    async fn discovery(&self, head: &Head, target: Target, via_query: bool) -> Vec<u8> {
        let (Target::Version(id) | Target::List(id)) = target else {
            return http::text(StatusCode::NOT_FOUND, "unknown path");
        };
        let socket_url = match (via_query, head.token()) {
            (true, Some((token, _))) => format!(
                "{}{}{id}?token={token}",
                self.config.public_base,
                http::PATH_PREFIX
            ),
            // A client that sent the token as a header sends it again.
            _ => format!("{}{}{id}", self.config.public_base, http::PATH_PREFIX),
        };
        if let Target::Version(_) = target {
            let browser = match self.engine.read(id).await {
                Ok(session) => session.browser_version.unwrap_or_default(),
                Err(_) => String::new(),
            };
            return http::json(&serde_json::json!({
                "Browser": browser,
                "Protocol-Version": "1.3",
                "webSocketDebuggerUrl": socket_url,
            }));
        }
        match self.engine.pages(id).await {
            Ok((pages, _)) => http::json(&serde_json::Value::Array(
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
            )),
            Err(_) => http::text(
                StatusCode::NOT_FOUND,
                "no live session with this id and token",
            ),
        }
    }
}

/// `stream` as the relay serves it: as it is without `tls`, else once its
/// TLS handshake completes by `deadline`. `None`: the handshake failed,
/// timed out, or the relay is stopping.
async fn secure(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    deadline: Instant,
    stop: &CancellationToken,
) -> Option<ClientStream> {
    let Some(tls) = tls else {
        return Some(Either::Left(stream));
    };
    let handshake = tokio::time::timeout_at(deadline, TlsAcceptor::from(tls).accept(stream));
    let secured = tokio::select! {
        secured = handshake => secured,
        () = stop.cancelled() => return None,
    };
    match secured {
        Ok(Ok(stream)) => Some(Either::Right(Box::new(stream))),
        Ok(Err(e)) => {
            // A plain-text client, or one that does not trust the
            // certificate: its TLS library tells it why.
            tracing::debug!(%peer, error = %e, "cdp relay: TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "cdp relay: TLS handshake timed out");
            None
        }
    }
}

/// Why a request head does not become a relayed WebSocket.
enum Answer {
    /// A complete HTTP response.
    Http(Vec<u8>),
    /// An authorized discovery request (and whether its token was in the
    /// URL).
    Discovery(Target, bool),
}
