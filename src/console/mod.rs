//! browserd's web console and live view, an axum router the front door
//! ([`crate::front`]) serves under `/console` on the relay's listener (over
//! TLS when the relay has a certificate):
//! static pages embedded in the binary (no CDN, no build step), a small
//! JSON API under `/console/api/` ([`api`]), the event stream as
//! Server-Sent Events, and the live view WebSocket ([`live`]) over
//! screencasts shared by every viewer of a page ([`screencast`]).
//!
//! Who may do what is decided exactly as for gRPC: an API key
//! (`Authorization: Bearer`) becomes a [`Caller`] through
//! [`Access::caller`] (an open server takes requests without one), and
//! every read and action is the engine's own method, with its scoping
//! (another project's session is 404). The live view is opened with a
//! live view link's key instead ([`Engine::open_live_view`]), which
//! carries no API key. This module holds no business logic: it routes,
//! bounds requests, and converts to and from JSON.
//!
//! Every request is one connection, under the front door's connection
//! cap; bodies, event streams and viewers have caps of their own here.

pub mod api;
mod call;
mod events;
mod forward;
mod input;
pub mod live;
pub mod screencast;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access::Access;
use crate::domain::access::Caller;
use crate::domain::live_view::host_name;
use crate::front::http::{Client, bearer, text};
use crate::sessions::Engine;
use screencast::Screencasts;

/// The prefix of every console path.
pub const PREFIX: &str = "/console";

/// Event streams open at once, all callers together: each holds a
/// subscription to the event hub and a connection.
const MAX_EVENT_STREAMS: usize = 64;
/// Live view connections open at once, all sessions together.
const MAX_VIEWERS: usize = 128;
/// Live view connections open at once on one session: a leaked link
/// cannot make one session's browser encode for a crowd.
pub const MAX_VIEWERS_PER_SESSION: usize = 8;

/// The console's shared state.
pub struct Console {
    engine: Engine,
    access: Arc<Access>,
    /// Carries actions on another node's session to that node.
    peers: Arc<crate::cluster::Peers>,
    screencasts: Screencasts,
    /// Permits for event streams ([`MAX_EVENT_STREAMS`]).
    event_streams: Arc<Semaphore>,
    /// Permits for viewers ([`MAX_VIEWERS`]).
    viewers: Arc<Semaphore>,
    /// Viewers per session ([`MAX_VIEWERS_PER_SESSION`]).
    per_session:
        std::sync::Mutex<std::collections::HashMap<crate::domain::session::SessionId, usize>>,
    /// Time a client has to send a request body.
    body_timeout: std::time::Duration,
    /// Tells the browsers' own connections from callers'.
    sockets: crate::browser::Sockets,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

/// The embedded static files: path, content type, body.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/console",
        "text/html; charset=utf-8",
        include_bytes!("assets/index.html"),
    ),
    (
        "/console/",
        "text/html; charset=utf-8",
        include_bytes!("assets/index.html"),
    ),
    (
        "/console/live",
        "text/html; charset=utf-8",
        include_bytes!("assets/live.html"),
    ),
    (
        "/console/console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/console.js"),
    ),
    (
        "/console/live.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/live.js"),
    ),
    (
        "/console/console.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/console.css"),
    ),
];

impl Console {
    pub fn new(
        engine: Engine,
        access: Arc<Access>,
        peers: Arc<crate::cluster::Peers>,
        body_timeout: std::time::Duration,
        sockets: crate::browser::Sockets,
        stop: CancellationToken,
        tracker: TaskTracker,
    ) -> Arc<Self> {
        Arc::new(Self {
            engine,
            access,
            peers,
            screencasts: Screencasts::default(),
            event_streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
            viewers: Arc::new(Semaphore::new(MAX_VIEWERS)),
            per_session: std::sync::Mutex::default(),
            body_timeout,
            sockets,
            stop,
            tracker,
        })
    }

    /// The console's routes, each behind [`Console::admits`] and
    /// [`Console::admits_keyless`], each answer with [`SECURITY_HEADERS`].
    pub fn router(self: &Arc<Self>) -> Router {
        let mut router = api::routes().route(live::SOCKET_PATH, get(live::serve));
        for (path, content_type, body) in ASSETS {
            let page = move || async move {
                let mut response = Response::new(Body::from(*body));
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                response
            };
            let other = || async {
                text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "the console's pages take GET",
                )
            };
            router = router.route(path, get(page).fallback(other));
        }
        router
            .fallback(|| async {
                text(
                    StatusCode::NOT_FOUND,
                    "no such console page: open /console for the console, or a live view link",
                )
            })
            .layer(middleware::from_fn_with_state(self.clone(), admit))
            .with_state(self.clone())
    }

    /// Refuses what a web page of another site can make a visitor's
    /// browser send here. DNS rebinding: a site whose name an attacker
    /// points at 127.0.0.1 is same-origin with this console for the
    /// visitor's browser, and on an open server (no key) could read the
    /// sessions and open their live views; so the `Host` must be an
    /// address, `localhost`, or the host of this node's public relay URL.
    /// Cross-site requests and WebSockets (no CORS is ever answered, but a
    /// form POST or a WebSocket needs none): a browser names their page's
    /// origin, which must be this console's own.
    ///
    /// An address in `Host` must be the one the request came to (`local`):
    /// any other names no listener of this console.
    fn admits(&self, headers: &HeaderMap, local: SocketAddr) -> Result<(), &'static str> {
        let header = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let host = header(header::HOST).ok_or("the console needs a Host header")?;
        let name = host_name(host);
        let public = self.engine.public_host();
        let is_public = public.is_some_and(|public| name.eq_ignore_ascii_case(&public));
        let named = match name.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.to_canonical() == local.ip().to_canonical() || is_public,
            Err(_) => name.eq_ignore_ascii_case("localhost") || is_public,
        };
        if !named {
            return Err(
                "the console answers only at the address it was reached on, localhost, or the host of --cdp-public-url",
            );
        }
        if let Some(origin) = header(header::ORIGIN) {
            let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
            if !authority.eq_ignore_ascii_case(host) {
                return Err("a page of another origin may not call the console");
            }
        }
        Ok(())
    }

    /// Refuses a request without an API key from where no caller of
    /// browserd's is. A session's page can reach this listener and, once
    /// it has navigated to the console's origin, sends the same `Host` and
    /// `Origin` as the console's own pages: so a connection that one of
    /// browserd's browsers holds gets nothing without a key, whatever it
    /// asks for. And an open server (no key yet) answers keyless calls on
    /// loopback only, wherever its listeners are bound.
    async fn admits_keyless(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Result<(), (StatusCode, &'static str)> {
        if bearer(headers).is_some() {
            return Ok(());
        }
        if self.sockets.may_be_a_browser(peer, local).await {
            return Err((
                StatusCode::FORBIDDEN,
                "a session's own browser may not use the console without an API key",
            ));
        }
        if !peer.ip().to_canonical().is_loopback() && self.access.open_until_a_key_exists() {
            return Err((
                StatusCode::UNAUTHORIZED,
                "this server has no API key yet and answers calls without one on loopback only",
            ));
        }
        Ok(())
    }

    /// The caller of a console request: its bearer key, or none on an
    /// open server, exactly as for gRPC.
    async fn caller(&self, headers: &HeaderMap) -> crate::domain::Result<Caller> {
        let header = bearer(headers).map(|key| format!("Bearer {key}"));
        self.access
            .caller(header.as_deref().map(str::as_bytes))
            .await
    }

    /// Counts a viewer of `session` in; `None` when the session has its
    /// [`MAX_VIEWERS_PER_SESSION`] or the console its [`MAX_VIEWERS`].
    fn viewer_slot(
        self: &Arc<Console>,
        session: crate::domain::session::SessionId,
    ) -> Option<ViewerSlot> {
        let permit = self.viewers.clone().try_acquire_owned().ok()?;
        let mut counts = self.per_session.lock().expect("viewer counts poisoned");
        let count = counts.entry(session).or_default();
        if *count >= MAX_VIEWERS_PER_SESSION {
            return None;
        }
        *count += 1;
        Some(ViewerSlot {
            console: self.clone(),
            session,
            _permit: permit,
        })
    }
}

/// A viewer's place, given back when it is dropped.
struct ViewerSlot {
    console: Arc<Console>,
    session: crate::domain::session::SessionId,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for ViewerSlot {
    fn drop(&mut self) {
        let mut counts = self
            .console
            .per_session
            .lock()
            .expect("viewer counts poisoned");
        if let Some(count) = counts.get_mut(&self.session) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.session);
            }
        }
    }
}

/// Refuses what [`Console::admits`] and [`Console::admits_keyless`]
/// refuse, and locks every answer down.
async fn admit(
    State(console): State<Arc<Console>>,
    Extension(client): Extension<Client>,
    request: Request,
    next: Next,
) -> Response {
    let Client { peer, local } = client;
    tracing::debug!(%peer, method = %request.method(), "console request");
    let headers = request.headers();
    let admitted = match console.admits(headers, local) {
        Ok(()) => console.admits_keyless(headers, peer, local).await,
        refused => refused.map_err(|why| (StatusCode::FORBIDDEN, why)),
    };
    let mut response = match admitted {
        Ok(()) => next.run(request).await,
        Err((status, why)) => {
            tracing::info!(%peer, why, "console request refused");
            text(status, why)
        }
    };
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The console's pages load only their own scripts and styles, images
/// only from themselves or `data:` (the screencast's frames), connect only
/// back to browserd, and may not be framed: a page that shows a live
/// browser and takes input must not be overlaid by another site.
const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
];
